// Decode attention, step 1: scores[h][pos] = q_h . k_pos * scale for pos < step.kv_len.
// One invocation per (head, position).
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ctx: u32,          // row pitch of scores (cache capacity)
    scale_bits: u32,   // f32 bits of 1 / sqrt(head_dim)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;            // (heads, head_dim)
@group(0) @binding(3) var<storage, read> kc: array<f32>;           // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> scores: array<f32>; // (heads, ctx)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pos = gid.x;
    let h = gid.y;
    if (pos >= step.kv_len || h >= p.heads) { return; }
    let kvh = h / (p.heads / p.kv_heads);
    let qb = h * p.head_dim;
    let kb = (pos * p.kv_heads + kvh) * p.head_dim;
    var acc = 0.0;
    for (var d = 0u; d < p.head_dim; d++) {
        acc = acc + q[qb + d] * kc[kb + d];
    }
    scores[h * p.ctx + pos] = acc * bitcast<f32>(p.scale_bits);
}
