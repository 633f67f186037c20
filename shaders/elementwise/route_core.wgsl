// Mixture-of-experts routing of one token by one workgroup, from the router logits the
// including shader put in `lg` (moe_route.wgsl reads them from a buffer, moe_router.wgsl
// computes them): softmax over the `experts` logits (f32), the `k` largest (the lower index on
// ties, as a stable sort), renormalised to sum to one when RENORM. Writes the expert ids and
// weights of slots t * k .. t * k + k. CPU twin: `nn::moe::route`.
// Each invocation owns experts li, li + WG, ...; an expert's rank is the number of experts
// ahead of it (larger, or equal with a lower index), counted against the shared array: the
// top k are those of rank < k, with no sequential rounds of reductions (a first version with
// k arg-max rounds cost 20 us per layer on an H200).
// The rank loop reads the probabilities four at a time (padded with -1, below any of them).
// E, when not 0, is the expert count as a pipeline constant (a fixed trip count the compiler
// unrolls; `OMNI_ROUTE_E=1`); by default it is read at run time: the loop is less code, and
// this code runs once per dispatch, cold (`Tuning::route_fixed_e`).
override RENORM: bool = true;
override E: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(2) var<storage, read_write> ids: array<u32>;      // (t, k)
@group(0) @binding(3) var<storage, read_write> weights: array<f32>;  // (t, k)

var<workgroup> lg: array<vec4<f32>, 256>;  // the logits, then the probabilities (<= 1024)
var<workgroup> red: array<f32, 256>;
var<workgroup> chosen: array<f32, 64>;

// max or sum over the workgroup: within each subgroup by subgroup operations, then across the
// subgroups' results (two barriers instead of a tree of eight)
fn reduce(li: u32, lane: u32, sgs: u32, v: f32, is_max: bool) -> f32 {
    var r = subgroupAdd(v);
    if (is_max) { r = subgroupMax(v); }
    if (lane == 0u) { red[li / sgs] = r; }
    workgroupBarrier();
    var t = red[0];
    for (var i = 1u; i < WG / sgs; i++) {
        if (is_max) { t = max(t, red[i]); } else { t = t + red[i]; }
    }
    workgroupBarrier();
    return t;
}

// Route token t from the `n` logits in `lg` (call in uniform control flow: it has barriers).
fn route_from_lg(li: u32, lane: u32, sgs: u32, t: u32, n: u32, k: u32) {
    let n4 = (n + 3u) / 4u;
    var m = -3.4e38;
    for (var i = li; i < n; i += WG) { m = max(m, lg[i / 4u][i % 4u]); }
    let mx = reduce(li, lane, sgs, m, true);
    var s = 0.0;
    for (var i = li; i < 4u * n4; i += WG) {
        var e = -1.0;
        if (i < n) {
            e = exp(lg[i / 4u][i % 4u] - mx);
            s = s + e;
        }
        lg[i / 4u][i % 4u] = e;
    }
    let total = reduce(li, lane, sgs, s, false);
    // ranks by probability, as the CPU twin sorts (equal exponentials keep index order)
    for (var i = li; i < n; i += WG) {
        let v = lg[i / 4u][i % 4u];
        var ahead = vec4<u32>(0u);
        for (var j = 0u; j < n4; j++) {
            let u = lg[j];
            let jj = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
            let before = (u > vec4<f32>(v)) | ((u == vec4<f32>(v)) & (jj < vec4<u32>(i)));
            ahead = ahead + select(vec4<u32>(0u), vec4<u32>(1u), before);
        }
        let rank = (ahead.x + ahead.y) + (ahead.z + ahead.w);
        if (rank < k) {
            let pr = v / total;
            ids[t * k + rank] = i;
            chosen[rank] = pr;
        }
    }
    workgroupBarrier();
    if (li < k) {
        var d = 1.0;
        if (RENORM) {
            d = 0.0;
            for (var j = 0u; j < k; j++) { d = d + chosen[j]; }
        }
        weights[t * k + li] = chosen[li] / d;
    }
}
