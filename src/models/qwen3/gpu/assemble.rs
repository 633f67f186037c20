//! The decode and prefill programs: every op of a step, built once over the uploaded (or
//! synthetic) weights.

use super::*;

impl Qwen3Gpu {
    /// Build the step programs over uploaded (or synthetic) weights.
    pub(super) fn assemble(
        ctx: &Arc<GpuContext>,
        c: &crate::models::config::Qwen3Config,
        a: &crate::nn::attention::AttentionConfig,
        w: GpuWeights,
        opts: GpuModelOptions,
        tuning: crate::gpu::Tuning,
    ) -> Result<Self> {
        let GpuWeights {
            layers,
            embed,
            lm_head,
            norm,
            weight_bytes,
            lm_head_bytes,
        } = w;
        if a.head_dim > 128 {
            return Err(Error::Gpu(format!(
                "head_dim {} > 128 is not supported by the GPU attention kernels",
                a.head_dim
            )));
        }
        let (hd, heads, kvh, hidden, inter, vocab) = (
            a.head_dim,
            a.heads,
            a.kv_heads,
            c.hidden_size,
            c.intermediate_size,
            c.vocab_size,
        );
        let (cap, max_t) = (opts.ctx, opts.max_prefill.max(1));
        let pitch = (heads + 2 * kvh) * hd;
        let rope = GpuBuffer::from_f32(ctx, &rope_table(&a.inv_freq, cap), "rope")?;
        let acts = Acts {
            ids: buf(ctx, max_t, "ids")?,
            x: buf(ctx, max_t * hidden, "x")?,
            h: buf(ctx, max_t * hidden, "h")?,
            qkv: buf(ctx, max_t * pitch, "qkv")?,
            q: buf(ctx, max_t * heads * hd, "q")?,
            attn: buf(ctx, max_t * heads * hd, "attn")?,
            gu: buf(ctx, max_t * 2 * inter, "gate_up")?,
            part_v: buf(ctx, Kernels::argmax_parts(vocab), "argmax_v")?,
            part_i: buf(ctx, Kernels::argmax_parts(vocab), "argmax_i")?,
            last_raw: buf(ctx, hidden, "last_raw")?,
            last: buf(ctx, hidden, "last")?,
            logits: buf(ctx, vocab, "logits")?,
            logits_all: if opts.all_logits {
                Some(buf(ctx, max_t * vocab, "logits_all")?)
            } else {
                None
            },
            scores: buf(
                ctx,
                Kernels::attn_decode_scratch(heads, hd, cap),
                "attn_part",
            )?,
            out_id: buf(ctx, 1, "out_id")?,
        };
        // one scratch set for every MoE layer (they run one after another)
        let moe_acts = layers
            .iter()
            .find_map(|l| match &l.ffn {
                GpuFfn::Moe(m) => Some(m.experts()),
                GpuFfn::Dense { .. } => None,
            })
            .map(|(e, kk, i)| MoeActs::new(ctx, max_t, e, kk, i, hidden))
            .transpose()?;
        ctx.queue.submit([]);
        ctx.wait()?;
        let mut k = Kernels::new(ctx);
        k.tuning = tuning;
        // split-K for prefill matmuls with few output tiles (the MoE router: 128 rows, one
        // tile column; H200 64-token step: 180 us per layer on one workgroup)
        let split = GpuBuffer::zeros(
            ctx,
            (4 * max_t * hidden).min(ctx.max_binding() as usize / 4),
            "split_k",
        )?;
        k.split_k(&split, max_t);
        let head = lm_head.as_ref().unwrap_or(&embed);
        let eps = c.rms_norm_eps as f32;
        let none = MatFlags::default();
        let acc = MatFlags {
            accumulate: true,
            swiglu_up_off: None,
        };
        // Decode chains the dense layers' Q8_0 matvecs (gpu/matvec_q8.rs, chain.rs): each
        // writes its output quantised for the next, which then skips quantising its input.
        let dc = chain::DecodeChain::new(ctx, &k, &layers, head, &norm, hidden, inter, hd, heads)?;
        // L2 prefetch dispatches beside the op before each chained matvec (gpu/prefetch.rs)
        let pf = k.tuning.l2_prefetch;
        // outside the dense chain (MoE layers), decode attention still hands its output on
        // quantised to a Q8_0 o_proj that can read it (the chain's `attn` conditions)
        let attn_to_o = |l: &GpuLayer| {
            !dc.on
                && k.tuning.q8_chain
                && k.tuning.q8_chain_attn
                && hd.is_multiple_of(32)
                && k.q8_chain_fits(&l.o_proj, None)
        };
        let program = |prefill: bool| -> Result<Vec<Op>> {
            let chain = dc.on && !prefill;
            let ac = &acts;
            let mut ops = k.embedding(&embed, &ac.ids, &ac.x)?;
            // y[:, y_off..] (+)= x W^T, as matvec (decode) or matmul (prefill)
            let lin = |w: &GpuMatrix,
                       x: &GpuBuffer,
                       x_ld: usize,
                       y: &GpuBuffer,
                       y_ld: usize,
                       y_off: usize,
                       f: MatFlags|
             -> Result<Vec<Op>> {
                if prefill {
                    k.linear_prefill(w, x, x_ld, y, y_ld, y_off, f)
                } else {
                    k.matvec(w, x, 0, y, y_off, f)
                }
            };
            for (li, l) in layers.iter().enumerate() {
                // o_proj ran inside the attention's dispatch
                let mut o_done = false;
                // 1. attention block (decode folds the RMSNorm into the projection when it can)
                let fold = !prefill && l.qkv_proj.parts.iter().all(|p| k.fuses_norm(&p.1));
                if !fold {
                    ops.push(k.rms_norm(&ac.x, &ac.h, &l.input_layernorm, hidden, 1, 0, eps)?);
                }
                // the previous layer's down projection quantised this layer's normed input
                let chained_in = chain && li > 0;
                // ... and its phased dispatch ran this layer's qkv already
                let parts = if chained_in && dc.phased {
                    &l.qkv_proj.parts[..0]
                } else {
                    &l.qkv_proj.parts[..]
                };
                for (off, part) in parts {
                    if chained_in {
                        let input = Q8Input::Quantised {
                            q: &dc.qa,
                            norm_eps: Some(eps),
                        };
                        ops.extend(k.matvec_q8_linked(part, input, &ac.qkv, *off, none, None)?);
                    } else if fold {
                        ops.extend(k.matvec_normed(
                            part,
                            &ac.x,
                            &l.input_layernorm,
                            eps,
                            &ac.qkv,
                            *off,
                        )?);
                    } else {
                        ops.extend(lin(part, &ac.h, hidden, &ac.qkv, pitch, *off, none)?);
                    }
                }
                if prefill {
                    ops.push(k.qk_norm_rope_kv(
                        &ac.qkv, &ac.q, &l.k_cache, &l.v_cache, &l.q_norm, &l.k_norm, &rope, heads,
                        kvh, hd, eps,
                    )?);
                    ops.push(
                        k.attn_prefill(&ac.q, &l.k_cache, &l.v_cache, &ac.attn, heads, kvh, hd)?,
                    );
                } else {
                    // QK-norm, RoPE and the cache store happen inside the attention, which also
                    // hands its output on quantised to o_proj in the dense chain and, outside
                    // it (MoE layers), where o_proj alone can take it
                    let hand_on = if chain { dc.attn } else { attn_to_o(l) };
                    // ... and runs o_proj in the same dispatch where it can
                    let fits = k.attn_oproj_fits(&l.o_proj, heads, hd);
                    let oproj = (hand_on && !(chain && dc.phased) && fits).then(|| FusedOProj {
                        w: &l.o_proj,
                        res: &ac.x,
                        out: chain.then_some(QuantOut::Normed(&dc.qa, &l.post_attention_layernorm)),
                    });
                    o_done = oproj.is_some();
                    if o_done {
                        ops.extend(k.l2_prefetch_tail(&l.o_proj, k.tuning.l2_prefetch_tail)?);
                    }
                    ops.extend(k.attn_decode_fused(
                        &ac.qkv,
                        &l.k_cache,
                        &l.v_cache,
                        &ac.scores,
                        &ac.attn,
                        (&l.q_norm, &l.k_norm, &rope),
                        eps,
                        heads,
                        kvh,
                        hd,
                        cap,
                        hand_on.then_some(&dc.qo),
                        oproj,
                    )?);
                }
                // o_proj read into L2 beside the attention (not in the opt-in phased dispatch,
                // nor where it runs inside the attention's)
                let o_next = !prefill && !o_done;
                if o_next && l.o_proj.is_q8 && !(chain && dc.phased) {
                    ops.extend(k.l2_prefetch(&l.o_proj, pf[0])?);
                }
                if o_done {
                    // the attention's dispatch added o_proj to the residual already
                } else if chain {
                    let input = if dc.attn {
                        Q8Input::Quantised {
                            q: &dc.qo,
                            norm_eps: None,
                        }
                    } else {
                        Q8Input::F32 {
                            x: &ac.attn,
                            x_off: 0,
                            norm: None,
                        }
                    };
                    if dc.phased {
                        let bufs = (&ac.x, &ac.gu, &ac.qkv, &ac.logits);
                        ops.extend(dc.layer_ops(&k, &layers, li, head, &norm, eps, bufs)?);
                        continue;
                    }
                    let out = QuantOut::Normed(&dc.qa, &l.post_attention_layernorm);
                    ops.extend(k.matvec_q8_linked(&l.o_proj, input, &ac.x, 0, acc, Some(out))?);
                } else if !prefill && attn_to_o(l) {
                    let input = Q8Input::Quantised {
                        q: &dc.qo,
                        norm_eps: None,
                    };
                    ops.extend(k.matvec_q8_linked(&l.o_proj, input, &ac.x, 0, acc, None)?);
                } else {
                    ops.extend(lin(&l.o_proj, &ac.attn, heads * hd, &ac.x, hidden, 0, acc)?);
                }
                // 2. feed-forward block, added to the residual
                let (gate_up_proj, down_proj) = match &l.ffn {
                    GpuFfn::Dense {
                        gate_up_proj,
                        down_proj,
                    } => (gate_up_proj, down_proj),
                    GpuFfn::Moe(m) => {
                        let a = moe_acts
                            .as_ref()
                            .ok_or_else(|| Error::Gpu("MoE scratch missing".into()))?;
                        let norm = &l.post_attention_layernorm;
                        ops.extend(m.ops(&k, a, &ac.x, &ac.h, norm, eps, hidden, prefill)?);
                        continue;
                    }
                };
                if chain {
                    let input = Q8Input::Quantised {
                        q: &dc.qa,
                        norm_eps: Some(eps),
                    };
                    let out = QuantOut::SwiGlu(&dc.qb);
                    let gu = &gate_up_proj.parts[0].1;
                    ops.extend(k.l2_prefetch(gu, pf[1])?);
                    ops.extend(k.matvec_q8_linked(gu, input, &ac.gu, 0, none, Some(out))?);
                    ops.extend(k.l2_prefetch(down_proj, pf[2])?);
                    // the next layer's input norm, or the final one before the lm_head
                    let next = match layers.get(li + 1) {
                        Some(n) => Some(QuantOut::Normed(&dc.qa, &n.input_layernorm)),
                        None => dc.head.then_some(QuantOut::Normed(&dc.qa, &norm)),
                    };
                    let input = Q8Input::Quantised {
                        q: &dc.qb,
                        norm_eps: None,
                    };
                    ops.extend(k.matvec_q8_linked(down_proj, input, &ac.x, 0, acc, next)?);
                    match layers.get(li + 1) {
                        Some(n) => {
                            for (_, part) in &n.qkv_proj.parts {
                                ops.extend(k.l2_prefetch(part, pf[3])?);
                            }
                        }
                        None if dc.head => ops.extend(k.l2_prefetch(head, pf[4])?),
                        None => {}
                    }
                    continue;
                }
                let fold = !prefill && gate_up_proj.parts.iter().all(|p| k.fuses_norm(&p.1));
                if !fold {
                    ops.push(k.rms_norm(
                        &ac.x,
                        &ac.h,
                        &l.post_attention_layernorm,
                        hidden,
                        1,
                        0,
                        eps,
                    )?);
                }
                for (off, part) in &gate_up_proj.parts {
                    if fold {
                        ops.extend(k.matvec_normed(
                            part,
                            &ac.x,
                            &l.post_attention_layernorm,
                            eps,
                            &ac.gu,
                            *off,
                        )?);
                    } else {
                        ops.extend(lin(part, &ac.h, hidden, &ac.gu, 2 * inter, *off, none)?);
                    }
                }
                let down = MatFlags {
                    accumulate: true,
                    swiglu_up_off: Some(inter),
                };
                ops.extend(lin(down_proj, &ac.gu, 2 * inter, &ac.x, hidden, 0, down)?);
            }
            Ok(ops)
        };
        let embed_op_count = k.embedding(&embed, &acts.ids, &acts.x)?.len();
        let mut decode_ops = program(false)?;
        if dc.head_phase {
            // the last layer's phased dispatch ran the lm_head
        } else if dc.head {
            let input = Q8Input::Quantised {
                q: dc.head_input(),
                norm_eps: Some(eps),
            };
            decode_ops.extend(k.matvec_q8_linked(head, input, &acts.logits, 0, none, None)?);
        } else {
            decode_ops.push(k.rms_norm(&acts.x, &acts.last, &norm, hidden, 1, 1, eps)?);
            decode_ops.extend(k.matvec(head, &acts.last, 0, &acts.logits, 0, none)?);
        }
        // the step's last ops choose the next id on the device: argmax, or the sampler
        let argmax_ops = k.argmax(
            &acts.logits,
            vocab,
            &acts.part_v,
            &acts.part_i,
            &acts.out_id,
            &acts.ids,
        )?;
        let sample_op = k.sample(&acts.logits, vocab, &acts.out_id, &acts.ids)?;
        let mut prefill_all_ops = Vec::new();
        if let Some(all) = &acts.logits_all {
            prefill_all_ops = program(true)?;
            prefill_all_ops.push(k.rms_norm(&acts.x, &acts.h, &norm, hidden, 1, 0, eps)?);
            prefill_all_ops.extend(k.matmul(head, &acts.h, hidden, all, vocab, 0, none)?);
        }
        let mut prefill_ops = program(true)?;
        prefill_ops.push(k.copy(&acts.x, 0, &acts.last_raw, 0, hidden, 0, 1)?);
        prefill_ops.push(k.rms_norm(&acts.last_raw, &acts.last, &norm, hidden, 1, 1, eps)?);
        prefill_ops.extend(k.matvec(head, &acts.last, 0, &acts.logits, 0, none)?);
        Ok(Qwen3Gpu {
            ctx: ctx.clone(),
            kernels: k,
            hidden,
            vocab,
            opts: GpuModelOptions {
                max_prefill: max_t,
                ..opts
            },
            len: 0,
            weight_bytes,
            lm_head_bytes,
            acts,
            decode_ops,
            q8_chained: dc.on,
            q8_chained_attention: dc.attn,
            q8_phased: dc.phased,
            prefill_ops,
            prefill_all_ops,
            embedding_ops: embed_op_count,
            argmax_ops,
            sample_op,
            sampling: None,
            device_sampling: None,
            id_staging: [0, 1].map(|_| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("id_staging"),
                    size: 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }),
            pending: Default::default(),
            next_slot: 0,
            _layers: layers,
            _embed: embed,
            _lm_head: lm_head,
            _norm: norm,
            _rope: rope,
            _moe_acts: moe_acts,
        })
    }
}
