// Causal attention for a block of new tokens over the cache (prefill), flash-style with an
// online softmax, so no T x T matrix is ever stored. One workgroup per (block of BQ = 16
// queries, head); key rows stream through workgroup memory BK at a time:
//   1. the K tile is loaded; S = Q K^T (BQ x BK, two scores per invocation);
//   2. the V tile goes into the same buffer while every invocation takes its query's new
//      running max over the tile and turns its two scores into probabilities;
//   3. every invocation rescales and accumulates its slice of one query's output (and the
//      query's exponential sum). Workgroups of the longest causal rows are dispatched first.
// Query j (0 <= j < step.t) sits at position step.pos0 + j and sees cache rows 0..=pos0 + j.
// WINDOW > 0 (the AuT audio encoder): no cache and no causal mask; query j sees the keys of
// its window of WINDOW tokens, [j / WINDOW * WINDOW, min(that + WINDOW, t)). Rows may be
// strided (q_ld / kv_ld vec4s apart, k and v at an offset), so q, k and v can be the column
// blocks of one (t, 3 x heads x head_dim) projection bound three times.
// HD is a pipeline constant (a multiple of 4, at most 256): every loop has a fixed trip count
// and the accumulators live in registers. (The first version kept per-invocation arrays of
// head_dim floats indexed in loops, which spill to local memory: 16.5 ms of a 64-token step of
// Qwen3-Omni-30B-A3B on an H200.)
override HD: u32 = 128u;
override V4: u32 = HD / 4u;     // vec4 per row
override BK: u32 = 32u;         // key rows per tile: min(32, 4096 / HD), a 16 KB tile
override PER: u32 = (V4 + 15u) / 16u;   // output vec4s per invocation (16 per query), <= 4
override WINDOW: u32 = 0u;
const BQ: u32 = 16u;

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,   // = HD
    scale_bits: u32,
    q_ld: u32,       // vec4s per query row (heads x V4 unless strided)
    kv_ld: u32,      // vec4s per key / value row
    k_off: u32,      // vec4s before the first key / value
    v_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<vec4<f32>>;           // (t, q_ld)
@group(0) @binding(3) var<storage, read> kc: array<vec4<f32>>;          // k_off + (ctx, kv_ld)
@group(0) @binding(4) var<storage, read> vc: array<vec4<f32>>;          // v_off + (ctx, kv_ld)
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;   // (t, heads, V4)

var<workgroup> qs: array<vec4<f32>, 1024>;   // (BQ, V4) scaled queries
var<workgroup> tile: array<vec4<f32>, 1024>; // (BK, V4) keys, then values
var<workgroup> s: array<vec4<f32>, 128>;    // (BQ, BK / 4) scores
var<workgroup> pb: array<vec4<f32>, 128>;   // (BQ, BK / 4) probabilities

// Where this workgroup reads (set once in main).
var<private> kvh: u32;
var<private> n_keys: u32;   // keys past this are never read (the end of the last window)

// element e (< BK * V4, else unused) of the tile of cache rows from k0: zeros past n_keys
fn fetch(e: u32, k0: u32, values: bool) -> vec4<f32> {
    let r = e / V4;
    if (e >= BK * V4 || k0 + r >= n_keys) { return vec4<f32>(0.0); }
    let at = (k0 + r) * p.kv_ld + kvh * V4 + e % V4;
    if (values) { return vc[p.v_off + at]; }
    return kc[p.k_off + at];
}

// p4's four probabilities times column u of the four value rows from tile row r
fn four_rows(p4: vec4<f32>, r: u32, u: u32) -> vec4<f32> {
    return (p4.x * tile[r + u] + p4.y * tile[r + V4 + u])
         + (p4.z * tile[r + 2u * V4 + u] + p4.w * tile[r + 3u * V4 + u]);
}

// whether key `key` is visible to the query at position qpos (window qwin when WINDOW)
fn visible(key: u32, qpos: u32, qwin: u32) -> bool {
    if (WINDOW > 0u) { return key / max(WINDOW, 1u) == qwin && key < n_keys; }
    return key <= qpos;
}

fn put(e: u32, v: vec4<f32>) {
    if (e < BK * V4) { tile[e] = v; }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) num_blocks: vec3<u32>) {
    let h = wg.y;
    kvh = h / (p.heads / p.kv_heads);
    // the longest causal rows first (the last query blocks see the most keys), so the
    // dispatch does not end on a tail of long workgroups
    let j0 = (num_blocks.x - 1u - wg.x) * BQ;
    let scale = bitcast<f32>(p.scale_bits);
    for (var i = 0u; i < 4u; i++) {
        let e = li + i * 256u;
        if (e < BQ * V4) {
            let j = j0 + e / V4;
            var v = vec4<f32>(0.0);
            if (j < step.t) { v = q[j * p.q_ld + h * V4 + e % V4] * scale; }
            qs[e] = v;
        }
    }
    // the keys any query of this block needs: [first, n_keys)
    n_keys = step.pos0 + min(step.t, j0 + BQ);
    var first = 0u;
    // (divisor never 0: the compiler folds constant divisions even in dead branches)
    let wd = max(WINDOW, 1u);
    if (WINDOW > 0u) {
        first = j0 / wd * wd;
        n_keys = min((min(step.t, j0 + BQ) - 1u) / wd * wd + wd, step.t);
    }
    // phase 1: query sq with keys sk and sk + 16; phase 3: query sq, output vec4s sk + 16 i
    let sq = li / 16u;
    let sk = li % 16u;
    let qpos = step.pos0 + j0 + sq;
    let qwin = (j0 + sq) / wd;
    // output vec4s of phase 3 (past V4: clamped reads, not stored)
    let u0 = min(sk, V4 - 1u);
    let u1 = min(sk + 16u, V4 - 1u);
    let u2 = min(sk + 32u, V4 - 1u);
    let u3 = min(sk + 48u, V4 - 1u);
    // named accumulators, not an array indexed in a loop (which may live in local memory)
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    // the query's running max and exponential sum
    var m = -3.4e38;
    var l = 0.0;
    for (var k0 = first; k0 < n_keys; k0 += BK) {
        // keys and values of the tile in flight together; values wait in registers
        let k_0 = fetch(li, k0, false);
        let k_1 = fetch(li + 256u, k0, false);
        let k_2 = fetch(li + 512u, k0, false);
        let k_3 = fetch(li + 768u, k0, false);
        let v_0 = fetch(li, k0, true);
        let v_1 = fetch(li + 256u, k0, true);
        let v_2 = fetch(li + 512u, k0, true);
        let v_3 = fetch(li + 768u, k0, true);
        put(li, k_0);
        put(li + 256u, k_1);
        put(li + 512u, k_2);
        put(li + 768u, k_3);
        workgroupBarrier();
        // phase 1: two scores per invocation, the query's vec4s read once for both (at BK 16
        // the second is a duplicate, not stored)
        let kk1 = min(sk + 16u, BK - 1u);
        var d0 = 0.0;
        var d1 = 0.0;
        for (var u = 0u; u < V4; u++) {
            let qv = qs[sq * V4 + u];
            d0 = d0 + dot(qv, tile[sk * V4 + u]);
            d1 = d1 + dot(qv, tile[kk1 * V4 + u]);
        }
        let live0 = sk < BK && visible(k0 + sk, qpos, qwin);
        let live1 = sk + 16u < BK && visible(k0 + kk1, qpos, qwin);
        if (sk < BK) { s[(sq * BK + sk) / 4u][sk % 4u] = select(-3.4e38, d0, live0); }
        if (sk + 16u < BK) { s[(sq * BK + kk1) / 4u][kk1 % 4u] = select(-3.4e38, d1, live1); }
        workgroupBarrier();
        put(li, v_0);
        put(li + 256u, v_1);
        put(li + 512u, v_2);
        put(li + 768u, v_3);
        // phase 2, on every invocation: the query's new running max over the tile (all 16
        // invocations of a query compute the same), and its own two probabilities
        var mt = m;
        var m4 = vec4<f32>(mt);
        for (var i = 0u; i < BK / 4u; i++) { m4 = max(m4, s[sq * BK / 4u + i]); }
        mt = max(max(m4.x, m4.y), max(m4.z, m4.w));
        let c = exp(m - mt);
        m = mt;
        if (sk < BK) { pb[(sq * BK + sk) / 4u][sk % 4u] = select(0.0, exp(d0 - mt), live0); }
        if (sk + 16u < BK) { pb[(sq * BK + kk1) / 4u][kk1 % 4u] = select(0.0, exp(d1 - mt), live1); }
        workgroupBarrier();
        // phase 3: rescale, then this tile's probabilities times the values of its first nk
        // rows; the probabilities' sum comes along (the same on every invocation of a query)
        let nk = min(BK, n_keys - k0);
        a0 = a0 * c;
        a1 = a1 * c;
        a2 = a2 * c;
        a3 = a3 * c;
        // four keys per pass (probabilities past nk are 0 and those value rows zeros)
        var sum = 0.0;
        for (var i = 0u; i < (nk + 3u) / 4u; i++) {
            let p4 = pb[sq * BK / 4u + i];
            sum = sum + (p4.x + p4.y) + (p4.z + p4.w);
            let r = 4u * i * V4;
            a0 = a0 + four_rows(p4, r, u0);
            if (PER > 1u) { a1 = a1 + four_rows(p4, r, u1); }
            if (PER > 2u) { a2 = a2 + four_rows(p4, r, u2); }
            if (PER > 3u) { a3 = a3 + four_rows(p4, r, u3); }
        }
        l = l * c + sum;
        workgroupBarrier();
    }
    let j = j0 + sq;
    if (j < step.t) {
        let inv = 1.0 / l;
        let o = (j * p.heads + h) * V4;
        if (sk < V4) { out[o + sk] = a0 * inv; }
        if (sk + 16u < V4) { out[o + sk + 16u] = a1 * inv; }
        if (sk + 32u < V4) { out[o + sk + 32u] = a2 * inv; }
        if (sk + 48u < V4) { out[o + sk + 48u] = a3 * inv; }
    }
}
