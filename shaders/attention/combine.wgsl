// Decode attention, pass 2 of 2: merge the per-chunk partial outputs of pass 1 (attn_decode)
// for one head: out = sum_c o_c e^(m_c - M) / sum_c l_c e^(m_c - M), M the largest chunk max.
// Dispatched only when kv_len spans more than one chunk.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    chunks: u32,       // chunk pitch of `part`
    scale_bits: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> part: array<f32>;           // (heads, chunks, head_dim + 2)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // (heads, head_dim)

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let hd = p.head_dim;
    if (li >= hd) { return; }
    let used = (step.kv_len + 63u) / 64u;
    let pitch = hd + 2u;
    let base = h * p.chunks * pitch;
    var mx = -3.4e38;
    for (var c = 0u; c < used; c++) { mx = max(mx, part[base + c * pitch + hd]); }
    var l = 0.0;
    var o = 0.0;
    for (var c = 0u; c < used; c++) {
        let b = base + c * pitch;
        let w = exp(part[b + hd] - mx);
        l = l + part[b + hd + 1u] * w;
        o = o + part[b + li] * w;
    }
    out[h * hd + li] = o / l;
}
