//! Causal grouped-query attention of new queries over a KV cache (decode is one query).

use rayon::prelude::*;

use super::dot::{axpy_f32, dot_f32};
use super::elementwise::softmax_in_place;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// out (t, heads * head_dim) = softmax(q kᵀ / sqrt(head_dim)) v, causally masked.
///
/// q: (t, heads, head_dim), queries at positions pos0..pos0+t.
/// k, v: (len, kv_heads, head_dim) cache rows for positions 0..len, len >= pos0 + t.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], s: AttnShape, pos0: usize, out: &mut [f32]) {
    let (hd, kvw) = (s.head_dim, s.kv_heads * s.head_dim);
    let t = q.len() / (s.heads * hd);
    assert_eq!(out.len(), q.len());
    assert!(k.len() >= (pos0 + t) * kvw && k.len() == v.len());
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // One task per (token, head): each writes its own head_dim slice of `out`.
    out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
        let (tok, h) = (i / s.heads, i % s.heads);
        let kvh = h / group;
        let qh = &q[i * hd..(i + 1) * hd];
        let len = pos0 + tok + 1;
        let mut scores: Vec<f32> = (0..len)
            .map(|p| {
                let kr = &k[p * kvw + kvh * hd..p * kvw + (kvh + 1) * hd];
                dot_f32(qh, kr) * scale
            })
            .collect();
        softmax_in_place(&mut scores);
        o.fill(0.0);
        for (p, w) in scores.iter().enumerate() {
            let vr = &v[p * kvw + kvh * hd..p * kvw + (kvh + 1) * hd];
            axpy_f32(*w, vr, o);
        }
    });
}
