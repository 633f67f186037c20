//! The encoder's blocks on the device: the two kinds of convolution, Linear with bias,
//! LayerNorm and the pre-LN layer, each uploaded from its CPU twin (aut/layers.rs) and
//! turned into ops.

use std::sync::Arc;

use super::clip::TokenActs;
use crate::error::Result;
use crate::gpu::audio_kernels::MapShape;
use crate::gpu::{GpuBuffer, GpuContext, GpuMatrix, Kernels, MatFlags, Op};
use crate::models::audio_encoder::aut::AudioEncoderConfig;
use crate::models::audio_encoder::aut::layers::{
    BiasedLinear, Conv2d, EncoderLayer, LAYER_NORM_EPS, LayerNorm,
};
use crate::nn::Linear;

/// The first convolution, run directly.
pub(super) struct GpuConvDirect {
    /// (in_channels · 9, out_channels) f32, tap-major
    kernel: GpuBuffer,
    /// (out_channels,) f32
    bias: GpuBuffer,
}

/// A convolution run as im2col rows times its kernel.
pub(super) struct GpuConvMatmul {
    /// (out_channels, in_channels · 9): the stored (out, in, 3, 3) kernel
    weight: GpuMatrix,
    /// (out_channels,) f32
    bias: GpuBuffer,
}

/// A Linear with a bias on the device.
pub(super) struct GpuBiasedLinear {
    /// (out, in)
    weight: GpuMatrix,
    /// (out,) f32
    bias: GpuBuffer,
}

pub(super) struct GpuLayerNorm {
    /// (dim,) f32
    weight: GpuBuffer,
    /// (dim,) f32
    bias: GpuBuffer,
}

pub(super) struct GpuEncoderLayer {
    self_attn_layer_norm: GpuLayerNorm,
    /// (d_model, d_model) each; their products land side by side in the (t, 3 d_model) qkv
    q_proj: GpuMatrix,
    k_proj: GpuMatrix,
    v_proj: GpuMatrix,
    /// (3 d_model,) f32: the q, k and v biases, matching the qkv layout
    qkv_bias: GpuBuffer,
    out_proj: GpuBiasedLinear,
    final_layer_norm: GpuLayerNorm,
    /// (ffn, d_model)
    fc1: GpuBiasedLinear,
    /// (d_model, ffn)
    fc2: GpuBiasedLinear,
}

impl GpuConvDirect {
    pub(super) fn upload(ctx: &GpuContext, conv: &Conv2d) -> Result<Self> {
        Ok(GpuConvDirect {
            kernel: GpuBuffer::from_f32(ctx, &conv.tap_major_kernel()?, "audio_conv_kernel")?,
            bias: GpuBuffer::from_f32(ctx, &conv.bias, "audio_conv_bias")?,
        })
    }

    /// y = gelu(conv(x) + b) for the maps `input` of x from its chunk `x_chunk0` on.
    pub(super) fn op(
        &self,
        k: &Kernels,
        x: &GpuBuffer,
        x_chunk0: usize,
        input: MapShape,
        y: &GpuBuffer,
    ) -> Result<Op> {
        k.conv2d_gelu(x, x_chunk0, input, &self.kernel, &self.bias, y)
    }
}

impl GpuConvMatmul {
    pub(super) fn upload(ctx: &Arc<GpuContext>, conv: &Conv2d) -> Result<Self> {
        let w = &conv.weight;
        let (out, taps) = (conv.bias.len(), conv.in_channels * 9);
        Ok(GpuConvMatmul {
            weight: GpuMatrix::upload(ctx, w.dtype, w.bytes(), out, taps, &w.name)?,
            bias: GpuBuffer::from_f32(ctx, &conv.bias, "audio_conv_bias")?,
        })
    }

    /// y = gelu(conv(x) + b) for the maps `input` in x, through `patches`; `k`'s step must
    /// count y's positions (the patches' rows).
    pub(super) fn ops(
        &self,
        k: &Kernels,
        x: &GpuBuffer,
        input: MapShape,
        patches: &GpuBuffer,
        y: &GpuBuffer,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let (out, taps) = (self.weight.rows, self.weight.cols);
        ops.push(k.im2col(x, input, patches)?);
        ops.extend(k.matmul(&self.weight, patches, taps, y, out, 0, MatFlags::default())?);
        ops.push(k.add_bias(y, &self.bias, out, 1, true)?);
        Ok(())
    }
}

impl GpuBiasedLinear {
    pub(super) fn upload(ctx: &Arc<GpuContext>, l: &BiasedLinear) -> Result<Self> {
        Ok(GpuBiasedLinear {
            weight: upload_matrix(ctx, &l.linear)?,
            bias: GpuBuffer::from_f32(ctx, &l.bias, "audio_bias")?,
        })
    }

    /// y (t, out) = act(x (t, x_ld) Wᵀ + b), act GELU when `gelu`.
    pub(super) fn ops(
        &self,
        k: &Kernels,
        x: &GpuBuffer,
        x_ld: usize,
        y: &GpuBuffer,
        gelu: bool,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let out = self.weight.rows;
        ops.extend(k.matmul(&self.weight, x, x_ld, y, out, 0, MatFlags::default())?);
        ops.push(k.add_bias(y, &self.bias, out, 1, gelu)?);
        Ok(())
    }

    /// residual (t, out) += x (t, x_ld) Wᵀ + b: the bias first, then the product added by the
    /// matmul itself (ACCUMULATE), so no copy of the product is made.
    pub(super) fn residual_ops(
        &self,
        k: &Kernels,
        x: &GpuBuffer,
        x_ld: usize,
        residual: &GpuBuffer,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let out = self.weight.rows;
        ops.push(k.add_bias(residual, &self.bias, out, 1, false)?);
        let accumulate = MatFlags {
            accumulate: true,
            ..MatFlags::default()
        };
        ops.extend(k.matmul(&self.weight, x, x_ld, residual, out, 0, accumulate)?);
        Ok(())
    }
}

impl GpuLayerNorm {
    pub(super) fn upload(ctx: &GpuContext, n: &LayerNorm) -> Result<Self> {
        Ok(GpuLayerNorm {
            weight: GpuBuffer::from_f32(ctx, &n.weight, "audio_norm_weight")?,
            bias: GpuBuffer::from_f32(ctx, &n.bias, "audio_norm_bias")?,
        })
    }

    pub(super) fn op(
        &self,
        k: &Kernels,
        x: &GpuBuffer,
        dst: &GpuBuffer,
        dim: usize,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        ops.push(k.layer_norm(x, dst, &self.weight, &self.bias, dim, LAYER_NORM_EPS as f32)?);
        Ok(())
    }
}

impl GpuEncoderLayer {
    pub(super) fn upload(ctx: &Arc<GpuContext>, l: &EncoderLayer) -> Result<Self> {
        let a = &l.self_attn;
        let qkv_bias: Vec<f32> = [&a.q_proj, &a.k_proj, &a.v_proj]
            .iter()
            .flat_map(|p| p.bias.iter().copied())
            .collect();
        Ok(GpuEncoderLayer {
            self_attn_layer_norm: GpuLayerNorm::upload(ctx, &l.self_attn_layer_norm)?,
            q_proj: upload_matrix(ctx, &a.q_proj.linear)?,
            k_proj: upload_matrix(ctx, &a.k_proj.linear)?,
            v_proj: upload_matrix(ctx, &a.v_proj.linear)?,
            qkv_bias: GpuBuffer::from_f32(ctx, &qkv_bias, "audio_qkv_bias")?,
            out_proj: GpuBiasedLinear::upload(ctx, &a.out_proj)?,
            final_layer_norm: GpuLayerNorm::upload(ctx, &l.final_layer_norm)?,
            fc1: GpuBiasedLinear::upload(ctx, &l.fc1)?,
            fc2: GpuBiasedLinear::upload(ctx, &l.fc2)?,
        })
    }

    /// The pre-LN layer (`EncoderLayer::forward`) on the residual stream `a.x`.
    pub(super) fn ops(
        &self,
        k: &Kernels,
        a: &TokenActs,
        c: &AudioEncoderConfig,
        window: usize,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let (d, ffn) = (c.d_model, c.encoder_ffn_dim);
        self.self_attn_layer_norm.op(k, &a.x, &a.normed, d, ops)?;
        for (i, w) in [&self.q_proj, &self.k_proj, &self.v_proj]
            .into_iter()
            .enumerate()
        {
            ops.extend(k.matmul(w, &a.normed, d, &a.qkv, 3 * d, i * d, MatFlags::default())?);
        }
        ops.push(k.add_bias(&a.qkv, &self.qkv_bias, 3 * d, 1, false)?);
        ops.push(k.attn_windowed(
            &a.qkv,
            &a.attn,
            c.encoder_attention_heads,
            c.head_dim(),
            window,
        )?);
        self.out_proj.residual_ops(k, &a.attn, d, &a.x, ops)?;
        self.final_layer_norm.op(k, &a.x, &a.normed, d, ops)?;
        self.fc1.ops(k, &a.normed, d, &a.ffn, true, ops)?;
        self.fc2.residual_ops(k, &a.ffn, ffn, &a.x, ops)?;
        Ok(())
    }
}

/// A Linear's weight as the text decoder uploads it (models/qwen3/gpu.rs `upload`): Q8_0 and
/// 16-bit weights as stored, F32 rounded to BF16 (so only 16-bit and Q8_0 checkpoints give
/// the CPU encoder's numbers).
pub(super) fn upload_matrix(ctx: &Arc<GpuContext>, l: &Linear) -> Result<GpuMatrix> {
    let (rows, cols) = (l.out_features(), l.in_features());
    match &l.q8 {
        Some(q) => GpuMatrix::upload_q8(
            ctx,
            &[(q.qs.as_slice(), q.scales.as_slice(), rows)],
            cols,
            &l.weight.name,
        ),
        None => GpuMatrix::upload(
            ctx,
            l.weight.dtype,
            l.weight.bytes(),
            rows,
            cols,
            &l.weight.name,
        ),
    }
}
