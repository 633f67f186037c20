// out[t] = table[ids[t]] for the ids that fall in this chunk of the table (rows row0..row0+rows).
override IS_F16: bool = false;

struct Params {
    rows: u32,    // rows in this chunk
    row0: u32,
    dim: u32,     // columns
    stride: u32,  // u32 words per row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> table: array<u32>;    // (rows, stride)
@group(0) @binding(3) var<storage, read> ids: array<u32>;      // (t)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // (t, dim)

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.stride * step.t) { return; }
    let tok = idx / p.stride;
    let j = idx % p.stride;
    let id = ids[tok];
    if (id < p.row0 || id >= p.row0 + p.rows) { return; }
    let v = unpack_w(table[(id - p.row0) * p.stride + j], IS_F16);
    out[tok * p.dim + 2u * j] = v.x;
    if (2u * j + 1u < p.dim) { out[tok * p.dim + 2u * j + 1u] = v.y; }
}
