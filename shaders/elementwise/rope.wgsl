// Rotate-half RoPE in place on x (t, heads, head_dim); token j is at position step.pos0 + j.
// cos / sin come from a table computed on the CPU exactly as the CPU kernel computes them
// (GPU cos/sin lose accuracy at large angles).
struct Params {
    heads: u32,
    half: u32,      // head_dim / 2
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;   // (t, heads, 2 * half)
@group(0) @binding(3) var<storage, read> cs: array<f32>;        // (positions, 2, half): cos then sin

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    let per_token = p.heads * p.half;
    if (idx >= per_token * step.t) { return; }
    let tok = idx / per_token;
    let rem = idx % per_token;
    let h = rem / p.half;
    let i = rem % p.half;
    let pos = step.pos0 + tok;
    let c = cs[pos * 2u * p.half + i];
    let s = cs[pos * 2u * p.half + p.half + i];
    let base = (tok * p.heads + h) * 2u * p.half;
    let x1 = x[base + i];
    let x2 = x[base + p.half + i];
    x[base + i] = x1 * c - x2 * s;
    x[base + p.half + i] = x2 * c + x1 * s;
}
