//! The encoder's building blocks: Linear with bias, LayerNorm, the strided 3×3 convolution,
//! windowed self-attention, and the pre-LN layer (`Qwen3OmniMoeAudioEncoderLayer`, L604-650;
//! attention L509-601).

use rayon::prelude::*;

use super::config::{AudioEncoderConfig, conv_len};
use super::gelu::gelu_in_place;
use crate::cpu;
use crate::cpu::dot::{axpy_f32, dot_f32};
use crate::error::Result;
use crate::nn::Linear;
use crate::tensor::MatRef;
use crate::weights::{TensorView, WeightStore};

/// `nn.LayerNorm`'s default eps, which every norm of the reference encoder keeps.
pub(crate) const LAYER_NORM_EPS: f64 = 1e-5;

/// A Linear with a bias (`nn.Linear(bias=True)`); the weight stays in the mmap.
pub(crate) struct BiasedLinear {
    /// (out, in)
    pub(crate) linear: Linear,
    /// (out,) f32
    pub(crate) bias: Vec<f32>,
}

impl BiasedLinear {
    pub(super) fn load(store: &WeightStore, prefix: &str, out: usize, inp: usize) -> Result<Self> {
        Ok(BiasedLinear {
            linear: Linear::load(store, &format!("{prefix}.weight"), out, inp)?,
            bias: load_f32(store, &format!("{prefix}.bias"), &[out])?,
        })
    }

    /// x (t, in) -> (t, out)
    pub(super) fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut y = self.linear.forward(x, t);
        for row in y.chunks_exact_mut(self.bias.len()) {
            cpu::add_in_place(row, &self.bias);
        }
        y
    }
}

/// `nn.LayerNorm` with weight and bias.
pub(crate) struct LayerNorm {
    /// (dim,) f32
    pub(crate) weight: Vec<f32>,
    /// (dim,) f32
    pub(crate) bias: Vec<f32>,
}

impl LayerNorm {
    pub(super) fn load(store: &WeightStore, prefix: &str, dim: usize) -> Result<Self> {
        Ok(LayerNorm {
            weight: load_f32(store, &format!("{prefix}.weight"), &[dim])?,
            bias: load_f32(store, &format!("{prefix}.bias"), &[dim])?,
        })
    }

    /// x (t, dim) -> normalised copy (t, dim). Mean and variance in f64 (two passes), so the
    /// statistics add no rounding of their own.
    pub(super) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let dim = self.weight.len();
        let mut y = x.to_vec();
        for row in y.chunks_exact_mut(dim) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = ((*v as f64 - mean) * inv) as f32 * w + b;
            }
        }
        y
    }
}

/// One convolution's activations, channels innermost: (freq, time, channels) f32.
pub(crate) struct FeatureMap {
    pub(crate) data: Vec<f32>,
    pub(super) freq: usize,
    pub(super) time: usize,
    pub(super) channels: usize,
}

/// `nn.Conv2d(in, out, kernel 3, stride 2, padding 1)` followed by GELU, as im2col + matmul.
pub(crate) struct Conv2d {
    /// (out, in, 3, 3) as stored: the GPU engine multiplies it as an (out, in·9) matrix
    pub(crate) weight: TensorView,
    kernel: ConvKernel,
    /// (out,) f32
    pub(crate) bias: Vec<f32>,
    pub(crate) in_channels: usize,
}

/// How a convolution's (out, in·9) kernel meets its im2col rows.
enum ConvKernel {
    /// The matmul kernel over the stored (out, in, 3, 3) weight read as (out, in·9).
    Matmul(TensorView),
    /// (in·9, out) f32, tap-major, for rows shorter than one SIMD block of the dot kernel:
    /// the first convolution (1 channel × 9 taps) was all scalar tail there, 12 ms per 1-s
    /// chunk at 480 channels (measured 2026-11-27); tap by tap, the loop over output
    /// channels vectorises instead.
    Taps(Vec<f32>),
}

/// Shortest im2col row worth the matmul kernel (its SIMD block is 32 elements).
const MATMUL_MIN_TAPS: usize = 32;

impl Conv2d {
    pub(super) fn load(store: &WeightStore, prefix: &str, out: usize, inp: usize) -> Result<Self> {
        let weight = store.get_float(&format!("{prefix}.weight"), &[out, inp, 3, 3])?;
        let taps = inp * 9;
        let kernel = if taps >= MATMUL_MIN_TAPS {
            ConvKernel::Matmul(weight.clone())
        } else {
            ConvKernel::Taps(transpose(&weight.to_f32_vec()?, out, taps))
        };
        Ok(Conv2d {
            weight,
            kernel,
            bias: load_f32(store, &format!("{prefix}.bias"), &[out])?,
            in_channels: inp,
        })
    }

    /// The kernel as (in·9, out) f32, tap-major (tap = channel·9 + kernel row·3 + kernel
    /// column), as the GPU's direct convolution reads it: neighbouring output channels read
    /// neighbouring weights.
    pub(crate) fn tap_major_kernel(&self) -> Result<Vec<f32>> {
        let (out_ch, taps) = (self.bias.len(), self.in_channels * 9);
        Ok(transpose(&self.weight.to_f32_vec()?, out_ch, taps))
    }

    /// gelu(conv(x)): (freq, time, in) -> (⌈freq/2⌉, ⌈time/2⌉, out)
    pub(super) fn forward_gelu(&self, x: &FeatureMap) -> FeatureMap {
        debug_assert_eq!(x.channels, self.in_channels);
        let (freq, time) = (conv_len(x.freq), conv_len(x.time));
        let (out_ch, taps) = (self.bias.len(), self.in_channels * 9);
        let cols = im2col_3x3_stride2(x);
        let mut y = vec![0f32; freq * time * out_ch];
        match &self.kernel {
            ConvKernel::Matmul(w) => {
                let w = MatRef::new(w.dtype, w.bytes(), out_ch, taps);
                cpu::matmul(&cols, freq * time, w, &mut y);
            }
            ConvKernel::Taps(w_t) => {
                let rows = y.par_chunks_mut(out_ch).zip(cols.par_chunks(taps));
                rows.for_each(|(yr, col)| {
                    for (&c, w_row) in col.iter().zip(w_t.chunks_exact(out_ch)) {
                        axpy_f32(c, w_row, yr);
                    }
                });
            }
        }
        for row in y.chunks_exact_mut(out_ch) {
            cpu::add_in_place(row, &self.bias);
        }
        gelu_in_place(&mut y);
        FeatureMap {
            data: y,
            freq,
            time,
            channels: out_ch,
        }
    }
}

/// (rows, cols) -> (cols, rows)
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}

/// The patches of a 3×3, stride-2, padding-1 convolution: one row per output position
/// (freq-major), columns in the weight's (channel, kernel row, kernel column) order; taps
/// outside the map are the zero padding.
fn im2col_3x3_stride2(x: &FeatureMap) -> Vec<f32> {
    let (freq, time) = (conv_len(x.freq), conv_len(x.time));
    let c = x.channels;
    let k = c * 9;
    let mut cols = vec![0f32; freq * time * k];
    cols.par_chunks_mut(k).enumerate().for_each(|(pos, row)| {
        let (fo, to) = (pos / time, pos % time);
        for kf in 0..3 {
            // input index 2·out + tap − 1; the −1 is the padding
            let Some(fi) = (2 * fo + kf).checked_sub(1).filter(|&f| f < x.freq) else {
                continue;
            };
            for kt in 0..3 {
                let Some(ti) = (2 * to + kt).checked_sub(1).filter(|&t| t < x.time) else {
                    continue;
                };
                let src = &x.data[(fi * x.time + ti) * c..][..c];
                for (ch, &v) in src.iter().enumerate() {
                    row[ch * 9 + kf * 3 + kt] = v;
                }
            }
        }
    });
    cols
}

/// Bidirectional multi-head self-attention with biases on q, k, v and out
/// (`Qwen3OmniMoeAudioAttention`).
pub(crate) struct SelfAttention {
    pub(crate) q_proj: BiasedLinear,
    pub(crate) k_proj: BiasedLinear,
    pub(crate) v_proj: BiasedLinear,
    pub(crate) out_proj: BiasedLinear,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(store: &WeightStore, prefix: &str, cfg: &AudioEncoderConfig) -> Result<Self> {
        let d = cfg.d_model;
        let proj = |name: &str| BiasedLinear::load(store, &format!("{prefix}.{name}"), d, d);
        Ok(SelfAttention {
            q_proj: proj("q_proj")?,
            k_proj: proj("k_proj")?,
            v_proj: proj("v_proj")?,
            out_proj: proj("out_proj")?,
            heads: cfg.encoder_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// x (n, d) -> (n, d), each token attending to the tokens of its window only.
    fn forward(&self, x: &[f32], n: usize, window: usize) -> Vec<f32> {
        let q = self.q_proj.forward(x, n);
        let k = self.k_proj.forward(x, n);
        let v = self.v_proj.forward(x, n);
        let attn = windowed_attention(&q, &k, &v, self.heads, self.head_dim, window);
        self.out_proj.forward(&attn, n)
    }
}

/// out (n, heads·hd) = softmax(q kᵀ / √hd) v per head, where the query of token i sees the
/// keys of its window [⌊i/w⌋·w, min(⌊i/w⌋·w + w, n)) and no others (no causal mask).
/// q, k, v: (n, heads, hd).
fn windowed_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    window: usize,
) -> Vec<f32> {
    let n = q.len() / (heads * head_dim);
    let scale = 1.0 / (head_dim as f32).sqrt();
    // row tok·heads + h = head h of token tok, in q, k, v and out alike
    let k_rows: Vec<&[f32]> = k.chunks_exact(head_dim).collect();
    let v_rows: Vec<&[f32]> = v.chunks_exact(head_dim).collect();
    let mut out = vec![0f32; q.len()];
    // One task per (token, head): each writes its own row of `out`.
    let rows = out.par_chunks_mut(head_dim).zip(q.par_chunks(head_dim));
    rows.enumerate().for_each(|(i, (o, qh))| {
        let (tok, h) = (i / heads, i % heads);
        let start = tok / window * window;
        let keys = start..(start + window).min(n);
        let mut scores: Vec<f32> = keys
            .clone()
            .map(|j| dot_f32(qh, k_rows[j * heads + h]) * scale)
            .collect();
        cpu::softmax_in_place(&mut scores);
        for (j, &w) in keys.zip(&scores) {
            axpy_f32(w, v_rows[j * heads + h], o);
        }
    });
    out
}

/// One pre-LN encoder layer (`Qwen3OmniMoeAudioEncoderLayer`).
pub(crate) struct EncoderLayer {
    pub(crate) self_attn_layer_norm: LayerNorm,
    pub(crate) self_attn: SelfAttention,
    pub(crate) final_layer_norm: LayerNorm,
    /// (ffn, d)
    pub(crate) fc1: BiasedLinear,
    /// (d, ffn)
    pub(crate) fc2: BiasedLinear,
}

impl EncoderLayer {
    pub(super) fn load(
        store: &WeightStore,
        prefix: &str,
        cfg: &AudioEncoderConfig,
    ) -> Result<Self> {
        let (d, ffn) = (cfg.d_model, cfg.encoder_ffn_dim);
        Ok(EncoderLayer {
            self_attn_layer_norm: LayerNorm::load(
                store,
                &format!("{prefix}.self_attn_layer_norm"),
                d,
            )?,
            self_attn: SelfAttention::load(store, &format!("{prefix}.self_attn"), cfg)?,
            final_layer_norm: LayerNorm::load(store, &format!("{prefix}.final_layer_norm"), d)?,
            fc1: BiasedLinear::load(store, &format!("{prefix}.fc1"), ffn, d)?,
            fc2: BiasedLinear::load(store, &format!("{prefix}.fc2"), d, ffn)?,
        })
    }

    /// x (n, d) updated in place.
    pub(super) fn forward(&self, x: &mut [f32], n: usize, window: usize) {
        let h = self.self_attn_layer_norm.forward(x);
        let attn = self.self_attn.forward(&h, n, window);
        cpu::add_in_place(x, &attn);
        let h = self.final_layer_norm.forward(x);
        let mut f = self.fc1.forward(&h, n);
        gelu_in_place(&mut f);
        let f = self.fc2.forward(&f, n);
        cpu::add_in_place(x, &f);
    }
}

/// A small tensor decoded to f32 (biases, norms).
pub(super) fn load_f32(store: &WeightStore, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    store.get_float(name, shape)?.to_f32_vec()
}
