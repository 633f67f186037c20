// Up to four chained Q8_0 decode matvecs (matvec_q8.wgsl's XIN / QOUT chain) in one dispatch,
// the "phases" of gpu/matvec_q8.rs: the workgroups of phase p come after those of phase p - 1
// and wait, at their start, until all of those have written their quantised output; a counter
// per phase in `counters` says how many have. So a dense layer's o_proj -> gate_up -> down ->
// next qkv costs one dispatch instead of four, meant to save the drain and relaunch between
// them (about 3 us each on an H200 decode step). Measured there, the hand-over inside the
// dispatch costs as much (the last workgroup of a phase still gates the next, and waiting
// workgroups hold their slots): 305 against 323 tok/s at Qwen3-8B, so it is opt-in
// (`OMNI_Q8_PHASES=1`) for GPUs whose boundaries cost more.
//
// Why waiting cannot deadlock: a waiting workgroup only waits for workgroups with lower ids,
// which never wait for a later phase; GPUs (and lavapipe's thread pool) start workgroups in
// id order, so every workgroup waited for has started and runs to its end.
// Visibility: a workgroup's writes are released by a storage barrier (device scope in the
// SPIR-V naga writes) before its counter increment, and a waiting workgroup acquires with
// another after the wait. Every quantised vector is written once per dispatch, before any
// reader touches it (the host gives each phase its own output buffer), so no stale cached
// copy can exist.
//
// Each phase's code is the template at the end of this file, instantiated per phase with its
// own bindings and pipeline constants ({P} the phase, {N} the next): as specialised as one
// matvec_q8 dispatch (a first version that chose buffers and modes at run time in shared code
// ran each matvec 1.3-1.9x slower). At run time (uniform `p.ph[i]`): rows, strides, first
// workgroup and count, the quantised output's length, eps, output offset.
override ROWS: u32 = 4u;     // rows per subgroup pass (1..4)
override WG: u32 = 256u;
override SGC: u32 = 0u;      // the subgroup size where fixed (0: at run time)
override N_PHASES: u32 = 4u;
// PERSIST: the dispatch's workgroups (as many as are resident at once: the host's
// `Tuning::q8_persist`) take every phase in turn instead of one workgroup per tile: workgroup
// i runs tiles i, i + G, ... of phase 0, counts itself on the phase's counter, loads its
// first weights of phase 1 and waits until all G have counted, and so on. No workgroup waits
// for one that has not started, as long as all G are resident (a wait gives up after
// SPIN_LIMIT polls instead of hanging, and the output is then wrong: a measurement setting
// only). `omni bench-stream` measured this structure reading the 8B step's weights at
// 2.28-2.41 ms against 2.55 ms for one dispatch per matrix (H200, s10); with the matvec's work
// it ran 316-321 tok/s against 343-345 for separate dispatches (hand-overs 14 us per layer,
// tiles streaming slower one workgroup per SM), so it is opt-in (`OMNI_Q8_PERSIST`).
override PERSIST: bool = false;
const SPIN_LIMIT: u32 = 4000000u;
// PMODE: a measurement knob (OMNI_DEBUG_PERSIST_MODE; the output is wrong but for 0), bits
// leaving out: 1 the waits, 2 the copies of each phase's input, 4 the storage barriers, 8 the
// residual's load before an accumulating row's store, 16 the output's quantisation, 32 only
// the release barrier at a phase's end, 64 only the acquire barrier after a wait
override PMODE: u32 = 0u;
// EARLY: an accumulating phase loads the residual of each subgroup's first row of the tile
// beside its input copy (after the wait: an earlier phase of the dispatch may have written
// it), so that row's store does not start with its own round trip to memory; with one row per
// subgroup (o_proj and down at 1024 invocations) that is every row, the tile's last store
// included. Its later rows load theirs as before (`OMNI_Q8_PERSIST_EARLY`; the plain phased
// dispatch takes it too)
override EARLY: bool = false;

// (the row length, accumulate, RMSNorm and output mode are each phase's pipeline constants)
struct Phase {
    rows: u32,
    stride: u32,        // u32 words of values per row
    scale_stride: u32,  // u32 words of scales per row
    rpw: u32,           // rows per tile (<= 256; RPW_i, read here for the phase found at run time)
    wg0: u32,           // this phase's first workgroup
    wgs: u32,           // its workgroups
    qlen: u32,          // length of the quantised output
    eps_bits: u32,
    y_off: u32,
    _p0: u32,           // padding: 16 words, a uniform array's stride
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
    _p6: u32,
}

struct Params {
    ph: array<Phase, 4>,
    n: u32,        // phases
    cbase: u32,    // this dispatch's four counters in `counters`
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> w2: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> w3: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> s0: array<u32>;
@group(0) @binding(6) var<storage, read> s1: array<u32>;
@group(0) @binding(7) var<storage, read> s2: array<u32>;
@group(0) @binding(8) var<storage, read> s3: array<u32>;
@group(0) @binding(9) var<storage, read_write> y0: array<f32>;
@group(0) @binding(10) var<storage, read_write> y1: array<f32>;
@group(0) @binding(11) var<storage, read_write> y2: array<f32>;
@group(0) @binding(12) var<storage, read_write> y3: array<f32>;
// the quantised vectors: phase i reads q(i) and writes q(i + 1)
@group(0) @binding(13) var<storage, read_write> q0: array<vec4<u32>>;
@group(0) @binding(14) var<storage, read_write> q1: array<vec4<u32>>;
@group(0) @binding(15) var<storage, read_write> q2: array<vec4<u32>>;
@group(0) @binding(16) var<storage, read_write> q3: array<vec4<u32>>;
@group(0) @binding(17) var<storage, read_write> q4: array<vec4<u32>>;
// phase i's QOUT 1 norm weight
@group(0) @binding(18) var<storage, read> g0: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> g1: array<vec4<f32>>;
@group(0) @binding(20) var<storage, read> g2: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> g3: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read_write> counters: array<atomic<u32>>;

// QOUT: the tile's final rows (gpu/matvec_q8.rs PHASE_TILE_MAX: up to 256 where a persistent
// workgroup takes its whole share of a phase as one tile)
var<workgroup> yo: array<f32, 256>;
// The phase's quantised input, copied once per workgroup (K <= 12288): the vectors are bound
// writable (a phase writes what the next reads), and NVIDIA serves writable buffers' loads
// without the L1 cache, so reading x from them in the block loop ran each matvec 1.1-1.4x
// slower than matvec_q8, which reads it through a read-only binding.
var<workgroup> xs: array<vec4<u32>, 768>;
var<workgroup> xsd: array<f32, 384>;   // block scales
var<workgroup> xss: array<f32, 384>;   // block sums of squares (RMS)

// Blk, dot_i8 and block_reduce: q8_block.wgsl

// Wait until every workgroup of the previous phase has written its output (phase 0 waits for
// nothing: its input comes from an earlier dispatch). A phase calls this after issuing its
// prefetched weight loads, so their memory round trip overlaps the wait.
fn wait_previous(li: u32, ph: u32, all: u32) {
    if (ph > 0u) {
        if (li == 0u && (PMODE & 1u) == 0u) {
            let want = select(p.ph[ph - 1u].wgs, all, PERSIST);
            var n = 0u;
            loop {
                if (atomicLoad(&counters[p.cbase + ph - 1u]) >= want) { break; }
                n += 1u;
                if (PERSIST && n > SPIN_LIMIT) { break; }
            }
        }
        workgroupBarrier();
        if ((PMODE & 68u) == 0u) { storageBarrier(); }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
    let lin = wg.x + wg.y * nwg.x;
    if (PERSIST) {
        persist(li, lane, sgs, lin, nwg.x * nwg.y);
        return;
    }
    var ph = 0u;
    for (var i = 1u; i < N_PHASES; i++) {
        if (lin >= p.ph[i].wg0) { ph = i; }
    }
    let first = (lin - p.ph[ph].wg0) * p.ph[ph].rpw;
    // one case per phase of this pipeline (the host writes them: phases_source)
    switch ph {
        // {CASES}
        default: {}
    }
    if (N_PHASES == 1u) { return; }
    // release this workgroup's writes for the next phase, then count it; the last workgroup
    // of the last phase resets the counters for the next dispatch (every wait has been passed
    // by then)
    if (ph + 1u < N_PHASES) { storageBarrier(); }
    if (li == 0u) {
        let done = atomicAdd(&counters[p.cbase + ph], 1u) + 1u;
        if (ph + 1u == N_PHASES && done == p.ph[ph].wgs) {
            for (var i = 0u; i < N_PHASES; i++) { atomicStore(&counters[p.cbase + i], 0u); }
        }
    }
}

// PERSIST: every phase by all `all` workgroups in turn (see PERSIST). A workgroup with no
// tile in a phase still counts itself; the first tile of a phase waits for the previous
// phase's count and copies the phase's input, the workgroup's later tiles reuse it. The last
// workgroup to finish resets the counters for the next dispatch (every wait is passed then).
fn persist(li: u32, lane: u32, sgs: u32, lin: u32, all: u32) {
    for (var ph = 0u; ph < N_PHASES; ph++) {
        var fresh = true;
        for (var t = lin; t < p.ph[ph].wgs; t += all) {
            let first = t * p.ph[ph].rpw;
            switch ph {
                // {PCASES}
                default: {}
            }
            fresh = false;
        }
        if ((PMODE & 36u) == 0u) { storageBarrier(); } else { workgroupBarrier(); }
        if (li == 0u) {
            let done = atomicAdd(&counters[p.cbase + ph], 1u) + 1u;
            if (ph + 1u == N_PHASES && done == all) {
                for (var i = 0u; i < N_PHASES; i++) { atomicStore(&counters[p.cbase + i], 0u); }
            }
        }
    }
}

// ---- phase template ----
// Phase {P}: weights w{P} / s{P}, output y{P}, quantised input q{P}, quantised output q{N}.
override K_{P}: u32 = 32u;      // row length
override RPW_{P}: u32 = 32u;    // rows per tile (<= 256)
override ACC_{P}: bool = false; // add into y
override RMS_{P}: bool = false; // divide by the input's RMS
override QOUT_{P}: u32 = 0u;    // 0 none, 1 normed (weight g{P} folded in), 2 SwiGLU pairs
override PRE_{P}: u32 = 0u;     // block trips of the first row group loaded before the wait (0..2)

fn pair_row_{P}(r: u32) -> u32 {
    if (QOUT_{P} == 2u) {
        return ((r / 32u) % 2u) * p.ph[{P}].qlen + (r / 64u) * 32u + r % 32u;
    }
    return r;
}

fn fetch_{P}(lrow: u32, b: u32) -> Blk {
    let row = pair_row_{P}(lrow);
    let base = row * (p.ph[{P}].stride / 4u) + 2u * b;
    let s2 = unpack2x16float(s{P}[row * p.ph[{P}].scale_stride + b / 2u]);
    return Blk(w{P}[base], w{P}[base + 1u], select(s2.x, s2.y, (b & 1u) == 1u));
}

// (early: the residual of `row`, already loaded, where `have`)
fn store_{P}(row: u32, first: u32, v: f32, total_ss: f32, early: f32, have: bool) {
    if (row >= p.ph[{P}].rows) { return; }
    var r = v;
    if (RMS_{P}) { r = r / sqrt(total_ss / f32(K_{P}) + bitcast<f32>(p.ph[{P}].eps_bits)); }
    let o = p.ph[{P}].y_off + pair_row_{P}(row);
    if (ACC_{P} && have) {
        r = early + r;
    } else if (ACC_{P} && (PMODE & 8u) == 0u) {
        r = y{P}[o] + r;
    }
    y{P}[o] = r;
    if (QOUT_{P} > 0u) { yo[row - first] = r; }
}

fn quantise_out_{P}(li: u32, first: u32) {
    workgroupBarrier();
    let rows_all = p.ph[{P}].rows;
    let rows = select(0u, min(RPW_{P}, rows_all - first), first < rows_all);
    let n = select(rows, rows / 2u, QOUT_{P} == 2u);
    let i = 4u * li;
    let mine = i < n;
    var v = vec4<f32>(0.0);
    var t = vec4<f32>(0.0);
    var at = first + i;
    if (mine) {
        if (QOUT_{P} == 1u) {
            v = vec4<f32>(yo[i], yo[i + 1u], yo[i + 2u], yo[i + 3u]);
            t = v * g{P}[at / 4u];
        } else {
            at = first / 2u + i;
            let gi = (i / 32u) * 64u + i % 32u;
            let a = vec4<f32>(yo[gi], yo[gi + 1u], yo[gi + 2u], yo[gi + 3u]);
            let u = vec4<f32>(yo[gi + 32u], yo[gi + 33u], yo[gi + 34u], yo[gi + 35u]);
            t = a / (vec4<f32>(1.0) + exp(-a)) * u;
        }
    }
    let ms = block_reduce(t, v);
    let m = ms.x;
    if (mine) {
        let inv = select(0.0, 127.0 / m, m > 0.0);
        let w = at / 4u;
        q{N}[w / 4u][w % 4u] = pack4xI8(vec4<i32>(round(t * inv)));
        if (li % 8u == 0u) {
            let nbq = p.ph[{P}].qlen / 32u;
            let d = 8u * nbq + at / 32u;
            q{N}[d / 4u][d % 4u] = bitcast<u32>(m / 127.0);
            if (QOUT_{P} == 1u) {
                let e = 8u * nbq + 4u * ((nbq + 3u) / 4u) + at / 32u;
                q{N}[e / 4u][e % 4u] = bitcast<u32>(ms.y);
            }
        }
    }
}

// The weights do not depend on the previous phase: the first PRE_{P} block trips of the
// subgroup's first row group are loaded into registers before the wait (rows and blocks
// clamped in bounds; the block loop uses them only where they are real). Waiting then
// overlaps their memory round trip instead of preceding it.
fn run_{P}(li: u32, lane: u32, sgs: u32, first: u32, ph: u32, all: u32, fresh: bool) {
    let rows_all = p.ph[{P}].rows;
    let nsg = WG / sgs;
    let last = rows_all - 1u;
    let nb = K_{P} / 32u;
    let nq4 = (nb + 3u) / 4u;
    let step = select(sgs, SGC, SGC > 0u);
    let trips = (nb + step - 1u) / step;
    let rstart = first + (li / sgs) * ROWS;
    let pr = min(rstart, last);
    let pb0 = min(lane, nb - 1u);
    let pb1 = min(lane + step, nb - 1u);
    var a0: Blk; var a1: Blk; var a2: Blk; var a3: Blk;
    var c0: Blk; var c1: Blk; var c2: Blk; var c3: Blk;
    if (PRE_{P} > 0u) {
        a0 = fetch_{P}(pr, pb0);
        if (ROWS > 1u) { a1 = fetch_{P}(min(pr + 1u, last), pb0); }
        if (ROWS > 2u) { a2 = fetch_{P}(min(pr + 2u, last), pb0); }
        if (ROWS > 3u) { a3 = fetch_{P}(min(pr + 3u, last), pb0); }
    }
    if (PRE_{P} > 1u) {
        c0 = fetch_{P}(pr, pb1);
        if (ROWS > 1u) { c1 = fetch_{P}(min(pr + 1u, last), pb1); }
        if (ROWS > 2u) { c2 = fetch_{P}(min(pr + 2u, last), pb1); }
        if (ROWS > 3u) { c3 = fetch_{P}(min(pr + 3u, last), pb1); }
    }
    // (PERSIST: the phase's first tile of this workgroup waits and copies, later ones reuse)
    if (fresh) {
        wait_previous(li, ph, all);
    }
    if (fresh && (PMODE & 2u) == 0u) {
        for (var i = li; i < 2u * nb; i += WG) { xs[i] = q{P}[i]; }
        for (var i = li; i < nb; i += WG) {
            xsd[i] = bitcast<f32>(q{P}[2u * nb + i / 4u][i % 4u]);
            if (RMS_{P}) { xss[i] = bitcast<f32>(q{P}[2u * nb + nq4 + i / 4u][i % 4u]); }
        }
    }
    var early = 0.0;
    let have = EARLY && ACC_{P} && rstart < rows_all && (PMODE & 8u) == 0u;
    if (have && lane == 0u) { early = y{P}[p.ph[{P}].y_off + pair_row_{P}(rstart)]; }
    workgroupBarrier();
    // subgroup-uniform loop: every lane of a subgroup has the same li / sgs
    for (var r0 = rstart; r0 < min(first + RPW_{P}, rows_all); r0 += nsg * ROWS) {
        var acc = vec4<f32>(0.0);
        var ss = 0.0;
        // rows past the end repeat the last row (in bounds) and are not stored
        let r1 = min(r0 + 1u, last);
        let r2 = min(r0 + 2u, last);
        let r3 = min(r0 + 3u, last);
        for (var i = 0u; i < trips; i++) {
            let b = lane + i * step;
            if (b < nb) {
                let xa = xs[2u * b];
                let xb = xs[2u * b + 1u];
                let dx = xsd[b];
                if (RMS_{P}) { ss = ss + xss[b]; }
                var k0: Blk; var k1: Blk; var k2: Blk; var k3: Blk;
                if (PRE_{P} > 0u && i == 0u && r0 == rstart) {
                    k0 = a0; k1 = a1; k2 = a2; k3 = a3;
                } else if (PRE_{P} > 1u && i == 1u && r0 == rstart) {
                    k0 = c0; k1 = c1; k2 = c2; k3 = c3;
                } else {
                    k0 = fetch_{P}(r0, b);
                    if (ROWS > 1u) { k1 = fetch_{P}(r1, b); }
                    if (ROWS > 2u) { k2 = fetch_{P}(r2, b); }
                    if (ROWS > 3u) { k3 = fetch_{P}(r3, b); }
                }
                acc.x = acc.x + dot_i8(k0, xa, xb, dx);
                if (ROWS > 1u) { acc.y = acc.y + dot_i8(k1, xa, xb, dx); }
                if (ROWS > 2u) { acc.z = acc.z + dot_i8(k2, xa, xb, dx); }
                if (ROWS > 3u) { acc.w = acc.w + dot_i8(k3, xa, xb, dx); }
            }
        }
        let total = subgroupAdd(acc);
        let total_ss = subgroupAdd(ss);
        if (lane == 0u) {
            store_{P}(r0, first, total.x, total_ss, early, have && r0 == rstart);
            if (ROWS > 1u) { store_{P}(r0 + 1u, first, total.y, total_ss, 0.0, false); }
            if (ROWS > 2u) { store_{P}(r0 + 2u, first, total.z, total_ss, 0.0, false); }
            if (ROWS > 3u) { store_{P}(r0 + 3u, first, total.w, total_ss, 0.0, false); }
        }
    }
    if (QOUT_{P} > 0u && (PMODE & 16u) == 0u) {
        quantise_out_{P}(li, first);
        // (PERSIST: the next tile's rows overwrite `yo`)
        workgroupBarrier();
    }
}
