// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k]  (decode) with subgroup reductions: four rows
// per subgroup, any subgroup size (32 on NVIDIA, 8 on lavapipe), rows a multiple of 8 long.
// No workgroup memory and no barriers: short rows (K = 1024) were dominated by the
// shared-memory reduction in matvec_vec4. Four rows per subgroup let each x load (and norm
// weight load) serve four weight loads: with one row, the activation reads out-weighed the
// weight reads 2:1 and held the kernel at ~2.5 TB/s on an H200.
// RMS_NORM folds the RMSNorm of x into the product: y = inv_rms(x) * W (x * g), with the sum
// of squares taken by every subgroup from the x it reads anyway. ACCUMULATE adds into y;
// SWIGLU reads silu(x[gate]) * x[up] as the input.
override IS_F16: bool = false;
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;
override RMS_NORM: bool = false;

struct Params {
    rows: u32,
    k: u32,
    stride: u32,    // u32 words per row (k / 2, a multiple of 4)
    x_off: u32,     // multiple of 4 (the gate half when SWIGLU)
    y_off: u32,
    row0: u32,
    up_off: u32,    // SWIGLU: offset of the up half, multiple of 4
    eps_bits: u32,  // RMS_NORM: f32 bits of eps
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;    // RMS_NORM weight (k / 4)

fn xin(i: u32) -> vec4<f32> {
    let a = x[p.x_off / 4u + i];
    if (SWIGLU) {
        let u = x[p.up_off / 4u + i];
        return a / (vec4<f32>(1.0) + exp(-a)) * u;
    }
    return a;
}

fn dot8(q: vec4<u32>, x0: vec4<f32>, x1: vec4<f32>) -> f32 {
    let a = unpack_w(q.x, IS_F16);
    let b = unpack_w(q.y, IS_F16);
    let c = unpack_w(q.z, IS_F16);
    let d = unpack_w(q.w, IS_F16);
    return dot(vec4<f32>(a.x, a.y, b.x, b.y), x0) + dot(vec4<f32>(c.x, c.y, d.x, d.y), x1);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32) {
    let row = ((wg.x + wg.y * nwg.x) * (256u / sg) + li / sg) * 4u;
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var ss = 0.0;
    if (row < p.rows) {
        let quads = p.stride / 4u;
        // rows past the end re-read the last row; their results are never stored
        let b0 = row * quads;
        let b1 = min(row + 1u, p.rows - 1u) * quads;
        let b2 = min(row + 2u, p.rows - 1u) * quads;
        let b3 = min(row + 3u, p.rows - 1u) * quads;
        for (var j = lane; j < quads; j += sg) {
            let q0 = w[b0 + j];
            let q1 = w[b1 + j];
            let q2 = w[b2 + j];
            let q3 = w[b3 + j];
            var x0 = xin(2u * j);
            var x1 = xin(2u * j + 1u);
            if (RMS_NORM) {
                ss = ss + dot(x0, x0) + dot(x1, x1);
                x0 = x0 * g[2u * j];
                x1 = x1 * g[2u * j + 1u];
            }
            a0 = a0 + dot8(q0, x0, x1);
            a1 = a1 + dot8(q1, x0, x1);
            a2 = a2 + dot8(q2, x0, x1);
            a3 = a3 + dot8(q3, x0, x1);
        }
    }
    let t0 = subgroupAdd(a0);
    let t1 = subgroupAdd(a1);
    let t2 = subgroupAdd(a2);
    let t3 = subgroupAdd(a3);
    let tss = subgroupAdd(ss);
    if (lane < 4u && row + lane < p.rows) {
        var r = t0;
        if (lane == 1u) { r = t1; }
        if (lane == 2u) { r = t2; }
        if (lane == 3u) { r = t3; }
        if (RMS_NORM) { r = r / sqrt(tss / f32(p.k) + bitcast<f32>(p.eps_bits)); }
        let o = p.y_off + p.row0 + row + lane;
        if (ACCUMULATE) { y[o] = y[o] + r; } else { y[o] = r; }
    }
}
