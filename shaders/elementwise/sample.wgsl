// Sampling on the device: temperature, top-k, top-p and min-p by threshold search, then an
// inverse-CDF pick in index order with the uniform number `u` the host draws from its seeded
// RNG. One workgroup. With p_i = exp((l_i - max) / T) (so max p = 1):
//   top-k:  the largest t with count(p >= t) >= k            (ties at the k-th value kept)
//   top-p:  the largest t with sum(p >= t) >= top_p * sum(p)  (over the top-k survivors)
//   min-p:  t = min_p
// Tokens with p >= max of the three thresholds survive; the pick walks them in index order.
// CPU twin: `models::sampler::device_sample`. The chosen id goes to out[0] and next_ids[0].
struct Params {
    n: u32,
    top_k: u32,          // 0: off
    inv_temp_bits: u32,  // f32 bits of 1 / temperature
    top_p_bits: u32,     // f32 bits; 1.0: off
    min_p_bits: u32,     // f32 bits; 0.0: off
    u_bits: u32,         // f32 bits of the uniform draw in [0, 1)
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> next_ids: array<u32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> cnt: array<u32, 256>;
var<workgroup> shared_max: f32;

fn prob(i: u32, mx: f32) -> f32 {
    return exp((logits[i] - mx) * bitcast<f32>(p.inv_temp_bits));
}

fn reduce_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { red[li] = max(red[li], red[li + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { red[li] = red[li] + red[li + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_count(li: u32, v: u32) -> u32 {
    cnt[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (li < s) { cnt[li] = cnt[li] + cnt[li + s]; }
        workgroupBarrier();
    }
    let r = cnt[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    let n = p.n;
    let chunk = (n + 255u) / 256u;
    let lo = min(li * chunk, n);
    let hi = min(lo + chunk, n);
    // max logit
    var m = -3.4e38;
    for (var i = lo; i < hi; i++) { m = max(m, logits[i]); }
    let mx = reduce_max(li, m);
    // top-k threshold: binary search on the bit pattern of p in (0, 1]
    var tk = 0.0;
    if (p.top_k > 0u && p.top_k < n) {
        var lo_b = 0u;            // count(p >= bits(lo_b)) >= k holds
        var hi_b = 0x3f800001u;   // just above 1.0: count is 0
        for (var it = 0u; it < 31u; it++) {
            let mid = (lo_b + hi_b) / 2u;
            let t = bitcast<f32>(mid);
            var c = 0u;
            for (var i = lo; i < hi; i++) { if (prob(i, mx) >= t) { c = c + 1u; } }
            if (reduce_count(li, c) >= p.top_k) { lo_b = mid; } else { hi_b = mid; }
        }
        tk = bitcast<f32>(lo_b);
    }
    // top-p threshold over the top-k survivors
    var tp = 0.0;
    let top_p = bitcast<f32>(p.top_p_bits);
    if (top_p < 1.0) {
        var s = 0.0;
        for (var i = lo; i < hi; i++) { let q = prob(i, mx); if (q >= tk) { s = s + q; } }
        let goal = top_p * reduce_sum(li, s);
        var lo_b = 0u;
        var hi_b = 0x3f800001u;
        for (var it = 0u; it < 31u; it++) {
            let mid = (lo_b + hi_b) / 2u;
            let t = max(bitcast<f32>(mid), tk);
            var part = 0.0;
            for (var i = lo; i < hi; i++) { let q = prob(i, mx); if (q >= t) { part = part + q; } }
            if (reduce_sum(li, part) >= goal) { lo_b = mid; } else { hi_b = mid; }
        }
        tp = bitcast<f32>(lo_b);
    }
    let tau = max(max(tk, tp), bitcast<f32>(p.min_p_bits));
    // inverse CDF in index order: per-invocation masses, a serial scan of 256 partials
    var mine = 0.0;
    for (var i = lo; i < hi; i++) { let q = prob(i, mx); if (q >= tau) { mine = mine + q; } }
    red[li] = mine;
    workgroupBarrier();
    if (li == 0u) {
        var total = 0.0;
        for (var j = 0u; j < 256u; j++) { total = total + red[j]; }
        let goal_mass = bitcast<f32>(p.u_bits) * total;
        var acc = 0.0;
        var owner = 255u;
        for (var j = 0u; j < 256u; j++) {
            if (red[j] > 0.0 && acc + red[j] > goal_mass) { owner = j; break; }
            acc = acc + red[j];
        }
        cnt[0] = owner;
        shared_max = acc;  // mass before the owner's range
    }
    workgroupBarrier();
    let owner = cnt[0];
    let before = shared_max;
    if (li == owner) {
        var total = 0.0;
        for (var j = 0u; j < 256u; j++) { total = total + red[j]; }
        let goal_mass = bitcast<f32>(p.u_bits) * total;
        var acc = before;
        var pick = 0xffffffffu;
        var last = 0xffffffffu;
        for (var i = lo; i < hi; i++) {
            let q = prob(i, mx);
            if (q >= tau) {
                last = i;
                acc = acc + q;
                if (acc > goal_mass) { pick = i; break; }
            }
        }
        if (pick == 0xffffffffu) { pick = last; }
        if (pick == 0xffffffffu) { pick = 0u; }
        out[0] = pick;
        next_ids[0] = pick;
    }
}
