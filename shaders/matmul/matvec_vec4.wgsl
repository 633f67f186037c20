// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k]  for rows whose length is a multiple of 8
// (decode). 32 invocations per row, 8 rows per workgroup; each invocation loads 8 weights
// (one vec4<u32>) per step, two steps in flight, so a warp streams 1 KiB per iteration.
// ACCUMULATE adds into y (the residual stream); SWIGLU feeds silu(x[gate]) * x[up] instead of
// x (the MLP's down projection reads the gate / up output directly).
override IS_F16: bool = false;
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;

struct Params {
    rows: u32,
    k: u32,
    stride: u32,  // u32 words per row (k / 2, a multiple of 4)
    x_off: u32,   // multiple of 4 (the gate half when SWIGLU)
    y_off: u32,
    row0: u32,
    up_off: u32,  // SWIGLU: offset of the up half, multiple of 4
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 256>;

fn xin(i: u32) -> vec4<f32> {
    let g = x[p.x_off / 4u + i];
    if (SWIGLU) {
        let u = x[p.up_off / 4u + i];
        return g / (vec4<f32>(1.0) + exp(-g)) * u;
    }
    return g;
}

fn dot8(q: vec4<u32>, j: u32) -> f32 {
    let a = unpack_w(q.x, IS_F16);
    let b = unpack_w(q.y, IS_F16);
    let c = unpack_w(q.z, IS_F16);
    let d = unpack_w(q.w, IS_F16);
    return dot(vec4<f32>(a.x, a.y, b.x, b.y), xin(2u * j)) + dot(vec4<f32>(c.x, c.y, d.x, d.y), xin(2u * j + 1u));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = (wg.x + wg.y * nwg.x) * 8u + li / 32u;
    let lane = li % 32u;
    var acc0 = 0.0;
    var acc1 = 0.0;
    if (row < p.rows) {
        let quads = p.stride / 4u;
        let base = row * quads;
        var j = lane;
        loop {
            if (j + 32u >= quads) { break; }
            let q0 = w[base + j];
            let q1 = w[base + j + 32u];
            acc0 = acc0 + dot8(q0, j);
            acc1 = acc1 + dot8(q1, j + 32u);
            j = j + 64u;
        }
        if (j < quads) { acc0 = acc0 + dot8(w[base + j], j); }
    }
    part[li] = acc0 + acc1;
    workgroupBarrier();
    var s = 16u;
    loop {
        if (s == 0u) { break; }
        if (lane < s) { part[li] = part[li] + part[li + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    if (lane == 0u && row < p.rows) {
        let o = p.y_off + p.row0 + row;
        if (ACCUMULATE) { y[o] = y[o] + part[li]; } else { y[o] = part[li]; }
    }
}
