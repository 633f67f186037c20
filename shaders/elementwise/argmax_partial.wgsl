// Argmax, stage 1: each workgroup reduces 4096 logits to (value, index), first index on ties.
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> part_v: array<f32>;
@group(0) @binding(3) var<storage, read_write> part_i: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;  // (the tree: argmax_tree.wgsl)

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let start = wg.x * 4096u;
    let end = min(start + 4096u, p.n);
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = start + li; i < end; i += 256u) {
        let v = logits[i];
        if (v > bv) { bv = v; bi = i; }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    best_of_workgroup(li);
    if (li == 0u) {
        part_v[wg.x] = best_v[0];
        part_i[wg.x] = best_i[0];
    }
}
