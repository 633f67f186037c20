// RMSNorm of each `dim`-long row: dst = src / sqrt(mean(src^2) + eps) * weight.
// One workgroup per row; rows = rows_per_token * step.t (per-head QK-norm uses head rows),
// or exactly `fixed_rows` when that is set (the last token's row before lm_head).
struct Params {
    dim: u32,
    rows_per_token: u32,
    eps_bits: u32,   // f32 bits
    fixed_rows: u32, // 0: rows_per_token * step.t
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;          // (rows, dim)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // (rows, dim)
@group(0) @binding(4) var<storage, read> weight: array<f32>;     // (dim)

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wg.x + wg.y * nwg.x;
    let rows = select(p.rows_per_token * step.t, p.fixed_rows, p.fixed_rows > 0u);
    let live = row < rows;
    let base = row * p.dim;
    var ss = 0.0;
    if (live) {
        for (var i = li; i < p.dim; i += 256u) {
            let v = x[base + i];
            ss = ss + v * v;
        }
    }
    part[li] = ss;
    workgroupBarrier();
    var s = 128u;
    loop {
        if (s == 0u) { break; }
        if (li < s) { part[li] = part[li] + part[li + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    if (live) {
        let inv = 1.0 / sqrt(part[0] / f32(p.dim) + bitcast<f32>(p.eps_bits));
        for (var i = li; i < p.dim; i += 256u) {
            dst[base + i] = x[base + i] * inv * weight[i];
        }
    }
}
