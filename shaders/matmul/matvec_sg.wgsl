// y[y_off + row0 + r] (+)= sum_k W[r][k] * x[k]  (decode) with subgroup reductions. A subgroup
// takes ROWS rows at once and reads each piece of x once for all of them; any subgroup size
// (32 on NVIDIA, 8 on lavapipe, 32 or 64 on AMD): RPW rows per workgroup, a subgroup loops
// over its share. Rows a multiple of 8 long. No workgroup memory and no barriers: short rows
// (K = 1024) were dominated by the shared-memory reduction in matvec_vec4.
// RMS_NORM folds the RMSNorm of x into the product: y = inv_rms(x) * W (x * g), with the sum
// of squares taken by every subgroup from the x it reads anyway. ACCUMULATE adds into y;
// SWIGLU reads silu(x[gate]) * x[up] as the input.
override IS_F16: bool = false;
override ACCUMULATE: bool = false;
override SWIGLU: bool = false;
override RMS_NORM: bool = false;
override ROWS: u32 = 1;     // 1..4
override RPW: u32 = 8;      // rows per workgroup, a multiple of ROWS
override WG: u32 = 256;
// MOE: a mixture-of-experts matvec. Workgroup z is a slot (token t, choice j) whose expert id
// comes from `route` on the device (no read-back); `rows` is then the rows of one expert, the
// weight rows start at that expert's block in this chunk, and slot s writes y[y_off + s*rows..].
override MOE: bool = false;     // invocations per workgroup (fewer, smaller workgroups keep more
                            // of them in flight when a matrix has few rows)

struct Params {
    rows: u32,
    k: u32,
    stride: u32,    // u32 words per row (k / 2, a multiple of 4)
    x_off: u32,     // multiple of 4 (the gate half when SWIGLU)
    y_off: u32,
    row0: u32,
    up_off: u32,    // SWIGLU: offset of the up half, multiple of 4
    eps_bits: u32,  // RMS_NORM: f32 bits of eps
    // MOE only: this chunk's rows (experts x rows per expert), x rows shared by `x_div`
    // consecutive slots `x_stride` floats apart, one output block of `rows` per slot
    chunk_rows: u32,
    x_div: u32,
    x_stride: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;    // (rows, stride / 4)
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;    // (k / 4) at x_off / 4
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;    // RMS_NORM weight (k / 4)

@group(0) @binding(5) var<storage, read> route: array<u32>;      // MOE: expert id per slot

// Where this workgroup reads and writes (set once in main; plain offsets unless MOE).
var<private> w_row0: u32;  // first weight row of the matrix (expert) in this chunk
var<private> x_base: u32;  // offset of x (the gate half when SWIGLU)
var<private> u_base: u32;  // offset of the up half (SWIGLU)
var<private> y_base: u32;  // output offset of row 0

fn xin(i: u32) -> vec4<f32> {
    let a = x[x_base / 4u + i];
    if (SWIGLU) {
        let u = x[u_base / 4u + i];
        return a / (vec4<f32>(1.0) + exp(-a)) * u;
    }
    return a;
}

// The 8 inputs of quad j (norm weight folded in) and their sum of squares (RMS_NORM).
struct Xq {
    a: vec4<f32>,
    b: vec4<f32>,
    ss: f32,
}

fn xquad(j: u32) -> Xq {
    var x0 = xin(2u * j);
    var x1 = xin(2u * j + 1u);
    var ss = 0.0;
    if (RMS_NORM) {
        ss = dot(x0, x0) + dot(x1, x1);
        x0 = x0 * g[2u * j];
        x1 = x1 * g[2u * j + 1u];
    }
    return Xq(x0, x1, ss);
}

fn part(q: vec4<u32>, v: Xq) -> f32 {
    let a = unpack_w(q.x, IS_F16);
    let b = unpack_w(q.y, IS_F16);
    let c = unpack_w(q.z, IS_F16);
    let d = unpack_w(q.w, IS_F16);
    return dot(vec4<f32>(a.x, a.y, b.x, b.y), v.a) + dot(vec4<f32>(c.x, c.y, d.x, d.y), v.b);
}

// Four quads of one row, their loads issued together.
fn four(base: u32, j: u32, sg: u32, v0: Xq, v1: Xq, v2: Xq, v3: Xq) -> f32 {
    let q0 = w[base + j];
    let q1 = w[base + j + sg];
    let q2 = w[base + j + 2u * sg];
    let q3 = w[base + j + 3u * sg];
    return (part(q0, v0) + part(q1, v1)) + (part(q2, v2) + part(q3, v3));
}

fn store(row: u32, v: f32, total_ss: f32) {
    if (row >= p.rows) { return; }
    var r = v;
    if (RMS_NORM) { r = r / sqrt(total_ss / f32(p.k) + bitcast<f32>(p.eps_bits)); }
    let o = y_base + row;
    if (ACCUMULATE) { y[o] = y[o] + r; } else { y[o] = r; }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32) {
    w_row0 = 0u;
    x_base = p.x_off;
    u_base = p.up_off;
    y_base = p.y_off + p.row0;
    if (MOE) {
        let slot = wg.z;
        let e0 = p.row0 / p.rows;
        let e = route[slot];
        // the expert lives in another chunk: nothing to do here (uniform per workgroup)
        if (e < e0 || (e - e0) * p.rows >= p.chunk_rows) { return; }
        w_row0 = (e - e0) * p.rows;
        let xr = (slot / p.x_div) * p.x_stride;
        x_base = p.x_off + xr;
        u_base = p.up_off + xr;
        y_base = p.y_off + slot * p.rows;
    }
    let first = (wg.x + wg.y * nwg.x) * RPW;
    let nsg = WG / sg;
    let last = p.rows - 1u;
    let quads = p.stride / 4u;
    // subgroup-uniform loop: every lane of a subgroup has the same li / sg
    for (var r0 = first + (li / sg) * ROWS; r0 < min(first + RPW, p.rows); r0 += nsg * ROWS) {
        // rows past the end repeat the last row (in bounds) and are not stored
        let b0 = (w_row0 + r0) * quads;
        let b1 = (w_row0 + min(r0 + 1u, last)) * quads;
        let b2 = (w_row0 + min(r0 + 2u, last)) * quads;
        let b3 = (w_row0 + min(r0 + 3u, last)) * quads;
        var acc = vec4<f32>(0.0);
        var ss = 0.0;
        // four independent 16-byte loads in flight per row and invocation (memory-level
        // parallelism is what a bandwidth-bound kernel lives on), then the rest one at a time
        var j = lane;
        loop {
            if (j + 3u * sg >= quads) { break; }
            let v0 = xquad(j);
            let v1 = xquad(j + sg);
            let v2 = xquad(j + 2u * sg);
            let v3 = xquad(j + 3u * sg);
            ss = ss + (v0.ss + v1.ss) + (v2.ss + v3.ss);
            acc.x = acc.x + four(b0, j, sg, v0, v1, v2, v3);
            if (ROWS > 1u) { acc.y = acc.y + four(b1, j, sg, v0, v1, v2, v3); }
            if (ROWS > 2u) { acc.z = acc.z + four(b2, j, sg, v0, v1, v2, v3); }
            if (ROWS > 3u) { acc.w = acc.w + four(b3, j, sg, v0, v1, v2, v3); }
            j = j + 4u * sg;
        }
        loop {
            if (j >= quads) { break; }
            let v = xquad(j);
            ss = ss + v.ss;
            acc.x = acc.x + part(w[b0 + j], v);
            if (ROWS > 1u) { acc.y = acc.y + part(w[b1 + j], v); }
            if (ROWS > 2u) { acc.z = acc.z + part(w[b2 + j], v); }
            if (ROWS > 3u) { acc.w = acc.w + part(w[b3 + j], v); }
            j = j + sg;
        }
        let total = subgroupAdd(acc);
        let total_ss = subgroupAdd(ss);
        if (lane == 0u) {
            store(r0, total.x, total_ss);
            if (ROWS > 1u) { store(r0 + 1u, total.y, total_ss); }
            if (ROWS > 2u) { store(r0 + 2u, total.z, total_ss); }
            if (ROWS > 3u) { store(r0 + 3u, total.w, total_ss); }
        }
    }
}
