// dst[dst_off + i] = src[src_off + i] for i < width * step.t, with the destination offset
// advanced by dst_pos_stride * step.pos0 (stores this step's k / v rows into the KV cache, or
// copies a residual row). With `rows` set, exactly that many rows are copied, starting at the
// last `rows` tokens of the step (the last row before lm_head).
struct Params { width: u32, src_off: u32, dst_off: u32, dst_pos_stride: u32, rows: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let n = select(step.t, p.rows, p.rows > 0u);
    if (i >= p.width * n) { return; }
    let src_skip = select(0u, (step.t - p.rows) * p.width, p.rows > 0u);
    dst[p.dst_off + p.dst_pos_stride * step.pos0 + i] = src[p.src_off + src_skip + i];
}
