// Shared helpers, prepended to every shader by the pipeline cache.
// Weights: two 16-bit values per u32 word, the even element in the low half (little-endian
// safetensors bytes read as u32). BF16 is the top half of an f32; F16 goes through unpack2x16float.

fn bf16_lo(w: u32) -> f32 { return bitcast<f32>(w << 16u); }
fn bf16_hi(w: u32) -> f32 { return bitcast<f32>(w & 0xffff0000u); }

// Both halves as f32; `is_f16` is a pipeline constant, so the branch folds away.
fn unpack_w(w: u32, is_f16: bool) -> vec2<f32> {
    if (is_f16) { return unpack2x16float(w); }
    return vec2<f32>(bf16_lo(w), bf16_hi(w));
}

// Dynamic sizes of one forward step (one uniform shared by every op of the step).
struct Step {
    t: u32,       // tokens in this step
    pos0: u32,    // position of the first of them
    kv_len: u32,  // pos0 + t: cache rows valid after this step
    _pad: u32,
}
