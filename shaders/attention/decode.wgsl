// Decode attention (one query per head) over cache rows 0..step.kv_len, one workgroup per
// head, in one dispatch: scores into `scores` (heads, ctx), softmax, then the weighted sum of
// values. (Three separate dispatches cost ~15 us each per layer on an H200; the work itself
// is tiny at decode.)
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
@group(0) @binding(2) var<storage, read> q: array<f32>;              // (heads, head_dim)
@group(0) @binding(3) var<storage, read> kc: array<f32>;             // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read> vc: array<f32>;             // (ctx, kv_heads, head_dim)
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;   // (heads, ctx) scratch
@group(0) @binding(6) var<storage, read_write> out: array<f32>;      // (heads, head_dim)

var<workgroup> qs: array<f32, 256>;     // the query, head_dim <= 256
var<workgroup> red: array<f32, 256>;
var<workgroup> part: array<f32, 2048>;  // (slices, head_dim) partial sums

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let hd = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    let n = step.kv_len;
    let base = h * p.ctx;
    let scale = bitcast<f32>(p.scale_bits);
    if (li < hd) { qs[li] = q[h * hd + li] * scale; }
    workgroupBarrier();
    // 1. scores and their max
    var m = -3.4e38;
    for (var pos = li; pos < n; pos += 256u) {
        let kb = (pos * p.kv_heads + kvh) * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s = s + qs[d] * kc[kb + d]; }
        scores[base + pos] = s;
        m = max(m, s);
    }
    red[li] = m;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { red[li] = max(red[li], red[li + s]); }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    // 2. exponentials and their sum (each invocation rewrites its own positions)
    var sum = 0.0;
    for (var pos = li; pos < n; pos += 256u) {
        let e = exp(scores[base + pos] - mx);
        scores[base + pos] = e;
        sum = sum + e;
    }
    red[li] = sum;
    storageBarrier();
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { red[li] = red[li] + red[li + s]; }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    // 3. weighted values: 256 / hd slices of positions per dim
    let slices = max(1u, 256u / hd);
    let d = li % hd;
    let slice = li / hd;
    var acc = 0.0;
    if (slice < slices) {
        for (var pos = slice; pos < n; pos += slices) {
            acc = acc + scores[base + pos] * vc[(pos * p.kv_heads + kvh) * hd + d];
        }
        part[slice * hd + d] = acc;
    }
    workgroupBarrier();
    if (li < hd) {
        var total = 0.0;
        for (var s = 0u; s < slices; s++) { total = total + part[s * hd + li]; }
        out[h * hd + li] = total * inv;
    }
}
