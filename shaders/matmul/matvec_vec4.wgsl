// As matvec.wgsl for rows whose length is a multiple of 8: each invocation loads 8 weights
// (one vec4<u32>) and 8 activations (two vec4<f32>) per step, 512 bytes per warp.
override IS_F16: bool = false;

struct Params {
    rows: u32,
    k: u32,
    stride: u32,  // u32 words per row (k / 2, a multiple of 4)
    x_off: u32,   // multiple of 4
    y_off: u32,
    row0: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = (wg.x + wg.y * nwg.x) * 8u + li / 32u;
    let lane = li % 32u;
    var acc = vec4<f32>(0.0);
    if (row < p.rows) {
        let quads = p.stride / 4u;
        let base = row * quads;
        let xb = p.x_off / 4u;
        var j = lane;
        loop {
            if (j >= quads) { break; }
            let q = w[base + j];
            let a = unpack_w(q.x, IS_F16);
            let b = unpack_w(q.y, IS_F16);
            let c = unpack_w(q.z, IS_F16);
            let d = unpack_w(q.w, IS_F16);
            let x0 = x[xb + 2u * j];
            let x1 = x[xb + 2u * j + 1u];
            acc = acc + vec4<f32>(a.x, a.y, b.x, b.y) * x0 + vec4<f32>(c.x, c.y, d.x, d.y) * x1;
            j = j + 32u;
        }
    }
    part[li] = acc.x + acc.y + acc.z + acc.w;
    workgroupBarrier();
    var s = 16u;
    loop {
        if (s == 0u) { break; }
        if (lane < s) { part[li] = part[li] + part[li + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    if (lane == 0u && row < p.rows) {
        y[p.y_off + p.row0 + row] = part[li];
    }
}
