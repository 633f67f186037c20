// Q8_0 block helpers shared by matvec_q8.wgsl and matvec_q8_phases.wgsl (prepended to both by
// the pipeline cache; WGSL has no includes).

// A block of one weight row: eight words of int8 values and the block's scale.
struct Blk {
    qa: vec4<u32>,
    qb: vec4<u32>,
    d: f32,
}

// A block against the int8 inputs xa | xb with scale dx (4 multiply-adds per instruction).
fn dot_i8(k: Blk, xa: vec4<u32>, xb: vec4<u32>, dx: f32) -> f32 {
    let s = dot4I8Packed(k.qa.x, xa.x) + dot4I8Packed(k.qa.y, xa.y) + dot4I8Packed(k.qa.z, xa.z)
          + dot4I8Packed(k.qa.w, xa.w) + dot4I8Packed(k.qb.x, xb.x) + dot4I8Packed(k.qb.y, xb.y)
          + dot4I8Packed(k.qb.z, xb.z) + dot4I8Packed(k.qb.w, xb.w);
    return k.d * dx * f32(s);
}

// An output block of 32 values held four per lane by eight neighbouring lanes (li % 8 aligned;
// subgroups of at least 8): its largest |t| and the sum of squares of v, on every lane.
fn block_reduce(t: vec4<f32>, v: vec4<f32>) -> vec2<f32> {
    var m = max(max(abs(t.x), abs(t.y)), max(abs(t.z), abs(t.w)));
    var s = dot(v, v);
    m = max(m, subgroupShuffleXor(m, 1u));
    s = s + subgroupShuffleXor(s, 1u);
    m = max(m, subgroupShuffleXor(m, 2u));
    s = s + subgroupShuffleXor(s, 2u);
    m = max(m, subgroupShuffleXor(m, 4u));
    s = s + subgroupShuffleXor(s, 4u);
    return vec2<f32>(m, s);
}
