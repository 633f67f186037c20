// Mixture-of-experts prefill for few tokens per expert, Q8_0 weights: workgroup z is an expert
// and reads its weight rows once for all the slots routed to it (from `moe_group`), TB slots
// at a time. The grouped tiled matmul computes whole 64-token tiles, nearly all padding when a
// short prompt gives each expert 2-5 tokens; this kernel does the work of the tokens there are.
// Activations as in matvec_q8's DOT path: each slot's input row (optionally silu(gate) * up)
// is quantised to int8 blocks in workgroup memory, then dot4I8Packed against the weights.
// y[slot * y_ld + y_off + r] = W_e[r] . x(slot) for every slot s of expert e.
// DENSE: one matrix and the step's tokens as its slots (slot j = token j, count = step.t):
// short prefill steps of dense layers, whose tiled matmuls would run on a few workgroups.
override SWIGLU: bool = false;
override DENSE: bool = false;
override ACCUMULATE: bool = false;
override ROWS: u32 = 2;     // rows per subgroup pass (1..4)
override RPW: u32 = 16;     // rows per workgroup, a multiple of ROWS
override WG: u32 = 256;
const TB: u32 = 4u;         // slots per pass (the components of an accumulator)

struct Params {
    rows: u32,          // rows per expert
    k: u32,
    stride: u32,        // u32 words of values per row (k / 4)
    x_off: u32,         // multiple of 4 (the gate half when SWIGLU)
    up_off: u32,        // SWIGLU: offset of the up half, multiple of 4
    scale_stride: u32,  // u32 words of scales per row (two f16 each)
    x_div: u32,         // slots per x row
    x_stride: u32,      // floats between x rows
    experts: u32,
    y_ld: u32,          // floats between output rows (slots or tokens)
    y_off: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;    // (experts * rows, stride / 4)
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> sc: array<u32>;         // (experts * rows, scale_stride)
@group(0) @binding(6) var<storage, read> groups: array<u32>;     // offsets, then slot ids

var<workgroup> xq: array<vec4<u32>, 1024>;  // TB rows of x as int8 (TB * k <= 16384)
var<workgroup> xd: array<f32, 512>;         // their block scales (TB * k / 32)
var<workgroup> slot_of: array<u32, 4>;

fn xin(base: u32, up: u32, i: u32) -> vec4<f32> {
    let a = x[base / 4u + i];
    if (SWIGLU) {
        let u = x[up / 4u + i];
        return a / (vec4<f32>(1.0) + exp(-a)) * u;
    }
    return a;
}

// Quantise the pass's slots (j < n) into xq / xd; absent slots read as zeros. Every
// invocation takes 8 consecutive values of one slot's row; four neighbours make a block.
fn quantise(li: u32, n: u32) {
    let n8 = p.k / 8u;
    for (var base = 0u; base < TB * n8; base += WG) {
        let i = base + li;
        let j = i / n8;
        let c = i % n8;
        var a = vec4<f32>(0.0);
        var b = vec4<f32>(0.0);
        if (j < n) {
            let row = (slot_of[j] / p.x_div) * p.x_stride;
            a = xin(p.x_off + row, p.up_off + row, 2u * c);
            b = xin(p.x_off + row, p.up_off + row, 2u * c + 1u);
        }
        var m = max(max(abs(a.x), abs(a.y)), max(abs(a.z), abs(a.w)));
        m = max(m, max(max(abs(b.x), abs(b.y)), max(abs(b.z), abs(b.w))));
        m = max(m, subgroupShuffleXor(m, 1u));
        m = max(m, subgroupShuffleXor(m, 2u));
        if (j < TB) {
            let inv = select(0.0, 127.0 / m, m > 0.0);
            let at = j * (p.k / 16u) + c / 2u;
            xq[at][2u * (c % 2u)] = pack4xI8(vec4<i32>(round(a * inv)));
            xq[at][2u * (c % 2u) + 1u] = pack4xI8(vec4<i32>(round(b * inv)));
            if (c % 4u == 0u) { xd[j * (p.k / 32u) + c / 4u] = m / 127.0; }
        }
    }
}

// Block b of weight row `row` (absolute) against the TB slots' int8 blocks.
fn block(row: u32, b: u32) -> vec4<f32> {
    let base = row * (p.stride / 4u) + 2u * b;
    let qa = w[base];
    let qb = w[base + 1u];
    let s2 = unpack2x16float(sc[row * p.scale_stride + b / 2u]);
    let d = select(s2.x, s2.y, (b & 1u) == 1u);
    var out = vec4<f32>(0.0);
    let kb = p.k / 16u;   // vec4 words of xq per slot
    let nb = p.k / 32u;
    for (var j = 0u; j < TB; j++) {
        let xa = xq[j * kb + 2u * b];
        let xb = xq[j * kb + 2u * b + 1u];
        let s = dot4I8Packed(qa.x, xa.x) + dot4I8Packed(qa.y, xa.y) + dot4I8Packed(qa.z, xa.z)
              + dot4I8Packed(qa.w, xa.w) + dot4I8Packed(qb.x, xb.x) + dot4I8Packed(qb.y, xb.y)
              + dot4I8Packed(qb.z, xb.z) + dot4I8Packed(qb.w, xb.w);
        out[j] = d * xd[j * nb + b] * f32(s);
    }
    return out;
}

fn store(o: u32, v: f32) {
    if (ACCUMULATE) { y[o] = y[o] + v; } else { y[o] = v; }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
    let e = wg.z;
    var start = 0u;
    var count = step.t;
    if (!DENSE) {
        start = groups[e];
        count = groups[e + 1u] - start;
    }
    if (count == 0u) { return; }   // uniform: the expert got no token this step
    let first = wg.x * RPW;
    let nsg = WG / sgs;
    let nb = p.k / 32u;
    let last = p.rows - 1u;
    for (var t0 = 0u; t0 < count; t0 += TB) {
        let n = min(TB, count - t0);
        workgroupBarrier();   // the previous pass is done with xq and slot_of
        if (li < n) {
            if (DENSE) { slot_of[li] = t0 + li; } else { slot_of[li] = groups[p.experts + 1u + start + t0 + li]; }
        }
        workgroupBarrier();
        quantise(li, n);
        workgroupBarrier();
        for (var r0 = first + (li / sgs) * ROWS; r0 < min(first + RPW, p.rows); r0 += nsg * ROWS) {
            var a0 = vec4<f32>(0.0);
            var a1 = vec4<f32>(0.0);
            var a2 = vec4<f32>(0.0);
            var a3 = vec4<f32>(0.0);
            let e0 = e * p.rows;
            for (var b = lane; b < nb; b += sgs) {
                a0 = a0 + block(e0 + r0, b);
                if (ROWS > 1u) { a1 = a1 + block(e0 + min(r0 + 1u, last), b); }
                if (ROWS > 2u) { a2 = a2 + block(e0 + min(r0 + 2u, last), b); }
                if (ROWS > 3u) { a3 = a3 + block(e0 + min(r0 + 3u, last), b); }
            }
            let t0s = subgroupAdd(a0);
            let t1s = subgroupAdd(a1);
            let t2s = subgroupAdd(a2);
            let t3s = subgroupAdd(a3);
            if (lane == 0u) {
                for (var j = 0u; j < n; j++) {
                    let o = slot_of[j] * p.y_ld + p.y_off + r0;
                    store(o, t0s[j]);
                    if (ROWS > 1u && r0 + 1u < p.rows) { store(o + 1u, t1s[j]); }
                    if (ROWS > 2u && r0 + 2u < p.rows) { store(o + 2u, t2s[j]); }
                    if (ROWS > 3u && r0 + 3u < p.rows) { store(o + 3u, t3s[j]); }
                }
            }
        }
    }
}
