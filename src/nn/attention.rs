//! Qwen3 self-attention (`Qwen3Attention`): q/k/v projections, per-head RMSNorm on q and k
//! (before RoPE), rotary embedding, grouped-query attention over the cache, o_proj.

use crate::cpu;
use crate::cpu::attention::AttnShape;
use crate::error::Result;
use crate::nn::{KvCache, Linear, RmsNorm};
use crate::weights::WeightStore;

/// Attention hyperparameters shared by every layer.
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    /// (head_dim / 2,) rotary inverse frequencies
    pub inv_freq: Vec<f32>,
}

pub struct Attention {
    /// (heads * head_dim, hidden)
    pub q_proj: Linear,
    /// (kv_heads * head_dim, hidden)
    pub k_proj: Linear,
    /// (kv_heads * head_dim, hidden)
    pub v_proj: Linear,
    /// (hidden, heads * head_dim)
    pub o_proj: Linear,
    /// (head_dim,)
    pub q_norm: RmsNorm,
    /// (head_dim,)
    pub k_norm: RmsNorm,
}

impl Attention {
    pub fn load(store: &WeightStore, prefix: &str, c: &AttentionConfig) -> Result<Self> {
        let (q_out, kv_out) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let name = |s: &str| format!("{prefix}.{s}");
        Ok(Attention {
            q_proj: Linear::load(store, &name("q_proj.weight"), q_out, c.hidden)?,
            k_proj: Linear::load(store, &name("k_proj.weight"), kv_out, c.hidden)?,
            v_proj: Linear::load(store, &name("v_proj.weight"), kv_out, c.hidden)?,
            o_proj: Linear::load(store, &name("o_proj.weight"), c.hidden, q_out)?,
            q_norm: RmsNorm::load(store, &name("q_norm.weight"), c.head_dim, c.rms_norm_eps)?,
            k_norm: RmsNorm::load(store, &name("k_norm.weight"), c.head_dim, c.rms_norm_eps)?,
        })
    }

    /// x (t, hidden) at positions cache.len.. -> (t, hidden); appends this layer's k, v.
    pub fn forward(
        &self,
        x: &[f32],
        t: usize,
        layer: usize,
        cache: &mut KvCache,
        c: &AttentionConfig,
    ) -> Vec<f32> {
        let pos0 = cache.len;
        let mut q = self.q_proj.forward(x, t);
        let mut k = self.k_proj.forward(x, t);
        let v = self.v_proj.forward(x, t);
        self.q_norm.forward(&mut q);
        self.k_norm.forward(&mut k);
        cpu::rope(&mut q, c.heads, &c.inv_freq, pos0);
        cpu::rope(&mut k, c.kv_heads, &c.inv_freq, pos0);
        cache.append(layer, &k, &v);
        let mut ctx = vec![0f32; q.len()];
        let shape = AttnShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        cpu::attention(&q, &cache.k[layer], &cache.v[layer], shape, pos0, &mut ctx);
        self.o_proj.forward(&ctx, t)
    }

    pub fn weight_bytes(&self) -> usize {
        self.q_proj.weight_bytes()
            + self.k_proj.weight_bytes()
            + self.v_proj.weight_bytes()
            + self.o_proj.weight_bytes()
    }
}
