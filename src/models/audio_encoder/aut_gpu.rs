//! The AuT audio encoder on the GPU engine: the CPU encoder's weights (aut.rs) uploaded once,
//! and one command buffer per clip that follows `AudioEncoder::forward` step for step (the
//! recipe at the top of aut.rs). Only the padded mel chunks go up and the output rows come
//! back; every intermediate stays on the device.
//!
//! The token stage (conv_out onwards, ~15 ops a layer) is built once per capacity bucket (64,
//! 128, 256 ... tokens) and kept: its ops read the row count from their Step uniform, so one
//! set serves every clip up to the bucket (building it cost 7-9 ms of host time per 5 s clip
//! on the H200 machine). The few convolution ops are built per clip, sized by its chunks.
//! The first convolution (one input channel) runs directly; the other two as im2col and the
//! matmul kernel, whose tiles reuse each weight across 64 positions where a direct kernel
//! would read the whole 480·4320 kernel once per position.

mod blocks;
mod clip;

use std::sync::Arc;

use self::blocks::{
    GpuBiasedLinear, GpuConvDirect, GpuConvMatmul, GpuEncoderLayer, GpuLayerNorm, upload_matrix,
};
use self::clip::{ClipShape, ConvActs, TokenActs};
use super::aut::{AudioEncoder, AudioEncoderConfig, check_mel, chunk_image, sinusoid_positions};
use crate::error::Result;
use crate::gpu::audio_kernels::MapShape;
use crate::gpu::{GpuBuffer, GpuContext, GpuMatrix, Kernels, MatFlags, Op, StepDims};

/// The AuT encoder with its weights on the GPU: `forward` gives `AudioEncoder::forward`'s
/// rows (within f32 rounding). Built once per model; forwards may run from several threads.
pub struct AudioEncoderGpu {
    ctx: Arc<GpuContext>,
    pub config: AudioEncoderConfig,
    conv2d1: GpuConvDirect,
    conv2d2: GpuConvMatmul,
    conv2d3: GpuConvMatmul,
    /// (d_model, conv_out_features), no bias
    conv_out: GpuMatrix,
    /// (tokens_per_chunk, d_model) f32: the sinusoids every chunk restarts from, computed
    /// by the CPU twin's function (GPU trigonometry is not accurate enough)
    positions: GpuBuffer,
    layers: Vec<GpuEncoderLayer>,
    ln_post: GpuLayerNorm,
    /// (d_model, d_model)
    proj1: GpuBiasedLinear,
    /// (output_dim, d_model)
    proj2: GpuBiasedLinear,
    /// the last forward's host time (shapes, buffers, ops) and device time (submit to read), ms
    last_split: std::sync::Mutex<Option<(f64, f64)>>,
    /// token stages built so far, by (capacity, chunk steps, window); a forward holds its
    /// stage's lock from recording to read-back (the stage's Step uniform and buffers)
    token_stages: std::sync::Mutex<TokenStages>,
}

type TokenStages =
    std::collections::HashMap<(usize, usize, usize), Arc<std::sync::Mutex<TokenStage>>>;

/// The ops from conv_out to the output head for clips of up to `capacity` tokens, with the
/// buffers they are bound to.
struct TokenStage {
    stage: Stage,
    acts: TokenActs,
}

/// Ops that share one row count. Each stage has Kernels of its own, and so its own `Step`
/// uniform: stages of different row counts go into one command buffer.
struct Stage {
    kernels: Kernels,
    ops: Vec<Op>,
    rows: usize,
}

impl AudioEncoderGpu {
    /// Upload `cpu`'s weights: matrices (the wider convolutions' kernels among them) as the
    /// text decoder uploads them; biases, norms and the first convolution's kernel as f32.
    pub fn new(ctx: &Arc<GpuContext>, cpu: &AudioEncoder) -> Result<Self> {
        let c = &cpu.config;
        Ok(AudioEncoderGpu {
            ctx: ctx.clone(),
            conv2d1: GpuConvDirect::upload(ctx, &cpu.conv2d1)?,
            conv2d2: GpuConvMatmul::upload(ctx, &cpu.conv2d2)?,
            conv2d3: GpuConvMatmul::upload(ctx, &cpu.conv2d3)?,
            conv_out: upload_matrix(ctx, &cpu.conv_out)?,
            positions: GpuBuffer::from_f32(
                ctx,
                &sinusoid_positions(c.tokens_per_chunk(), c.d_model),
                "audio_positions",
            )?,
            layers: cpu
                .layers
                .iter()
                .map(|l| GpuEncoderLayer::upload(ctx, l))
                .collect::<Result<_>>()?,
            ln_post: GpuLayerNorm::upload(ctx, &cpu.ln_post)?,
            proj1: GpuBiasedLinear::upload(ctx, &cpu.proj1)?,
            proj2: GpuBiasedLinear::upload(ctx, &cpu.proj2)?,
            config: c.clone(),
            last_split: std::sync::Mutex::new(None),
            token_stages: std::sync::Mutex::new(TokenStages::new()),
        })
    }

    /// Encode one clip: `mel` (num_mel_bins, frames) f32, bin-major, to
    /// (output_tokens(frames), output_dim) f32 rows, as `AudioEncoder::forward`.
    pub fn forward(&self, mel: &[f32], frames: usize) -> Result<Vec<f32>> {
        Ok(self.run(mel, frames, false)?.0)
    }

    /// [`AudioEncoderGpu::forward`] with one compute pass per op and its GPU time by kernel
    /// (timestamp queries; the adapter must offer them).
    pub fn profile(&self, mel: &[f32], frames: usize) -> Result<Vec<crate::gpu::KernelTiming>> {
        let (_, timings) = self.run(mel, frames, true)?;
        timings.ok_or_else(|| crate::Error::Gpu("no kernel timings".into()))
    }

    fn run(
        &self,
        mel: &[f32],
        frames: usize,
        profile: bool,
    ) -> Result<(Vec<f32>, Option<Vec<crate::gpu::KernelTiming>>)> {
        let t0 = std::time::Instant::now();
        let c = &self.config;
        check_mel(c, mel, frames)?;
        let clip = ClipShape::new(c, frames, self.ctx.max_binding());
        let padded = clip.image.time;
        let image: Vec<f32> = (0..clip.chunks)
            .flat_map(|i| chunk_image(mel, frames, i * c.chunk_frames(), padded, c).data)
            .collect();
        let token_stage = self.token_stage(&clip)?;
        let token_stage = token_stage
            .lock()
            .map_err(|_| crate::Error::Gpu("audio encoder stage lock poisoned".into()))?;
        let conv = ConvActs::new(&self.ctx, &clip, &image)?;
        // the convolution ops per call (their Kernels, so concurrent forwards share no Step)
        let mut stages = Vec::new();
        for first in (0..clip.chunks).step_by(clip.image.chunks) {
            stages.extend(self.convolutions(&conv, &token_stage.acts.flat, &clip, first)?);
        }
        let mut prof = if profile {
            let count = stages
                .iter()
                .chain([&token_stage.stage])
                .map(|s| s.ops.len() as u32)
                .sum();
            Some(crate::gpu::profiler::Profiler::new(&self.ctx, count)?)
        } else {
            None
        };
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        // the kept token stage runs over this clip's tokens, not its capacity
        let runs = stages
            .iter()
            .map(|s| (s, s.rows))
            .chain([(&token_stage.stage, clip.tokens)]);
        for (s, rows) in runs {
            let dims = StepDims {
                t: rows as u32,
                pos0: 0,
            };
            s.kernels.encode(&mut enc, &s.ops, dims, prof.as_mut());
        }
        let t1 = std::time::Instant::now();
        self.ctx.queue.submit([enc.finish()]);
        let out = token_stage
            .acts
            .out
            .read_f32(&self.ctx, 0, clip.tokens * c.output_dim)?;
        if let Ok(mut l) = self.last_split.lock() {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            *l = Some((ms(t1 - t0), ms(t1.elapsed())));
        }
        let timings = prof.map(|p| p.finish(&self.ctx)).transpose()?;
        Ok((out, timings))
    }

    pub fn has_timestamps(&self) -> bool {
        self.ctx.has_timestamps()
    }

    /// The last forward's time on the host (clip shape, activation buffers, ops and bind
    /// groups, recording) and on the device (submit until the rows are read back), in ms.
    pub fn last_split(&self) -> Option<(f64, f64)> {
        self.last_split.lock().ok().and_then(|l| *l)
    }

    /// The token stage for `clip`: from the cache, or built for the clip's capacity bucket
    /// (the next power of two of its tokens, at least 64).
    fn token_stage(&self, clip: &ClipShape) -> Result<Arc<std::sync::Mutex<TokenStage>>> {
        let capacity = clip.tokens.next_power_of_two().max(64);
        let key = (capacity, clip.steps(), clip.window);
        let mut cache = self
            .token_stages
            .lock()
            .map_err(|_| crate::Error::Gpu("audio encoder cache lock poisoned".into()))?;
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        let acts = TokenActs::new(&self.ctx, &self.config, capacity, clip.steps())?;
        let stage = self.token_ops(&acts, capacity, clip)?;
        let s = Arc::new(std::sync::Mutex::new(TokenStage { stage, acts }));
        cache.insert(key, s.clone());
        Ok(s)
    }

    /// Steps 3-5 of the recipe in aut.rs over the clip's tokens (conv_out, positions, the
    /// layers with windowed attention, the output head), for up to `capacity` tokens.
    fn token_ops(&self, a: &TokenActs, capacity: usize, clip: &ClipShape) -> Result<Stage> {
        let c = &self.config;
        let d = c.d_model;
        let mut k = Kernels::new(&self.ctx);
        // a 5 s clip is 65 tokens: one or two 64-row tiles, so K is split across workgroups
        k.split_k(&a.split, capacity);
        let mut ops = Vec::new();
        // conv_out over the kept rows only: the padded steps of the last chunk are never
        // computed
        let features = c.conv_out_features();
        let plain = MatFlags::default();
        ops.extend(k.matmul(&self.conv_out, &a.flat, features, &a.x, d, 0, plain)?);
        // 3. positions restart in every chunk: a bias repeating every `steps` rows
        ops.push(k.add_bias(&a.x, &self.positions, d, clip.steps(), false)?);
        // 4. encoder layers, attention windowed
        for layer in &self.layers {
            layer.ops(&k, a, c, clip.window, &mut ops)?;
        }
        // 5. output head
        self.ln_post.op(&k, &a.x, &a.normed, d, &mut ops)?;
        self.proj1.ops(&k, &a.normed, d, &a.proj, true, &mut ops)?;
        self.proj2.ops(&k, &a.proj, d, &a.out, false, &mut ops)?;
        Ok(Stage {
            kernels: k,
            ops,
            // the most rows it serves; each forward dispatches it with its clip's token count
            rows: capacity,
        })
    }

    /// The three convolutions of the chunks of one group, from chunk `first` on, through
    /// the scratch maps; the last writes the group's rows of `flat`. Two stages: the second
    /// and third convolutions multiply different numbers of patch rows.
    fn convolutions(
        &self,
        a: &ConvActs,
        flat: &GpuBuffer,
        clip: &ClipShape,
        first: usize,
    ) -> Result<[Stage; 2]> {
        let chunks = clip.image.chunks.min(clip.chunks - first);
        let group = |m: MapShape| MapShape { chunks, ..m };
        let (image, conv1, conv2, conv3) = (
            group(clip.image),
            group(clip.conv1),
            group(clip.conv2),
            group(clip.conv3),
        );
        let k2 = Kernels::new(&self.ctx);
        let mut ops = vec![self.conv2d1.op(&k2, &a.image, first, image, &a.conv1)?];
        self.conv2d2
            .ops(&k2, &a.conv1, conv1, &a.patches, &a.conv2, &mut ops)?;
        let second = Stage {
            kernels: k2,
            ops,
            rows: conv2.positions(),
        };
        let k3 = Kernels::new(&self.ctx);
        let mut ops = Vec::new();
        self.conv2d3
            .ops(&k3, &a.conv2, conv2, &a.patches, &a.conv3, &mut ops)?;
        ops.push(k3.flatten_time_rows(&a.conv3, conv3, flat, first)?);
        let third = Stage {
            kernels: k3,
            ops,
            rows: conv3.positions(),
        };
        Ok([second, third])
    }
}
