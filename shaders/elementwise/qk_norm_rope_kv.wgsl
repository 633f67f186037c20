// After the fused q/k/v projection: per-head RMSNorm of q and k (QK-norm), RoPE on both, and
// the step's k and v rows stored into the KV cache at their positions. One workgroup per
// (token, head) over heads + 2 * kv_heads head slots: q heads, then k heads, then v heads.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    pitch: u32,      // row pitch of qkv: (heads + 2 * kv_heads) * head_dim
    eps_bits: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;        // (t, pitch)
@group(0) @binding(3) var<storage, read_write> q: array<f32>;    // (t, heads, head_dim)
@group(0) @binding(4) var<storage, read_write> kc: array<f32>;   // (ctx, kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> vc: array<f32>;   // (ctx, kv_heads, head_dim)
@group(0) @binding(6) var<storage, read> q_norm: array<f32>;     // (head_dim)
@group(0) @binding(7) var<storage, read> k_norm: array<f32>;     // (head_dim)
@group(0) @binding(8) var<storage, read> cs: array<f32>;         // (positions, 2, head_dim / 2)

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let slots = p.heads + 2u * p.kv_heads;
    let tok = wg.x / slots;
    let slot = wg.x % slots;
    if (tok >= step.t) { return; }
    let hd = p.head_dim;
    let half = hd / 2u;
    let src = tok * p.pitch + slot * hd;
    let pos = step.pos0 + tok;
    if (slot >= p.heads + p.kv_heads) {
        // v: straight into the cache
        let kvh = slot - p.heads - p.kv_heads;
        for (var d = li; d < hd; d += 64u) {
            vc[(pos * p.kv_heads + kvh) * hd + d] = qkv[src + d];
        }
        return;
    }
    var ss = 0.0;
    for (var d = li; d < hd; d += 64u) {
        let v = qkv[src + d];
        ss = ss + v * v;
    }
    red[li] = ss;
    workgroupBarrier();
    var s = 32u;
    loop {
        if (s == 0u) { break; }
        if (li < s) { red[li] = red[li] + red[li + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    let inv = 1.0 / sqrt(red[0] / f32(hd) + bitcast<f32>(p.eps_bits));
    let is_q = slot < p.heads;
    for (var i = li; i < half; i += 64u) {
        var w1 = 0.0;
        var w2 = 0.0;
        if (is_q) { w1 = q_norm[i]; w2 = q_norm[half + i]; } else { w1 = k_norm[i]; w2 = k_norm[half + i]; }
        let x1 = qkv[src + i] * inv * w1;
        let x2 = qkv[src + half + i] * inv * w2;
        let c = cs[pos * hd + i];
        let sn = cs[pos * hd + half + i];
        let r1 = x1 * c - x2 * sn;
        let r2 = x2 * c + x1 * sn;
        if (is_q) {
            let dst = (tok * p.heads + slot) * hd;
            q[dst + i] = r1;
            q[dst + half + i] = r2;
        } else {
            let dst = (pos * p.kv_heads + (slot - p.heads)) * hd;
            kc[dst + i] = r1;
            kc[dst + half + i] = r2;
        }
    }
}
