// Split-K matmul, pass 2: Y[t][y_off + row0 + n] (+)= sum over the SPLIT slices of the partial
// tiles part[(s, t, n)] the matmul's workgroups wrote (one invocation per output).
override SPLIT: u32 = 2u;
override ACCUMULATE: bool = false;

struct Params {
    rows: u32,   // n: rows in the weight chunk
    y_ld: u32,
    y_off: u32,
    row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> part: array<f32>;      // (SPLIT, t, rows)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // (t, y_ld)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let n_out = step.t * p.rows;
    if (i >= n_out) { return; }
    var acc = 0.0;
    for (var s = 0u; s < SPLIT; s++) { acc = acc + part[s * n_out + i]; }
    let o = (i / p.rows) * p.y_ld + p.y_off + p.row0 + i % p.rows;
    if (ACCUMULATE) { y[o] = y[o] + acc; } else { y[o] = acc; }
}
