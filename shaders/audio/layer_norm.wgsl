// LayerNorm with weight and bias over rows of `dim`: dst = (x − mean) / sqrt(var + eps) · w + b
// for step.t rows, one workgroup per row. Two passes (the mean, then the mean square of the
// deviations) as the CPU twin (aut/layers.rs `LayerNorm`), which keeps them in f64; here f32
// with tree sums.
struct Params { dim: u32, eps_bits: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;          // (t, dim)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // (t, dim)
@group(0) @binding(4) var<storage, read> weight: array<f32>;     // (dim)
@group(0) @binding(5) var<storage, read> bias: array<f32>;       // (dim)

var<workgroup> part: array<f32, 256>;

// The sum of `v` over the workgroup (every invocation must call it).
fn workgroup_sum(li: u32, v: f32) -> f32 {
    part[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { part[li] = part[li] + part[li + s]; }
        workgroupBarrier();
    }
    let total = part[0];
    // part is reused by the next call: nobody may overwrite it before all have read it
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wg.x + wg.y * nwg.x;
    let live = row < step.t;
    let base = row * p.dim;
    var s = 0.0;
    if (live) {
        for (var i = li; i < p.dim; i += 256u) { s += x[base + i]; }
    }
    let mean = workgroup_sum(li, s) / f32(p.dim);
    var ss = 0.0;
    if (live) {
        for (var i = li; i < p.dim; i += 256u) {
            let d = x[base + i] - mean;
            ss += d * d;
        }
    }
    let variance = workgroup_sum(li, ss) / f32(p.dim);
    if (live) {
        let inv = 1.0 / sqrt(variance + bitcast<f32>(p.eps_bits));
        for (var i = li; i < p.dim; i += 256u) {
            dst[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
        }
    }
}
