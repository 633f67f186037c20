// Decode attention, step 2: softmax of each head's scores over step.kv_len positions, in place.
struct Params { ctx: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> scores: array<f32>;  // (heads, ctx)

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let base = wg.x * p.ctx;
    let n = step.kv_len;
    var m = -3.4e38;
    for (var i = li; i < n; i += 256u) { m = max(m, scores[base + i]); }
    red[li] = m;
    workgroupBarrier();
    var s = 128u;
    loop {
        if (s == 0u) { break; }
        if (li < s) { red[li] = max(red[li], red[li + s]); }
        workgroupBarrier();
        s = s / 2u;
    }
    let mx = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = li; i < n; i += 256u) {
        let e = exp(scores[base + i] - mx);
        scores[base + i] = e;
        sum = sum + e;
    }
    red[li] = sum;
    workgroupBarrier();
    s = 128u;
    loop {
        if (s == 0u) { break; }
        if (li < s) { red[li] = red[li] + red[li + s]; }
        workgroupBarrier();
        s = s / 2u;
    }
    let inv = 1.0 / red[0];
    for (var i = li; i < n; i += 256u) { scores[base + i] = scores[base + i] * inv; }
}
