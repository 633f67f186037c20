//! The sizes of one clip through the encoder and the device buffers of its forward.

use crate::error::Result;
use crate::gpu::audio_kernels::MapShape;
use crate::gpu::{GpuBuffer, GpuContext};
use crate::models::audio_encoder::aut::{AudioEncoderConfig, chunk_lengths};

/// Most bytes one scratch buffer of the convolutions may take; a clip with more chunks goes
/// through in groups. 256 MiB is 19 chunks (19 s) of the real model's largest scratch, the
/// second convolution's patches (800 rows × 4320 taps a chunk): enough rows to fill a GPU.
const CONV_SCRATCH_BYTES: u64 = 256 << 20;

/// Sizes of one clip through the encoder.
pub(super) struct ClipShape {
    pub(super) chunks: usize,
    /// the mel chunks of one group, each zero-padded to the longest chunk of the clip
    pub(super) image: MapShape,
    /// the three convolutions' maps of one group
    pub(super) conv1: MapShape,
    pub(super) conv2: MapShape,
    pub(super) conv3: MapShape,
    /// tokens kept: all chunks but the last are full, so these are the first `tokens` of
    /// the chunks' rows, and dropping the padded steps is taking a prefix
    pub(super) tokens: usize,
    /// attention window in tokens
    pub(super) window: usize,
}

impl ClipShape {
    pub(super) fn new(c: &AudioEncoderConfig, frames: usize, max_binding: u64) -> Self {
        let lens = chunk_lengths(frames, c.chunk_frames());
        let ch = c.downsample_hidden_size;
        let maps = |chunks| {
            let image = MapShape {
                chunks,
                freq: c.num_mel_bins,
                time: lens.iter().copied().max().unwrap_or(0),
                channels: 1,
            };
            let conv1 = image.conv(ch);
            let conv2 = conv1.conv(ch);
            (image, conv1, conv2, conv2.conv(ch))
        };
        // the largest scratch of one chunk: a map, or the patches the second convolution reads
        let (_, conv1, conv2, _) = maps(1);
        let chunk_bytes = 4 * conv1.size().max(conv2.size() * 9) as u64;
        let group = (max_binding.min(CONV_SCRATCH_BYTES) / chunk_bytes.max(1)) as usize;
        let (image, conv1, conv2, conv3) = maps(group.clamp(1, lens.len()));
        ClipShape {
            chunks: lens.len(),
            image,
            conv1,
            conv2,
            conv3,
            tokens: c.output_tokens(frames),
            window: c.window_tokens(conv3.time),
        }
    }

    /// tokens of a padded chunk
    pub(super) fn steps(&self) -> usize {
        self.conv3.time
    }
}

/// The convolutions' device buffers of one forward (sized by the clip's chunk group).
pub(super) struct ConvActs {
    /// (chunks, num_mel_bins, padded frames): the mel cut into chunks, zero-padded
    pub(super) image: GpuBuffer,
    /// one group's maps of the three convolutions (`ClipShape`), reused by every group
    pub(super) conv1: GpuBuffer,
    pub(super) conv2: GpuBuffer,
    pub(super) conv3: GpuBuffer,
    /// (group positions, channels · 9): the patches of the second or third convolution
    pub(super) patches: GpuBuffer,
}

impl ConvActs {
    pub(super) fn new(ctx: &GpuContext, clip: &ClipShape, image: &[f32]) -> Result<Self> {
        let zeros = |len: usize, label: &str| GpuBuffer::zeros(ctx, len, label);
        Ok(ConvActs {
            image: GpuBuffer::from_f32(ctx, image, "audio_image")?,
            conv1: zeros(clip.conv1.size(), "audio_conv1")?,
            conv2: zeros(clip.conv2.size(), "audio_conv2")?,
            conv3: zeros(clip.conv3.size(), "audio_conv3")?,
            patches: zeros(clip.conv2.size() * 9, "audio_patches")?,
        })
    }
}

/// The token stage's device buffers, sized for clips of up to `capacity` tokens (kept with
/// the stage's ops and reused by every such clip).
pub(super) struct TokenActs {
    /// (chunks · steps, conv_out_features): the third convolution, one row per time step
    pub(super) flat: GpuBuffer,
    /// (tokens, d_model): the residual stream
    pub(super) x: GpuBuffer,
    /// (tokens, d_model): LayerNorm outputs
    pub(super) normed: GpuBuffer,
    /// (tokens, 3 d_model)
    pub(super) qkv: GpuBuffer,
    /// (tokens, d_model)
    pub(super) attn: GpuBuffer,
    /// (tokens, encoder_ffn_dim)
    pub(super) ffn: GpuBuffer,
    /// (tokens, d_model): proj1's output
    pub(super) proj: GpuBuffer,
    /// (tokens, output_dim)
    pub(super) out: GpuBuffer,
    /// split-K partial tiles of the token stage's matmuls (`Kernels::split_k`)
    pub(super) split: GpuBuffer,
}

impl TokenActs {
    /// Buffers for up to `capacity` tokens in chunks of `steps`.
    pub(super) fn new(
        ctx: &GpuContext,
        c: &AudioEncoderConfig,
        capacity: usize,
        steps: usize,
    ) -> Result<Self> {
        let (d, n) = (c.d_model, capacity);
        // the most chunks `capacity` tokens span (only the last chunk is short)
        let chunks = (n.max(1) - 1) / steps.max(1) + 1;
        let zeros = |len: usize, label: &str| GpuBuffer::zeros(ctx, len, label);
        Ok(TokenActs {
            flat: zeros(chunks * steps * c.conv_out_features(), "audio_flat")?,
            x: zeros(n * d, "audio_x")?,
            normed: zeros(n * d, "audio_normed")?,
            qkv: zeros(n * 3 * d, "audio_qkv")?,
            attn: zeros(n * d, "audio_attn")?,
            ffn: zeros(n * c.encoder_ffn_dim, "audio_ffn")?,
            proj: zeros(n * d, "audio_proj")?,
            out: zeros(n * c.output_dim, "audio_out")?,
            // up to 16 slices of a d_model-wide output, or fewer of a wider one, within a
            // binding (smaller: fewer slices)
            split: zeros(
                (16 * n * d).min(ctx.max_binding() as usize / 4).max(4),
                "audio_split",
            )?,
        })
    }
}
