// A dispatch that does nothing but write one word of a buffer every dispatch of the probe
// writes, so wgpu records a barrier before each: `omni bench` times a chain of them for what a
// dependent dispatch costs on this device before any work (gpu/profiler.rs).
@group(0) @binding(0) var<storage, read_write> d: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    if (wg.x == 0u && li == 0u) { d[0] = d[0] + 1u; }
}
