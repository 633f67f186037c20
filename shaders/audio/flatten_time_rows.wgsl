// The last convolution's maps (chunk, freq, time, channel) as rows (chunk, time) of
// channel · freq features in (channel, freq) order: the rows `conv_out` multiplies (the
// reference's permute(0, 3, 1, 2) + view; CPU twin: aut.rs `convolve`). Chunk c of the batch
// lands at row block out_chunk0 + c of `rows`. One invocation per output value, in output
// order.

struct Params {
    freq: u32,
    time: u32,
    channels: u32,
    chunks: u32,
    out_chunk0: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (chunks, freq, time, channels)
@group(0) @binding(2) var<storage, read_write> rows: array<f32>;  // (out_chunk0 + chunks, time, channels · freq)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let per_chunk = p.freq * p.time * p.channels;
    if (i >= p.chunks * per_chunk) { return; }
    let c = i / per_chunk;
    let f = i % p.freq;
    let ch = (i / p.freq) % p.channels;
    let t = (i / (p.freq * p.channels)) % p.time;
    rows[p.out_chunk0 * per_chunk + i] = x[((c * p.freq + f) * p.time + t) * p.channels + ch];
}
