// Reads a prefix (or a suffix) of a weight matrix (its int8 values, then its block scales) so the lines sit
// in the GPU's L2 cache when the matvec that owns them runs next. The host records this
// dispatch right after the op before that matvec, with no barrier between them (it binds only
// read-only buffers and its own sink), so it streams while that op runs: a decode attention
// or a small matvec leaves most of the memory bandwidth idle, and the matvec after it then
// starts on cached weights instead of a cold memory ramp.
// The loaded words are folded into one value that is stored only if it equals `magic`, a run-time
// value the compiler cannot know, so no load can be dropped; a match only writes the sink.
override WG: u32 = 256u;
override PER: u32 = 8u;   // vec4 loads per invocation, all issued before any is used
// NOP: return at once (a measurement knob, OMNI_DEBUG_NOP)
override NOP: bool = false;

struct Params {
    n_w: u32,     // vec4 of values to read
    n_s: u32,     // vec4 of scales to read after them
    magic: u32,
    w_off: u32,   // vec4 of values and of scales before the first read (a suffix of rows)
    s_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> s: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(workgroup_id) wg: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    if (NOP && p.magic != 0u) { return; }
    let base = (wg.x + wg.y * nwg.x) * WG * PER + li;
    var acc = vec4<u32>(0u);
    for (var j = 0u; j < PER; j++) {
        let i = base + j * WG;
        if (i < p.n_w) {
            acc = acc ^ w[p.w_off + i];
        } else if (i - p.n_w < p.n_s) {
            acc = acc ^ s[p.s_off + i - p.n_w];
        }
    }
    let v = (acc.x ^ acc.y) ^ (acc.z ^ acc.w);
    if (v == p.magic) { sink[li % 4u] = v; }
}
