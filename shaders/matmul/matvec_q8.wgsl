// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k] for Q8_0 weights (decode): one row per
// subgroup; each invocation takes whole 32-weight blocks (eight u32 of four int8 values and
// one f16 scale). Same fusions as matvec_sg: RMS_NORM, SWIGLU, ACCUMULATE.
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;
override RMS_NORM: bool = false;

struct Params {
    rows: u32,
    k: u32,
    stride: u32,        // u32 words of values per row (k / 4)
    x_off: u32,         // multiple of 4 (the gate half when SWIGLU)
    y_off: u32,
    row0: u32,
    up_off: u32,        // SWIGLU: offset of the up half, multiple of 4
    eps_bits: u32,      // RMS_NORM
    scale_stride: u32,  // u32 words of scales per row (two f16 each)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;    // RMS_NORM weight (k / 4)
@group(0) @binding(5) var<storage, read> sc: array<u32>;         // (rows, scale_stride)

fn xin(i: u32) -> vec4<f32> {
    let a = x[p.x_off / 4u + i];
    if (SWIGLU) {
        let u = x[p.up_off / 4u + i];
        return a / (vec4<f32>(1.0) + exp(-a)) * u;
    }
    return a;
}

fn q4(word: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xI8(word));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
    let row = (wg.x + wg.y * nwg.x) * (256u / sgs) + li / sgs;
    var acc = 0.0;
    var ss = 0.0;
    if (row < p.rows) {
        let nb = p.k / 32u;
        let base = row * (p.stride / 4u);
        for (var b = lane; b < nb; b += sgs) {
            let qa = w[base + 2u * b];
            let qb = w[base + 2u * b + 1u];
            let s2 = unpack2x16float(sc[row * p.scale_stride + b / 2u]);
            let d = select(s2.x, s2.y, (b & 1u) == 1u);
            var blk = 0.0;
            let words = array<u32, 8>(qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w);
            for (var i = 0u; i < 8u; i++) {
                var xv = xin(8u * b + i);
                if (RMS_NORM) {
                    ss = ss + dot(xv, xv);
                    xv = xv * g[8u * b + i];
                }
                blk = blk + dot(q4(words[i]), xv);
            }
            acc = acc + d * blk;
        }
    }
    let total = subgroupAdd(acc);
    let total_ss = subgroupAdd(ss);
    if (lane == 0u && row < p.rows) {
        var r = total;
        if (RMS_NORM) { r = r / sqrt(total_ss / f32(p.k) + bitcast<f32>(p.eps_bits)); }
        let o = p.y_off + p.row0 + row;
        if (ACCUMULATE) { y[o] = y[o] + r; } else { y[o] = r; }
    }
}
