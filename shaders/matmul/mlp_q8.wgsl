// A dense layer's whole feed-forward block for one token (decode), Q8_0 weights, as ONE
// dispatch: gate_up, SwiGLU and down, added to the residual stream. Unfused it is two
// dispatches (gate_up, then down over the whole SwiGLU vector) and a device-wide boundary
// between them; here the intermediate vector is cut into slices of SLICE values, one per
// workgroup, and workgroup s
//   1. computes its SLICE gate rows and SLICE up rows from the quantised, normed input `xq`
//      (the o_proj's QOUT 1 output: int8 blocks, block scales, sums of squares for the RMS),
//   2. forms silu(gate) * up and quantises it to int8 blocks (the Q8_0 rule, as the unfused
//      chain's QOUT 2 does),
//   3. multiplies it with its SLICE columns of down (a split of down along K) and adds the
//      HC partial sums into the residual stream `acc` with integer atomics.
// `acc` is fixed point so the adds are exact and order-independent (float atomics do not
// exist in WGSL, and a compare-exchange loop would serialise the workgroups): value v is
// hi + lo / 2^16 in units of 2^-8, hi = floor(v * 2^8) as i32 at acc[r], lo the remaining
// fraction as u32 at acc[HC + r] (each add at most 2^16, so a lo word takes 2^16 adds: one
// per slice and one for the residual's start). hi holds |v| < 2^23. Resolution 2^-24, range
// +-8.4e6 (docs/kernels.md).
// Every invocation uses the int8 helpers of q8_block.wgsl (prepended).
override WG: u32 = 512;
override SLICE: u32 = 96;   // intermediate values per workgroup: a multiple of 32, <= 128
override HC: u32 = 4096;    // hidden size: gate_up's K and down's rows, a multiple of 32
override ROWS: u32 = 4;     // gate / up rows a subgroup computes together (1..4)
override SGC: u32 = 0u;     // the subgroup size where the adapter has only one (0: at run time)
override NOP: bool = false; // a measurement knob (OMNI_DEBUG_NOP=mlp_q8): return at once
// STOP: return after stage 1, 2 or 3 (OMNI_DEBUG_MLP_STOP, a measurement knob: output wrong)
override STOP: u32 = 0u;

struct Params {
    inter: u32,        // intermediate size: gate_up's rows / 2, down's K
    gu_stride: u32,    // u32 words of values per gate_up row (HC / 4)
    gu_sstride: u32,   // u32 words of scales per gate_up row (two f16 each)
    dn_stride: u32,    // ... per down row (inter / 4)
    dn_sstride: u32,
    eps_bits: u32,     // the RMSNorm's epsilon (the input arrives normed but not divided)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gu: array<vec4<u32>>;   // (2 inter, HC): gate | up
@group(0) @binding(2) var<storage, read> gus: array<u32>;
@group(0) @binding(3) var<storage, read> dn: array<vec4<u32>>;   // (HC, inter)
@group(0) @binding(4) var<storage, read> dns: array<u32>;
@group(0) @binding(5) var<storage, read> xq: array<vec4<u32>>;   // quantised normed input
@group(0) @binding(6) var<storage, read_write> acc: array<atomic<u32>>;  // (2 HC) fixed point

var<workgroup> gv: array<f32, 256>;          // the slice's gate values, then its up values
var<workgroup> aq: array<vec4<u32>, 8>;      // silu(gate) * up as int8: two vec4 per block
var<workgroup> ad: array<f32, 4>;            // ... and its block scales
const PART: u32 = 4096u;
var<workgroup> part: array<f32, 4096>;       // down's partial sums of PART rows at a time

fn gu_blk(row: u32, b: u32) -> Blk {
    let base = row * (p.gu_stride / 4u) + 2u * b;
    let s2 = unpack2x16float(gus[row * p.gu_sstride + b / 2u]);
    return Blk(gu[base], gu[base + 1u], select(s2.x, s2.y, (b & 1u) == 1u));
}

fn dn_blk(row: u32, b: u32) -> Blk {
    let base = row * (p.dn_stride / 4u) + 2u * b;
    let s2 = unpack2x16float(dns[row * p.dn_sstride + b / 2u]);
    return Blk(dn[base], dn[base + 1u], select(s2.x, s2.y, (b & 1u) == 1u));
}

// The weight row of the slice's logical row lr: its gate rows first, then its up rows.
fn gu_row(s: u32, lr: u32) -> u32 {
    let j = s * SLICE + lr;
    return select(j, p.inter + j - SLICE, lr >= SLICE);
}

// v added to the fixed-point value of row r (two atomics whose results nobody waits for).
fn add_fixed(r: u32, v: f32) {
    let t = v * 256.0;
    let hi = floor(t);
    let lo = u32(round((t - hi) * 65536.0));
    atomicAdd(&acc[r], bitcast<u32>(i32(hi)));
    atomicAdd(&acc[HC + r], lo);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
    // (a run-time test the compiler cannot fold, so every binding stays in use)
    if (NOP && p.inter != 0u) { return; }
    let s = wg.x + wg.y * nwg.x;
    // 1. gate and up rows of the slice: a subgroup takes ROWS rows together, its lanes the
    //    K blocks, sharing each input block across the rows
    let nb = HC / 32u;
    let nq4 = (nb + 3u) / 4u;
    let step = select(sgs, SGC, SGC > 0u);
    let trips = (nb + step - 1u) / step;
    let nsg = WG / sgs;
    let last = 2u * SLICE - 1u;
    let eps = bitcast<f32>(p.eps_bits);
    // subgroup-uniform loop: every lane of a subgroup has the same li / sgs
    for (var r0 = (li / sgs) * ROWS; r0 < 2u * SLICE; r0 += nsg * ROWS) {
        var a = vec4<f32>(0.0);
        var ss = 0.0;
        // rows past the slice repeat its last (in bounds) and are not stored
        let w0 = gu_row(s, r0);
        let w1 = gu_row(s, min(r0 + 1u, last));
        let w2 = gu_row(s, min(r0 + 2u, last));
        let w3 = gu_row(s, min(r0 + 3u, last));
        for (var i = 0u; i < trips; i++) {
            let b = lane + i * step;
            if (b < nb) {
                let dx = bitcast<f32>(xq[2u * nb + b / 4u][b % 4u]);
                ss = ss + bitcast<f32>(xq[2u * nb + nq4 + b / 4u][b % 4u]);
                let xa = xq[2u * b];
                let xb = xq[2u * b + 1u];
                a.x = a.x + dot_i8(gu_blk(w0, b), xa, xb, dx);
                if (ROWS > 1u) { a.y = a.y + dot_i8(gu_blk(w1, b), xa, xb, dx); }
                if (ROWS > 2u) { a.z = a.z + dot_i8(gu_blk(w2, b), xa, xb, dx); }
                if (ROWS > 3u) { a.w = a.w + dot_i8(gu_blk(w3, b), xa, xb, dx); }
            }
        }
        let total = subgroupAdd(a);
        let total_ss = subgroupAdd(ss);
        if (lane == 0u) {
            let inv_rms = 1.0 / sqrt(total_ss / f32(HC) + eps);
            gv[r0] = total.x * inv_rms;
            if (ROWS > 1u && r0 + 1u <= last) { gv[r0 + 1u] = total.y * inv_rms; }
            if (ROWS > 2u && r0 + 2u <= last) { gv[r0 + 2u] = total.z * inv_rms; }
            if (ROWS > 3u && r0 + 3u <= last) { gv[r0 + 3u] = total.w * inv_rms; }
        }
    }
    workgroupBarrier();
    if (STOP == 1u) { return; }
    // 2. silu(gate) * up, quantised in blocks of 32: invocation li takes four values, eight
    //    neighbouring lanes a block (every invocation takes part in the shuffles)
    let i = 4u * li;
    let mine = i < SLICE;
    var t = vec4<f32>(0.0);
    if (mine) {
        let g = vec4<f32>(gv[i], gv[i + 1u], gv[i + 2u], gv[i + 3u]);
        let u = vec4<f32>(gv[SLICE + i], gv[SLICE + i + 1u], gv[SLICE + i + 2u],
                          gv[SLICE + i + 3u]);
        t = g / (vec4<f32>(1.0) + exp(-g)) * u;
    }
    let m = block_reduce(t, t).x;
    if (mine) {
        let inv = select(0.0, 127.0 / m, m > 0.0);
        aq[2u * (i / 32u) + (i % 32u) / 16u][(i % 16u) / 4u] = pack4xI8(vec4<i32>(round(t * inv)));
        if (i % 32u == 0u) { ad[i / 32u] = m / 127.0; }
    }
    workgroupBarrier();
    if (STOP == 2u) { return; }
    // 3. the slice's columns of down. A row's SLICE / 32 blocks are contiguous in memory: a
    //    group of G neighbouring lanes takes one row, a block each, and sums by shuffles, so
    //    a subgroup's loads cover a few whole lines. A lane loads the blocks of 8 rows before
    //    the first is used (one memory round trip per 8 rows, not per row), the sums go to
    //    workgroup memory, and only then come the atomics (4. below): a loop with atomics in
    //    it ran one round trip per row (down at 1.8 TB/s). Uniform loops: every lane shuffles.
    let nbs = SLICE / 32u;
    let gsz = select(select(4u, 2u, nbs == 2u), 1u, nbs == 1u);
    let j = li % gsz;
    let jb = min(j, nbs - 1u);
    let b = s * nbs + jb;
    let xa = aq[2u * jb];
    let xb = aq[2u * jb + 1u];
    let dx = select(0.0, ad[jb], j < nbs);
    let span = WG / gsz;
    let lr = li / gsz;
    for (var c0 = 0u; c0 < HC; c0 += PART) {
        let rows = min(PART, HC - c0);
        let top = c0 + rows - 1u;
        for (var base = 0u; base < rows; base += 8u * span) {
            let r = c0 + base + lr;
            let k0 = dn_blk(min(r, top), b);
            let k1 = dn_blk(min(r + span, top), b);
            let k2 = dn_blk(min(r + 2u * span, top), b);
            let k3 = dn_blk(min(r + 3u * span, top), b);
            let k4 = dn_blk(min(r + 4u * span, top), b);
            let k5 = dn_blk(min(r + 5u * span, top), b);
            let k6 = dn_blk(min(r + 6u * span, top), b);
            let k7 = dn_blk(min(r + 7u * span, top), b);
            var v = vec4<f32>(dot_i8(k0, xa, xb, dx), dot_i8(k1, xa, xb, dx),
                              dot_i8(k2, xa, xb, dx), dot_i8(k3, xa, xb, dx));
            var w = vec4<f32>(dot_i8(k4, xa, xb, dx), dot_i8(k5, xa, xb, dx),
                              dot_i8(k6, xa, xb, dx), dot_i8(k7, xa, xb, dx));
            if (gsz > 1u) {
                v = v + subgroupShuffleXor(v, 1u);
                w = w + subgroupShuffleXor(w, 1u);
            }
            if (gsz > 2u) {
                v = v + subgroupShuffleXor(v, 2u);
                w = w + subgroupShuffleXor(w, 2u);
            }
            if (j == 0u) {
                let p0 = base + lr;
                for (var k = 0u; k < 4u; k++) {
                    if (p0 + k * span < rows) { part[p0 + k * span] = v[k]; }
                    if (p0 + (k + 4u) * span < rows) { part[p0 + (k + 4u) * span] = w[k]; }
                }
            }
        }
        workgroupBarrier();
        if (STOP == 3u) { return; }
        // 4. the partial sums into the residual stream (consecutive lanes, consecutive rows)
        for (var r = li; r < rows; r += WG) { add_fixed(c0 + r, part[r]); }
        workgroupBarrier();
    }
}
