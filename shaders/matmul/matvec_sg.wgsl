// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k]  (decode) with subgroup reductions: one row
// per subgroup, any subgroup size (32 on NVIDIA, 8 on lavapipe), rows a multiple of 8 long.
// No workgroup memory and no barriers: short rows (K = 1024) were dominated by the
// shared-memory reduction in matvec_vec4.
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

// (dot of 8 weights with their 8 inputs, sum of squares of those inputs when RMS_NORM)
fn row_part(q: vec4<u32>, j: u32) -> vec2<f32> {
    let a = unpack_w(q.x, IS_F16);
    let b = unpack_w(q.y, IS_F16);
    let c = unpack_w(q.z, IS_F16);
    let d = unpack_w(q.w, IS_F16);
    var x0 = xin(2u * j);
    var x1 = xin(2u * j + 1u);
    var ss = 0.0;
    if (RMS_NORM) {
        ss = dot(x0, x0) + dot(x1, x1);
        x0 = x0 * g[2u * j];
        x1 = x1 * g[2u * j + 1u];
    }
    return vec2<f32>(dot(vec4<f32>(a.x, a.y, b.x, b.y), x0) + dot(vec4<f32>(c.x, c.y, d.x, d.y), x1), ss);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32) {
    let row = (wg.x + wg.y * nwg.x) * (256u / sg) + li / sg;
    var acc = 0.0;
    var ss = 0.0;
    if (row < p.rows) {
        let quads = p.stride / 4u;
        let base = row * quads;
        // four independent 16-byte loads in flight per invocation (memory-level parallelism
        // is what a bandwidth-bound kernel lives on), then the remainder one at a time
        var j = lane;
        loop {
            if (j + 3u * sg >= quads) { break; }
            let q0 = w[base + j];
            let q1 = w[base + j + sg];
            let q2 = w[base + j + 2u * sg];
            let q3 = w[base + j + 3u * sg];
            let r0 = row_part(q0, j);
            let r1 = row_part(q1, j + sg);
            let r2 = row_part(q2, j + 2u * sg);
            let r3 = row_part(q3, j + 3u * sg);
            acc = acc + (r0.x + r1.x) + (r2.x + r3.x);
            ss = ss + (r0.y + r1.y) + (r2.y + r3.y);
            j = j + 4u * sg;
        }
        loop {
            if (j >= quads) { break; }
            let r = row_part(w[base + j], j);
            acc = acc + r.x;
            ss = ss + r.y;
            j = j + sg;
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
