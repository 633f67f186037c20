// Decode attention, pass 2 of 2: merge the per-chunk partial outputs of pass 1 (attn_decode)
// for one head: out = sum_c o_c e^(m_c - M) / sum_c l_c e^(m_c - M), M the largest chunk max.
// Dispatched only when kv_len spans more than one chunk.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    chunks: u32,       // chunk pitch of `part`
    scale_bits: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> part: array<f32>;           // (heads, chunks, head_dim + 2)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // (heads, head_dim)
@group(0) @binding(4) var<storage, read_write> qout: array<u32>;     // QOUT: the output quantised

// QOUT: the output is also written quantised for the o_proj matvec (gpu/matvec_q8.rs, XIN):
// blocks of 32 dims (head_dim a multiple of 32), Q8_0 rule.
override QOUT: bool = false;

var<workgroup> qv: array<f32, 256>;     // QOUT: the head's output
var<workgroup> qmax: array<f32, 256>;   // QOUT: per-invocation largest |value| of 4

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let h = wg.x;
    let hd = p.head_dim;
    let v = merged(li, h, hd);
    if (QOUT) { quantise_out(li, h, hd, v); }
}

fn merged(li: u32, h: u32, hd: u32) -> f32 {
    if (li >= hd) { return 0.0; }
    let used = (step.kv_len + 63u) / 64u;
    let pitch = hd + 2u;
    let base = h * p.chunks * pitch;
    var mx = -3.4e38;
    for (var c = 0u; c < used; c++) { mx = max(mx, part[base + c * pitch + hd]); }
    var l = 0.0;
    var o = 0.0;
    for (var c = 0u; c < used; c++) {
        let b = base + c * pitch;
        let w = exp(part[b + hd] - mx);
        l = l + part[b + hd + 1u] * w;
        o = o + part[b + li] * w;
    }
    out[h * hd + li] = o / l;
    return o / l;
}

// QOUT: invocation li < head_dim / 4 quantises dims 4 li .. 4 li + 3; eight make a block.
fn quantise_out(li: u32, h: u32, hd: u32, v: f32) {
    qv[li] = v;
    workgroupBarrier();
    var t = vec4<f32>(0.0);
    if (li < hd / 4u) {
        t = vec4<f32>(qv[4u * li], qv[4u * li + 1u], qv[4u * li + 2u], qv[4u * li + 3u]);
        let a = abs(t);
        qmax[li] = max(max(a.x, a.y), max(a.z, a.w));
    }
    workgroupBarrier();
    if (li < hd / 4u) {
        let b0 = li - li % 8u;
        var m = 0.0;
        for (var j = 0u; j < 8u; j++) { m = max(m, qmax[b0 + j]); }
        let inv = select(0.0, 127.0 / m, m > 0.0);
        let at = h * hd + 4u * li;
        qout[at / 4u] = pack4xI8(vec4<i32>(round(t * inv)));
        if (li % 8u == 0u) { qout[8u * (p.heads * hd / 32u) + at / 32u] = bitcast<u32>(m / 127.0); }
    }
}
