//! Rotary position embedding, the "rotate half" form Qwen3 uses: the first and second halves
//! of each head are the pair (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin).

/// Inverse frequencies theta^(-2i/d) for i < d/2, rounded to f32 as the reference does.
pub fn inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
        .collect()
}

/// cos and sin of the rotation angle of one frequency at one position. The reference
/// multiplies in f32, then takes cos / sin of that f32 angle; the GPU table uses this too.
pub fn cos_sin(pos: usize, inv_freq: f32) -> (f32, f32) {
    let angle = (pos as f32 * inv_freq) as f64;
    (angle.cos() as f32, angle.sin() as f32)
}

/// Rotate `x` (tokens, heads, head_dim) in place; token j sits at position `pos0 + j`.
pub fn rope(x: &mut [f32], heads: usize, inv_freq: &[f32], pos0: usize) {
    let half = inv_freq.len();
    let hd = 2 * half;
    assert!(
        x.len().is_multiple_of(heads * hd),
        "rope: x is not whole tokens"
    );
    let mut cos = vec![0f32; half];
    let mut sin = vec![0f32; half];
    for (j, tok) in x.chunks_exact_mut(heads * hd).enumerate() {
        for i in 0..half {
            (cos[i], sin[i]) = cos_sin(pos0 + j, inv_freq[i]);
        }
        for head in tok.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}
