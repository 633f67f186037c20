// Argmax, stage 2: the best of the per-workgroup (value, index) pairs, first index on ties
// (as torch.argmax; NaN never wins), written to out[0] and to next_ids[0] so the next decode
// step embeds it without a trip to the host.
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part_v: array<f32>;
@group(0) @binding(2) var<storage, read> part_i: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<storage, read_write> next_ids: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;  // (the tree: argmax_tree.wgsl)

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = li; i < p.n; i += 256u) {
        let v = part_v[i];
        let idx = part_i[i];
        if (v > bv || (v == bv && idx < bi)) { bv = v; bi = idx; }
    }
    best_v[li] = bv;
    best_i[li] = bi;
    best_of_workgroup(li);
    if (li == 0u) {
        let id = select(best_i[0], 0u, best_i[0] == 0xffffffffu);
        out[0] = id;
        next_ids[0] = id;
    }
}
