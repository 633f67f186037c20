// Decode attention, pass 1 of 2 (split-K, "flash decoding"): one workgroup per (head, chunk of
// 64 cache rows), so a long context spreads over the whole GPU instead of one workgroup per
// head looping over every row. Each writes its chunk's unnormalised output with the chunk's
// max score and exponential sum to `part`; attn_combine merges them. With a single chunk
// (kv_len <= 64) the output is final here and the combine pass is not dispatched.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,     // <= 256
    chunks: u32,       // chunk pitch of `part` (cache capacity / 64, rounded up)
    scale_bits: u32,   // f32 bits of 1 / sqrt(head_dim)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;              // (heads, head_dim)
@group(0) @binding(3) var<storage, read> kc: array<f32>;             // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read> vc: array<f32>;             // (ctx, kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> part: array<f32>;     // (heads, chunks, head_dim + 2)
@group(0) @binding(6) var<storage, read_write> out: array<f32>;      // (heads, head_dim)

const CHUNK: u32 = 64u;

var<workgroup> qs: array<f32, 256>;   // the scaled query
var<workgroup> dots: array<f32, 256>; // 64 rows x 4 partial dot products
var<workgroup> sc: array<f32, 64>;    // the chunk's scores (-inf past kv_len)
var<workgroup> pe: array<f32, 64>;    // their exponentials relative to the chunk's max
var<workgroup> ov: array<f32, 256>;   // (slices, head_dim) partial outputs

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let c = wg.y;
    let hd = p.head_dim;
    let n = step.kv_len;
    let kvh = h / (p.heads / p.kv_heads);
    let row0 = c * CHUNK;
    if (li < hd) { qs[li] = q[h * hd + li] * bitcast<f32>(p.scale_bits); }
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
