// The decode attention's output quantised for the chained o_proj (QOUT of decode.wgsl and
// combine.wgsl, which declare `qout` and `p.heads`; prepended to both by the pipeline cache).
// No subgroup operations: the attention also runs on adapters without them.

var<workgroup> qmax: array<f32, 64>;  // per-invocation largest |value| of 4

// Invocation li < n4 holds values at .. at + 3 of a head's output (`at` = head offset +
// 4 li); eight neighbours make a block of the heads x head_dim vector. Call in uniform
// control flow (it has a barrier).
fn quantise_head(li: u32, n4: u32, at: u32, head_dim: u32, v: vec4<f32>) {
    let a = abs(v);
    if (li < n4) { qmax[li] = max(max(a.x, a.y), max(a.z, a.w)); }
    workgroupBarrier();
    if (li < n4) {
        let b0 = li - li % 8u;
        var m = 0.0;
        for (var j = 0u; j < 8u; j++) { m = max(m, qmax[b0 + j]); }
        let inv = select(0.0, 127.0 / m, m > 0.0);
        qout[at / 4u] = pack4xI8(vec4<i32>(round(v * inv)));
        if (li % 8u == 0u) { qout[8u * (p.heads * head_dim / 32u) + at / 32u] = bitcast<u32>(m / 127.0); }
    }
}
