// The shared body of the prefill matmul: Y[t][y_off + row0 + n] (+)= sum_k X[t][k] * W[n][k]
// for the rows of one weight chunk. The pipeline cache prepends a weight-format part
// (matmul_w16.wgsl: BF16 / F16; matmul_wq8.wgsl: Q8_0) that declares `w` (and `sc`) and
// `wval(n, k)` (one weight, any shape) and, for the VEC path, `WReg`, `fetch_w(li, n0, k0)`
// (global loads into registers) and `put_w(li, WReg)` (into the tile); everything else is here,
// once.
// 64 (t) x 128 (n) output tile per workgroup (16 x 16 invocations, 4 x 8 outputs each held in
// eight vec4 registers), K in steps of 16 through workgroup memory. (A 128 x 128 tile with
// 8 x 8 private arrays ran 6x slower on an H200: the arrays spilled; named vec4 registers do
// not.) The token count comes from the step uniform. ACCUMULATE adds into Y; SWIGLU reads
// silu(X[t][k]) * X[t][up_off + k].
// VEC (K a multiple of 16, x_ld and up_off multiples of 4): each invocation fills the tiles with
// one or two 16-byte loads along K instead of twelve scalar loads across rows, which left the
// kernel bound by L1 transactions (22.9% of f32 peak on an H200 before). The VEC path is double
// buffered through registers: the next k-step's loads are issued before this step's products,
// so their latency hides behind the arithmetic instead of stalling every step (a short-T
// matmul on few workgroups, like the audio encoder's 65-token layers, was a chain of 80 such
// stalls).
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;
override VEC: bool = false;
// GATHER (mixture-of-experts prefill): workgroup z is an expert; its rows of X are the slots
// routed to it, listed by moe_group in `groups` (E + 1 offsets, then slot ids grouped by
// expert); slot s reads X row s / x_div and writes Y row s; W is that expert's block of `rows`
// rows. Each expert's weights are then read once per step, whatever the token count.
override GATHER: bool = false;
// SPLIT > 1 (split-K, not with GATHER): workgroup z takes slice z of K (whole 16-steps) and
// writes its partial tile to `part` (SPLIT, t, rows); matmul_reduce sums the slices into Y.
// Short-T matmuls (the audio encoder's 65-token layers: 20 workgroups of 320 k-steps for a
// 1280 x 5120 matrix) otherwise run as a few long serial chains on a mostly idle GPU.
override SPLIT: u32 = 1u;
// AHEAD (VEC): the next k-step's loads are issued before this step's products (register
// double buffering); measured per weight format (on for 16-bit weights, off for Q8_0, whose
// extra registers cost more than the hidden latency on an H200).
override AHEAD: bool = true;
// TY: invocation rows, 4 tokens each: 16 (a 64-token tile) or 8 (32 tokens, 128 invocations;
// VEC with Q8_0 weights only, whose tile loads need just 128 invocations). MoE experts of a
// 500-token prompt get ~31 slots each: half of a 64-token tile is padding.
override TY: u32 = 16u;

struct Params {
    rows: u32,          // n: rows in this chunk
    k: u32,
    stride: u32,        // u32 words per weight row
    x_ld: u32,          // row pitch of X (f32)
    y_ld: u32,          // row pitch of Y (f32)
    row0: u32,          // first row of this chunk in the whole matrix
    up_off: u32,        // SWIGLU: column offset of the up half in X
    y_off: u32,         // column offset of the output in Y
    scale_stride: u32,  // Q8_0: u32 words of scales per weight row
    x_div: u32,         // GATHER: slots per X row
    experts: u32,       // GATHER: number of experts (offsets in `groups`)
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;  // (t, x_ld / 4), x_ld any when !VEC
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (t, y_ld)

@group(0) @binding(6) var<storage, read> groups: array<u32>;   // GATHER: offsets, slot ids
@group(0) @binding(7) var<storage, read_write> part: array<f32>; // SPLIT: (SPLIT, t, rows)

// The rows this workgroup covers (set once in main).
var<private> w_row0: u32;   // first weight row (the expert's block)
var<private> t_count: u32;  // rows of X / Y: step.t, or the expert's slot count
var<private> g_start: u32;  // GATHER: index of the expert's first slot in the id list

// X row and Y row of tile row t
fn x_row(t: u32) -> u32 {
    if (GATHER) { return groups[p.experts + 1u + g_start + t] / p.x_div; }
    return t;
}

fn y_row(t: u32) -> u32 {
    if (GATHER) { return groups[p.experts + 1u + g_start + t]; }
    return t;
}

var<workgroup> xs: array<vec4<f32>, 256>;  // [kk][t / 4]  16 x 64
var<workgroup> ws: array<vec4<f32>, 512>;  // [kk][n / 4]  16 x 128

fn xs1(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

fn xval(t: u32, k: u32) -> f32 {
    if (t >= t_count || k >= p.k) { return 0.0; }
    let r = x_row(t);
    let v = xs1(r * p.x_ld + k);
    if (SWIGLU) { return v / (1.0 + exp(-v)) * xs1(r * p.x_ld + p.up_off + k); }
    return v;
}

// VEC: invocation li's four values of the X tile, X[t0 + li / 4][k0 + 4 (li % 4) ..] (and the
// up half when SWIGLU), raw, in registers a k-step ahead. `row` is the invocation's X row for
// the whole kernel (found once: GATHER reads it from the slot list), or none past the tokens.
struct XReg {
    a: vec4<f32>,
    u: vec4<f32>,
}

fn fetch_x(li: u32, row: u32, live: bool, k0: u32) -> XReg {
    var r = XReg(vec4<f32>(0.0), vec4<f32>(0.0));
    if (live) {
        let k = k0 + 4u * (li % 4u);
        r.a = x[(row * p.x_ld + k) / 4u];
        if (SWIGLU) { r.u = x[(row * p.x_ld + p.up_off + k) / 4u]; }
    }
    return r;
}

// ... into xs[kk][t / 4], SwiGLU applied
fn put_x(li: u32, r: XReg) {
    let tl = li / 4u;
    let kq = 4u * (li % 4u);
    var v = r.a;
    if (SWIGLU) { v = v / (vec4<f32>(1.0) + exp(-v)) * r.u; }
    for (var j = 0u; j < 4u; j++) {
        xs[(kq + j) * TY + tl / 4u][tl % 4u] = v[j];
    }
}

// The 64 x 16 X tile into xs[kk][t / 4], one value at a time (any shape).
fn load_x_tile_scalar(li: u32, t0: u32, k0: u32) {
    let kk = li / 16u;
    let q = li % 16u;
    let k = k0 + kk;
    let tb = t0 + q * 4u;
    xs[kk * 16u + q] = vec4<f32>(xval(tb, k), xval(tb + 1u, k), xval(tb + 2u, k), xval(tb + 3u, k));
}

// The 128 x 16 W tile into ws[kk][n / 4] (columns n .. n+64 in the first 16 vec4, the rest after).
fn store_w(kk: u32, nl: u32, v: f32) {
    ws[kk * 32u + (nl % 64u) / 4u + 16u * (nl / 64u)][nl % 4u] = v;
}

fn load_w_tile_scalar(li: u32, n0: u32, k0: u32) {
    let kk = li / 16u;
    let q = li % 16u;
    let k = k0 + kk;
    let nb = n0 + q * 4u;
    ws[kk * 32u + q] = vec4<f32>(wval(nb, k), wval(nb + 1u, k), wval(nb + 2u, k), wval(nb + 3u, k));
    let nc = nb + 64u;
    ws[kk * 32u + 16u + q] = vec4<f32>(wval(nc, k), wval(nc + 1u, k), wval(nc + 2u, k), wval(nc + 3u, k));
}

fn store(t: u32, n0: u32, v: vec4<f32>, slice: u32) {
    if (t >= t_count) { return; }
    if (SPLIT > 1u) {
        for (var j = 0u; j < 4u; j++) {
            let at = (slice * t_count + t) * p.rows + n0 + j;
            // (steps longer than the host sized the scratch for must not write past it)
            if (n0 + j < p.rows && at < arrayLength(&part)) { part[at] = v[j]; }
        }
        return;
    }
    let yr = y_row(t);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n < p.rows) {
            let o = yr * p.y_ld + p.y_off + p.row0 + n;
            if (ACCUMULATE) { y[o] = y[o] + v[j]; } else { y[o] = v[j]; }
        }
    }
}

@compute @workgroup_size(16, TY)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>) {
    let n0 = wg.x * 128u;
    let t0 = wg.y * 4u * TY;
    w_row0 = 0u;
    t_count = step.t;
    g_start = 0u;
    if (GATHER) {
        let e = wg.z;
        g_start = groups[e];
        t_count = groups[e + 1u] - g_start;
        // no slots of this expert in this tile (uniform per workgroup, before any barrier)
        if (t0 >= t_count) { return; }
        w_row0 = e * p.rows;
    }
    // rows i of this invocation's 4 tokens, columns in two vec4 halves (n .. n+4, n+64 .. n+68)
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    var d3 = vec4<f32>(0.0);
    // SPLIT: this workgroup's slice of K
    var k_begin = 0u;
    var k_end = p.k;
    if (SPLIT > 1u) {
        let per = (p.k / 16u + SPLIT - 1u) / SPLIT * 16u;
        k_begin = min(wg.z * per, p.k);
        k_end = min(k_begin + per, p.k);
    }
    // VEC: this invocation's X row, and the first k-step's registers
    let x_live = t0 + li / 4u < t_count;
    var x_r = 0u;
    var xreg = XReg(vec4<f32>(0.0), vec4<f32>(0.0));
    var wreg: WReg;
    if (VEC) {
        if (x_live) { x_r = x_row(t0 + li / 4u); }
        if (AHEAD) {
            xreg = fetch_x(li, x_r, x_live, k_begin);
            wreg = fetch_w(li, n0, k_begin);
        }
    }
    var k0 = k_begin;
    loop {
        if (k0 >= k_end) { break; }
        if (VEC) {
            if (!AHEAD) {
                xreg = fetch_x(li, x_r, x_live, k0);
                wreg = fetch_w(li, n0, k0);
            }
            put_x(li, xreg);
            put_w(li, wreg);
        } else {
            load_x_tile_scalar(li, t0, k0);
            load_w_tile_scalar(li, n0, k0);
        }
        workgroupBarrier();
        // the next step's loads, in flight during this step's products
        if (VEC && AHEAD && k0 + 16u < k_end) {
            xreg = fetch_x(li, x_r, x_live, k0 + 16u);
            wreg = fetch_w(li, n0, k0 + 16u);
        }
        for (var kk = 0u; kk < 16u; kk++) {
            let a = xs[kk * TY + lid.y];
            let b = ws[kk * 32u + lid.x];
            let e = ws[kk * 32u + 16u + lid.x];
            c0 = c0 + a.x * b;
            c1 = c1 + a.y * b;
            c2 = c2 + a.z * b;
            c3 = c3 + a.w * b;
            d0 = d0 + a.x * e;
            d1 = d1 + a.y * e;
            d2 = d2 + a.z * e;
            d3 = d3 + a.w * e;
        }
        workgroupBarrier();
        k0 = k0 + 16u;
    }
    let t = t0 + lid.y * 4u;
    let n = n0 + lid.x * 4u;
    store(t, n, c0, wg.z);
    store(t + 1u, n, c1, wg.z);
    store(t + 2u, n, c2, wg.z);
    store(t + 3u, n, c3, wg.z);
    store(t, n + 64u, d0, wg.z);
    store(t + 1u, n + 64u, d1, wg.z);
    store(t + 2u, n + 64u, d2, wg.z);
    store(t + 3u, n + 64u, d3, wg.z);
}
