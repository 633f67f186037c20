//! Which links of the Q8_0 decode chain (gpu/matvec_q8.rs) a model takes, the buffers they hand
//! their quantised vectors through, and the phased dispatch of a layer's matvecs (opt-in).

use super::{GpuLayer, GpuMatrix};
use crate::error::Result;
use crate::gpu::{ChainPhase, GpuBuffer, GpuContext, Kernels, Op, QuantOut, quantised_len};

pub(super) struct DecodeChain {
    /// o_proj -> gate_up and down -> the next qkv (or the lm_head): the residual stream quantised
    /// with the next RMSNorm folded in
    pub qa: GpuBuffer,
    /// gate_up -> down: SwiGLU
    pub qb: GpuBuffer,
    /// the phased dispatch's down -> next qkv (a vector is written once per dispatch)
    pub qc: GpuBuffer,
    /// attention -> o_proj
    pub qo: GpuBuffer,
    /// four per layer, ordering the phases of its dispatch
    counters: GpuBuffer,
    /// decode chains the dense layers' Q8_0 matvecs
    pub on: bool,
    /// ... the lm_head reads the last layer's quantised output (not when it stays 16-bit)
    pub head: bool,
    /// ... the attention hands o_proj its output quantised (heads of whole blocks)
    pub attn: bool,
    /// ... each layer's o_proj, gate_up, down and the next qkv run as one dispatch
    pub phased: bool,
    /// ... and the last layer's takes the lm_head too
    pub head_phase: bool,
}

impl DecodeChain {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &GpuContext,
        k: &Kernels,
        layers: &[GpuLayer],
        head: &GpuMatrix,
        norm: &GpuBuffer,
        hidden: usize,
        inter: usize,
        head_dim: usize,
        heads: usize,
    ) -> Result<Self> {
        let vec = |n: usize, label: &str| {
            GpuBuffer::zeros(ctx, quantised_len(n.next_multiple_of(32)), label)
        };
        let (qa, qb, qc) = (
            vec(hidden, "q8_chain_a")?,
            vec(inter, "q8_chain_b")?,
            vec(hidden, "q8_chain_c")?,
        );
        let qo = vec(heads * head_dim, "q8_chain_o")?;
        let counters = GpuBuffer::zeros(ctx, 4 * layers.len().max(1), "phase_counters")?;
        let normed = QuantOut::Normed(&qa, norm);
        let swiglu = QuantOut::SwiGlu(&qb);
        let on = k.tuning.q8_chain
            && layers.iter().all(|l| {
                let Some((gate_up, down)) = l.dense_ffn() else {
                    return false;
                };
                l.qkv_proj.parts.iter().all(|p| k.q8_chain_fits(&p.1, None))
                    && k.q8_chain_fits(&l.o_proj, Some(&normed))
                    && gate_up.parts.len() == 1
                    && gate_up.parts[0].0 == 0
                    && k.q8_chain_fits(&gate_up.parts[0].1, Some(&swiglu))
                    && k.q8_chain_fits(down, Some(&normed))
            });
        let head_on = on && k.q8_chain_fits(head, None);
        let attn = on && head_dim.is_multiple_of(32) && k.tuning.q8_chain_attn;
        let phased = attn
            && (k.tuning.q8_phases || k.tuning.q8_persist > 0)
            && layers.iter().all(|l| {
                let Some((gate_up, down)) = l.dense_ffn() else {
                    return false;
                };
                l.qkv_proj.parts.len() == 1
                    && l.qkv_proj.parts[0].0 == 0
                    && k.phase_rows_per_wg(&l.qkv_proj.parts[0].1, None).is_some()
                    && k.phase_rows_per_wg(&l.o_proj, Some(&normed)).is_some()
                    && k.phase_rows_per_wg(&gate_up.parts[0].1, Some(&swiglu))
                        .is_some()
                    && k.phase_rows_per_wg(down, Some(&normed)).is_some()
            });
        let head_phase = phased && head_on && k.phase_rows_per_wg(head, None).is_some();
        Ok(DecodeChain {
            qa,
            qb,
            qc,
            qo,
            counters,
            on,
            head: head_on,
            attn,
            phased,
            head_phase,
        })
    }

    /// Where the lm_head finds the last layer's quantised output.
    pub fn head_input(&self) -> &GpuBuffer {
        if self.phased { &self.qc } else { &self.qa }
    }

    /// Layer `li`'s o_proj, gate_up, down and the next layer's qkv (the lm_head after the last
    /// layer) as phased dispatches (`Tuning::q8_phase_max` phases each). `x` the residual
    /// stream, `gu` gate | up, `qkv` the next q | k | v, `logits` the lm_head's output.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_ops(
        &self,
        k: &Kernels,
        layers: &[GpuLayer],
        li: usize,
        head: &GpuMatrix,
        norm: &GpuBuffer,
        eps: f32,
        (x, gu, qkv, logits): (&GpuBuffer, &GpuBuffer, &GpuBuffer, &GpuBuffer),
    ) -> Result<Vec<Op>> {
        let l = &layers[li];
        let Some((gate_up, down)) = l.dense_ffn() else {
            return Err(crate::Error::Gpu("a phased layer must be dense".into()));
        };
        let next = layers.get(li + 1);
        let g_next = next.map_or(norm, |n| &n.input_layernorm);
        let hands_on = next.is_some() || self.head;
        let phase = |w, input, norm_eps, y, accumulate, out| ChainPhase {
            w,
            input,
            norm_eps,
            y,
            y_off: 0,
            accumulate,
            out,
        };
        let mut phases = vec![
            phase(
                &l.o_proj,
                &self.qo,
                None,
                x,
                true,
                Some(QuantOut::Normed(&self.qa, &l.post_attention_layernorm)),
            ),
            phase(
                &gate_up.parts[0].1,
                &self.qa,
                Some(eps),
                gu,
                false,
                Some(QuantOut::SwiGlu(&self.qb)),
            ),
            phase(
                down,
                &self.qb,
                None,
                x,
                true,
                hands_on.then_some(QuantOut::Normed(&self.qc, g_next)),
            ),
        ];
        let (w, y) = match next {
            Some(n) => (Some(&n.qkv_proj.parts[0].1), qkv),
            None => (self.head_phase.then_some(head), logits),
        };
        if let Some(w) = w {
            phases.push(phase(w, &self.qc, Some(eps), y, false, None));
        }
        phases
            .chunks(k.tuning.q8_phase_max.clamp(1, 4) as usize)
            .map(|part| k.matvec_q8_phases(part, &self.counters, 4 * li))
            .collect()
    }
}
