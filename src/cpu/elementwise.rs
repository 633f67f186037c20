//! Small element-wise kernels: embedding gather, SwiGLU, residual add, softmax, argmax.

use crate::tensor::MatRef;

/// out (ids.len(), cols) = rows `ids` of the embedding table.
pub fn embedding_gather(table: MatRef, ids: &[u32], out: &mut [f32]) {
    assert_eq!(out.len(), ids.len() * table.cols);
    for (row, &id) in out.chunks_exact_mut(table.cols).zip(ids) {
        table.row_to_f32(id as usize, row);
    }
}

/// gate <- silu(gate) * up  (SwiGLU; silu(x) = x * sigmoid(x)).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// x <- x + y.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Numerically stable softmax in place.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Index of the largest value; the first one on ties (as torch.argmax). NaN never wins.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best
}
