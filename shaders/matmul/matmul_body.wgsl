// The shared body of the prefill matmul: Y[t][y_off + row0 + n] (+)= sum_k X[t][k] * W[n][k]
// for the rows of one weight chunk. The pipeline cache prepends a weight-format part
// (matmul_w16.wgsl: BF16 / F16; matmul_wq8.wgsl: Q8_0) that declares `w` (and `sc`) and
// `wval(n, k)`; everything else is here, once.
// 64 (t) x 128 (n) output tile per workgroup (16 x 16 invocations, 4 x 8 outputs each held in
// eight vec4 registers), K in steps of 16 through workgroup memory. (A 128 x 128 tile with
// 8 x 8 private arrays ran 6x slower on an H200: the arrays spilled; named vec4 registers do
// not.) The token count comes from the step uniform. ACCUMULATE adds into Y; SWIGLU reads
// silu(X[t][k]) * X[t][up_off + k].
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;

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
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(3) var<storage, read> x: array<f32>;        // (t, x_ld)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (t, y_ld)

var<workgroup> xs: array<vec4<f32>, 256>;  // [kk][t / 4]  16 x 64
var<workgroup> ws: array<vec4<f32>, 512>;  // [kk][n / 4]  16 x 128

fn xval(t: u32, k: u32) -> f32 {
    if (t >= step.t || k >= p.k) { return 0.0; }
    let v = x[t * p.x_ld + k];
    if (SWIGLU) { return v / (1.0 + exp(-v)) * x[t * p.x_ld + p.up_off + k]; }
    return v;
}

fn store(t: u32, n0: u32, v: vec4<f32>) {
    if (t >= step.t) { return; }
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n < p.rows) {
            let o = t * p.y_ld + p.y_off + p.row0 + n;
            if (ACCUMULATE) { y[o] = y[o] + v[j]; } else { y[o] = v[j]; }
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>) {
    let n0 = wg.x * 128u;
    let t0 = wg.y * 64u;
    // rows i of this invocation's 4 tokens, columns in two vec4 halves (n .. n+4, n+64 .. n+68)
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    var d2 = vec4<f32>(0.0);
    var d3 = vec4<f32>(0.0);
    let kk_ld = li / 16u;        // 0..16
    let q_ld = li % 16u;         // 0..16
    var k0 = 0u;
    loop {
        if (k0 >= p.k) { break; }
        let k = k0 + kk_ld;
        let tb = t0 + q_ld * 4u;
        xs[kk_ld * 16u + q_ld] = vec4<f32>(xval(tb, k), xval(tb + 1u, k), xval(tb + 2u, k), xval(tb + 3u, k));
        let nb = n0 + q_ld * 4u;
        ws[kk_ld * 32u + q_ld] = vec4<f32>(wval(nb, k), wval(nb + 1u, k), wval(nb + 2u, k), wval(nb + 3u, k));
        let nc = nb + 64u;
        ws[kk_ld * 32u + 16u + q_ld] = vec4<f32>(wval(nc, k), wval(nc + 1u, k), wval(nc + 2u, k), wval(nc + 3u, k));
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let a = xs[kk * 16u + lid.y];
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
    store(t, n, c0);
    store(t + 1u, n, c1);
    store(t + 2u, n, c2);
    store(t + 3u, n, c3);
    store(t, n + 64u, d0);
    store(t + 1u, n + 64u, d1);
    store(t + 2u, n + 64u, d2);
    store(t + 3u, n + 64u, d3);
}
