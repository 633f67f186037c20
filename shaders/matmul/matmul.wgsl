// Y[t][row0 + n] (+)= sum_k X[t][k] * W[n][k]  (prefill), for the rows of one weight chunk.
// 128 x 128 output tile per workgroup (16 x 16 invocations, 8 x 8 outputs each), K in steps
// of 16 through workgroup memory. The token count comes from the step uniform. ACCUMULATE
// adds into Y; SWIGLU reads silu(X[t][k]) * X[t][up_off + k] as the input.
override IS_F16: bool = false;
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;

struct Params {
    rows: u32,    // n: rows in this chunk
    k: u32,
    stride: u32,  // u32 words per weight row
    x_ld: u32,    // row pitch of X (f32)
    y_ld: u32,    // row pitch of Y (f32)
    row0: u32,    // first row of this chunk in the whole matrix
    up_off: u32,  // SWIGLU: column offset of the up half in X
    y_off: u32,   // column offset of the output in Y
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (rows, stride)
@group(0) @binding(3) var<storage, read> x: array<f32>;        // (t, x_ld)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (t, y_ld)

var<workgroup> xs: array<f32, 2048>;  // [kk][tt] 16 x 128
var<workgroup> ws: array<f32, 2048>;  // [kk][nn] 16 x 128

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>) {
    let t_count = step.t;
    let n0 = wg.x * 128u;
    let t0 = wg.y * 128u;
    var acc: array<f32, 64>;
    for (var i = 0u; i < 64u; i++) { acc[i] = 0.0; }
    var k0 = 0u;
    loop {
        if (k0 >= p.k) { break; }
        for (var r = 0u; r < 8u; r++) {
            let e = li + 256u * r;   // 0..2048
            let tt = e / 16u;
            let kk = e % 16u;
            let t = t0 + tt;
            let k = k0 + kk;
            var xv = 0.0;
            if (t < t_count && k < p.k) {
                xv = x[t * p.x_ld + k];
                if (SWIGLU) { xv = xv / (1.0 + exp(-xv)) * x[t * p.x_ld + p.up_off + k]; }
            }
            xs[kk * 128u + tt] = xv;
        }
        for (var r = 0u; r < 4u; r++) {
            let e = li + 256u * r;   // 0..1024 words
            let nn = e / 8u;
            let kw = e % 8u;
            let n = n0 + nn;
            let word = k0 / 2u + kw;
            var v = vec2<f32>(0.0);
            if (n < p.rows && word < p.stride) { v = unpack_w(w[n * p.stride + word], IS_F16); }
            ws[(2u * kw) * 128u + nn] = v.x;
            ws[(2u * kw + 1u) * 128u + nn] = v.y;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var a: array<f32, 8>;
            var b: array<f32, 8>;
            for (var i = 0u; i < 8u; i++) {
                a[i] = xs[kk * 128u + lid.y * 8u + i];
                b[i] = ws[kk * 128u + lid.x * 8u + i];
            }
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < 8u; j++) {
                    acc[i * 8u + j] = acc[i * 8u + j] + a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
        k0 = k0 + 16u;
    }
    for (var i = 0u; i < 8u; i++) {
        let t = t0 + lid.y * 8u + i;
        for (var j = 0u; j < 8u; j++) {
            let n = n0 + lid.x * 8u + j;
            if (t < t_count && n < p.rows) {
                let o = t * p.y_ld + p.y_off + p.row0 + n;
                if (ACCUMULATE) { y[o] = y[o] + acc[i * 8u + j]; } else { y[o] = acc[i * 8u + j]; }
            }
        }
    }
}
