// Synthetic weights made on the device (benchmarks of full-size shapes without multi-GB files):
// MODE 0 fills u32 words with two BF16 values uniform in [-a, a]; MODE 1 with random bytes
// (Q8_0 int8 values); MODE 2 with two copies of the f16 value a (Q8_0 block scales).
override MODE: u32 = 0u;

struct Params {
    n: u32,       // words to fill
    seed: u32,
    a_bits: u32,  // f32 bits of a
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;

// a 32-bit integer hash (lowbias32)
fn hash(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

fn bf16_uniform(h: u32, a: f32) -> u32 {
    let u = f32(h >> 8u) / 16777216.0 * 2.0 - 1.0;
    return bitcast<u32>(u * a) >> 16u;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let a = bitcast<f32>(p.a_bits);
    let h = hash(i ^ hash(p.seed));
    if (MODE == 0u) {
        let h2 = hash(h ^ 0x9e3779b9u);
        w[i] = bf16_uniform(h, a) | (bf16_uniform(h2, a) << 16u);
    } else if (MODE == 1u) {
        w[i] = h;
    } else {
        w[i] = pack2x16float(vec2<f32>(a, a));
    }
}
