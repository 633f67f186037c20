// Decode MoE routing with the router in the same dispatch: workgroup (b, t) computes the RMSNorm
// of token t's residual x (its weight g folded in, as the router matvec folds it) and router
// rows b * (WG / subgroup size) .. of the 16-bit weights, one row per subgroup; the token's last workgroup to
// finish (a device counter per token) reads all its logits back and routes them
// (route_core.wgsl). One dispatch instead of the router matvec's and moe_route's. (One
// workgroup per token for all 128 rows was slower on an H200: 0.5 MB through one SM.)
override IS_F16: bool = false;
override HID: u32 = 2048u;  // hidden size: a multiple of 8, at most 4096 (the host checks)
// SGC: the subgroup size where the adapter has only one (0: read at run time); known, a
// lane's loop over a row has a fixed trip count the compiler unrolls, so both rows' loads of a
// pass are in flight together
override SGC: u32 = 0u;
// PRE (with SGC): a lane loads its row's words before the norm's loads and reductions, which
// they do not depend on, so their memory round trip overlaps that prologue instead of
// following it; the first 16 words of a lane (HID 4096 at 32 lanes), the rest in the loop
override PRE: bool = false;
override PRE_ON: bool = PRE && SGC > 0u;  // (with a fixed trip count the array is registers)
// STOP (measurement only, `OMNI_DEBUG_ROUTER_STOP`): return after the logits (1), the last
// workgroup after the count (2) or after reading the logits back (3), every workgroup at once
// (4), or route and then overwrite the ids with the fixed experts 0, 16, 32, .. (5); 0 in
// every real step
override STOP: u32 = 0u;

struct Params {
    experts: u32,
    k: u32,
    stride: u32,    // u32 words per router row (HID / 2)
    eps_bits: u32,  // f32 bits of the RMSNorm eps
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;  // (t, experts)
@group(0) @binding(7) var<storage, read_write> done: array<atomic<u32>>;  // per token
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;   // (t, HID / 4)
@group(0) @binding(5) var<storage, read> g: array<vec4<f32>>;   // (HID / 4)
@group(0) @binding(6) var<storage, read> w: array<vec4<u32>>;   // (experts, stride / 4)

var<workgroup> xs: array<vec4<f32>, 1024>;  // x * g
var<workgroup> last_flag: u32;

// Eight weights of word quad q against the normed inputs a | b
fn part(q: vec4<u32>, a: vec4<f32>, b: vec4<f32>) -> f32 {
    let w0 = unpack_w(q.x, IS_F16);
    let w1 = unpack_w(q.y, IS_F16);
    let w2 = unpack_w(q.z, IS_F16);
    let w3 = unpack_w(q.w, IS_F16);
    return dot(vec4<f32>(w0.x, w0.y, w1.x, w1.y), a) + dot(vec4<f32>(w2.x, w2.y, w3.x, w3.y), b);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
    // (a run-time test the compiler cannot fold, so every binding stays in use)
    if (STOP == 4u && p.k != 0u) { return; }
    let t = wg.y;
    let n = select(p.experts, E, E > 0u);
    // this workgroup's rows: one per subgroup; lanes stride the row's quads
    let r = wg.x * (WG / sgs) + li / sgs;
    let per = HID / 8u;
    let step = select(sgs, SGC, SGC > 0u);
    let trips = (per + step - 1u) / step;
    let row_q = p.stride / 4u;
    let rc = min(r, n - 1u);  // past the end: a real row, not stored
    var pre: array<vec4<u32>, 16>;
    if (PRE_ON) {
        for (var i = 0u; i < min(trips, 16u); i++) {
            let j = min(lane + i * step, per - 1u);
            pre[i] = w[rc * row_q + j];
        }
    }
    let q4 = HID / 4u;
    var ss = 0.0;
    for (var i = li; i < q4; i += WG) {
        let a = x[t * q4 + i];
        ss = ss + dot(a, a);
        xs[i] = a * g[i];
    }
    // (its barriers also make xs whole)
    let total_ss = reduce(li, lane, sgs, ss, false);
    let rms = sqrt(total_ss / f32(HID) + bitcast<f32>(p.eps_bits));
    var a0 = 0.0;
    for (var i = 0u; i < trips; i++) {
        let j = lane + i * step;
        if (j < per) {
            var q: vec4<u32>;
            if (PRE_ON && i < 16u) { q = pre[i]; } else { q = w[rc * row_q + j]; }
            a0 = a0 + part(q, xs[2u * j], xs[2u * j + 1u]);
        }
    }
    let s0 = subgroupAdd(a0);
    if (lane == 0u && r < n) { logits[t * n + r] = s0 / rms; }
    if (STOP == 1u) { return; }
    // release the logits, count the workgroup; the token's last resets the count for the next
    // dispatch, acquires the others' logits and routes
    storageBarrier();
    if (li == 0u) {
        let d = atomicAdd(&done[t], 1u) + 1u;
        last_flag = select(0u, 1u, d == nwg.x);
        if (d == nwg.x) { atomicStore(&done[t], 0u); }
    }
    if (workgroupUniformLoad(&last_flag) == 0u || STOP == 2u) { return; }
    storageBarrier();
    for (var i = li; i < n; i += WG) { lg[i / 4u][i % 4u] = logits[t * n + i]; }
    workgroupBarrier();
    if (STOP == 3u) { return; }
    route_from_lg(li, lane, sgs, t, n, p.k);
    if (STOP == 5u) {
        storageBarrier();
        if (li < p.k) { ids[t * p.k + li] = (li * 16u) % n; }
    }
}
