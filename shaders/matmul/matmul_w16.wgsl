// Weight part of the prefill matmul for 16-bit weights (two per u32, BF16 or F16).
override IS_F16: bool = false;

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // (rows, stride / 4) words

fn wword(i: u32) -> u32 {
    return w[i / 4u][i % 4u];
}

fn wval(n: u32, k: u32) -> f32 {
    if (n >= p.rows || k >= p.k) { return 0.0; }
    let v = unpack_w(wword((w_row0 + n) * p.stride + k / 2u), IS_F16);
    return select(v.x, v.y, (k & 1u) == 1u);
}

// VEC: invocation li fetches 8 weights (16 bytes) of row n0 + li / 2 at k0 + 8 (li % 2) into
// registers (`fetch_w`, issued a k-step ahead), then unpacks them into the tile (`put_w`).
struct WReg {
    q: vec4<u32>,
}

fn fetch_w(li: u32, n0: u32, k0: u32) -> WReg {
    let nl = li / 2u;
    let kq = 8u * (li % 2u);
    var q = vec4<u32>(0u);
    if (n0 + nl < p.rows) {
        q = w[((w_row0 + n0 + nl) * p.stride + (k0 + kq) / 2u) / 4u];
    }
    return WReg(q);
}

fn put_w(li: u32, r: WReg) {
    let nl = li / 2u;
    let kq = 8u * (li % 2u);
    for (var j = 0u; j < 4u; j++) {
        let v = unpack_w(r.q[j], IS_F16);
        store_w(kq + 2u * j, nl, v.x);
        store_w(kq + 2u * j + 1u, nl, v.y);
    }
}
