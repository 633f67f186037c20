// Weight part of the prefill matmul for Q8_0 (four int8 per u32, f16 block scales two per u32).
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // (rows, stride / 4) words
@group(0) @binding(5) var<storage, read> sc: array<u32>;       // (rows, scale_stride)

fn scale(n: u32, k: u32) -> f32 {
    let s2 = unpack2x16float(sc[(w_row0 + n) * p.scale_stride + k / 64u]);
    return select(s2.x, s2.y, ((k / 32u) & 1u) == 1u);
}

fn wval(n: u32, k: u32) -> f32 {
    if (n >= p.rows || k >= p.k) { return 0.0; }
    let i = (w_row0 + n) * p.stride + k / 4u;
    let q = unpack4xI8(w[i / 4u][i % 4u])[k % 4u];
    return f32(q) * scale(n, k);
}

// VEC: invocations 0..128 fetch the 16 int8 weights (16 bytes) of row n0 + li at k0 (one
// block, one scale) into registers a k-step ahead (`fetch_w`), then put them into the tile
// (`put_w`); the other half waits.
struct WReg {
    q: vec4<u32>,
    d: f32,
}

fn fetch_w(li: u32, n0: u32, k0: u32) -> WReg {
    var r = WReg(vec4<u32>(0u), 0.0);
    if (li < 128u && n0 + li < p.rows) {
        r.q = w[((w_row0 + n0 + li) * p.stride + k0 / 4u) / 4u];
        r.d = scale(n0 + li, k0);
    }
    return r;
}

fn put_w(li: u32, r: WReg) {
    if (li >= 128u) { return; }
    for (var j = 0u; j < 4u; j++) {
        let v = vec4<f32>(unpack4xI8(r.q[j])) * r.d;
        store_w(4u * j, li, v.x);
        store_w(4u * j + 1u, li, v.y);
        store_w(4u * j + 2u, li, v.z);
        store_w(4u * j + 3u, li, v.w);
    }
}
