//! The Qwen3-Omni thinker (`qwen3_omni_moe`): the AuT audio encoder feeding the MoE text
//! decoder. Speech goes in as 16 kHz samples, is encoded to rows of the decoder's width, and
//! those rows replace the `<|audio_pad|>` placeholders of a ChatML prompt. Only the thinker's
//! tensors are read: the vision, talker and code2wav tensors of a full checkpoint stay unmapped
//! until their stages exist.

pub mod engine;
pub mod gpu;
pub mod prompt;

use std::path::Path;

use crate::error::{Error, Result};
use crate::models::audio_encoder::aut::{AudioEncoder, AudioEncoderConfig};
use crate::models::audio_encoder::mel;
use crate::models::config::Qwen3Config;
use crate::models::generation::{StepOut, TextModel, Want};
use crate::models::qwen3::{Logits, Qwen3Model};
use crate::nn::KvCache;
use crate::weights::WeightStore;

pub use prompt::OmniTokens;

pub struct OmniThinker {
    pub text: Qwen3Model,
    pub audio: AudioEncoder,
    pub tokens: OmniTokens,
    /// the checkpoint asks for speech output (talker + code2wav); this engine answers in text
    pub enable_audio_output: bool,
}

impl OmniThinker {
    /// Load the thinker (text decoder + audio encoder) of a Qwen3-Omni model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::ModelDir {
                path: dir.to_path_buf(),
                msg: "no config.json (is this a Hugging Face model directory?)".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            msg: format!("not valid JSON: {e}"),
        })?;
        let model_type = json.get("model_type").and_then(|v| v.as_str());
        if model_type != Some("qwen3_omni_moe") {
            return Err(Error::Config {
                path,
                msg: format!(
                    "model_type `{}` is not a Qwen3-Omni checkpoint (qwen3_omni_moe); text-only models run with `omni generate`",
                    model_type.unwrap_or("?")
                ),
            });
        }
        let config = Qwen3Config::from_json(json.clone(), &path)?;
        let tokens = OmniTokens::from_config(&json).map_err(|msg| Error::Config {
            path: path.clone(),
            msg,
        })?;
        let audio_json = json
            .get("thinker_config")
            .and_then(|t| t.get("audio_config"))
            .ok_or_else(|| Error::Config {
                path: path.clone(),
                msg: "no `thinker_config.audio_config`".into(),
            })?;
        let audio_cfg = AudioEncoderConfig::from_json(audio_json).map_err(|e| Error::Config {
            path: path.clone(),
            msg: format!("thinker_config.{e}"),
        })?;
        if audio_cfg.output_dim != config.hidden_size {
            return Err(Error::Config {
                path,
                msg: format!(
                    "audio_config.output_dim {} differs from the text hidden_size {}",
                    audio_cfg.output_dim, config.hidden_size
                ),
            });
        }
        let enable_audio_output = json
            .get("enable_audio_output")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let store = WeightStore::open(dir)?;
        let text = Qwen3Model::from_store(config, &store)?;
        let audio = AudioEncoder::load(&store, "thinker.audio_tower.", audio_cfg)?;
        Ok(OmniThinker {
            text,
            audio,
            tokens,
            enable_audio_output,
        })
    }

    /// Encoder rows (n, hidden) for 16 kHz mono samples on the CPU; n = the placeholder count.
    pub fn encode_audio(&self, samples_16k: &[f32]) -> Result<Vec<f32>> {
        AudioEngine::Cpu(&self.audio).encode(&log_mel_checked(samples_16k)?)
    }

    /// The engine that runs this thinker's audio encoder: the GPU when a context is given.
    pub fn audio_engine(
        &self,
        gpu: Option<&std::sync::Arc<crate::gpu::GpuContext>>,
    ) -> Result<AudioEngine<'_>> {
        Ok(match gpu {
            Some(ctx) => AudioEngine::Gpu(Box::new(
                crate::models::audio_encoder::aut_gpu::AudioEncoderGpu::new(ctx, &self.audio)?,
            )),
            None => AudioEngine::Cpu(&self.audio),
        })
    }

    /// Input embeddings of `ids` with the rows of `audio` (n, hidden) in place of the
    /// `<|audio_pad|>` tokens, in order; their counts must agree.
    pub fn embed(&self, ids: &[u32], audio: &[f32]) -> Result<Vec<f32>> {
        self.text.check_ids(ids)?;
        let h = self.text.config.hidden_size;
        let pads = ids.iter().filter(|&&i| i == self.tokens.audio_pad).count();
        if pads * h != audio.len() {
            return Err(Error::Invalid(format!(
                "the prompt has {pads} audio placeholders but the audio encoder gave {} rows",
                audio.len() / h.max(1)
            )));
        }
        let mut x = self.text.embed(ids);
        let mut next = audio.chunks_exact(h);
        for (row, _) in x
            .chunks_exact_mut(h)
            .zip(ids)
            .filter(|(_, id)| **id == self.tokens.audio_pad)
        {
            if let Some(a) = next.next() {
                row.copy_from_slice(a);
            }
        }
        Ok(x)
    }

    pub fn session(&self, ctx: usize) -> OmniSession<'_> {
        OmniSession {
            thinker: self,
            cache: self.text.new_cache(ctx),
            audio: Vec::new(),
        }
    }
}

/// The log-mel of 16 kHz samples, refusing clips shorter than one frame.
pub fn log_mel_checked(samples_16k: &[f32]) -> Result<mel::Mel> {
    let m = mel::log_mel(samples_16k);
    if m.frames == 0 {
        return Err(Error::Invalid(format!(
            "the audio is too short to encode ({} samples; at least 160 are needed)",
            samples_16k.len()
        )));
    }
    Ok(m)
}

/// Where the audio encoder runs.
pub enum AudioEngine<'a> {
    Cpu(&'a AudioEncoder),
    Gpu(Box<crate::models::audio_encoder::aut_gpu::AudioEncoderGpu>),
}

impl AudioEngine<'_> {
    /// Encoder rows (n, hidden) for a log-mel.
    pub fn encode(&self, m: &mel::Mel) -> Result<Vec<f32>> {
        match self {
            AudioEngine::Cpu(e) => e.forward(&m.data, m.frames),
            AudioEngine::Gpu(e) => e.forward(&m.data, m.frames),
        }
    }

    /// GPU time by kernel of one encode (the GPU engine on an adapter with timestamp
    /// queries), else None.
    pub fn profile(&self, m: &mel::Mel) -> Result<Option<Vec<crate::gpu::KernelTiming>>> {
        match self {
            AudioEngine::Gpu(e) if e.has_timestamps() => Ok(Some(e.profile(&m.data, m.frames)?)),
            _ => Ok(None),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            AudioEngine::Cpu(_) => "CPU",
            AudioEngine::Gpu(_) => "GPU",
        }
    }

    /// GPU only: the last encode's host and device milliseconds.
    pub fn last_split(&self) -> Option<(f64, f64)> {
        match self {
            AudioEngine::Cpu(_) => None,
            AudioEngine::Gpu(e) => e.last_split(),
        }
    }
}

/// A conversation with the thinker on the CPU engine: a KV cache that keeps every turn, and
/// the encoded audio waiting for the next prompt's placeholders.
pub struct OmniSession<'a> {
    pub thinker: &'a OmniThinker,
    pub cache: KvCache,
    audio: Vec<f32>,
}

impl OmniSession<'_> {
    /// Audio rows (from `OmniThinker::encode_audio`) for the placeholders of the next step.
    pub fn attach_audio(&mut self, rows: Vec<f32>) {
        self.audio = rows;
    }
}

impl TextModel for OmniSession<'_> {
    fn step(&mut self, ids: &[u32], want: Want) -> Result<StepOut> {
        let t = self.thinker;
        let logits = if ids.contains(&t.tokens.audio_pad) {
            let x = t.embed(ids, &std::mem::take(&mut self.audio))?;
            t.text
                .forward_embeds(x, &mut self.cache, Logits::Last, None)?
        } else {
            t.text.forward(ids, &mut self.cache, Logits::Last)?
        };
        Ok(match want {
            Want::Greedy => StepOut::Id(crate::cpu::argmax(&logits) as u32),
            Want::Sample(_) | Want::Logits => StepOut::Logits(logits),
        })
    }
    fn cached(&self) -> usize {
        self.cache.len
    }
    fn capacity(&self) -> usize {
        self.cache.capacity
    }
}
