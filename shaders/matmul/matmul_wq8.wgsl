// Weight part of the prefill matmul for Q8_0 (four int8 per u32, f16 block scales two per u32).
@group(0) @binding(2) var<storage, read> w: array<u32>;        // (rows, stride)
@group(0) @binding(5) var<storage, read> sc: array<u32>;       // (rows, scale_stride)

fn wval(n: u32, k: u32) -> f32 {
    if (n >= p.rows || k >= p.k) { return 0.0; }
    let q = unpack4xI8(w[n * p.stride + k / 4u])[k % 4u];
    let s2 = unpack2x16float(sc[n * p.scale_stride + k / 64u]);
    return f32(q) * select(s2.x, s2.y, ((k / 32u) & 1u) == 1u);
}
