// gelu(Conv2d(kernel 3, stride 2, padding 1)(x) + bias) over a batch of audio chunks, computed
// directly: one invocation per output value. For the first convolution (one input channel,
// 9 taps), where an im2col copy would cost more than the products; the wider ones go through
// im2col.wgsl and the matmul. Neighbouring invocations take neighbouring output channels, so
// their reads of the tap-major kernel coalesce and each input value is one load shared by the
// workgroup. Maps are (freq, time, channels), channels innermost, as the CPU twin's FeatureMap
// (aut/layers.rs `Conv2d::forward_gelu`).

struct Params {
    in_ch: u32,
    out_ch: u32,
    in_freq: u32,
    in_time: u32,
    out_freq: u32,    // ceil(in_freq / 2)
    out_time: u32,    // ceil(in_time / 2)
    chunks: u32,      // chunks in this dispatch
    in_chunk0: u32,   // chunk of x that chunk 0 of this dispatch reads
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (in_chunk0 + chunks, in_freq, in_time, in_ch)
@group(0) @binding(2) var<storage, read> kernel: array<f32>;  // (in_ch · 9, out_ch), tap = ci·9 + kf·3 + kt
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // (out_ch)
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // (chunks, out_freq, out_time, out_ch)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let per_chunk = p.out_freq * p.out_time * p.out_ch;
    if (i >= p.chunks * per_chunk) { return; }
    let co = i % p.out_ch;
    let to = (i / p.out_ch) % p.out_time;
    let fo = (i / (p.out_ch * p.out_time)) % p.out_freq;
    let x_chunk = (p.in_chunk0 + i / per_chunk) * p.in_freq * p.in_time * p.in_ch;
    var acc = 0.0;
    for (var kf = 0u; kf < 3u; kf++) {
        // input row 2·fo + kf − 1; the −1 is the padding, rows outside the map are zeros
        let fi = 2u * fo + kf;
        if (fi == 0u || fi > p.in_freq) { continue; }
        for (var kt = 0u; kt < 3u; kt++) {
            let ti = 2u * to + kt;
            if (ti == 0u || ti > p.in_time) { continue; }
            let src = x_chunk + ((fi - 1u) * p.in_time + ti - 1u) * p.in_ch;
            let tap = kf * 3u + kt;
            for (var ci = 0u; ci < p.in_ch; ci++) {
                acc += x[src + ci] * kernel[(ci * 9u + tap) * p.out_ch + co];
            }
        }
    }
    y[i] = gelu(acc + bias[co]);
}
