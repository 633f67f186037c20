// Decode attention, pass 1 of 2 (split-K, "flash decoding"): one workgroup per (head, chunk of
// 64 cache rows), so a long context spreads over the whole GPU instead of one workgroup per
// head looping over every row. Each writes its chunk's unnormalised output with the chunk's
// max score and exponential sum to `part`; attn_combine merges them. With a single chunk
// (kv_len <= 64) the output is final here and the combine pass is not dispatched.
// FUSED_QK: `q` is the raw q|k|v projection of the step's token; each workgroup applies the
// QK-norm and RoPE to its head's query itself, and the workgroups of the last chunk also
// normalise, rotate and store the new key and value rows into the cache before reading them
// (workgroups of one kv head write identical values). This saves the separate
// qk_norm_rope_kv dispatch per layer in decode.
override FUSED_QK: bool = false;
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,     // <= 256
    chunks: u32,       // chunk pitch of `part` (cache capacity / 64, rounded up)
    scale_bits: u32,   // f32 bits of 1 / sqrt(head_dim)
    pitch: u32,        // FUSED_QK: floats per q|k|v row
    eps_bits: u32,     // FUSED_QK: f32 bits of the QK-norm eps
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;              // (heads, head_dim) | raw q|k|v
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;       // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;       // (ctx, kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> part: array<f32>;     // (heads, chunks, head_dim + 2)
@group(0) @binding(6) var<storage, read_write> out: array<f32>;      // (heads, head_dim)
@group(0) @binding(7) var<storage, read> q_norm: array<f32>;         // FUSED_QK: (head_dim)
@group(0) @binding(8) var<storage, read> k_norm: array<f32>;         // FUSED_QK: (head_dim)
@group(0) @binding(9) var<storage, read> cs: array<f32>;             // FUSED_QK: (positions, 2, head_dim / 2)

const CHUNK: u32 = 64u;

var<workgroup> qs: array<f32, 256>;   // the scaled query
var<workgroup> dots: array<f32, 256>; // 64 rows x 4 partial dot products
var<workgroup> sc: array<f32, 64>;    // the chunk's scores (-inf past kv_len)
var<workgroup> pe: array<f32, 64>;    // their exponentials relative to the chunk's max
var<workgroup> ov: array<f32, 256>;   // (slices, head_dim) partial outputs

// FUSED_QK: RMS-normalise q[src .. src + head_dim] (with q_norm or k_norm), rotate it for
// position `pos` and leave it times `mul` in dots[0 .. head_dim]. Every invocation calls it.
fn rotate_normed(li: u32, src: u32, pos: u32, is_q: bool, mul: f32) {
    let hd = p.head_dim;
    let half = hd / 2u;
    var v = 0.0;
    if (li < hd) { v = q[src + li]; }
    ov[li] = v * v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { ov[li] = ov[li] + ov[li + s]; }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(ov[0] / f32(hd) + bitcast<f32>(p.eps_bits));
    workgroupBarrier();
    if (li < half) {
        var w1 = k_norm[li];
        var w2 = k_norm[half + li];
        if (is_q) { w1 = q_norm[li]; w2 = q_norm[half + li]; }
        let x1 = q[src + li] * inv * w1;
        let x2 = q[src + half + li] * inv * w2;
        let c = cs[pos * hd + li];
        let sn = cs[pos * hd + half + li];
        dots[li] = (x1 * c - x2 * sn) * mul;
        dots[half + li] = (x2 * c + x1 * sn) * mul;
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let c = wg.y;
    let hd = p.head_dim;
    let n = step.kv_len;
    let kvh = h / (p.heads / p.kv_heads);
    let row0 = c * CHUNK;
    let scale = bitcast<f32>(p.scale_bits);
    if (FUSED_QK) {
        let pos = n - 1u;
        let kv_src = (p.heads + kvh) * hd;
        rotate_normed(li, h * hd, pos, true, scale);
        if (li < hd) { qs[li] = dots[li]; }
        if (row0 + CHUNK >= n) {
            // this chunk holds the new row: store its key and value first
            rotate_normed(li, kv_src, pos, false, 1.0);
            let dst = (pos * p.kv_heads + kvh) * hd;
            if (li < hd) {
                kc[dst + li] = dots[li];
                vc[dst + li] = q[(p.heads + p.kv_heads + kvh) * hd + li];
            }
            storageBarrier();
        }
    } else if (li < hd) {
        qs[li] = q[h * hd + li] * scale;
    }
    workgroupBarrier();
    // scores: four invocations per cache row, interleaved dims (adjacent loads)
    let r = li / 4u;
    let j = li % 4u;
    var s = 0.0;
    if (row0 + r < n) {
        let kb = ((row0 + r) * p.kv_heads + kvh) * hd;
        for (var d = j; d < hd; d += 4u) { s = s + qs[d] * kc[kb + d]; }
    }
    dots[li] = s;
    workgroupBarrier();
    if (li < CHUNK) {
        var v = -3.4e38;
        if (row0 + li < n) { v = (dots[4u * li] + dots[4u * li + 1u]) + (dots[4u * li + 2u] + dots[4u * li + 3u]); }
        sc[li] = v;
    }
    workgroupBarrier();
    var m = -3.4e38;
    for (var i = 0u; i < CHUNK; i++) { m = max(m, sc[i]); }
    // each row's exponential once (rows past kv_len weigh 0)
    if (li < CHUNK) { pe[li] = select(0.0, exp(sc[li] - m), row0 + li < n); }
    workgroupBarrier();
    // weighted values: `slices` groups of invocations split the rows, one dim each
    let slices = 256u / hd;
    let d = li % hd;
    let slice = li / hd;
    let rows = min(CHUNK, n - row0);
    if (slice < slices) {
        var acc = 0.0;
        for (var i = slice; i < rows; i += slices) {
            acc = acc + pe[i] * vc[((row0 + i) * p.kv_heads + kvh) * hd + d];
        }
        ov[slice * hd + d] = acc;
    }
    workgroupBarrier();
    if (li < hd) {
        var o = 0.0;
        for (var k = 0u; k < slices; k++) { o = o + ov[k * hd + li]; }
        var l = 0.0;
        for (var i = 0u; i < rows; i++) { l = l + pe[i]; }
        if (n <= CHUNK) {
            out[h * hd + li] = o / l;
        } else {
            let b = (h * p.chunks + c) * (hd + 2u);
            part[b + li] = o;
            if (li == 0u) {
                part[b + hd] = m;
                part[b + hd + 1u] = l;
            }
        }
    }
}
