// The patches of a 3×3, stride-2, padding-1 convolution over a batch of chunks: one row per
// output position (chunk, then freq, then time), columns in the weight's (channel, kernel
// row, kernel column) order, so the stored (out, in, 3, 3) kernel read as (out, in·9) is the
// matmul's weight; taps outside the map are the zero padding. CPU twin: aut/layers.rs
// `im2col_3x3_stride2`. One invocation per column entry, in output order (coalesced writes).

struct Params {
    in_ch: u32,
    in_freq: u32,
    in_time: u32,
    out_freq: u32,  // ceil(in_freq / 2)
    out_time: u32,  // ceil(in_time / 2)
    chunks: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (chunks, in_freq, in_time, in_ch)
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;  // (chunks · out_freq · out_time, in_ch · 9)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let taps = p.in_ch * 9u;
    let positions = p.out_freq * p.out_time;
    if (i >= p.chunks * positions * taps) { return; }
    let col = i % taps;
    let row = i / taps;
    let ci = col / 9u;
    let kf = (col % 9u) / 3u;
    let kt = col % 3u;
    let c = row / positions;
    let fo = (row % positions) / p.out_time;
    let to = row % p.out_time;
    // input index 2·out + tap − 1; the −1 is the padding
    let fi = 2u * fo + kf;
    let ti = 2u * to + kt;
    var v = 0.0;
    if (fi >= 1u && fi <= p.in_freq && ti >= 1u && ti <= p.in_time) {
        v = x[((c * p.in_freq + fi - 1u) * p.in_time + ti - 1u) * p.in_ch + ci];
    }
    cols[i] = v;
}
