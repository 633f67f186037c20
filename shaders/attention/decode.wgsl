// Decode attention, split-K ("flash decoding"): one workgroup per (head, chunk of CHUNK cache
// rows), so a long context spreads over the whole GPU instead of one workgroup per head
// looping over every row. With a single chunk (kv_len <= CHUNK) the output is final at once.
// With several, each writes its chunk's unnormalised output with the chunk's max score and
// exponential sum to `part`, and the head's last workgroup to finish (a device counter per
// head) merges them, in the same dispatch.
// FUSED_QK: `q` is the raw q|k|v projection of the step's token; each workgroup applies the
// QK-norm and RoPE to its head's query itself, and the workgroups of the last chunk also
// normalise, rotate and store the new key and value rows into the cache, using them from
// workgroup memory (workgroups of one kv head write identical values). This saves the
// separate qk_norm_rope_kv dispatch per layer in decode.
//
// The kernel moves a few KB, so its time is latency: the chain of dependent memory round trips
// and barriers. It is written to keep that chain short: HD is a pipeline constant, so every
// loop has a fixed trip count the compiler unrolls and its loads are in flight together; every
// load of the kernel is issued at its start, before any is used: the step's q, k, v, both norm
// weights, cos/sin and the cache rows of earlier positions (which do not depend on this step)
// into registers. The new row itself comes from workgroup memory (FUSED_QK: the workgroup
// computed it), so nothing is read back from the cache and no device-scope barrier is needed:
// one memory round trip per workgroup instead of three. Reductions read shared memory in
// unrolled loops instead of trees of barriers. (The first version, with loops bounded by a
// uniform and a tree per norm, took ~13 us per layer on an H200.)
override FUSED_QK: bool = false;
// QOUT: a final output (a single chunk) is also written quantised for the o_proj matvec
// (gpu/matvec_q8.rs, XIN): blocks of 32 dims, eight invocations' vec4s each, Q8_0 rule.
override QOUT: bool = false;
// NOP: return at once (a measurement knob, OMNI_DEBUG_NOP: the dispatch without its work)
override NOP: bool = false;
// STOP: return after stage 1 (loads, QK-norm / RoPE), 2 (scores, softmax) or 3 (weighted
// values, unquantised output); 0 runs to the end (a measurement knob, OMNI_DEBUG_ATTN_STOP:
// what each stage adds to a decode step; the registers a stage would use are consumed, so
// their loads stay)
override STOP: u32 = 0u;
// NSPLIT (FUSED_QK, HD a multiple of 16): the QK-norms' sums of squares in two steps, a vec4
// of the head per invocation into workgroup memory, then V4 / 4 loads per sum, instead of
// every invocation summing the whole head itself: about a fifth of that code, which each
// dispatch runs cold (`omni bench-stream --icache`; `Tuning::attn_nsplit`)
override NSPLIT: bool = false;
override HD: u32 = 128u;        // head_dim: a multiple of 4, at most 256
override V4: u32 = HD / 4u;     // vec4 per cache row
// invocations and cache rows per workgroup: 512 and 128 for HD <= 128 (contexts up to 128 rows
// need no merge of chunks, and each invocation reads what it does with 256 and 64), else 256
// and 64 (the host's choice: four invocations per row either way)
override WG: u32 = 256u;
override CHUNK: u32 = 64u;
override SLICES: u32 = WG / V4;   // row slices of the weighted sum of values
override PER_SLICE: u32 = (CHUNK + SLICES - 1u) / SLICES;
override KT: u32 = (V4 + 3u) / 4u;  // vec4 of a cache row per invocation of the scores

struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,     // = HD
    chunks: u32,       // chunk pitch of `part` (cache capacity / CHUNK, rounded up)
    scale_bits: u32,   // f32 bits of 1 / sqrt(head_dim)
    pitch: u32,        // FUSED_QK: floats per q|k|v row
    eps_bits: u32,     // FUSED_QK: f32 bits of the QK-norm eps
    // attn_oproj.wgsl only (zero for the attention alone): o_proj's rows, vec4 words per
    // weight row, u32 words of scales per row
    o_rows: u32,
    o_stride4: u32,
    o_sstride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> q: array<f32>;              // (heads, HD) | raw q|k|v
@group(0) @binding(3) var<storage, read_write> kc: array<vec4<f32>>; // (ctx, kv_heads, HD / 4)
@group(0) @binding(4) var<storage, read_write> vc: array<vec4<f32>>; // (ctx, kv_heads, HD / 4)
@group(0) @binding(5) var<storage, read_write> part: array<f32>;     // (heads, chunks, HD + 2)
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>; // (heads, HD / 4)
@group(0) @binding(7) var<storage, read> q_norm: array<f32>;         // FUSED_QK: (HD)
@group(0) @binding(8) var<storage, read> k_norm: array<f32>;         // FUSED_QK: (HD)
@group(0) @binding(9) var<storage, read> cs: array<f32>;             // FUSED_QK: (positions, 2, HD / 2)
@group(0) @binding(10) var<storage, read_write> qout: array<u32>;    // QOUT: the output quantised
// per head, how many of its chunks have written their part (zero between dispatches)
@group(0) @binding(11) var<storage, read_write> done_chunks: array<atomic<u32>>;

var<workgroup> raw: array<vec4<f32>, 128>;  // FUSED_QK: raw q head | raw k head at vec4 64
var<workgroup> qs: array<vec4<f32>, 64>;    // the scaled, rotated query
var<workgroup> dots: array<f32, 512>;       // CHUNK rows x 4 partial dot products
var<workgroup> sc: array<vec4<f32>, 32>;    // the chunk's scores
var<workgroup> pe: array<vec4<f32>, 32>;    // their exponentials relative to the chunk's max
var<workgroup> ov: array<vec4<f32>, 512>;   // (slices, V4) partial outputs
var<workgroup> chunk_max: f32;              // the chunk's max score
var<workgroup> last_flag: u32;              // 1 in the head's last chunk to finish
var<workgroup> kn: array<vec4<f32>, 64>;    // FUSED_QK: the new key row (normed, rotated)
var<workgroup> vn: array<vec4<f32>, 64>;    // FUSED_QK: the new value row
var<workgroup> nss: array<vec4<f32>, 32>;   // NSPLIT: squares summed per vec4, q's then k's

fn raw_at(at: u32, i: u32) -> f32 {
    return raw[at + i / 4u][i % 4u];
}

// 1 / rms of the head at raw[at ..] with the QK-norm eps (every invocation reads the same
// words: broadcast loads, unrolled)
fn inv_rms(at: u32) -> f32 {
    // eight independent chains of multiply-adds (two vec4 accumulators), not one dependent
    // chain of V4 dot products: this sits on the kernel's critical path twice (q and k)
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var i = 0u; i + 1u < V4; i += 2u) {
        sa = sa + raw[at + i] * raw[at + i];
        sb = sb + raw[at + i + 1u] * raw[at + i + 1u];
    }
    if (V4 % 2u == 1u) { sa = sa + raw[at + V4 - 1u] * raw[at + V4 - 1u]; }
    return inv_rms_of(sa + sb);
}

// NSPLIT: 1 / rms from the per-vec4 sums at nss[b4 ..] (V4 of them, four to a vec4)
fn inv_rms_split(b4: u32) -> f32 {
    var s4 = vec4<f32>(0.0);
    for (var i = 0u; i < V4 / 4u; i++) { s4 = s4 + nss[b4 + i]; }
    return inv_rms_of(s4);
}

// 1 / rms of a head whose squares sum to the four lanes of s4, with the QK-norm eps
fn inv_rms_of(s4: vec4<f32>) -> f32 {
    let ss = (s4.x + s4.y) + (s4.z + s4.w);
    return 1.0 / sqrt(ss / f32(HD) + bitcast<f32>(p.eps_bits));
}

// element i of the RMS-normalised (weight wi, partner weight wp) and rotated head at raw[at..]
// for cos/sin (c, s): the first half pairs with the second
fn rotated(at: u32, i: u32, inv: f32, wi: f32, wp: f32, c: f32, s: f32) -> f32 {
    let half = HD / 2u;
    let x = raw_at(at, i) * inv * wi;
    if (i < half) {
        return x * c - raw_at(at, i + half) * inv * wp * s;
    }
    return x * c + raw_at(at, i - half) * inv * wp * s;
}

// The cache row of value register k of `slice` (past the chunk or PER_SLICE: none, as
// 0xffffffff, which no row count reaches)
fn v_row(k: u32, row0: u32, slice: u32) -> u32 {
    let i = slice + k * SLICES;
    return select(0xffffffffu, row0 + i, k < PER_SLICE && i < CHUNK);
}

// Score term t of an invocation: vec4 j + 4t of the query against key register kv
fn kdot(t: u32, kv: vec4<f32>, j: u32) -> f32 {
    if (t < KT && j + 4u * t < V4) { return dot(qs[j + 4u * t], kv); }
    return 0.0;
}

// Weighted value term k of an invocation: register vv for a cached row, the workgroup's new
// row for the step's own position (FUSED_QK), else nothing
fn vterm(k: u32, vv: vec4<f32>, row0: u32, slice: u32, u: u32, cached: u32, n: u32) -> vec4<f32> {
    let i = slice + k * SLICES;
    if (k >= PER_SLICE || i >= CHUNK) { return vec4<f32>(0.0); }
    if (row0 + i < cached) { return pe[i / 4u][i % 4u] * vv; }
    if (FUSED_QK && row0 + i == n - 1u) { return pe[i / 4u][i % 4u] * vn[u]; }
    return vec4<f32>(0.0);
}

// The workgroup of head h, chunk c (the entry point: decode_main.wgsl, or attn_oproj.wgsl
// beside o_proj). True where it wrote the head's final output (its only chunk, or the merge).
fn attend(li: u32, h: u32, c: u32) -> bool {
    // (a run-time test the compiler cannot fold, so every binding stays in use)
    if (NOP && p.heads != 0u) { return false; }
    let n = step.kv_len;
    let kvh = h / (p.heads / p.kv_heads);
    let row0 = c * CHUNK;
    let scale = bitcast<f32>(p.scale_bits);
    let stores_new = FUSED_QK && row0 + CHUNK >= n;
    // rows read from the cache: all of them, or (FUSED_QK) all but the step's own
    let cached = select(n, n - 1u, FUSED_QK);
    // scores: four invocations per cache row, each a quarter of the row's vec4s (interleaved,
    // adjacent loads); values: SLICES groups of invocations split the rows, one vec4 of dims
    // each. Both sets of cache loads are issued here, first.
    let r = li / 4u;
    let j = li % 4u;
    let slice = li / V4;
    let u = li % V4;
    // Named registers, not arrays (an array indexed in a loop may live in local memory): k_t
    // holds vec4 j + 4t of row r, v_k vec4 u of row slice + k * SLICES; the constants KT and
    // PER_SLICE (at most 16, HD <= 256) drop the unused ones at pipeline creation.
    var k0 = vec4<f32>(0.0);
    var k1 = vec4<f32>(0.0);
    var k2 = vec4<f32>(0.0);
    var k3 = vec4<f32>(0.0);
    var k4 = vec4<f32>(0.0);
    var k5 = vec4<f32>(0.0);
    var k6 = vec4<f32>(0.0);
    var k7 = vec4<f32>(0.0);
    var k8 = vec4<f32>(0.0);
    var k9 = vec4<f32>(0.0);
    var k10 = vec4<f32>(0.0);
    var k11 = vec4<f32>(0.0);
    var k12 = vec4<f32>(0.0);
    var k13 = vec4<f32>(0.0);
    var k14 = vec4<f32>(0.0);
    var k15 = vec4<f32>(0.0);
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    var v2 = vec4<f32>(0.0);
    var v3 = vec4<f32>(0.0);
    var v4 = vec4<f32>(0.0);
    var v5 = vec4<f32>(0.0);
    var v6 = vec4<f32>(0.0);
    var v7 = vec4<f32>(0.0);
    var v8 = vec4<f32>(0.0);
    var v9 = vec4<f32>(0.0);
    var v10 = vec4<f32>(0.0);
    var v11 = vec4<f32>(0.0);
    var v12 = vec4<f32>(0.0);
    var v13 = vec4<f32>(0.0);
    var v14 = vec4<f32>(0.0);
    var v15 = vec4<f32>(0.0);
    if (row0 + r < cached) {
        let kb = ((row0 + r) * p.kv_heads + kvh) * V4 + j;
        if (j < V4) { k0 = kc[kb]; }
        if (KT > 1u && j + 4u < V4) { k1 = kc[kb + 4u]; }
        if (KT > 2u && j + 8u < V4) { k2 = kc[kb + 8u]; }
        if (KT > 3u && j + 12u < V4) { k3 = kc[kb + 12u]; }
        if (KT > 4u && j + 16u < V4) { k4 = kc[kb + 16u]; }
        if (KT > 5u && j + 20u < V4) { k5 = kc[kb + 20u]; }
        if (KT > 6u && j + 24u < V4) { k6 = kc[kb + 24u]; }
        if (KT > 7u && j + 28u < V4) { k7 = kc[kb + 28u]; }
        if (KT > 8u && j + 32u < V4) { k8 = kc[kb + 32u]; }
        if (KT > 9u && j + 36u < V4) { k9 = kc[kb + 36u]; }
        if (KT > 10u && j + 40u < V4) { k10 = kc[kb + 40u]; }
        if (KT > 11u && j + 44u < V4) { k11 = kc[kb + 44u]; }
        if (KT > 12u && j + 48u < V4) { k12 = kc[kb + 48u]; }
        if (KT > 13u && j + 52u < V4) { k13 = kc[kb + 52u]; }
        if (KT > 14u && j + 56u < V4) { k14 = kc[kb + 56u]; }
        if (KT > 15u && j + 60u < V4) { k15 = kc[kb + 60u]; }
    }
    if (slice < SLICES) {
        let pitch = p.kv_heads * V4;
        let vb = kvh * V4 + u;
        if (v_row(0u, row0, slice) < cached) { v0 = vc[v_row(0u, row0, slice) * pitch + vb]; }
        if (v_row(1u, row0, slice) < cached) { v1 = vc[v_row(1u, row0, slice) * pitch + vb]; }
        if (v_row(2u, row0, slice) < cached) { v2 = vc[v_row(2u, row0, slice) * pitch + vb]; }
        if (v_row(3u, row0, slice) < cached) { v3 = vc[v_row(3u, row0, slice) * pitch + vb]; }
        if (v_row(4u, row0, slice) < cached) { v4 = vc[v_row(4u, row0, slice) * pitch + vb]; }
        if (v_row(5u, row0, slice) < cached) { v5 = vc[v_row(5u, row0, slice) * pitch + vb]; }
        if (v_row(6u, row0, slice) < cached) { v6 = vc[v_row(6u, row0, slice) * pitch + vb]; }
        if (v_row(7u, row0, slice) < cached) { v7 = vc[v_row(7u, row0, slice) * pitch + vb]; }
        if (v_row(8u, row0, slice) < cached) { v8 = vc[v_row(8u, row0, slice) * pitch + vb]; }
        if (v_row(9u, row0, slice) < cached) { v9 = vc[v_row(9u, row0, slice) * pitch + vb]; }
        if (v_row(10u, row0, slice) < cached) { v10 = vc[v_row(10u, row0, slice) * pitch + vb]; }
        if (v_row(11u, row0, slice) < cached) { v11 = vc[v_row(11u, row0, slice) * pitch + vb]; }
        if (v_row(12u, row0, slice) < cached) { v12 = vc[v_row(12u, row0, slice) * pitch + vb]; }
        if (v_row(13u, row0, slice) < cached) { v13 = vc[v_row(13u, row0, slice) * pitch + vb]; }
        if (v_row(14u, row0, slice) < cached) { v14 = vc[v_row(14u, row0, slice) * pitch + vb]; }
        if (v_row(15u, row0, slice) < cached) { v15 = vc[v_row(15u, row0, slice) * pitch + vb]; }
    }
    if (FUSED_QK) {
        let pos = n - 1u;
        let half = HD / 2u;
        var wq = 0.0;
        var wqp = 0.0;
        var wk = 0.0;
        var wkp = 0.0;
        var cv = 0.0;
        var sv = 0.0;
        var v = 0.0;
        if (li < HD) {
            let partner = select(li - half, li + half, li < half);
            let jh = li % half;
            raw[li / 4u][li % 4u] = q[h * HD + li];
            wq = q_norm[li];
            wqp = q_norm[partner];
            cv = cs[pos * HD + jh];
            sv = cs[pos * HD + half + jh];
            if (stores_new) {
                raw[64u + li / 4u][li % 4u] = q[(p.heads + kvh) * HD + li];
                wk = k_norm[li];
                wkp = k_norm[partner];
                v = q[(p.heads + p.kv_heads + kvh) * HD + li];
            }
        }
        workgroupBarrier();
        var inv_q = 0.0;
        var inv_k = 0.0;
        if (NSPLIT) {
            // invocation i < 2 V4: vec4 i of q's head, then of k's (raw from vec4 64)
            if (li < 2u * V4) {
                let a = raw[select(li, 64u + li - V4, li >= V4)];
                nss[li / 4u][li % 4u] = dot(a, a);
            }
            workgroupBarrier();
            inv_q = inv_rms_split(0u);
            inv_k = inv_rms_split(V4 / 4u);
        }
        if (li < HD) {
            if (!NSPLIT) { inv_q = inv_rms(0u); }
            let rq = rotated(0u, li, inv_q, wq, wqp, cv, sv);
            qs[li / 4u][li % 4u] = rq * scale;
            if (stores_new) {
                // every workgroup of the kv head stores the same values
                if (!NSPLIT) { inv_k = inv_rms(64u); }
                let rk = rotated(64u, li, inv_k, wk, wkp, cv, sv);
                let dst = (pos * p.kv_heads + kvh) * V4 + li / 4u;
                kc[dst][li % 4u] = rk;
                vc[dst][li % 4u] = v;
                kn[li / 4u][li % 4u] = rk;
                vn[li / 4u][li % 4u] = v;
            }
        }
    } else if (li < V4) {
        let b = h * HD + 4u * li;
        qs[li] = vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]) * scale;
    }
    workgroupBarrier();
    if (STOP == 1u) {
        let t = dot(k0 + k1 + k2 + k3 + k4 + k5 + k6 + k7 + k8 + k9 + k10 + k11 + k12 + k13 + k14 + k15, vec4<f32>(1.0)) + dot(v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7 + v8 + v9 + v10 + v11 + v12 + v13 + v14 + v15, vec4<f32>(1.0)) + qs[li % 32u].x;
        if (t == 1.5e-38) { out[0] = vec4<f32>(t); }
        return false;
    }
    var s = 0.0;
    if (row0 + r < cached) {
        s = ((kdot(0u, k0, j) + kdot(1u, k1, j) + kdot(2u, k2, j) + kdot(3u, k3, j))
            + (kdot(4u, k4, j) + kdot(5u, k5, j) + kdot(6u, k6, j) + kdot(7u, k7, j)))
            + ((kdot(8u, k8, j) + kdot(9u, k9, j) + kdot(10u, k10, j) + kdot(11u, k11, j))
            + (kdot(12u, k12, j) + kdot(13u, k13, j) + kdot(14u, k14, j) + kdot(15u, k15, j)));
    } else if (FUSED_QK && row0 + r == n - 1u) {
        for (var t = 0u; t < KT; t++) {
            if (j + 4u * t < V4) { s = s + dot(qs[j + 4u * t], kn[j + 4u * t]); }
        }
    }
    dots[li] = s;
    workgroupBarrier();
    if (li < CHUNK) {
        var v = -3.4e38;
        if (row0 + li < n) { v = (dots[4u * li] + dots[4u * li + 1u]) + (dots[4u * li + 2u] + dots[4u * li + 3u]); }
        sc[li / 4u][li % 4u] = v;
    }
    workgroupBarrier();
    if (li < CHUNK) {
        var m4 = sc[0];
        for (var i = 1u; i < CHUNK / 4u; i++) { m4 = max(m4, sc[i]); }
        let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
        // each row's exponential once (rows past kv_len weigh 0)
        pe[li / 4u][li % 4u] = select(0.0, exp(sc[li / 4u][li % 4u] - m), row0 + li < n);
        if (li == 0u) { chunk_max = m; }
    }
    workgroupBarrier();
    if (STOP == 2u) {
        let t = dot(v0 + v1 + v2 + v3 + v4 + v5 + v6 + v7 + v8 + v9 + v10 + v11 + v12 + v13 + v14 + v15, vec4<f32>(1.0)) + pe[li % 16u].x;
        if (t == 1.5e-38) { out[0] = vec4<f32>(t); }
        return false;
    }
    // weighted values
    if (slice < SLICES) {
        var acc = vec4<f32>(0.0);
        acc = acc + vterm(0u, v0, row0, slice, u, cached, n);
        acc = acc + vterm(1u, v1, row0, slice, u, cached, n);
        acc = acc + vterm(2u, v2, row0, slice, u, cached, n);
        acc = acc + vterm(3u, v3, row0, slice, u, cached, n);
        acc = acc + vterm(4u, v4, row0, slice, u, cached, n);
        acc = acc + vterm(5u, v5, row0, slice, u, cached, n);
        acc = acc + vterm(6u, v6, row0, slice, u, cached, n);
        acc = acc + vterm(7u, v7, row0, slice, u, cached, n);
        acc = acc + vterm(8u, v8, row0, slice, u, cached, n);
        acc = acc + vterm(9u, v9, row0, slice, u, cached, n);
        acc = acc + vterm(10u, v10, row0, slice, u, cached, n);
        acc = acc + vterm(11u, v11, row0, slice, u, cached, n);
        acc = acc + vterm(12u, v12, row0, slice, u, cached, n);
        acc = acc + vterm(13u, v13, row0, slice, u, cached, n);
        acc = acc + vterm(14u, v14, row0, slice, u, cached, n);
        acc = acc + vterm(15u, v15, row0, slice, u, cached, n);
        ov[slice * V4 + u] = acc;
    }
    workgroupBarrier();
    var fin = vec4<f32>(0.0);
    if (li < V4) {
        var o = vec4<f32>(0.0);
        for (var k = 0u; k < SLICES; k++) { o = o + ov[k * V4 + li]; }
        var l4 = vec4<f32>(0.0);
        for (var i = 0u; i < CHUNK / 4u; i++) { l4 = l4 + pe[i]; }
        let l = (l4.x + l4.y) + (l4.z + l4.w);
        if (n <= CHUNK) {
            fin = o / l;
            out[h * V4 + li] = fin;
        } else {
            let b = (h * p.chunks + c) * (HD + 2u) + 4u * li;
            part[b] = o.x;
            part[b + 1u] = o.y;
            part[b + 2u] = o.z;
            part[b + 3u] = o.w;
            if (li == 0u) {
                part[(h * p.chunks + c) * (HD + 2u) + HD] = chunk_max;
                part[(h * p.chunks + c) * (HD + 2u) + HD + 1u] = l;
            }
        }
    }
    if (STOP == 3u) { return false; }
    // n is uniform: the whole workgroup takes these branches or none
    if (n > CHUNK) {
        // Several chunks: the head's last workgroup to finish merges them all (a second
        // dispatch cost a dispatch boundary, ~3 us on an H200, per layer). Release this
        // chunk's part, count it; the last resets the count for the next dispatch.
        storageBarrier();
        let used = (n + CHUNK - 1u) / CHUNK;
        if (li == 0u) {
            let done = atomicAdd(&done_chunks[h], 1u) + 1u;
            last_flag = select(0u, 1u, done == used);
            if (done == used) { atomicStore(&done_chunks[h], 0u); }
        }
        if (workgroupUniformLoad(&last_flag) == 0u) { return false; }
        // acquire the other chunks' parts, then out = sum_c o_c e^(m_c - M) / sum_c l_c
        // e^(m_c - M), M the largest chunk max
        storageBarrier();
        if (li < V4) {
            let pitch = HD + 2u;
            let base = h * p.chunks * pitch;
            var mx = -3.4e38;
            for (var k = 0u; k < used; k++) { mx = max(mx, part[base + k * pitch + HD]); }
            var l = 0.0;
            var o = vec4<f32>(0.0);
            for (var k = 0u; k < used; k++) {
                let b = base + k * pitch;
                let w = exp(part[b + HD] - mx);
                l = l + part[b + HD + 1u] * w;
                let at = b + 4u * li;
                o = o + vec4<f32>(part[at], part[at + 1u], part[at + 2u], part[at + 3u]) * w;
            }
            fin = o / l;
            out[h * V4 + li] = fin;
        }
    }
    if (QOUT) { quantise_head(li, V4, h * HD + 4u * li, HD, fin); }
    return true;
}

// QOUT: the output quantised for the chained o_proj. No subgroup operations: the attention
// also runs on adapters without them.
var<workgroup> qmax: array<f32, 64>;  // per-invocation largest |value| of 4

// Invocation li < n4 holds values at .. at + 3 of a head's output (`at` = head offset +
// 4 li); eight neighbours make a block of the heads x head_dim vector. Call in uniform
// control flow (it has a barrier).
fn quantise_head(li: u32, n4: u32, at: u32, head_dim: u32, v: vec4<f32>) {
    let a = abs(v);
    if (li < n4) { qmax[li] = max(max(a.x, a.y), max(a.z, a.w)); }
    workgroupBarrier();
    if (li < n4) {
        let b0 = li - li % 8u;
        var m = 0.0;
        for (var j = 0u; j < 8u; j++) { m = max(m, qmax[b0 + j]); }
        let inv = select(0.0, 127.0 / m, m > 0.0);
        qout[at / 4u] = pack4xI8(vec4<i32>(round(v * inv)));
        if (li % 8u == 0u) { qout[8u * (p.heads * head_dim / 32u) + at / 32u] = bitcast<u32>(m / 127.0); }
    }
}
