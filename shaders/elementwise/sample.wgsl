// Sampling on the device: temperature, top-k, top-p and min-p, then an inverse-CDF pick in
// index order with the uniform number `u` the host draws from its seeded RNG. One workgroup.
// CPU twin: `models::sampler::device_sample`. The chosen id goes to out[0] and next_ids[0].
//
// Fast path (0 < top_k <= KMAX, the usual settings): the k-th largest logit is found exactly by
// a radix select over the logits' order-preserving bit patterns (4 rounds of 8 bits, a
// 256-bin histogram each, over the few tokens at or above a bound: see fast_path), and its
// survivors (logit >= that one: ties kept, as transformers
// does) are gathered, sorted by index and finished by one invocation: p_i = exp((l_i - max) /
// T); top-p the largest t with mass(p >= t) >= top_p * mass; min-p t = min_p; the pick over
// p >= max of the two. Sums run in index order, as the twin's. More than CAND survivors (a tie
// of hundreds at the k-th value) take the general path.
//
// General path: with p_i = exp((l_i - max) / T) (so max p = 1), thresholds by binary search on
// p's bit pattern, 31 passes over the logits each:
//   top-k:  the largest t with count(p >= t) >= k            (ties at the k-th value kept)
//   top-p:  the largest t with sum(p >= t) >= top_p * sum(p)  (over the top-k survivors)
//   min-p:  t = min_p
// Tokens with p >= max of the three thresholds survive; the pick walks them in index order.
// (62 passes over 152K logits on one workgroup: ~2.3 ms per token on an H200; the fast path
// reads them twice, coalesced.)
const KMAX: u32 = 64u;
const CAND: u32 = 256u;

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
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> pick_bin: vec2<u32>;          // radix select: the bin, the rank left in it
var<workgroup> n_cand: atomic<u32>;
var<workgroup> n_cand_u: u32;
// survivors' indices (CAND), their logits, then their p; before that, cand_i holds each
// invocation's largest key (fast_path's bound)
var<workgroup> cand_i: array<u32, 256>;
var<workgroup> cand_p: array<f32, 256>;
var<workgroup> n_big: atomic<u32>;
var<workgroup> big_i: array<u32, 1024>;      // tokens at or above the bound (BIG)
var<workgroup> big_k: array<u32, 1024>;      // ... their keys
const BIG: u32 = 1024u;

// An order-preserving u32 of a logit (larger logit, larger key); NaN sorts below everything.
fn order_key(l: f32) -> u32 {
    if (l != l) { return 0u; }
    let b = bitcast<u32>(l);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// The fast path's k-th largest key (exact, ties counted): radix select, most significant byte
// first, over the `count` keys of big_k (local) or of all logits (strided, coalesced).
fn kth_key(li: u32, count: u32, k: u32, local: bool) -> u32 {
    var prefix = 0u;
    var mask = 0u;
    var need = k;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        atomicStore(&hist[li], 0u);
        workgroupBarrier();
        for (var i = li; i < count; i += 256u) {
            var key = 0u;
            if (local) { key = big_k[i]; } else { key = order_key(logits[i]); }
            if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
        }
        workgroupBarrier();
        if (li == 0u) {
            var above = 0u;
            var b = 255u;
            loop {
                let c = atomicLoad(&hist[b]);
                if (above + c >= need || b == 0u) { break; }
                above = above + c;
                b = b - 1u;
            }
            pick_bin = vec2<u32>(b, need - above);
        }
        let chosen = workgroupUniformLoad(&pick_bin);
        prefix = prefix | (chosen.x << shift);
        mask = mask | (255u << shift);
        need = chosen.y;
    }
    return prefix;
}

// The fast path after the survivors are known (li 0 alone; at most CAND of them, in index
// order, their p in cand_p).
fn finish(total: u32) {
    var goal = 0.0;
    var tp = 0.0;
    let top_p = bitcast<f32>(p.top_p_bits);
    if (top_p < 1.0) {
        var all = 0.0;
        for (var j = 0u; j < total; j++) { all = all + cand_p[j]; }
        goal = top_p * all;
        var lo_b = 0u;
        var hi_b = 0x3f800001u;
        for (var it = 0u; it < 31u; it++) {
            let mid = (lo_b + hi_b) / 2u;
            let t = bitcast<f32>(mid);
            var part = 0.0;
            for (var j = 0u; j < total; j++) { if (cand_p[j] >= t) { part = part + cand_p[j]; } }
            if (part >= goal) { lo_b = mid; } else { hi_b = mid; }
        }
        tp = bitcast<f32>(lo_b);
    }
    let tau = max(tp, bitcast<f32>(p.min_p_bits));
    var mass = 0.0;
    for (var j = 0u; j < total; j++) { if (cand_p[j] >= tau) { mass = mass + cand_p[j]; } }
    let goal_mass = bitcast<f32>(p.u_bits) * mass;
    var acc = 0.0;
    var pick = 0xffffffffu;
    var last = 0xffffffffu;
    for (var j = 0u; j < total; j++) {
        if (cand_p[j] >= tau) {
            last = cand_i[j];
            acc = acc + cand_p[j];
            if (acc > goal_mass) { pick = cand_i[j]; break; }
        }
    }
    if (pick == 0xffffffffu) { pick = last; }
    if (pick == 0xffffffffu) { pick = 0u; }
    out[0] = pick;
    next_ids[0] = pick;
}

// Sorts the 256 entries of cand_i ascending, cand_p moving along (bitonic, one invocation
// per entry).
fn sort_cand(li: u32) {
    for (var k = 2u; k <= 256u; k = k * 2u) {
        for (var j = k / 2u; j > 0u; j = j / 2u) {
            let other = li ^ j;
            if (other > li) {
                let a = cand_i[li];
                let b = cand_i[other];
                if ((a > b) == ((li & k) == 0u)) {
                    let pa = cand_p[li];
                    cand_i[li] = b;
                    cand_i[other] = a;
                    cand_p[li] = cand_p[other];
                    cand_p[other] = pa;
                }
            }
            workgroupBarrier();
        }
    }
}

// The fast path: false where the survivors overflow CAND (the general path then runs).
// `own_max`: this invocation's largest logit of its strided share. The k-th largest of the
// invocations' maxima bounds the k-th largest logit from below (they are k distinct tokens),
// so one pass gathers the few tokens at or above it (at most BIG) and the radix select runs
// on those in workgroup memory; a bound with more tokens above it selects over all logits.
fn fast_path(li: u32, n: u32, mx: f32, own_max: f32) -> bool {
    let k = p.top_k;
    cand_i[li] = order_key(own_max);
    if (li == 0u) { atomicStore(&n_big, 0u); }
    workgroupBarrier();
    sort_cand(li);
    let bound = cand_i[256u - k];
    for (var i = li; i < n; i += 256u) {
        let key = order_key(logits[i]);
        if (key >= bound) {
            let slot = atomicAdd(&n_big, 1u);
            if (slot < BIG) {
                big_i[slot] = i;
                big_k[slot] = key;
            }
        }
    }
    workgroupBarrier();
    if (li == 0u) { n_cand_u = atomicLoad(&n_big); }
    let nb = workgroupUniformLoad(&n_cand_u);
    let local = nb <= BIG;
    let kth = kth_key(li, select(n, nb, local), k, local);
    if (li == 0u) { atomicStore(&n_cand, 0u); }
    cand_i[li] = 0xffffffffu;
    workgroupBarrier();
    for (var i = li; i < select(n, nb, local); i += 256u) {
        var key = 0u;
        var at = i;
        if (local) {
            key = big_k[i];
            at = big_i[i];
        } else {
            key = order_key(logits[i]);
        }
        if (key >= kth) {
            let slot = atomicAdd(&n_cand, 1u);
            if (slot < CAND) {
                cand_i[slot] = at;
                cand_p[slot] = logits[at];
            }
        }
    }
    workgroupBarrier();
    if (li == 0u) { n_cand_u = atomicLoad(&n_cand); }
    let total = workgroupUniformLoad(&n_cand_u);
    if (total > CAND) { return false; }
    // into index order (empty slots carry index 0xffffffff)
    sort_cand(li);
    if (li < total) {
        cand_p[li] = exp((cand_p[li] - mx) * bitcast<f32>(p.inv_temp_bits));
    }
    workgroupBarrier();
    if (li == 0u) { finish(total); }
    return true;
}

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
    // max logit (strided: coalesced; NaN ignored)
    var m = -3.4e38;
    for (var i = li; i < n; i += 256u) {
        let l = logits[i];
        if (l > m) { m = l; }
    }
    let mx = reduce_max(li, m);
    if (p.top_k > 0u && p.top_k <= KMAX && p.top_k < n) {
        if (fast_path(li, n, mx, m)) { return; }
    }
    let chunk = (n + 255u) / 256u;
    let lo = min(li * chunk, n);
    let hi = min(lo + chunk, n);
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
