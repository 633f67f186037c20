//! A dense layer's feed-forward block as one dispatch (shaders/matmul/mlp_q8.wgsl): gate_up,
//! SwiGLU and down for one token, with down split along K into one slice per workgroup whose
//! partial sums go into the residual stream by integer atomics. The stream is then fixed point
//! (hi / lo words, see the shader): o_proj writes it ([`Kernels::matvec_q8_into_fixed`]), the
//! MLP adds into it, the next qkv and the lm_head read it ([`Q8Input::Fixed`]).
//!
//! Why: unfused, down waits at a device-wide boundary for all of gate_up, and its own 53 MB
//! (Qwen3-8B) pay a second ramp and tail; the split removes both.

use crate::error::{Error, Result};
use crate::gpu::kernels::grid;
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, Op};

#[cfg(doc)]
use crate::gpu::Q8Input;

/// Words of the fixed-point residual stream of a `hidden`-long vector.
pub fn fixed_len(hidden: usize) -> usize {
    2 * hidden
}

impl Kernels {
    /// Intermediate values per workgroup of the fused MLP for `gate_up` (2 inter x hidden,
    /// gate rows first) and `down` (hidden x inter), or None where it cannot run: Q8_0 with
    /// int8 activations, one chunk each, subgroups of at least 8 (the SwiGLU blocks reduce by
    /// shuffles), hidden a multiple of 32 up to 12288. The slice is 32, 64, 96 or 128 values,
    /// dividing inter, giving about `Tuning::q8_mlp_wgs` workgroups (`q8_mlp_slice` forces one).
    pub fn mlp_q8_slice(&self, gate_up: &GpuMatrix, down: &GpuMatrix) -> Option<u32> {
        let (hidden, inter) = (down.rows, down.cols);
        let fits = self.q8_dot(gate_up)
            && self.q8_dot(down)
            && gate_up.chunks.len() == 1
            && down.chunks.len() == 1
            && gate_up.rows == 2 * inter
            && gate_up.cols == hidden
            && hidden.is_multiple_of(32)
            && inter.is_multiple_of(32)
            && hidden <= 12288
            && self.ctx.info.subgroup_min_size >= 8
            && self.mlp_q8_wg() >= 32
            // (its partial sums of 4096 rows and its slice: mlp_q8.wgsl)
            && self.ctx.limits.max_compute_workgroup_storage_size >= 18 * 1024;
        if !fits {
            return None;
        }
        let blocks = (inter / 32) as u32;
        let divides = |n: &u32| blocks.is_multiple_of(*n);
        let n = match self.tuning.q8_mlp_slice / 32 {
            0 => {
                let want = blocks
                    .div_ceil(self.tuning.q8_mlp_wgs.max(1))
                    .clamp(1, 4);
                (1..=want).rev().find(divides)?
            }
            n => Some(n).filter(|n| (1..=4).contains(n) && divides(n))?,
        };
        Some(32 * n)
    }

    /// Invocations per workgroup of the fused MLP: `Tuning::q8_mlp_wg`, within the adapter's
    /// limits (whole subgroups; its per-subgroup loop needs none).
    fn mlp_q8_wg(&self) -> u32 {
        let l = &self.ctx.limits;
        self.tuning
            .q8_mlp_wg
            .min(l.max_compute_invocations_per_workgroup)
            .min(l.max_compute_workgroup_size_x)
    }

    /// The fused MLP of one token: `acc` (the fixed-point residual stream, [`fixed_len`]) +=
    /// down(silu(gate) * up) of the quantised normed `input` (o_proj's `QuantOut::Normed`
    /// with the post-attention norm folded in; `eps` its RMSNorm's epsilon).
    pub fn mlp_q8(
        &self,
        gate_up: &GpuMatrix,
        down: &GpuMatrix,
        input: &GpuBuffer,
        eps: f32,
        acc: &GpuBuffer,
    ) -> Result<Op> {
        let slice = self.mlp_q8_slice(gate_up, down).ok_or_else(|| {
            Error::Gpu(format!(
                "a {}x{} / {}x{} MLP cannot run fused",
                gate_up.rows, gate_up.cols, down.rows, down.cols
            ))
        })?;
        let (hidden, inter) = (down.rows, down.cols);
        if acc.len < fixed_len(hidden) || input.len < super::quantised_len(hidden) {
            return Err(Error::Gpu("the fused MLP's buffers are too short".into()));
        }
        let (gc, dc) = (&gate_up.chunks[0], &down.chunks[0]);
        let scales = |c: &'_ super::buffers::MatrixChunk| {
            c.scales
                .clone()
                .ok_or_else(|| Error::Gpu("Q8_0 chunk without scales".into()))
        };
        let (gs, ds) = (scales(gc)?, scales(dc)?);
        let params = [
            inter as u32,
            gate_up.stride as u32,
            gate_up.scale_stride as u32,
            down.stride as u32,
            down.scale_stride as u32,
            eps.to_bits(),
        ];
        let mut consts = vec![
            ("WG", self.mlp_q8_wg() as f64),
            ("SLICE", slice as f64),
            ("HC", hidden as f64),
            ("ROWS", self.tuning.q8_mlp_rows.clamp(1, 4) as f64),
        ];
        if self.debug.mlp_stop > 0 {
            consts.push(("STOP", self.debug.mlp_stop as f64));
        }
        let info = &self.ctx.info;
        if self.tuning.q8_fixed_sg && info.subgroup_min_size == info.subgroup_max_size {
            consts.push(("SGC", info.subgroup_min_size as f64));
        }
        let wgs = (inter as u32) / slice;
        let mut op = self.op(
            "mlp_q8",
            &consts,
            &params,
            false,
            &[
                &gc.buffer,
                &gs,
                &dc.buffer,
                &ds,
                &input.buffer,
                &acc.buffer,
            ],
            Box::new(move |_| grid(wgs)),
        )?;
        op.detail = format!("{}x{} + {}x{} / {slice}", gate_up.rows, gate_up.cols, down.rows, down.cols);
        Ok(op)
    }
}
