// Mixture-of-experts routing on the device from router logits in a buffer, one workgroup per
// token (route_core.wgsl does the routing).
struct Params {
    experts: u32,
    k: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // (t, experts)

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
    let t = wg.x;
    let n = select(p.experts, E, E > 0u);
    for (var i = li; i < n; i += WG) { lg[i / 4u][i % 4u] = logits[t * n + i]; }
    workgroupBarrier();
    route_from_lg(li, lane, sgs, t, n, p.k);
}
