//! The AuT audio encoder of Qwen3-Omni on the CPU: log-mel frames in, thinker-width rows out.
//! Mirrors transformers' `Qwen3OmniMoeAudioEncoder` (modeling_qwen3_omni_moe.py, 5.24: the
//! encoder L755-857, its layer L604-650, attention L509-601, chunking and windows L653-746).
//! Weights are `thinker.audio_tower.{conv2d1,conv2d2,conv2d3,conv_out,layers.N.*,ln_post,
//! proj1,proj2}`.
//!
//! The recipe (tests/fixtures/README.md "Traps" has the line numbers):
//! 1. Cut the frames into chunks of `2·n_window` (the last one shorter) and zero-pad each to
//!    the longest chunk of the clip.
//! 2. Per chunk, three Conv2d(3×3, stride 2, pad 1) + GELU over (mel, time); flatten each time
//!    step in (channel, mel) order; `conv_out` (no bias).
//! 3. Add sinusoidal positions restarting at 0 in every chunk; drop the padded steps.
//! 4. Pre-LN encoder layers whose bidirectional attention stays inside windows of
//!    `n_window_infer` frames, counted from the start of the clip.
//! 5. `ln_post`, `proj1`, GELU, `proj2`.
//!
//! Everything computes in f32 from the stored weights; only GELU's erfc goes through f64.
//! `config` holds the hyperparameters and length arithmetic, `layers` the blocks, `gelu` the
//! activation.

mod config;
mod gelu;
pub(crate) mod layers;

pub use config::AudioEncoderConfig;
pub use gelu::gelu;

use config::after_convs;
use gelu::gelu_in_place;
use layers::{BiasedLinear, Conv2d, EncoderLayer, FeatureMap, LayerNorm};

use crate::error::{Error, Result};
use crate::nn::Linear;
use crate::weights::WeightStore;

/// Timescale of the sinusoidal position table (`SinusoidsPositionEmbedding`, L94-113).
const MAX_TIMESCALE: f64 = 10_000.0;

/// Intermediate tensors of one forward pass, for comparison with the reference.
#[derive(Debug, Default)]
pub struct AudioTrace {
    /// (chunks, tokens of the longest chunk, d_model): `conv_out` per chunk before the
    /// positions, padded steps included
    pub conv_out: Vec<f32>,
    /// (n_tokens, d_model): input of layer 0 (valid steps plus positions)
    pub embed: Vec<f32>,
    /// [l] (n_tokens, d_model): output of layer l
    pub layers: Vec<Vec<f32>>,
}

pub struct AudioEncoder {
    pub config: AudioEncoderConfig,
    /// (downsample_hidden_size, 1, 3, 3)
    pub(crate) conv2d1: Conv2d,
    /// (downsample_hidden_size, downsample_hidden_size, 3, 3), twice
    pub(crate) conv2d2: Conv2d,
    pub(crate) conv2d3: Conv2d,
    /// (d_model, downsample_hidden_size · mel bins after the convolutions), no bias
    pub(crate) conv_out: Linear,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) ln_post: LayerNorm,
    /// (d_model, d_model)
    pub(crate) proj1: BiasedLinear,
    /// (output_dim, d_model)
    pub(crate) proj2: BiasedLinear,
}

impl AudioEncoder {
    /// Load the encoder's tensors under `prefix` (`"thinker.audio_tower."`, with the dot),
    /// checking every shape against `config`.
    pub fn load(store: &WeightStore, prefix: &str, config: AudioEncoderConfig) -> Result<Self> {
        let c = &config;
        let ch = c.downsample_hidden_size;
        let name = |n: &str| format!("{prefix}{n}");
        let layers = (0..c.encoder_layers)
            .map(|i| EncoderLayer::load(store, &name(&format!("layers.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(AudioEncoder {
            conv2d1: Conv2d::load(store, &name("conv2d1"), ch, 1)?,
            conv2d2: Conv2d::load(store, &name("conv2d2"), ch, ch)?,
            conv2d3: Conv2d::load(store, &name("conv2d3"), ch, ch)?,
            conv_out: Linear::load(
                store,
                &name("conv_out.weight"),
                c.d_model,
                c.conv_out_features(),
            )?,
            layers,
            ln_post: LayerNorm::load(store, &name("ln_post"), c.d_model)?,
            proj1: BiasedLinear::load(store, &name("proj1"), c.d_model, c.d_model)?,
            proj2: BiasedLinear::load(store, &name("proj2"), c.output_dim, c.d_model)?,
            config,
        })
    }

    /// Encode one clip: `mel` (num_mel_bins, frames) f32, bin-major as the feature extractor
    /// writes it, to (output_tokens(frames), output_dim) f32 rows.
    pub fn forward(&self, mel: &[f32], frames: usize) -> Result<Vec<f32>> {
        self.forward_traced(mel, frames, None)
    }

    /// As `forward`, recording the intermediate tensors into `trace` when given.
    pub fn forward_traced(
        &self,
        mel: &[f32],
        frames: usize,
        trace: Option<&mut AudioTrace>,
    ) -> Result<Vec<f32>> {
        check_mel(&self.config, mel, frames)?;
        // On a pool worker, as the text model does: each kernel's split is then a work-steal
        // rather than a wake-up of the calling thread.
        Ok(rayon::scope(|_| self.forward_on_worker(mel, frames, trace)))
    }

    fn forward_on_worker(
        &self,
        mel: &[f32],
        frames: usize,
        mut trace: Option<&mut AudioTrace>,
    ) -> Vec<f32> {
        let c = &self.config;
        let d = c.d_model;
        // 1. chunks, zero-padded to the longest one (= a full chunk unless the clip is
        //    shorter; the reference pads to the longest chunk of the batch, L684)
        let chunk_lens = chunk_lengths(frames, c.chunk_frames());
        let padded_len = chunk_lens.iter().copied().max().unwrap_or(0);
        let steps = after_convs(padded_len);
        // 2. convolutions per chunk, then conv_out over every chunk's steps at once
        let mut flat = Vec::with_capacity(chunk_lens.len() * steps * c.conv_out_features());
        for i in 0..chunk_lens.len() {
            let image = chunk_image(mel, frames, i * c.chunk_frames(), padded_len, c);
            flat.extend(self.convolve(image));
        }
        let conv_out = self.conv_out.forward(&flat, chunk_lens.len() * steps);
        // 3. positions restart in every chunk; padded steps dropped
        let positions = sinusoid_positions(steps, d);
        let mut x = Vec::with_capacity(c.output_tokens(frames) * d);
        for (i, &len) in chunk_lens.iter().enumerate() {
            let chunk = &conv_out[i * steps * d..(i + 1) * steps * d];
            let valid = after_convs(len) * d;
            x.extend(chunk[..valid].iter().zip(&positions).map(|(a, p)| a + p));
        }
        let n = x.len() / d;
        debug_assert_eq!(n, c.output_tokens(frames));
        if let Some(tr) = trace.as_deref_mut() {
            tr.conv_out = conv_out;
            tr.embed = x.clone();
        }
        // 4. encoder layers, attention windowed
        let window = c.window_tokens(steps);
        for layer in &self.layers {
            layer.forward(&mut x, n, window);
            if let Some(tr) = trace.as_deref_mut() {
                tr.layers.push(x.clone());
            }
        }
        // 5. output head
        let h = self.ln_post.forward(&x);
        let mut h = self.proj1.forward(&h, n);
        gelu_in_place(&mut h);
        self.proj2.forward(&h, n)
    }

    /// The three convolutions of one chunk, flattened per time step in (channel, mel) order
    /// (the reference's `permute(0, 3, 1, 2)`): (steps, channels · mel) f32.
    fn convolve(&self, image: FeatureMap) -> Vec<f32> {
        let x = self.conv2d1.forward_gelu(&image);
        let x = self.conv2d2.forward_gelu(&x);
        let x = self.conv2d3.forward_gelu(&x);
        let mut rows = vec![0f32; x.data.len()];
        for (t, row) in rows.chunks_exact_mut(x.channels * x.freq).enumerate() {
            for f in 0..x.freq {
                let src = &x.data[(f * x.time + t) * x.channels..][..x.channels];
                for (ch, &v) in src.iter().enumerate() {
                    row[ch * x.freq + f] = v;
                }
            }
        }
        rows
    }
}

/// The checks both engines make on a mel spectrogram before encoding it.
pub(crate) fn check_mel(config: &AudioEncoderConfig, mel: &[f32], frames: usize) -> Result<()> {
    let bins = config.num_mel_bins;
    if frames == 0 {
        return Err(Error::Invalid(
            "audio encoder: the mel spectrogram has no frames".into(),
        ));
    }
    if mel.len() != bins * frames {
        return Err(Error::Invalid(format!(
            "audio encoder: a mel spectrogram of {frames} frames needs {bins} bins × \
             {frames} = {} values, got {} ({:.2} bins per frame)",
            bins * frames,
            mel.len(),
            mel.len() as f64 / frames as f64
        )));
    }
    if let Some(i) = mel.iter().position(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "audio encoder: mel value {} (bin {}, frame {}) is not finite",
            mel[i],
            i / frames,
            i % frames
        )));
    }
    Ok(())
}

/// Frames per chunk: full chunks of `chunk` frames, then the remainder if any.
pub(crate) fn chunk_lengths(frames: usize, chunk: usize) -> Vec<usize> {
    (0..frames.div_ceil(chunk))
        .map(|i| chunk.min(frames - i * chunk))
        .collect()
}

/// Frames start..start+padded_len of the bin-major mel as a one-channel (mel, time) image,
/// zeros past the clip's end.
pub(crate) fn chunk_image(
    mel: &[f32],
    frames: usize,
    start: usize,
    padded_len: usize,
    c: &AudioEncoderConfig,
) -> FeatureMap {
    let len = padded_len.min(frames - start);
    let mut data = vec![0f32; c.num_mel_bins * padded_len];
    for (bin, row) in data.chunks_exact_mut(padded_len).enumerate() {
        row[..len].copy_from_slice(&mel[bin * frames + start..][..len]);
    }
    FeatureMap {
        data,
        freq: c.num_mel_bins,
        time: padded_len,
        channels: 1,
    }
}

/// (steps, dim) table: [sin(p·τ_i) | cos(p·τ_i)] with τ_i = 10000^(−i/(dim/2 − 1)), rounded
/// as the reference rounds it (its f32 products, L105-109).
pub(crate) fn sinusoid_positions(steps: usize, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let increment = (MAX_TIMESCALE.ln() / (half - 1) as f64) as f32;
    let inv_timescale: Vec<f32> = (0..half)
        .map(|i| ((-increment * i as f32) as f64).exp() as f32)
        .collect();
    let mut table = vec![0f32; steps * dim];
    for (p, row) in table.chunks_exact_mut(dim).enumerate() {
        for (i, &inv) in inv_timescale.iter().enumerate() {
            let angle = (p as f32 * inv) as f64;
            row[i] = angle.sin() as f32;
            row[half + i] = angle.cos() as f32;
        }
    }
    table
}
