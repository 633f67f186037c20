// Appended to the decode matvecs (pipelines.rs). ROUTE (decode of a MoE layer's gate|up): the
// workgroup routes its token itself from the router's logits instead of reading an expert id
// that a separate moe_route pass wrote: softmax over the EXPERTS logits, each expert's rank
// against the shared probabilities (the lower index first on ties), the TOPK largest,
// renormalised when R_RENORM. The first workgroup of each slot records the choice and its
// weight for the later passes (down, moe_sum). CPU twin: `nn::moe::route`.
override ROUTE: bool = false;
override EXPERTS: u32 = 1u;
override TOPK: u32 = 1u;
override R_RENORM: bool = true;

@group(0) @binding(10) var<storage, read> router_logits: array<f32>;      // (t, EXPERTS)
@group(0) @binding(11) var<storage, read_write> routed_ids: array<u32>;   // (t, TOPK)
@group(0) @binding(12) var<storage, read_write> routed_w: array<f32>;     // (t, TOPK)

var<workgroup> r_p: array<f32, 1024>;
var<workgroup> r_red: array<f32, 256>;
var<workgroup> r_e: array<u32, 64>;
var<workgroup> r_w: array<f32, 64>;

fn r_reduce(li: u32, v: f32, is_max: bool) -> f32 {
    r_red[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            if (is_max) { r_red[li] = max(r_red[li], r_red[li + s]); } else { r_red[li] = r_red[li] + r_red[li + s]; }
        }
        workgroupBarrier();
    }
    let r = r_red[0];
    workgroupBarrier();
    return r;
}

// The expert of `slot` (token slot / TOPK, choice slot % TOPK). Every invocation calls it.
fn route_slot(li: u32, slot: u32, record: bool) -> u32 {
    let tok = slot / TOPK;
    let n = EXPERTS;
    var m = -3.4e38;
    for (var i = li; i < n; i += WG) {
        let v = router_logits[tok * n + i];
        r_p[i] = v;
        m = max(m, v);
    }
    let mx = r_reduce(li, m, true);
    var s = 0.0;
    for (var i = li; i < n; i += WG) {
        let e = exp(r_p[i] - mx);
        r_p[i] = e;
        s = s + e;
    }
    let total = r_reduce(li, s, false);
    for (var i = li; i < n; i += WG) {
        let v = r_p[i];
        var rank = 0u;
        for (var j = 0u; j < n; j++) {
            let u = r_p[j];
            if (u > v || (u == v && j < i)) { rank = rank + 1u; }
        }
        if (rank < TOPK) {
            r_e[rank] = i;
            r_w[rank] = v / total;
        }
    }
    workgroupBarrier();
    let j = slot % TOPK;
    var d = 1.0;
    if (R_RENORM) {
        d = 0.0;
        for (var q = 0u; q < TOPK; q++) { d = d + r_w[q]; }
    }
    let e = r_e[j];
    if (record && li == 0u) {
        routed_ids[slot] = e;
        routed_w[slot] = r_w[j] / d;
    }
    return e;
}
