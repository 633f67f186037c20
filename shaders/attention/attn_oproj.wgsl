// Decode attention and the o_proj matvec after it in one dispatch (decode.wgsl comes first in
// the module; its attention runs with QOUT). The first heads x chunks workgroups are the
// attention's; the rest take o_proj's rows, 32 each (one block of its quantised output). An o_proj workgroup loads all of
// its weights (32 rows: 139 KB at K = 4096) into registers first, since they do not depend on
// the attention, then waits until every head has written its quantised output (a device
// counter), copies that vector into workgroup memory and finishes its rows from registers.
// The attention is latency-bound (~5 us per layer on an H200) and leaves the memory idle: this
// way o_proj's weights stream while it runs, and the boundary between the two is gone.
//
// Workgroups wait only on workgroups of lower id (the attention's), which a GPU that starts
// workgroups in id order has started before them: no deadlock however few fit at once.
//
// Each o_proj row is TPR = WG / 32 invocations, each of them OBPT blocks (b = t + TPR i); the
// row sums their partials in index order. Always res += W x; OQOUT: the rows also go quantised
// with the next RMSNorm's weight folded in (matvec_q8.wgsl's QOUT 1 format).
override OKB: u32 = 128u;                     // blocks of 32 per o_proj row (K / 32)
override TPR: u32 = WG / 32u;                 // invocations per row
override OBPT: u32 = (OKB + TPR - 1u) / TPR;  // blocks per invocation, at most 8 (host checks)
override OQOUT: bool = true;
// OMODE: a measurement knob (OMNI_DEBUG_OPROJ_MODE; every mode but 0 gives wrong output):
// 1 o_proj does not wait for the attention, 2 the attention returns at once, 3 o_proj loads its
// weights after the wait, 4 o_proj returns at once, 5 both return at once
override OMODE: u32 = 0u;

@group(0) @binding(12) var<storage, read> ow: array<vec4<u32>>;   // (o_rows, o_stride4)
@group(0) @binding(13) var<storage, read> osc: array<u32>;        // (o_rows, o_sstride) f16 pairs
@group(0) @binding(14) var<storage, read_write> res: array<f32>;  // the residual stream
@group(0) @binding(15) var<storage, read> og: array<f32>;         // OQOUT: the next norm weight
@group(0) @binding(16) var<storage, read_write> oq: array<u32>;   // OQOUT: the rows quantised
// [0] heads whose output is final, [1] o_proj workgroups past their wait (the last resets both)
@group(0) @binding(17) var<storage, read_write> sync: array<atomic<u32>>;

// Workgroup memory: o_proj's workgroups run no attention, so they reuse the attention's f32
// arrays (decode.wgsl) where they hold f32 values: `ov` the block scales of the attention's
// output, `dots` the invocations' partial sums, `sc` / `pe` the workgroup's 32
// final rows and the same times the norm weight. The int8 words get an array of their own:
// through an f32 array they would pass as NaN and subnormal bit patterns, which a compiler may
// change. (Reusing the arrays measured the same as declaring all of them anew, s9 run 3.)
var<workgroup> xw: array<vec4<u32>, 256>;  // the attention's output as int8 (K <= 4096)

fn xsd(b: u32) -> f32 {
    return ov[b / 4u][b % 4u];
}

// Block i of an invocation as a dot with the copied input (zero past the row's blocks).
fn oblock(i: u32, t: u32, qa: vec4<u32>, qb: vec4<u32>, d: f32) -> f32 {
    let b = t + TPR * i;
    if (i >= OBPT || b >= OKB) { return 0.0; }
    let xa = xw[2u * b];
    let xb = xw[2u * b + 1u];
    let s = dot4I8Packed(qa.x, xa.x) + dot4I8Packed(qa.y, xa.y) + dot4I8Packed(qa.z, xa.z)
          + dot4I8Packed(qa.w, xa.w) + dot4I8Packed(qb.x, xb.x) + dot4I8Packed(qb.y, xb.y)
          + dot4I8Packed(qb.z, xb.z) + dot4I8Packed(qb.w, xb.w);
    return d * xsd(b) * f32(s);
}

// The f16 scale of block b of `row`.
fn oscale(row: u32, b: u32) -> f32 {
    let s2 = unpack2x16float(osc[row * p.o_sstride + b / 2u]);
    return select(s2.x, s2.y, (b & 1u) == 1u);
}

// An invocation's weights: block i is (a_i | b_i) with scale d_i.
struct OW {
    a0: vec4<u32>, b0: vec4<u32>, a1: vec4<u32>, b1: vec4<u32>,
    a2: vec4<u32>, b2: vec4<u32>, a3: vec4<u32>, b3: vec4<u32>,
    a4: vec4<u32>, b4: vec4<u32>, a5: vec4<u32>, b5: vec4<u32>,
    a6: vec4<u32>, b6: vec4<u32>, a7: vec4<u32>, b7: vec4<u32>,
    d: array<f32, 8>,
}

// Every weight load of an invocation (row `row`, blocks t + TPR i), issued together; the
// constants drop the ones past OBPT.
fn load_weights(row: u32, t: u32) -> OW {
    var o: OW;
    let wb = row * p.o_stride4;
    if (row < p.o_rows) {
        if (t < OKB) { o.a0 = ow[wb + 2u * t]; o.b0 = ow[wb + 2u * t + 1u]; o.d[0] = oscale(row, t); }
        let c1 = t + TPR;
        if (OBPT > 1u && c1 < OKB) { o.a1 = ow[wb + 2u * c1]; o.b1 = ow[wb + 2u * c1 + 1u]; o.d[1] = oscale(row, c1); }
        let c2 = t + 2u * TPR;
        if (OBPT > 2u && c2 < OKB) { o.a2 = ow[wb + 2u * c2]; o.b2 = ow[wb + 2u * c2 + 1u]; o.d[2] = oscale(row, c2); }
        let c3 = t + 3u * TPR;
        if (OBPT > 3u && c3 < OKB) { o.a3 = ow[wb + 2u * c3]; o.b3 = ow[wb + 2u * c3 + 1u]; o.d[3] = oscale(row, c3); }
        let c4 = t + 4u * TPR;
        if (OBPT > 4u && c4 < OKB) { o.a4 = ow[wb + 2u * c4]; o.b4 = ow[wb + 2u * c4 + 1u]; o.d[4] = oscale(row, c4); }
        let c5 = t + 5u * TPR;
        if (OBPT > 5u && c5 < OKB) { o.a5 = ow[wb + 2u * c5]; o.b5 = ow[wb + 2u * c5 + 1u]; o.d[5] = oscale(row, c5); }
        let c6 = t + 6u * TPR;
        if (OBPT > 6u && c6 < OKB) { o.a6 = ow[wb + 2u * c6]; o.b6 = ow[wb + 2u * c6 + 1u]; o.d[6] = oscale(row, c6); }
        let c7 = t + 7u * TPR;
        if (OBPT > 7u && c7 < OKB) { o.a7 = ow[wb + 2u * c7]; o.b7 = ow[wb + 2u * c7 + 1u]; o.d[7] = oscale(row, c7); }
    }
    return o;
}

fn oproj(li: u32, ow_id: u32) {
    if (OMODE == 4u || OMODE == 5u) { return; }
    let row0 = ow_id * 32u;
    let row = row0 + li / TPR;
    let t = li % TPR;
    // every weight load first (they do not depend on the attention)
    var wr: OW;
    if (OMODE != 3u) { wr = load_weights(row, t); }
    // the residual and the next norm's weight of the workgroup's rows (written before this
    // dispatch: no wait needed)
    var r_old = 0.0;
    var g = 0.0;
    if (li < 32u && row0 + li < p.o_rows) {
        r_old = res[row0 + li];
        if (OQOUT) { g = og[row0 + li]; }
    }
    // wait for every head (acquire: the device-scope storage barrier after the workgroup's)
    if (li == 0u && OMODE != 1u) {
        loop {
            if (atomicLoad(&sync[0]) >= p.heads) { break; }
        }
    }
    workgroupBarrier();
    storageBarrier();
    // the attention's quantised output into workgroup memory: its buffer is bound writable,
    // and NVIDIA serves loads from writable buffers without the L1 cache
    if (li < 2u * OKB) {
        xw[li] = vec4<u32>(qout[4u * li], qout[4u * li + 1u], qout[4u * li + 2u], qout[4u * li + 3u]);
    }
    if (li < OKB) { ov[li / 4u][li % 4u] = bitcast<f32>(qout[8u * OKB + li]); }
    // count this workgroup past its wait; the last one resets both counts for the next layer
    if (li == 0u) {
        let past = atomicAdd(&sync[1], 1u) + 1u;
        if (past == p.o_rows / 32u) {
            atomicStore(&sync[0], 0u);
            atomicStore(&sync[1], 0u);
        }
    }
    if (OMODE == 3u) { wr = load_weights(row, t); }
    workgroupBarrier();
    let part = ((oblock(0u, t, wr.a0, wr.b0, wr.d[0]) + oblock(1u, t, wr.a1, wr.b1, wr.d[1]))
              + (oblock(2u, t, wr.a2, wr.b2, wr.d[2]) + oblock(3u, t, wr.a3, wr.b3, wr.d[3])))
              + ((oblock(4u, t, wr.a4, wr.b4, wr.d[4]) + oblock(5u, t, wr.a5, wr.b5, wr.d[5]))
              + (oblock(6u, t, wr.a6, wr.b6, wr.d[6]) + oblock(7u, t, wr.a7, wr.b7, wr.d[7])));
    oproj_finish(li, row0, part, r_old, g);
}

// The rows from the invocations' partial sums, added to the residual, and (OQOUT) the block
// quantised; loops over workgroup memory, in index order. (Subgroup shuffles instead, on an
// H200: no measurable difference, s9 run 5; the tail is the hand-over's memory round trips.)
fn oproj_finish(li: u32, row0: u32, part: f32, r_old: f32, g: f32) {
    dots[li] = part;
    workgroupBarrier();
    if (li < 32u) {
        var acc = 0.0;
        for (var j = 0u; j < TPR; j++) { acc = acc + dots[li * TPR + j]; }
        let y = r_old + acc;
        sc[li / 4u][li % 4u] = y;
        pe[li / 4u][li % 4u] = y * g;
        if (row0 + li < p.o_rows) { res[row0 + li] = y; }
    }
    if (!OQOUT) { return; }
    workgroupBarrier();
    // the 32 rows are one block: its largest |y g| and sum of squares of y
    if (li < 8u) {
        var m = 0.0;
        var ss = 0.0;
        for (var j = 0u; j < 8u; j++) {
            let a = abs(pe[j]);
            m = max(m, max(max(a.x, a.y), max(a.z, a.w)));
            ss = ss + dot(sc[j], sc[j]);
        }
        let inv = select(0.0, 127.0 / m, m > 0.0);
        oq[(row0 + 4u * li) / 4u] = pack4xI8(vec4<i32>(round(pe[li] * inv)));
        // the block's scale and sum of squares (matvec_q8.wgsl's QOUT 1 layout)
        if (li == 0u) {
            let nbq = p.o_rows / 32u;
            oq[8u * nbq + row0 / 32u] = bitcast<u32>(m / 127.0);
            oq[8u * nbq + 4u * ((nbq + 3u) / 4u) + row0 / 32u] = bitcast<u32>(ss);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // one id over a grid that wraps at 65535 workgroups per dimension
    let id = wg.x + wg.y * nwg.x;
    let n_attn = p.heads * ((step.kv_len + CHUNK - 1u) / CHUNK);
    if (id >= n_attn + p.o_rows / 32u) { return; }
    if (id < n_attn) {
        if (OMODE == 2u || OMODE == 5u) {
            if (li == 0u && id < p.heads) { atomicAdd(&sync[0], 1u); }
            return;
        }
        let done = attend(li, id % p.heads, id / p.heads);
        // release the head's output, then count it
        storageBarrier();
        if (done && li == 0u) { atomicAdd(&sync[0], 1u); }
        return;
    }
    oproj(li, id - n_attn);
}
