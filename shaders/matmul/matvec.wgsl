// y[row0 + r] = sum_k W[r][k] * x[x_off + k]  for the rows of one weight chunk (decode).
// 32 invocations per row (a warp on NVIDIA), 8 rows per workgroup; each invocation strides
// over the row's u32 words so a warp reads 128 contiguous bytes per step.
override IS_F16: bool = false;
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;

struct Params {
    rows: u32,    // rows in this chunk
    k: u32,       // columns (weights per row)
    stride: u32,  // u32 words per row
    x_off: u32,   // offset of x in its buffer (f32 elements)
    y_off: u32,   // offset of y[0] in its buffer
    row0: u32,    // first row of this chunk in the whole matrix
    up_off: u32,  // SWIGLU: offset of the up half (x_off is the gate half)
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;        // (rows, stride)
@group(0) @binding(2) var<storage, read> x: array<f32>;        // (k) at x_off
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (row0 + rows) at y_off

// x[x_off + i], or silu(gate) * up when SWIGLU
fn xin(i: u32) -> f32 {
    let g = x[p.x_off + i];
    if (SWIGLU) { return g / (1.0 + exp(-g)) * x[p.up_off + i]; }
    return g;
}

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = (wg.x + wg.y * nwg.x) * 8u + li / 32u;
    let lane = li % 32u;
    var acc = 0.0;
    if (row < p.rows) {
        let base = row * p.stride;
        let pairs = p.k / 2u;
        var j = lane;
        loop {
            if (j >= pairs) { break; }
            let v = unpack_w(w[base + j], IS_F16);
            acc = acc + v.x * xin(2u * j) + v.y * xin(2u * j + 1u);
            j = j + 32u;
        }
        if (lane == 0u && (p.k % 2u) == 1u) {
            acc = acc + unpack_w(w[base + pairs], IS_F16).x * xin(p.k - 1u);
        }
    }
    part[li] = acc;
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
