//! Mixture-of-experts layers on the GPU engine. Routing stays on the device: the router's
//! logits go through `moe_route` (softmax, top-k, renormalise) into per-slot expert ids that the
//! expert matvecs read themselves, so no id returns to the host. Each of a step's t tokens has
//! k slots; gate|up and down run as one dispatch each over all t * k slots, and `moe_sum` adds
//! the weighted slot outputs to the residual stream.
//!
//! Prefill groups the step's slots by expert on the device (`moe_group`, a counting sort) and
//! runs one tiled matmul per expert over the rows routed to it (`matmul_grouped`), so every
//! expert's weights are read once per step whatever the number of tokens.

use std::sync::Arc;

use super::gpu::Stacked;
use crate::error::{Error, Result};
use crate::gpu::{GpuBuffer, GpuContext, GpuMatrix, Kernels, MatFlags, Op};
use crate::nn::{Linear, Moe};

pub(super) struct GpuMoe {
    /// (experts, hidden)
    router: GpuMatrix,
    /// (experts * 2 * inter, hidden): expert e's gate rows, then its up rows
    gate_up: GpuMatrix,
    /// (experts * hidden, inter)
    down: GpuMatrix,
    experts: usize,
    top_k: usize,
    inter: usize,
    renorm: bool,
}

/// Scratch shared by every MoE layer, sized for `max_t` tokens.
pub(super) struct MoeActs {
    logits: GpuBuffer,  // (max_t, experts)
    ids: GpuBuffer,     // (max_t, k) u32
    weights: GpuBuffer, // (max_t, k)
    gu: GpuBuffer,      // (max_t * k, 2 * inter)
    out: GpuBuffer,     // (max_t * k, hidden)
    groups: GpuBuffer,  // (experts + 1 + max_t * k) u32: offsets, then slots by expert
    max_t: usize,
}

impl MoeActs {
    pub(super) fn new(
        ctx: &GpuContext,
        max_t: usize,
        experts: usize,
        k: usize,
        inter: usize,
        hidden: usize,
    ) -> Result<Self> {
        if max_t * k > 65535 {
            return Err(Error::Gpu(format!(
                "{max_t} tokens x {k} experts per step exceed the 65535 slots one dispatch holds: lower the prefill step"
            )));
        }
        let b = |n: usize, l: &str| GpuBuffer::zeros(ctx, n.next_multiple_of(4), l);
        Ok(MoeActs {
            logits: b(max_t * experts, "moe_logits")?,
            ids: b(max_t * k, "moe_ids")?,
            weights: b(max_t * k, "moe_weights")?,
            gu: b(max_t * k * 2 * inter, "moe_gate_up")?,
            out: b(max_t * k * hidden, "moe_out")?,
            groups: b(experts + 1 + max_t * k, "moe_groups")?,
            max_t,
        })
    }
}

fn one_binding(s: Stacked, what: &str) -> Result<GpuMatrix> {
    let mut parts = s.parts;
    if parts.len() != 1 {
        return Err(Error::Gpu(format!(
            "the {what} of one MoE layer must fit one storage binding (all experts stacked, one dtype)"
        )));
    }
    Ok(parts.remove(0).1)
}

impl GpuMoe {
    pub(super) fn upload(ctx: &Arc<GpuContext>, m: &Moe) -> Result<Self> {
        let gate_up: Vec<&Linear> = m
            .experts
            .iter()
            .flat_map(|e| [&e.gate_proj, &e.up_proj])
            .collect();
        let down: Vec<&Linear> = m.experts.iter().map(|e| &e.down_proj).collect();
        let inter = m.experts.first().map_or(0, |e| e.gate_proj.out_features());
        let mut router = one_binding(Stacked::upload(ctx, &[&m.gate], "moe_router")?, "router")?;
        router.exact_input = true;
        Ok(GpuMoe {
            router,
            gate_up: one_binding(
                Stacked::upload(ctx, &gate_up, "moe_gate_up")?,
                "gate|up experts",
            )?,
            down: one_binding(Stacked::upload(ctx, &down, "moe_down")?, "down experts")?,
            experts: m.experts.len(),
            top_k: m.top_k,
            inter,
            renorm: m.norm_topk_prob,
        })
    }

    /// Random weights of the shape `c` gives (synthetic benchmarks).
    pub(super) fn random(
        ctx: &Arc<GpuContext>,
        c: &crate::models::config::Qwen3Config,
        q8: bool,
        seed: u32,
    ) -> Result<Self> {
        let (e, h, i) = (c.num_experts, c.hidden_size, c.moe_intermediate_size);
        let std = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
        let single = |m: GpuMatrix, what: &str| {
            if m.chunks.len() == 1 {
                Ok(m)
            } else {
                Err(Error::Gpu(format!(
                    "the {what} of one MoE layer must fit one storage binding"
                )))
            }
        };
        // the router stays BF16 in Q8_0 models, as the converter keeps it
        let mut router = GpuMatrix::random(ctx, e, h, false, std(h), None, seed, "moe_router")?;
        router.exact_input = true;
        Ok(GpuMoe {
            router,
            gate_up: single(
                GpuMatrix::random(ctx, e * 2 * i, h, q8, std(h), None, seed + 1, "moe_gate_up")?,
                "gate|up experts",
            )?,
            down: single(
                GpuMatrix::random(ctx, e * h, i, q8, std(i), None, seed + 2, "moe_down")?,
                "down experts",
            )?,
            experts: e,
            top_k: c.num_experts_per_tok,
            inter: i,
            renorm: c.norm_topk_prob,
        })
    }

    pub(super) fn experts(&self) -> (usize, usize, usize) {
        (self.experts, self.top_k, self.inter)
    }

    /// Bytes a decoded token reads: the router and k experts.
    pub(super) fn active_bytes(&self) -> usize {
        let per_expert = (self.gate_up.byte_len() + self.down.byte_len()) / self.experts.max(1);
        self.router.byte_len() + self.top_k * per_expert
    }

    /// x (t, hidden) += MoE(rms_norm(x) * norm): the ops of one layer. Decode folds the norm
    /// into the router and gate|up matvecs; prefill normalises into `h` first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ops(
        &self,
        k: &Kernels,
        a: &MoeActs,
        x: &GpuBuffer,
        h: &GpuBuffer,
        norm: &GpuBuffer,
        eps: f32,
        hidden: usize,
        prefill: bool,
    ) -> Result<Vec<Op>> {
        let none = MatFlags::default();
        let (e, kk, inter) = (self.experts, self.top_k, self.inter);
        let mut ops = Vec::new();
        // decode: the router and the routing in one dispatch where the kernel fits
        let fused = if prefill || !k.tuning.moe_router {
            None
        } else {
            k.moe_router(
                &self.router,
                &a.logits,
                x,
                norm,
                eps,
                kk,
                self.renorm,
                &a.ids,
                &a.weights,
            )?
        };
        let routed = fused.is_some();
        let normed_input = if let Some(op) = fused {
            ops.push(op);
            // the expert matvecs fold the norm into their own input, as below
            Some((norm, eps))
        } else if prefill || !k.fuses_norm(&self.router) {
            ops.push(k.rms_norm(x, h, norm, hidden, 1, 0, eps)?);
            ops.extend(if prefill {
                k.linear_prefill(&self.router, h, hidden, &a.logits, e, 0, none)?
            } else {
                k.matvec(&self.router, h, 0, &a.logits, 0, none)?
            });
            None
        } else {
            ops.extend(k.matvec_normed(&self.router, x, norm, eps, &a.logits, 0)?);
            Some((norm, eps))
        };
        if !routed {
            ops.push(k.moe_route(&a.logits, e, kk, self.renorm, &a.ids, &a.weights)?);
        }
        let swiglu = MatFlags {
            accumulate: false,
            swiglu_up_off: Some(inter),
        };
        if prefill {
            ops.push(k.moe_group(&a.ids, e, kk, &a.groups)?);
            let (gu, d) = (&self.gate_up, &self.down);
            // short steps: each expert's weights read once for its few slots (Q8_0 matrices;
            // the others, and longer steps, take the grouped matmul)
            let t = k.tuning.small_t.min(a.max_t as u32);
            let small_gu = if k.has_matvec_grouped(gu) { t } else { 0 };
            let small_d = if k.has_matvec_grouped(d) { t } else { 0 };
            if small_gu > 0 {
                ops.push(k.matvec_grouped(
                    gu,
                    2 * inter,
                    e,
                    h,
                    0,
                    hidden,
                    kk,
                    &a.gu,
                    &a.groups,
                    t,
                    none,
                )?);
            }
            ops.push(k.matmul_grouped(
                gu,
                2 * inter,
                e,
                h,
                hidden,
                kk,
                &a.gu,
                &a.groups,
                a.max_t,
                none,
                small_gu,
            )?);
            if small_d > 0 {
                ops.push(k.matvec_grouped(
                    d,
                    hidden,
                    e,
                    &a.gu,
                    0,
                    2 * inter,
                    1,
                    &a.out,
                    &a.groups,
                    t,
                    swiglu,
                )?);
            }
            ops.push(k.matmul_grouped(
                d,
                hidden,
                e,
                &a.gu,
                2 * inter,
                1,
                &a.out,
                &a.groups,
                a.max_t,
                swiglu,
                small_d,
            )?);
        } else {
            let input = if normed_input.is_some() { x } else { h };
            let gu = &self.gate_up;
            ops.extend(k.matvec_moe(
                gu,
                2 * inter,
                input,
                0,
                hidden,
                kk,
                &a.gu,
                &a.ids,
                kk,
                none,
                normed_input,
                None,
            )?);
            let d = &self.down;
            // the Q8_0 down matvec adds the slots into the residual itself (no moe_sum)
            let fold = d.is_q8 && k.tuning.moe_sum_fold;
            let sum = fold.then_some(crate::gpu::MoeSum {
                weights: &a.weights,
                residual: x,
                max_t: a.max_t,
            });
            ops.extend(k.matvec_moe(
                d,
                hidden,
                &a.gu,
                0,
                2 * inter,
                1,
                &a.out,
                &a.ids,
                kk,
                swiglu,
                None,
                sum,
            )?);
            if fold {
                return Ok(ops);
            }
        }
        ops.push(k.moe_sum(&a.out, &a.weights, x, hidden, kk)?);
        Ok(ops)
    }
}
