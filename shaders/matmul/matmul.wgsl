// Y[t][row0 + n] = sum_k X[t][k] * W[n][k]  (prefill), for the rows of one weight chunk.
// 64 x 64 output tile per workgroup (16 x 16 invocations, 4 x 4 outputs each), K in steps of
// 16 through workgroup memory. The token count comes from the step uniform.
override IS_F16: bool = false;

struct Params {
    rows: u32,    // n: rows in this chunk
    k: u32,
    stride: u32,  // u32 words per weight row
    x_ld: u32,    // row pitch of X (f32)
    y_ld: u32,    // row pitch of Y (f32)
    row0: u32,    // first row of this chunk in the whole matrix
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (rows, stride)
@group(0) @binding(3) var<storage, read> x: array<f32>;        // (t, x_ld)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (t, y_ld)

var<workgroup> xs: array<f32, 1024>;  // [kk][tt] 16 x 64
var<workgroup> ws: array<f32, 1024>;  // [kk][nn] 16 x 64

fn weight(n: u32, k: u32) -> f32 {
    if (n >= p.rows || k >= p.k) { return 0.0; }
    let v = unpack_w(w[n * p.stride + k / 2u], IS_F16);
    return select(v.x, v.y, (k & 1u) == 1u);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>) {
    let t_count = step.t;
    let n0 = wg.x * 64u;
    let t0 = wg.y * 64u;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    var k0 = 0u;
    loop {
        if (k0 >= p.k) { break; }
        // 1024 elements of each tile, 4 per invocation
        for (var e = 0u; e < 4u; e++) {
            let idx = li * 4u + e;      // 0..1024
            let r = idx / 16u;          // 0..64
            let kk = idx % 16u;         // 0..16
            let t = t0 + r;
            let k = k0 + kk;
            var xv = 0.0;
            if (t < t_count && k < p.k) { xv = x[t * p.x_ld + k]; }
            xs[kk * 64u + r] = xv;
            ws[kk * 64u + r] = weight(n0 + r, k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let a = vec4<f32>(xs[kk * 64u + lid.y * 4u], xs[kk * 64u + lid.y * 4u + 1u],
                              xs[kk * 64u + lid.y * 4u + 2u], xs[kk * 64u + lid.y * 4u + 3u]);
            let b = vec4<f32>(ws[kk * 64u + lid.x * 4u], ws[kk * 64u + lid.x * 4u + 1u],
                              ws[kk * 64u + lid.x * 4u + 2u], ws[kk * 64u + lid.x * 4u + 3u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i * 4u + 0u] = acc[i * 4u + 0u] + a[i] * b.x;
                acc[i * 4u + 1u] = acc[i * 4u + 1u] + a[i] * b.y;
                acc[i * 4u + 2u] = acc[i * 4u + 2u] + a[i] * b.z;
                acc[i * 4u + 3u] = acc[i * 4u + 3u] + a[i] * b.w;
            }
        }
        workgroupBarrier();
        k0 = k0 + 16u;
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x * 4u + j;
            if (t < t_count && n < p.rows) {
                y[t * p.y_ld + p.row0 + n] = acc[i * 4u + j];
            }
        }
    }
}
