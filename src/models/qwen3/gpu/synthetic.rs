//! Full-size Qwen3 shapes with random weights made on the device (`omni bench --synthetic`).

use super::*;

impl Qwen3Gpu {
    /// A model of `c`'s shape with random weights made on the device (BF16, or Q8_0 matrices
    /// when `q8`; the embedding table is BF16 either way, as `new` uploads it): for
    /// benchmarking full-size shapes without their files.
    pub fn synthetic(
        ctx: &Arc<GpuContext>,
        c: &crate::models::config::Qwen3Config,
        q8: bool,
        opts: GpuModelOptions,
    ) -> Result<Self> {
        let tuning = crate::gpu::Tuning::for_adapter(&ctx.info);
        Self::synthetic_tuned(ctx, c, q8, opts, tuning)
    }

    /// [`Qwen3Gpu::synthetic`] with the kernels' shape choices given (the same weights for the
    /// same config: tests compare programs on them).
    pub fn synthetic_tuned(
        ctx: &Arc<GpuContext>,
        c: &crate::models::config::Qwen3Config,
        q8: bool,
        opts: GpuModelOptions,
        tuning: crate::gpu::Tuning,
    ) -> Result<Self> {
        let hd = c.head_dim();
        let a = crate::nn::attention::AttentionConfig {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: hd,
            rms_norm_eps: c.rms_norm_eps,
            inv_freq: cpu::rope::inv_freq(hd, c.rope_theta()),
        };
        let (h, heads, kvh, cap) = (c.hidden_size, a.heads, a.kv_heads, opts.ctx);
        let std = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
        let ones = |n: usize, l: &str| GpuBuffer::from_f32(ctx, &vec![1.0; n], l);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        let mut weight_bytes = 0;
        for i in 0..c.num_hidden_layers {
            let seed = 1000 * i as u32;
            let qkv = GpuMatrix::random(
                ctx,
                (heads + 2 * kvh) * hd,
                h,
                q8,
                std(h),
                None,
                seed,
                "qkv",
            )?;
            let layer = GpuLayer {
                qkv_proj: Stacked {
                    parts: vec![(0, qkv)],
                },
                o_proj: GpuMatrix::random(
                    ctx,
                    h,
                    heads * hd,
                    q8,
                    std(heads * hd),
                    None,
                    seed + 1,
                    "o",
                )?,
                ffn: if c.is_moe_layer(i) {
                    GpuFfn::Moe(GpuMoe::random(ctx, c, q8, seed + 2)?)
                } else {
                    let inter = c.intermediate_size;
                    GpuFfn::Dense {
                        gate_up_proj: Stacked {
                            parts: vec![(
                                0,
                                GpuMatrix::random(
                                    ctx,
                                    2 * inter,
                                    h,
                                    q8,
                                    std(h),
                                    None,
                                    seed + 5,
                                    "gate_up",
                                )?,
                            )],
                        },
                        down_proj: GpuMatrix::random(
                            ctx,
                            h,
                            inter,
                            q8,
                            std(inter),
                            None,
                            seed + 6,
                            "down",
                        )?,
                    }
                },
                input_layernorm: ones(h, "input_layernorm")?,
                post_attention_layernorm: ones(h, "post_attention_layernorm")?,
                q_norm: ones(hd, "q_norm")?,
                k_norm: ones(hd, "k_norm")?,
                k_cache: buf(ctx, cap * kvh * hd, "k_cache")?,
                v_cache: buf(ctx, cap * kvh * hd, "v_cache")?,
            };
            weight_bytes += layer.decoded_bytes();
            layers.push(layer);
        }
        let v = c.vocab_size;
        let embed = GpuMatrix::random(ctx, v, h, false, 1.0, None, 7, "embed_tokens")?;
        let lm_head = GpuMatrix::random(ctx, v, h, q8, std(h), None, 8, "lm_head")?;
        let lm_head_bytes = lm_head.byte_len();
        let weights = GpuWeights {
            layers,
            embed,
            lm_head: Some(lm_head),
            norm: ones(h, "norm")?,
            weight_bytes: weight_bytes + lm_head_bytes,
            lm_head_bytes,
        };
        Self::assemble(ctx, c, &a, weights, opts, tuning)
    }
}
