// Weight part of the prefill matmul for 16-bit weights (two per u32, BF16 or F16).
override IS_F16: bool = false;

@group(0) @binding(2) var<storage, read> w: array<u32>;        // (rows, stride)

fn wval(n: u32, k: u32) -> f32 {
    if (n >= p.rows || k >= p.k) { return 0.0; }
    let v = unpack_w(w[n * p.stride + k / 2u], IS_F16);
    return select(v.x, v.y, (k & 1u) == 1u);
}
