// Group the step's t * k slots by expert for the MoE prefill matmuls (one workgroup): a
// counting sort of the routed expert ids. groups[0..=E] are the offsets of each expert's run,
// groups[E + 1 + i] the slot ids in expert order (within an expert in arrival order, which
// does not matter: every slot's row is computed on its own).
struct Params {
    experts: u32,
    k: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> ids: array<u32>;             // (t * k) expert per slot
@group(0) @binding(3) var<storage, read_write> groups: array<u32>;    // (E + 1 + t * k)

var<workgroup> count: array<atomic<u32>, 1024>;
var<workgroup> base: array<u32, 1024>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    let n = step.t * p.k;
    let e_n = p.experts;
    for (var e = li; e < e_n; e += 256u) { atomicStore(&count[e], 0u); }
    workgroupBarrier();
    for (var s = li; s < n; s += 256u) { atomicAdd(&count[ids[s]], 1u); }
    workgroupBarrier();
    if (li == 0u) {
        var run = 0u;
        for (var e = 0u; e < e_n; e++) {
            base[e] = run;
            groups[e] = run;
            run = run + atomicLoad(&count[e]);
            atomicStore(&count[e], 0u);
        }
        groups[e_n] = run;
    }
    workgroupBarrier();
    for (var s = li; s < n; s += 256u) {
        let e = ids[s];
        let at = base[e] + atomicAdd(&count[e], 1u);
        groups[e_n + 1u + at] = s;
    }
}
