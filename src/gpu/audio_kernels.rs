//! Kernel wrappers of the AuT audio encoder (models/audio_encoder/aut_gpu.rs): the strided
//! convolution (direct, or im2col for the matmul), the flattening of its maps into rows,
//! LayerNorm with bias, bias / position adds with an optional GELU, and windowed
//! bidirectional attention. Shaders under shaders/audio/; each has its CPU twin in
//! models/audio_encoder/aut/. Sizes a shader indexes with are checked here against the
//! buffers, because the shaders run without bounds checks (docs/kernels.md).

use crate::error::{Error, Result};
use crate::gpu::attention::AttnLayout;
use crate::gpu::kernels::{grid, grid256};
use crate::gpu::{GpuBuffer, Kernels, Op};

/// Head sizes the scalar fallback holds in registers (`MAX_HD` of attn_windowed.wgsl).
const ATTN_MAX_HEAD_DIM: usize = 128;

/// A batch of `chunks` feature maps of (freq, time, channels), channels innermost: the layout
/// of the convolution stage (the CPU twin's `FeatureMap`, one per chunk).
#[derive(Debug, Clone, Copy)]
pub struct MapShape {
    pub chunks: usize,
    pub freq: usize,
    pub time: usize,
    pub channels: usize,
}

impl MapShape {
    /// f32 values of all the maps
    pub fn size(&self) -> usize {
        self.chunks * self.chunk_size()
    }

    /// (chunk, freq, time) positions: the rows of the patches a convolution makes these
    /// maps from
    pub fn positions(&self) -> usize {
        self.chunks * self.freq * self.time
    }

    /// f32 values of one chunk's map
    pub fn chunk_size(&self) -> usize {
        self.freq * self.time * self.channels
    }

    /// The maps a 3×3, stride-2, padding-1 convolution with `channels` outputs makes of these.
    pub fn conv(&self, channels: usize) -> MapShape {
        MapShape {
            chunks: self.chunks,
            freq: self.freq.div_ceil(2),
            time: self.time.div_ceil(2),
            channels,
        }
    }
}

/// Invocations of a one-value-per-invocation op, which the shaders index in 32 bits.
fn items_u32(what: &str, items: usize) -> Result<u32> {
    u32::try_from(items).map_err(|_| {
        Error::Gpu(format!(
            "{what}: {items} values in one dispatch exceed the 32-bit index"
        ))
    })
}

fn check_len(what: &str, b: &GpuBuffer, need: usize) -> Result<()> {
    if b.len < need {
        return Err(Error::Gpu(format!(
            "{what}: the buffer holds {} values, the op needs {need}",
            b.len
        )));
    }
    Ok(())
}

impl Kernels {
    /// y = gelu(conv2d(x) + bias), kernel 3×3, stride 2, padding 1, directly (for few input
    /// channels): `x` holds the maps of `input` from its chunk `x_chunk0` on; `kernel` is
    /// (in_channels · 9, out_channels) tap-major (`Conv2d::tap_major_kernel`); y gets
    /// `input.conv(out_channels)`. Sizes come from the shapes, not from the step.
    pub fn conv2d_gelu(
        &self,
        x: &GpuBuffer,
        x_chunk0: usize,
        input: MapShape,
        kernel: &GpuBuffer,
        bias: &GpuBuffer,
        y: &GpuBuffer,
    ) -> Result<Op> {
        let out_ch = bias.len;
        let out = input.conv(out_ch);
        check_len(
            "conv2d input",
            x,
            x_chunk0 * input.chunk_size() + input.size(),
        )?;
        check_len("conv2d kernel", kernel, input.channels * 9 * out_ch)?;
        check_len("conv2d output", y, out.size())?;
        let items = items_u32("conv2d", out.size())?;
        let params = [
            input.channels,
            out_ch,
            input.freq,
            input.time,
            out.freq,
            out.time,
            input.chunks,
            x_chunk0,
        ]
        .map(|v| v as u32);
        self.op(
            "conv2d_gelu",
            &[],
            &params,
            false,
            &[&x.buffer, &kernel.buffer, &bias.buffer, &y.buffer],
            Box::new(move |_| grid256(items)),
        )
    }

    /// cols (chunks · out_freq · out_time, channels · 9) = the 3×3, stride-2, padding-1
    /// patches of the maps `input` in x: with the stored (out, in, 3, 3) kernel as an
    /// (out, in · 9) matrix, [`Kernels::matmul`] over these rows is the convolution.
    pub fn im2col(&self, x: &GpuBuffer, input: MapShape, cols: &GpuBuffer) -> Result<Op> {
        let out = input.conv(input.channels * 9);
        check_len("im2col input", x, input.size())?;
        check_len("im2col output", cols, out.size())?;
        let items = items_u32("im2col", out.size())?;
        let params = [
            input.channels,
            input.freq,
            input.time,
            out.freq,
            out.time,
            input.chunks,
        ]
        .map(|v| v as u32);
        self.op(
            "im2col",
            &[],
            &params,
            false,
            &[&x.buffer, &cols.buffer],
            Box::new(move |_| grid256(items)),
        )
    }

    /// rows (time, channels · freq) per chunk, features in (channel, freq) order, from the
    /// maps `maps` in x; chunk c lands at row block `rows_chunk0 + c`.
    pub fn flatten_time_rows(
        &self,
        x: &GpuBuffer,
        maps: MapShape,
        rows: &GpuBuffer,
        rows_chunk0: usize,
    ) -> Result<Op> {
        check_len("flatten input", x, maps.size())?;
        check_len(
            "flatten output",
            rows,
            (rows_chunk0 * maps.chunk_size()) + maps.size(),
        )?;
        let items = items_u32("flatten", maps.size())?;
        let params = [
            maps.freq,
            maps.time,
            maps.channels,
            maps.chunks,
            rows_chunk0,
        ]
        .map(|v| v as u32);
        self.op(
            "flatten_time_rows",
            &[],
            &params,
            false,
            &[&x.buffer, &rows.buffer],
            Box::new(move |_| grid256(items)),
        )
    }

    /// x (t, width) = x + table[row mod period], then GELU when `gelu`: a bias (period 1)
    /// or per-chunk positions (period = tokens per chunk).
    pub fn add_bias(
        &self,
        x: &GpuBuffer,
        table: &GpuBuffer,
        width: usize,
        period: usize,
        gelu: bool,
    ) -> Result<Op> {
        if period == 0 {
            return Err(Error::Gpu("add_bias: the period must be at least 1".into()));
        }
        check_len("add_bias table", table, period * width)?;
        let w = width as u32;
        self.op(
            "add_bias",
            &[("GELU", if gelu { 1.0 } else { 0.0 })],
            &[w, period as u32],
            true,
            &[&x.buffer, &table.buffer],
            Box::new(move |d| grid256(w * d.t)),
        )
    }

    /// dst (t, dim) = LayerNorm(x) with `weight` and `bias`.
    pub fn layer_norm(
        &self,
        x: &GpuBuffer,
        dst: &GpuBuffer,
        weight: &GpuBuffer,
        bias: &GpuBuffer,
        dim: usize,
        eps: f32,
    ) -> Result<Op> {
        check_len("layer_norm weight", weight, dim)?;
        check_len("layer_norm bias", bias, dim)?;
        self.op(
            "layer_norm",
            &[],
            &[dim as u32, eps.to_bits()],
            true,
            &[&x.buffer, &dst.buffer, &weight.buffer, &bias.buffer],
            Box::new(|d| grid(d.t)),
        )
    }

    /// out (t, heads · head_dim) = softmax(q kᵀ / √head_dim) v per head, each query seeing
    /// only the keys of its window of `window` tokens (counted from token 0; the last one
    /// shorter). `qkv` is (t, 3 · heads · head_dim): q, k, v side by side.
    pub fn attn_windowed(
        &self,
        qkv: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        head_dim: usize,
        window: usize,
    ) -> Result<Op> {
        if window == 0 || window > u32::MAX as usize {
            return Err(Error::Gpu(format!(
                "windowed attention needs windows of at least one token, not {window}"
            )));
        }
        if !head_dim.is_multiple_of(4) {
            return self.attn_windowed_scalar(qkv, out, heads, head_dim, window);
        }
        // the flash kernel reads q, k and v as column blocks of the one projection
        let width = (heads * head_dim / 4) as u32;
        let layout = AttnLayout {
            q_ld: 3 * width,
            kv_ld: 3 * width,
            k_off: width,
            v_off: 2 * width,
        };
        self.flash_attention(
            qkv,
            qkv,
            qkv,
            out,
            heads,
            heads,
            head_dim,
            layout,
            window as u32,
        )
    }

    /// [`Kernels::attn_windowed`] for head sizes that are not a multiple of 4: one invocation
    /// per query (slow; the real encoder's heads are 64 wide).
    fn attn_windowed_scalar(
        &self,
        qkv: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        head_dim: usize,
        window: usize,
    ) -> Result<Op> {
        if head_dim == 0 || head_dim > ATTN_MAX_HEAD_DIM {
            return Err(Error::Gpu(format!(
                "windowed attention supports head_dim 1..={ATTN_MAX_HEAD_DIM}, not {head_dim}"
            )));
        }
        let scale = (1.0 / (head_dim as f32).sqrt()).to_bits();
        let h = heads as u32;
        self.op(
            "attn_windowed",
            &[],
            &[h, head_dim as u32, window as u32, scale],
            true,
            &[&qkv.buffer, &out.buffer],
            Box::new(move |d| [d.t.div_ceil(64), h, 1]),
        )
    }
}
