// Fallback for head sizes that are not a multiple of 4 (the flash kernel, attention/prefill.wgsl
// with WINDOW, takes the rest): one invocation per query, its head in private arrays.
// Bidirectional attention inside fixed windows (the AuT encoder, aut/layers.rs
// `windowed_attention`): query j of head h sees keys [w0, min(w0 + window, t)) with
// w0 = ⌊j / window⌋ · window, no causal mask. One invocation per (query, head), 64 queries of
// one head per workgroup. Windows are short (104 tokens at the real model's 8 s), so the
// scores are computed twice rather than kept: once for their maximum, once for
// exp(s − max) and the weighted values, as the twin's softmax does.
const MAX_HD: u32 = 128u;

struct Params {
    heads: u32,
    head_dim: u32,
    window: u32,      // tokens per window
    scale_bits: u32,  // f32 bits of head_dim^-0.5
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;        // (t, 3, heads, head_dim): q | k | v
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // (t, heads, head_dim)

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.y;
    let j = wg.x * 64u + li;
    if (j >= step.t) { return; }
    let hd = p.head_dim;
    let width = p.heads * hd;
    let ld = 3u * width;
    let scale = bitcast<f32>(p.scale_bits);
    let first = j / p.window * p.window;
    let end = min(first + p.window, step.t);
    var qv: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { qv[d] = qkv[j * ld + h * hd + d]; }
    var m = -3.4e38;
    for (var key = first; key < end; key++) {
        let kb = key * ld + width + h * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s += qv[d] * qkv[kb + d]; }
        m = max(m, s * scale);
    }
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) { acc[d] = 0.0; }
    var l = 0.0;
    for (var key = first; key < end; key++) {
        let kb = key * ld + width + h * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s += qv[d] * qkv[kb + d]; }
        let e = exp(s * scale - m);
        l += e;
        let vb = kb + width;
        for (var d = 0u; d < hd; d++) { acc[d] += e * qkv[vb + d]; }
    }
    let inv = 1.0 / l;
    for (var d = 0u; d < hd; d++) { out[j * width + h * hd + d] = acc[d] * inv; }
}
