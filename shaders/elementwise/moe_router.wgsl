// Decode MoE routing with the router in the same dispatch, one workgroup per token: the
// RMSNorm of the residual x (its weight g folded in, as the router matvec folds it), the E
// router logits from 16-bit weights, then route_core.wgsl's routing. One dispatch instead of
// the router matvec's and moe_route's, and the logits never leave workgroup memory.
override IS_F16: bool = false;
override HID: u32 = 2048u;  // hidden size: a multiple of 8, at most 4096 (the host checks)
// SGC: the subgroup size where the adapter has only one (0: read at run time); known, a
// lane's loop over a row has a fixed trip count the compiler unrolls, so both rows' loads of a
// pass are in flight together
override SGC: u32 = 0u;

struct Params {
    experts: u32,
    k: u32,
    stride: u32,    // u32 words per router row (HID / 2)
    eps_bits: u32,  // f32 bits of the RMSNorm eps
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> x: array<vec4<f32>>;   // (t, HID / 4)
@group(0) @binding(5) var<storage, read> g: array<vec4<f32>>;   // (HID / 4)
@group(0) @binding(6) var<storage, read> w: array<vec4<u32>>;   // (experts, stride / 4)

var<workgroup> xs: array<vec4<f32>, 1024>;  // x * g

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
        @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32) {
    let t = wg.x;
    let n = select(p.experts, E, E > 0u);
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
    // logits: subgroup s takes rows s, s + nsg, ... two per pass; lanes stride the row's quads
    let nsg = WG / sgs;
    let per = HID / 8u;
    let step = select(sgs, SGC, SGC > 0u);
    let trips = (per + step - 1u) / step;
    let row_q = p.stride / 4u;
    // a subgroup-uniform loop: li / sgs is the same for every lane of a subgroup
    for (var r0 = li / sgs; r0 < n; r0 += 2u * nsg) {
        let r1 = r0 + nsg;
        let r1c = min(r1, n - 1u);  // past the end: a real row, not stored
        var a0 = 0.0;
        var a1 = 0.0;
        for (var i = 0u; i < trips; i++) {
            let j = lane + i * step;
            if (j < per) {
                let xa = xs[2u * j];
                let xb = xs[2u * j + 1u];
                a0 = a0 + part(w[r0 * row_q + j], xa, xb);
                a1 = a1 + part(w[r1c * row_q + j], xa, xb);
            }
        }
        let s0 = subgroupAdd(a0);
        let s1 = subgroupAdd(a1);
        if (lane == 0u) {
            lg[r0 / 4u][r0 % 4u] = s0 / rms;
            if (r1 < n) { lg[r1 / 4u][r1 % 4u] = s1 / rms; }
        }
    }
    workgroupBarrier();
    route_from_lg(li, lane, sgs, t, n, p.k);
}
