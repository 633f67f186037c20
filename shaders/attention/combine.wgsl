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

// QOUT: gather the head's output four per invocation for quantise_head (q8_out.wgsl).
fn quantise_out(li: u32, h: u32, hd: u32, v: f32) {
    qv[li] = v;
    workgroupBarrier();
    var t = vec4<f32>(0.0);
    if (li < hd / 4u) {
        t = vec4<f32>(qv[4u * li], qv[4u * li + 1u], qv[4u * li + 2u], qv[4u * li + 3u]);
    }
    quantise_head(li, hd / 4u, h * hd + 4u * li, hd, t);
}
