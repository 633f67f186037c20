// Causal attention for a block of new tokens over the cache (prefill), flash-style: one
// invocation per query token, 64 queries of one head per workgroup, keys streamed through
// workgroup memory 16 at a time with an online softmax, so no T x T matrix is ever stored.
// Query j (0 <= j < step.t) sits at position step.pos0 + j and sees cache rows 0..=pos0 + j.
const MAX_HD: u32 = 128u;
const KB: u32 = 16u;

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    scale_bits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;           // (t, heads, head_dim)
@group(0) @binding(3) var<storage, read> kc: array<f32>;          // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read> vc: array<f32>;          // (ctx, kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // (t, heads, head_dim)

var<workgroup> ks: array<f32, 2048>;  // (KB, MAX_HD)
var<workgroup> vs: array<f32, 2048>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.y;
    let hd = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    let j = wg.x * 64u + li;
    let live = j < step.t;
    let qpos = step.pos0 + j;
    let scale = bitcast<f32>(p.scale_bits);
    var qv: array<f32, MAX_HD>;
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < hd; d++) {
        acc[d] = 0.0;
        qv[d] = select(0.0, q[(j * p.heads + h) * hd + d] * scale, live);
    }
    var m = -3.4e38;
    var l = 0.0;
    // last key any query of this workgroup needs
    let last_j = min(step.t, wg.x * 64u + 64u) - 1u;
    let n_keys = step.pos0 + last_j + 1u;
    var k0 = 0u;
    loop {
        if (k0 >= n_keys) { break; }
        for (var e = li; e < KB * hd; e += 64u) {
            let r = e / hd;
            let d = e % hd;
            let pos = k0 + r;
            var kv = 0.0;
            var vv = 0.0;
            if (pos < n_keys) {
                let off = (pos * p.kv_heads + kvh) * hd + d;
                kv = kc[off];
                vv = vc[off];
            }
            ks[r * MAX_HD + d] = kv;
            vs[r * MAX_HD + d] = vv;
        }
        workgroupBarrier();
        if (live) {
            for (var r = 0u; r < KB; r++) {
                let pos = k0 + r;
                if (pos <= qpos) {
                    var s = 0.0;
                    for (var d = 0u; d < hd; d++) { s = s + qv[d] * ks[r * MAX_HD + d]; }
                    let m_new = max(m, s);
                    let corr = exp(m - m_new);
                    let e = exp(s - m_new);
                    l = l * corr + e;
                    for (var d = 0u; d < hd; d++) {
                        acc[d] = acc[d] * corr + e * vs[r * MAX_HD + d];
                    }
                    m = m_new;
                }
            }
        }
        workgroupBarrier();
        k0 = k0 + KB;
    }
    if (live) {
        let inv = 1.0 / l;
        for (var d = 0u; d < hd; d++) {
            out[(j * p.heads + h) * hd + d] = acc[d] * inv;
        }
    }
}
