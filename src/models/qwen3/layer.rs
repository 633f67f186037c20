//! One decoder layer (`Qwen3DecoderLayer`, `Qwen3MoeDecoderLayer`): pre-norm attention and a
//! pre-norm SwiGLU MLP or mixture of experts, each added to the residual stream.

use crate::cpu;
use crate::error::Result;
use crate::models::config::Qwen3Config;
use crate::nn::attention::AttentionConfig;
use crate::nn::{Attention, KvCache, Mlp, Moe, RmsNorm};
use crate::weights::WeightStore;

pub struct DecoderLayer {
    /// (hidden,)
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    /// (hidden,)
    pub post_attention_layernorm: RmsNorm,
    pub ffn: FeedForward,
}

/// The layer's feed-forward block (one per layer: the size difference does not matter).
#[allow(clippy::large_enum_variant)]
pub enum FeedForward {
    Dense(Mlp),
    Moe(Moe),
}

impl FeedForward {
    pub fn weight_bytes(&self) -> usize {
        match self {
            FeedForward::Dense(m) => m.weight_bytes(),
            FeedForward::Moe(m) => m.weight_bytes(),
        }
    }

    /// Every projection matrix (the router and each expert's three for MoE).
    pub fn matrices_mut(&mut self) -> Vec<&mut crate::nn::Linear> {
        match self {
            FeedForward::Dense(m) => vec![&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj],
            FeedForward::Moe(m) => {
                let mut v = vec![&mut m.gate];
                for e in &mut m.experts {
                    v.extend([&mut e.gate_proj, &mut e.up_proj, &mut e.down_proj]);
                }
                v
            }
        }
    }

    /// The matrices Q8_0 quantises: all but the MoE router, whose choices are discrete (its
    /// weights and inputs stay exact; docs/kernels.md).
    pub fn quantisable_mut(&mut self) -> Vec<&mut crate::nn::Linear> {
        match self {
            FeedForward::Dense(_) => self.matrices_mut(),
            FeedForward::Moe(m) => m
                .experts
                .iter_mut()
                .flat_map(|e| [&mut e.gate_proj, &mut e.up_proj, &mut e.down_proj])
                .collect(),
        }
    }

    /// Every projection matrix, in the order of `matrices_mut`.
    pub fn matrices(&self) -> Vec<&crate::nn::Linear> {
        match self {
            FeedForward::Dense(m) => vec![&m.gate_proj, &m.up_proj, &m.down_proj],
            FeedForward::Moe(m) => {
                let mut v = vec![&m.gate];
                for e in &m.experts {
                    v.extend([&e.gate_proj, &e.up_proj, &e.down_proj]);
                }
                v
            }
        }
    }

    /// The matrices one token reads (the router and top_k experts for MoE).
    pub fn active_matrices(&self) -> Vec<&crate::nn::Linear> {
        match self {
            FeedForward::Dense(m) => vec![&m.gate_proj, &m.up_proj, &m.down_proj],
            FeedForward::Moe(m) => {
                let mut v = vec![&m.gate];
                for e in m.experts.iter().take(m.top_k) {
                    v.extend([&e.gate_proj, &e.up_proj, &e.down_proj]);
                }
                v
            }
        }
    }
}

impl DecoderLayer {
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        layer: usize,
        c: &Qwen3Config,
        attn: &AttentionConfig,
    ) -> Result<Self> {
        let h = c.hidden_size;
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::load(
                store,
                &format!("{prefix}.input_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            self_attn: Attention::load(store, &format!("{prefix}.self_attn"), attn)?,
            post_attention_layernorm: RmsNorm::load(
                store,
                &format!("{prefix}.post_attention_layernorm.weight"),
                h,
                c.rms_norm_eps,
            )?,
            ffn: if c.is_moe_layer(layer) {
                FeedForward::Moe(Moe::load(
                    store,
                    &format!("{prefix}.mlp"),
                    h,
                    c.moe_intermediate_size,
                    c.num_experts,
                    c.num_experts_per_tok,
                    c.norm_topk_prob,
                )?)
            } else {
                FeedForward::Dense(Mlp::load(
                    store,
                    &format!("{prefix}.mlp"),
                    h,
                    c.intermediate_size,
                )?)
            },
        })
    }

    /// x (t, hidden) updated in place.
    pub fn forward(
        &self,
        x: &mut [f32],
        t: usize,
        layer: usize,
        cache: &mut KvCache,
        attn: &AttentionConfig,
        router_logits: Option<&mut Vec<f32>>,
    ) {
        // 1. attention block
        let mut normed = x.to_vec();
        self.input_layernorm.forward(&mut normed);
        let a = self.self_attn.forward(&normed, t, layer, cache, attn);
        cpu::add_in_place(x, &a);
        // 2. MLP block
        normed.copy_from_slice(x);
        self.post_attention_layernorm.forward(&mut normed);
        let m = match &self.ffn {
            FeedForward::Dense(mlp) => mlp.forward(&normed, t),
            FeedForward::Moe(moe) => {
                let logits = moe.router_logits(&normed, t);
                let routes = moe.routes(&logits);
                if let Some(out) = router_logits {
                    *out = logits;
                }
                moe.forward_routed(&normed, t, &routes)
            }
        };
        cpu::add_in_place(x, &m);
    }

    pub fn weight_bytes(&self) -> usize {
        self.self_attn.weight_bytes()
            + self.ffn.weight_bytes()
            + 8 * self.input_layernorm.weight.len()
    }
}
