// Mixture-of-experts routing on the device, one workgroup per token: softmax over the token's
// `experts` router logits (f32), the `k` largest (the lower index on ties, as a stable sort),
// renormalised to sum to one when RENORM. Writes the expert ids and weights of slots
// t * k .. t * k + k. CPU twin: `nn::moe::route`.
override RENORM: bool = true;

struct Params {
    experts: u32,
    k: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // (t, experts)
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;      // (t, k)
@group(0) @binding(3) var<storage, read_write> weights: array<f32>;  // (t, k)

var<workgroup> prob: array<f32, 1024>;
var<workgroup> red_v: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;
var<workgroup> total: f32;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let t = wg.x;
    let n = p.experts;
    let base = t * n;
    // softmax numerators with the max subtracted, and their sum
    if (li == 0u) {
        var m = -3.4e38;
        for (var i = 0u; i < n; i++) { m = max(m, logits[base + i]); }
        var s = 0.0;
        for (var i = 0u; i < n; i++) {
            let e = exp(logits[base + i] - m);
            prob[i] = e;
            s = s + e;
        }
        total = s;
    }
    workgroupBarrier();
    // k rounds of arg-max; a chosen expert is marked -1 so it cannot win again
    var chosen_sum = 0.0;
    for (var j = 0u; j < p.k; j++) {
        var bv = -1.0;
        var bi = 0xffffffffu;
        for (var i = li; i < n; i += 256u) {
            let v = prob[i];
            if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
        }
        red_v[li] = bv;
        red_i[li] = bi;
        workgroupBarrier();
        for (var s = 128u; s > 0u; s = s / 2u) {
            if (li < s) {
                let v = red_v[li + s];
                let i = red_i[li + s];
                if (v > red_v[li] || (v == red_v[li] && i < red_i[li])) {
                    red_v[li] = v;
                    red_i[li] = i;
                }
            }
            workgroupBarrier();
        }
        let win = red_i[0];
        let wv = red_v[0];
        chosen_sum = chosen_sum + wv;
        if (li == 0u) {
            ids[t * p.k + j] = win;
            weights[t * p.k + j] = wv;
            prob[win] = -1.0;
        }
        workgroupBarrier();
    }
    if (li < p.k) {
        let o = t * p.k + li;
        var d = total;
        if (RENORM) { d = chosen_sum; }
        weights[o] = weights[o] / d;
    }
}
