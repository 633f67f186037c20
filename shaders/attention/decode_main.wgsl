// The decode attention's entry point: one workgroup per (head, chunk) (decode.wgsl).
@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    _ = attend(li, wg.x, wg.y);
}
