//! RMSNorm over the last axis (`Qwen3RMSNorm`): y = x / sqrt(mean(x²) + eps) * weight.
//! Also used per head for QK-norm, with rows of head_dim.

/// Normalise each row of `x` (rows of `weight.len()` values) in place.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let d = weight.len();
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "rms_norm: x is not whole rows"
    );
    for row in x.chunks_exact_mut(d) {
        let ss: f32 = sum_squares(row);
        let inv = 1.0 / (ss / d as f32 + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

/// Sum of squares with 8 partial sums (vectorises, and is closer to torch's blocked reduction
/// than one long serial sum).
fn sum_squares(row: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i] * c[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|v| v * v).sum::<f32>()
}
