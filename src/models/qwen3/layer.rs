//! One decoder layer (`Qwen3DecoderLayer`): pre-norm attention and pre-norm SwiGLU MLP, each
//! added to the residual stream.

use crate::cpu;
use crate::error::Result;
use crate::models::config::Qwen3Config;
use crate::nn::attention::AttentionConfig;
use crate::nn::{Attention, KvCache, Mlp, RmsNorm};
use crate::weights::WeightStore;

pub struct DecoderLayer {
    /// (hidden,)
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    /// (hidden,)
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn load(
        store: &WeightStore,
        prefix: &str,
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
            mlp: Mlp::load(store, &format!("{prefix}.mlp"), h, c.intermediate_size)?,
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
    ) {
        // 1. attention block
        let mut normed = x.to_vec();
        self.input_layernorm.forward(&mut normed);
        let a = self.self_attn.forward(&normed, t, layer, cache, attn);
        cpu::add_in_place(x, &a);
        // 2. MLP block
        normed.copy_from_slice(x);
        self.post_attention_layernorm.forward(&mut normed);
        let m = self.mlp.forward(&normed, t);
        cpu::add_in_place(x, &m);
    }

    pub fn weight_bytes(&self) -> usize {
        self.self_attn.weight_bytes()
            + self.mlp.weight_bytes()
            + 8 * self.input_layernorm.weight.len()
    }
}
