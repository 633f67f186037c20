//! `thinker_config.audio_config`: the AuT encoder's hyperparameters, and the length
//! arithmetic of its convolutions (tokens per clip, attention windows).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// `thinker_config.audio_config` of a Qwen3-Omni config.json (model_type
/// `qwen3_omni_moe_audio_encoder`); field names are the file's keys. Keys the forward pass does
/// not read (`conv_chunksize`: memory batching only; `scale_embedding`: the reference computes
/// a scale but never applies it; dropouts; `max_source_positions`) are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioEncoderConfig {
    /// mel bins per frame (128)
    pub num_mel_bins: usize,
    /// width of the encoder layers (1280)
    pub d_model: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    /// channels of the three convolutions (480)
    pub downsample_hidden_size: usize,
    /// width of the output rows = the thinker's hidden size (2048)
    pub output_dim: usize,
    /// half a convolution chunk, in mel frames (50: chunks of 100 frames = 1 s)
    pub n_window: usize,
    /// attention window in mel frames (800 = 8 s); a multiple of `2·n_window`
    pub n_window_infer: usize,
    /// only `gelu` (the erf form) is implemented
    pub activation_function: String,
}

impl AudioEncoderConfig {
    /// Read `dir/config.json` and parse its `thinker_config.audio_config`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let config_error = |msg: String| Error::Config {
            path: path.clone(),
            msg,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let root: Value = serde_json::from_str(&text)
            .map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        let audio = root
            .get("thinker_config")
            .and_then(|t| t.get("audio_config"))
            .ok_or_else(|| {
                config_error(
                    "no `thinker_config.audio_config`: not a Qwen3-Omni checkpoint with an \
                     audio encoder"
                        .into(),
                )
            })?;
        Self::parse(audio)
            .map_err(|msg| config_error(format!("thinker_config.audio_config: {msg}")))
    }

    /// Parse the `audio_config` object itself; errors name the key at fault.
    pub fn from_json(v: &Value) -> Result<Self> {
        Self::parse(v).map_err(|msg| Error::Invalid(format!("audio_config: {msg}")))
    }

    fn parse(v: &Value) -> std::result::Result<Self, String> {
        if !v.is_object() {
            return Err(format!("expected a JSON object, found {v}"));
        }
        let cfg = AudioEncoderConfig {
            num_mel_bins: positive_key(v, "num_mel_bins")?,
            d_model: positive_key(v, "d_model")?,
            encoder_layers: positive_key(v, "encoder_layers")?,
            encoder_attention_heads: positive_key(v, "encoder_attention_heads")?,
            encoder_ffn_dim: positive_key(v, "encoder_ffn_dim")?,
            downsample_hidden_size: positive_key(v, "downsample_hidden_size")?,
            output_dim: positive_key(v, "output_dim")?,
            n_window: positive_key(v, "n_window")?,
            n_window_infer: positive_key(v, "n_window_infer")?,
            activation_function: string_key(v, "activation_function")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.d_model.is_multiple_of(self.encoder_attention_heads) {
            return Err(format!(
                "`d_model` ({}) must be a multiple of `encoder_attention_heads` ({})",
                self.d_model, self.encoder_attention_heads
            ));
        }
        // The sinusoid table divides by (d_model / 2 - 1).
        if self.d_model < 4 || !self.d_model.is_multiple_of(2) {
            return Err(format!(
                "`d_model` ({}) must be even and at least 4 for the sinusoidal positions",
                self.d_model
            ));
        }
        // The reference floors n_window_infer / (2 n_window) (a remainder would silently
        // shrink the window) and divides by the result (0 would crash it).
        if !self.n_window_infer.is_multiple_of(self.chunk_frames()) {
            return Err(format!(
                "`n_window_infer` ({}) must be a multiple of 2 * `n_window` ({})",
                self.n_window_infer,
                self.chunk_frames()
            ));
        }
        if self.activation_function != "gelu" {
            return Err(format!(
                "`activation_function` `{}` is not supported (only gelu)",
                self.activation_function
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.encoder_attention_heads
    }

    /// Mel frames per convolution chunk (100).
    pub fn chunk_frames(&self) -> usize {
        2 * self.n_window
    }

    /// Tokens out of one full chunk (13 for 100 frames).
    pub fn tokens_per_chunk(&self) -> usize {
        after_convs(self.chunk_frames())
    }

    /// Tokens the encoder returns for `frames` mel frames: every full chunk gives
    /// `tokens_per_chunk`, the tail chunk what the convolutions leave of it. For n_window 50
    /// this is the reference's 13·⌊F/100⌋ + ⌈(F mod 100)/8⌉; the reference
    /// (`_get_feat_extract_output_lengths`, L150-157) hard-codes the 13 and is wrong for any
    /// other n_window, so it is derived here from the convolution arithmetic instead.
    pub fn output_tokens(&self, frames: usize) -> usize {
        let chunk = self.chunk_frames();
        frames / chunk * self.tokens_per_chunk() + after_convs(frames % chunk)
    }

    /// Input width of `conv_out`: channels × mel bins left after three convolutions.
    pub(crate) fn conv_out_features(&self) -> usize {
        self.downsample_hidden_size * after_convs(self.num_mel_bins)
    }

    /// Attention window in tokens for a clip whose longest chunk gives `chunk_tokens`
    /// (`get_audio_cu_seqlens`, L707-746: the window is counted in padded chunks).
    pub(crate) fn window_tokens(&self, chunk_tokens: usize) -> usize {
        chunk_tokens * (self.n_window_infer / self.chunk_frames())
    }
}

fn positive_key(v: &Value, key: &str) -> std::result::Result<usize, String> {
    let found = v.get(key).ok_or_else(|| format!("`{key}` is missing"))?;
    match found.as_u64() {
        Some(n) if n > 0 => Ok(n as usize),
        _ => Err(format!("`{key}` must be a positive integer, found {found}")),
    }
}

fn string_key(v: &Value, key: &str) -> std::result::Result<String, String> {
    let found = v.get(key).ok_or_else(|| format!("`{key}` is missing"))?;
    found
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`{key}` must be a string, found {found}"))
}

/// Length left by one Conv2d(kernel 3, stride 2, padding 1): ⌊(n + 2 − 3) / 2⌋ + 1 = ⌈n/2⌉.
pub(super) fn conv_len(n: usize) -> usize {
    n.div_ceil(2)
}

/// Length left by the three convolutions.
pub(super) fn after_convs(n: usize) -> usize {
    conv_len(conv_len(conv_len(n)))
}
