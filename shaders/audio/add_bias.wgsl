// x[r] = act(x[r] + table[r mod period]) over step.t rows of `width`: a bias (period 1), a
// bias followed by GELU (the encoder's fc1 and proj1), or the sinusoidal positions that
// restart in every chunk (period = tokens per chunk). gelu() comes from gelu.wgsl.
override GELU: bool = false;

struct Params { width: u32, period: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;  // (t, width)
@group(0) @binding(3) var<storage, read> table: array<f32>;    // (period, width)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.width * step.t) { return; }
    let row = i / p.width;
    let v = x[i] + table[(row % p.period) * p.width + i % p.width];
    if (GELU) {
        x[i] = gelu(v);
    } else {
        x[i] = v;
    }
}
