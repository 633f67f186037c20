// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k] for Q8_0 weights (decode). A subgroup takes
// ROWS rows at once: every invocation reads one 32-value block of x (and folds RMSNorm or
// SwiGLU into it) once, then uses it for ROWS rows. Activations are f32, so without this
// sharing a lane reads 4 bytes of x per byte of weight and the L1 throughput, not DRAM,
// bounds the kernel. Each block is eight u32 of four int8 values plus one f16 scale.
// RPW rows per workgroup whatever the subgroup size the driver picks: a subgroup loops over
// its share. Same fusions as matvec_sg: RMS_NORM, SWIGLU, ACCUMULATE.
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;
override RMS_NORM: bool = false;
override ROWS: u32 = 1;     // 1..4
override RPW: u32 = 8;      // rows per workgroup, a multiple of ROWS
override WG: u32 = 256;
// MOE: a mixture-of-experts matvec. Workgroup z is a slot (token t, choice j) whose expert id
// comes from `aux` (the route) on the device (no read-back); `rows` is then the rows of one expert, the
// weight rows start at that expert's block in this chunk, and slot s writes y[y_off + s*rows..].
override MOE: bool = false;
// DOT: int8 activations. The workgroup first quantises its x (with the RMSNorm weight or SwiGLU
// folded in) to blocks of 32 int8 with an f32 scale, the Q8_0 rule, into workgroup memory;
// blocks are then dot4I8Packed products (4 multiply-adds per instruction, 1 byte of x per
// weight instead of 4). Costs the activation's rounding (~0.4% of a block's largest value per
// element); CPU twin: tests' `q8_dot_twin`. K <= 12288.
override DOT: bool = false;
// The row length fixed at pipeline creation (0: p.k at run time). Fixed, the loops over a row
// have constant trip counts: the compiler unrolls them and issues all of a lane's weight loads
// before the first is used, instead of one pass's loads per memory round trip.
override KC: u32 = 0u;
// XIN: the input arrives quantised by the matvec that produced it (QOUT): `aux` holds the K / 32
// blocks of eight int8 words, then each block's scale, then (RMS_NORM) each block's sum of
// squares of the un-normed values; the norm weight or SwiGLU was applied before rounding. The
// workgroup has no prologue (no copy of x, no barrier) and starts streaming weights at once.
// Same numbers as DOT's own quantisation of x.
override XIN: bool = false;
// QOUT: the workgroup also writes its rows quantised for the next matvec (XIN), after they are
// final (ACCUMULATE included). 1: the value times the next RMSNorm's weight `g`, and each
// block's sum of squares; 2: SwiGLU pairs, for a stacked gate|up matrix whose halves are
// `qlen` rows: the workgroup's row blocks of 32 alternate gate block j / up block j (logical
// row r is weight row pair_row(r)) and the quantised value is silu(gate) * up.
override QOUT: u32 = 0u;
// SGC: the subgroup size where the adapter has only one (0: read at run time). Known with KC,
// a lane's block loop has a constant trip count: the compiler unrolls it and issues every
// iteration's weight loads together, instead of one round trip to memory per iteration.
override SGC: u32 = 0u;
// MOE_SUM (MOE only): the row block's last slot workgroup of a token to finish (a device
// counter per token and row block) also adds the token's KS slots' rows, weighted by `route_w`,
// to the residual `res`, in slot order: what moe_sum.wgsl does as a dispatch of its own, with
// the same arithmetic, one dispatch boundary fewer per MoE layer.
override MOE_SUM: bool = false;
override KS: u32 = 8u;     // slots per token
// NOP: return at once (a measurement knob, OMNI_DEBUG_NOP: the dispatch without its work)
override NOP: bool = false;
// NOTAIL: the rows' sums are made but not stored, nor quantised (a measurement knob,
// OMNI_DEBUG_NOP=matvec_q8_tail: what a workgroup's tail costs)
override NOTAIL: bool = false;
// EARLY: the tail's reads from memory (ACCUMULATE: the residual of a subgroup's first rows;
// QOUT 1: the next RMSNorm's weights) are issued before the weight stream, not after it, so
// the workgroup's last rows wait for one memory round trip fewer (two with both)
override EARLY: bool = false;
// KSPLIT (chain links; a fixed subgroup size): KSPLIT subgroups share each row group, each
// taking every KSPLIT-th subgroup-wide stretch of its blocks, so more subgroups stream a
// workgroup's rows with fewer trips each (what it gains per card: Tuning::for_adapter). The
// parts meet in `kpart` (KPN = RPW * KSPLIT floats) and invocation li finishes row first + li,
// adding the parts in order.
override KSPLIT: u32 = 1u;
override KPN: u32 = 1u;
// FULL (with KC and SGC): every lane's every trip lands inside the row (K / 32 blocks a
// multiple of SGC * KSPLIT, the host checks), so the block loops drop their bounds test.
// H200: +0.5-0.9% at 8B with the wide links at 1024 x 4 rows x KSPLIT 4, but -4% with them
// at 512 x 2 rows (down and o_proj slower): the compiler's load scheduling moves with it
override FULL: bool = false;

fn kdim() -> u32 {
    return select(p.k, KC, KC > 0u);
}

struct Params {
    rows: u32,
    k: u32,
    stride: u32,        // u32 words of values per row (k / 4)
    x_off: u32,         // multiple of 4 (the gate half when SWIGLU)
    y_off: u32,
    row0: u32,
    up_off: u32,        // SWIGLU: offset of the up half, multiple of 4
    eps_bits: u32,      // RMS_NORM
    scale_stride: u32,  // u32 words of scales per row (two f16 each)
    // MOE only: this chunk's rows (experts x rows per expert), x rows shared by `x_div`
    // consecutive slots `x_stride` floats apart, one output block of `rows` per slot
    chunk_rows: u32,
    x_div: u32,
    x_stride: u32,
    qlen: u32,          // QOUT: length of the quantised output vector (the next matvec's K)
    n_blocks: u32,      // MOE_SUM: row blocks per slot (counters per token)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;    // RMS_NORM weight (k / 4)
@group(0) @binding(5) var<storage, read> sc: array<u32>;         // (rows, scale_stride)

// MOE: the expert id per slot; XIN: the quantised x (one binding: a variant uses one or none)
@group(0) @binding(6) var<storage, read> aux: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> qout: array<u32>; // QOUT: quantised y
@group(0) @binding(8) var<storage, read> route_w: array<f32>;     // MOE_SUM: (t * KS)
@group(0) @binding(9) var<storage, read_write> res: array<f32>;   // MOE_SUM: (t, rows)
@group(0) @binding(10) var<storage, read_write> sum_done: array<atomic<u32>>; // (t, n_blocks)
var<workgroup> last_flag: u32;  // MOE_SUM: 1 in the token's last slot of a row block

// (declared in every variant, and the driver allocates them even where XIN leaves them
// unused; sized to 1 there they made the H200's compiler hold half the registers and the
// links 3-9% slower: s14 run 6)
var<workgroup> xq: array<vec4<u32>, 768>;  // DOT: x as int8, 16 per vec4 (K <= 12288)
var<workgroup> xd: array<f32, 384>;        // DOT: x's block scales
var<workgroup> part_ss: array<f32, 64>;    // DOT: per-subgroup sums of squares
// QOUT: the workgroup's final rows (RPW <= 128: the host checks). Small on purpose: declared
// workgroup memory comes out of the L1 cache in every variant (6 KB of QOUT arrays cost the
// 30B-A3B decode 2.5% on an H200).
var<workgroup> yo: array<f32, 128>;
var<workgroup> kpart: array<f32, KPN>;  // KSPLIT: (row, part) sums
var<workgroup> kss: array<f32, 8>;      // KSPLIT, XIN + RMS_NORM: each part's sum of squares

// Where this workgroup reads and writes (set once in main; plain offsets unless MOE).
var<private> w_row0: u32;  // first weight row of the matrix (expert) in this chunk
var<private> x_base: u32;  // offset of x (the gate half when SWIGLU)
var<private> u_base: u32;  // offset of the up half (SWIGLU)
var<private> y_base: u32;  // output offset of row 0
var<private> wg_first: u32;  // QOUT: the workgroup's first (logical) row
// EARLY: the residual of the subgroup's first rows (lane 0); KSPLIT: of row first + li (.x)
var<private> early_res: vec4<f32>;
var<private> early_g: vec4<f32>;    // EARLY, QOUT 1: this invocation's four norm weights

// The weight / output row of logical row r: QOUT 2 interleaves gate and up blocks of 32.
fn pair_row(r: u32) -> u32 {
    if (QOUT == 2u) {
        return ((r / 32u) % 2u) * p.qlen + (r / 64u) * 32u + r % 32u;
    }
    return r;
}

fn xin(i: u32) -> vec4<f32> {
    let a = x[x_base / 4u + i];
    if (SWIGLU) {
        let u = x[u_base / 4u + i];
        return a / (vec4<f32>(1.0) + exp(-a)) * u;
    }
    return a;
}

// The four int8 values of `word` as f32 without int-to-float conversions (a quarter-rate
// instruction on NVIDIA that bounded this kernel): flipping the sign bits gives q + 128 in
// each byte; 0x4b000000 | byte is the float 2^23 + byte exactly; subtract 2^23 + 128.
fn q4(word: u32) -> vec4<f32> {
    let b = word ^ 0x80808080u;
    let m = vec4<u32>(b & 0xffu, (b >> 8u) & 0xffu, (b >> 16u) & 0xffu, b >> 24u);
    return bitcast<vec4<f32>>(m | vec4<u32>(0x4b000000u)) - vec4<f32>(8388736.0);
}

// Block b of `row` against its 32 inputs x0..x7 (named values, not an array: an array indexed
// in a loop may live in local memory).
fn block_dot(lrow: u32, b: u32, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
             x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>) -> f32 {
    let row = pair_row(lrow);
    let base = (w_row0 + row) * (p.stride / 4u) + 2u * b;
    let qa = w[base];
    let qb = w[base + 1u];
    let s2 = unpack2x16float(sc[(w_row0 + row) * p.scale_stride + b / 2u]);
    let d = select(s2.x, s2.y, (b & 1u) == 1u);
    let lo = dot(q4(qa.x), x0) + dot(q4(qa.y), x1) + dot(q4(qa.z), x2) + dot(q4(qa.w), x3);
    let hi = dot(q4(qb.x), x4) + dot(q4(qb.y), x5) + dot(q4(qb.z), x6) + dot(q4(qb.w), x7);
    return d * (lo + hi);
}

// DOT: block b of `row` (Blk and dot_i8: q8_block.wgsl)
fn fetch(lrow: u32, b: u32) -> Blk {
    let row = pair_row(lrow);
    let base = (w_row0 + row) * (p.stride / 4u) + 2u * b;
    let s2 = unpack2x16float(sc[(w_row0 + row) * p.scale_stride + b / 2u]);
    return Blk(w[base], w[base + 1u], select(s2.x, s2.y, (b & 1u) == 1u));
}

// DOT: the four rows' blocks added to acc against x block xa | xb with scale dx (rows past
// the end repeat the last)
fn dot_rows(acc: vec4<f32>, k0: Blk, k1: Blk, k2: Blk, k3: Blk, xa: vec4<u32>, xb: vec4<u32>,
            dx: f32) -> vec4<f32> {
    var r = acc;
    r.x = r.x + dot_i8(k0, xa, xb, dx);
    if (ROWS > 1u) { r.y = r.y + dot_i8(k1, xa, xb, dx); }
    if (ROWS > 2u) { r.z = r.z + dot_i8(k2, xa, xb, dx); }
    if (ROWS > 3u) { r.w = r.w + dot_i8(k3, xa, xb, dx); }
    return r;
}

// DOT: quantise x into xq / xd; returns the sum of squares of x (RMS_NORM) over the whole
// workgroup. Every invocation takes 8 consecutive values; four neighbours make a block.
fn quantise_x(li: u32, lane: u32, sgs: u32) -> f32 {
    let n8 = kdim() / 8u;
    var ss = 0.0;
    // a uniform loop: the shuffles need every lane
    for (var base = 0u; base < n8; base += WG) {
        let i = base + li;
        var a = vec4<f32>(0.0);
        var b = vec4<f32>(0.0);
        if (i < n8) {
            a = xin(2u * i);
            b = xin(2u * i + 1u);
            if (RMS_NORM) {
                ss = ss + dot(a, a) + dot(b, b);
                a = a * g[2u * i];
                b = b * g[2u * i + 1u];
            }
        }
        var m = max(max(abs(a.x), abs(a.y)), max(abs(a.z), abs(a.w)));
        m = max(m, max(max(abs(b.x), abs(b.y)), max(abs(b.z), abs(b.w))));
        m = max(m, subgroupShuffleXor(m, 1u));
        m = max(m, subgroupShuffleXor(m, 2u));
        if (i < n8) {
            let inv = select(0.0, 127.0 / m, m > 0.0);
            let qa = pack4xI8(vec4<i32>(round(a * inv)));
            let qb = pack4xI8(vec4<i32>(round(b * inv)));
            xq[i / 2u][2u * (i % 2u)] = qa;
            xq[i / 2u][2u * (i % 2u) + 1u] = qb;
            if (i % 4u == 0u) { xd[i / 4u] = m / 127.0; }
        }
    }
    let sub = subgroupAdd(ss);
    if (lane == 0u) { part_ss[li / sgs] = sub; }
    workgroupBarrier();
    var total = 0.0;
    for (var j = 0u; j < WG / sgs; j++) { total = total + part_ss[j]; }
    return total;
}

// `early`: the row's residual is `res`, read before the weight stream (EARLY)
fn store(row: u32, v: f32, total_ss: f32, early: bool, res: f32) {
    if (row >= p.rows) { return; }
    var r = v;
    if (RMS_NORM) { r = r / sqrt(total_ss / f32(kdim()) + bitcast<f32>(p.eps_bits)); }
    let o = y_base + pair_row(row);
    if (ACCUMULATE) {
        if (early) { r = res + r; } else { r = y[o] + r; }
    }
    y[o] = r;
    if (QOUT > 0u) { yo[row - wg_first] = r; }
}

// QOUT: quantise the workgroup's final rows (in `yo`) into `qout` as blocks of 32 with the
// Q8_0 rule, as quantise_x does for its own input. Invocation li takes four values; eight
// neighbouring lanes make a block and reduce it by shuffles (subgroups of at least 8, and
// the workgroup's rows whole blocks: the host checks). A workgroup barrier, not a storage
// one: reading the rows back from y would need a device-scope fence first.
fn yv(r: u32) -> f32 {
    return yo[r];
}

fn quantise_out(li: u32) {
    workgroupBarrier();
    let rows = select(0u, min(RPW, p.rows - wg_first), wg_first < p.rows);
    let n = select(rows, rows / 2u, QOUT == 2u);
    let i = 4u * li;
    let mine = i < n;
    var v = vec4<f32>(0.0);
    var t = vec4<f32>(0.0);
    var at = p.row0 + wg_first + i;
    if (mine) {
        if (QOUT == 1u) {
            v = vec4<f32>(yv(i), yv(i + 1u), yv(i + 2u), yv(i + 3u));
            if (EARLY) { t = v * early_g; } else { t = v * g[at / 4u]; }
        } else {
            at = (p.row0 + wg_first) / 2u + i;
            let gi = (i / 32u) * 64u + i % 32u;
            let a = vec4<f32>(yv(gi), yv(gi + 1u), yv(gi + 2u), yv(gi + 3u));
            let u = vec4<f32>(yv(gi + 32u), yv(gi + 33u), yv(gi + 34u), yv(gi + 35u));
            t = a / (vec4<f32>(1.0) + exp(-a)) * u;
        }
    }
    let ms = block_reduce(t, v);
    let m = ms.x;
    let s = ms.y;
    if (mine) {
        let inv = select(0.0, 127.0 / m, m > 0.0);
        qout[at / 4u] = pack4xI8(vec4<i32>(round(t * inv)));
        if (li % 8u == 0u) {
            let nbq = p.qlen / 32u;
            qout[8u * nbq + at / 32u] = bitcast<u32>(m / 127.0);
            if (QOUT == 1u) { qout[8u * nbq + 4u * ((nbq + 3u) / 4u) + at / 32u] = bitcast<u32>(s); }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
    // (a run-time test the compiler cannot fold, so every binding stays in use)
    if (NOP && p.k != 0u) { return; }
    w_row0 = 0u;
    x_base = p.x_off;
    u_base = p.up_off;
    y_base = p.y_off + p.row0;
    if (MOE) {
        let slot = wg.z;
        let e0 = p.row0 / p.rows;
        let e = aux[slot / 4u][slot % 4u];
        // the expert lives in another chunk: nothing to do here (uniform per workgroup)
        if (e < e0 || (e - e0) * p.rows >= p.chunk_rows) { return; }
        w_row0 = (e - e0) * p.rows;
        let xr = (slot / p.x_div) * p.x_stride;
        x_base = p.x_off + xr;
        u_base = p.up_off + xr;
        y_base = p.y_off + slot * p.rows;
    }
    let first = (wg.x + wg.y * nwg.x) * RPW;
    wg_first = first;
    // KSPLIT subgroups per row group: subgroup li / sgs takes part `part` of its blocks
    let ngr = WG / sgs / KSPLIT;
    let part = (li / sgs) % KSPLIT;
    let last = p.rows - 1u;
    let nb = kdim() / 32u;
    let rstart = first + (li / sgs / KSPLIT) * ROWS;
    var wg_ss = 0.0;
    if (DOT && !XIN) { wg_ss = quantise_x(li, lane, sgs); }
    let nq4 = (nb + 3u) / 4u;
    let step = select(sgs, SGC, SGC > 0u);
    let trips = (nb + step * KSPLIT - 1u) / (step * KSPLIT);
    if (EARLY && !NOTAIL) { load_tail_early(li, lane, first, rstart); }
    // subgroup-uniform loop: every lane of a subgroup has the same li / sgs
    for (var r0 = rstart; r0 < min(first + RPW, p.rows); r0 += ngr * ROWS) {
        var acc = vec4<f32>(0.0);
        var ss = 0.0;
        // rows past the end repeat the last row (in bounds) and are not stored
        let r1 = min(r0 + 1u, last);
        let r2 = min(r0 + 2u, last);
        let r3 = min(r0 + 3u, last);
        for (var i = 0u; i < trips && XIN; i++) {
            let b = lane + (i * KSPLIT + part) * step;
            if (FULL || b < nb) {
                let dx = bitcast<f32>(aux[2u * nb + b / 4u][b % 4u]);
                if (RMS_NORM) { ss = ss + bitcast<f32>(aux[2u * nb + nq4 + b / 4u][b % 4u]); }
                acc = dot_rows(acc, fetch(r0, b), fetch(r1, b), fetch(r2, b), fetch(r3, b),
                               aux[2u * b], aux[2u * b + 1u], dx);
            }
        }
        for (var i = 0u; i < trips && DOT && !XIN; i++) {
            let b = lane + (i * KSPLIT + part) * step;
            if (FULL || b < nb) {
                acc = dot_rows(acc, fetch(r0, b), fetch(r1, b), fetch(r2, b), fetch(r3, b),
                               xq[2u * b], xq[2u * b + 1u], xd[b]);
            }
        }
        for (var b = lane + part * sgs; b < nb && !DOT && !XIN; b += sgs * KSPLIT) {
            let i = 8u * b;
            var x0 = xin(i);
            var x1 = xin(i + 1u);
            var x2 = xin(i + 2u);
            var x3 = xin(i + 3u);
            var x4 = xin(i + 4u);
            var x5 = xin(i + 5u);
            var x6 = xin(i + 6u);
            var x7 = xin(i + 7u);
            if (RMS_NORM) {
                ss = ss + ((dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3)))
                        + ((dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7)));
                x0 = x0 * g[i];
                x1 = x1 * g[i + 1u];
                x2 = x2 * g[i + 2u];
                x3 = x3 * g[i + 3u];
                x4 = x4 * g[i + 4u];
                x5 = x5 * g[i + 5u];
                x6 = x6 * g[i + 6u];
                x7 = x7 * g[i + 7u];
            }
            acc.x = acc.x + block_dot(r0, b, x0, x1, x2, x3, x4, x5, x6, x7);
            if (ROWS > 1u) { acc.y = acc.y + block_dot(r1, b, x0, x1, x2, x3, x4, x5, x6, x7); }
            if (ROWS > 2u) { acc.z = acc.z + block_dot(r2, b, x0, x1, x2, x3, x4, x5, x6, x7); }
            if (ROWS > 3u) { acc.w = acc.w + block_dot(r3, b, x0, x1, x2, x3, x4, x5, x6, x7); }
        }
        let total = subgroupAdd(acc);
        var total_ss = subgroupAdd(ss);
        if (DOT && !XIN) { total_ss = wg_ss; }
        // NOTAIL (measurement): rows not stored (kept alive by a test no value meets)
        if (NOTAIL) {
            if (lane == 0u && dot(total, vec4<f32>(1.0)) == 1.2345e-30) { y[0] = total_ss; }
            continue;
        }
        if (KSPLIT > 1u) {
            if (lane == 0u) {
                let at = (r0 - first) * KSPLIT + part;
                kpart[at] = total.x;
                if (ROWS > 1u) { kpart[at + KSPLIT] = total.y; }
                if (ROWS > 2u) { kpart[at + 2u * KSPLIT] = total.z; }
                if (ROWS > 3u) { kpart[at + 3u * KSPLIT] = total.w; }
                // (every row group's subgroup of a part sums the same blocks in the same
                // order: the first row group's first pass writes it)
                if (r0 == first) { kss[part] = total_ss; }
            }
            continue;
        }
        if (lane == 0u) {
            let e = EARLY && r0 == rstart;
            store(r0, total.x, total_ss, e, early_res.x);
            if (ROWS > 1u) { store(r0 + 1u, total.y, total_ss, e, early_res.y); }
            if (ROWS > 2u) { store(r0 + 2u, total.z, total_ss, e, early_res.z); }
            if (ROWS > 3u) { store(r0 + 3u, total.w, total_ss, e, early_res.w); }
        }
    }
    if (KSPLIT > 1u && !NOTAIL) { finish_parts(li, first, wg_ss); }
    if (QOUT > 0u && !NOTAIL) { quantise_out(li); }
    if (MOE && MOE_SUM) { add_slots(li, wg.z / KS, wg.x + wg.y * nwg.x, first); }
}

// EARLY: what the tail reads from memory, read now. Lane 0 of each subgroup takes the
// residual of the subgroup's first ROWS rows (the rows it stores first); with QOUT 1 every
// invocation quantise_out gives four values takes their four norm weights.
fn load_tail_early(li: u32, lane: u32, first: u32, rstart: u32) {
    if (ACCUMULATE && KSPLIT > 1u && li < RPW && first + li < p.rows) {
        early_res.x = y[y_base + pair_row(first + li)];
    }
    if (ACCUMULATE && KSPLIT == 1u && lane == 0u && rstart < min(first + RPW, p.rows)) {
        let last = p.rows - 1u;
        early_res = vec4<f32>(y[y_base + pair_row(rstart)],
                              y[y_base + pair_row(min(rstart + 1u, last))],
                              y[y_base + pair_row(min(rstart + 2u, last))],
                              y[y_base + pair_row(min(rstart + 3u, last))]);
    }
    if (QOUT == 1u && first < p.rows && 4u * li < min(RPW, p.rows - first)) {
        early_g = g[(p.row0 + first + 4u * li) / 4u];
    }
}

// KSPLIT: the parts of each row added in part order and the rows stored (invocation li takes
// rows first + li, + WG, ...); the sum of squares: the parts' (each summed its own blocks'),
// or where the workgroup quantised x itself, its own.
fn finish_parts(li: u32, first: u32, wg_ss: f32) {
    workgroupBarrier();
    var ss = wg_ss;
    if (XIN || !DOT) {
        ss = 0.0;
        for (var q = 0u; q < KSPLIT; q++) { ss = ss + kss[q]; }
    }
    for (var lr = li; lr < RPW; lr += WG) {
        var v = 0.0;
        for (var q = 0u; q < KSPLIT; q++) { v = v + kpart[lr * KSPLIT + q]; }
        store(first + lr, v, ss, EARLY && lr == li, early_res.x);
    }
}

// MOE_SUM: release this slot's rows and count them; the token's last slot of the row block
// resets the count for the next dispatch, acquires the others' rows and adds them all.
fn add_slots(li: u32, t: u32, rb: u32, first: u32) {
    storageBarrier();
    if (li == 0u) {
        let done = atomicAdd(&sum_done[t * p.n_blocks + rb], 1u) + 1u;
        last_flag = select(0u, 1u, done == KS);
        if (done == KS) { atomicStore(&sum_done[t * p.n_blocks + rb], 0u); }
    }
    if (workgroupUniformLoad(&last_flag) == 0u) { return; }
    storageBarrier();
    for (var r = li; r < RPW; r += WG) {
        let row = first + r;
        if (row < p.rows) {
            var acc = 0.0;
            for (var j = 0u; j < KS; j++) {
                let s = t * KS + j;
                acc = acc + route_w[s] * y[p.y_off + s * p.rows + row];
            }
            res[t * p.rows + row] = res[t * p.rows + row] + acc;
        }
    }
}

