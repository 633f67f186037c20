// Decode attention, step 3: out[h][d] = sum_pos probs[h][pos] * v[pos][kvh][d].
// One workgroup per head; each of the 256 invocations takes a slice of positions for a
// group of dims, then the partial sums are reduced in workgroup memory.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    ctx: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> probs: array<f32>;        // (heads, ctx)
@group(0) @binding(3) var<storage, read> vc: array<f32>;           // (ctx, kv_heads, head_dim)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // (heads, head_dim)

var<workgroup> part: array<f32, 2048>;   // (slices, head_dim) partial sums, head_dim <= 256

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let hd = p.head_dim;
    let kvh = h / (p.heads / p.kv_heads);
    // invocations per dim row: 256 / hd slices of positions (hd divides 256 or is > it)
    let slices = max(1u, 256u / hd);
    let d = li % hd;
    let slice = li / hd;
    var acc = 0.0;
    if (slice < slices && li < slices * hd) {
        for (var pos = slice; pos < step.kv_len; pos += slices) {
            acc = acc + probs[h * p.ctx + pos] * vc[(pos * p.kv_heads + kvh) * hd + d];
        }
    }
    if (li < slices * hd) { part[slice * hd + d] = acc; }
    workgroupBarrier();
    // dims beyond 256 invocations: loop the remaining dims single-slice
    if (li < hd && li < 256u) {
        var total = 0.0;
        for (var s = 0u; s < slices; s++) { total = total + part[s * hd + li]; }
        out[h * hd + li] = total;
    }
    for (var dd = 256u + li; dd < hd; dd += 256u) {
        var total = 0.0;
        for (var pos = 0u; pos < step.kv_len; pos++) {
            total = total + probs[h * p.ctx + pos] * vc[(pos * p.kv_heads + kvh) * hd + dd];
        }
        out[h * hd + dd] = total;
    }
}
