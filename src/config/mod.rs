//! The daemon's configuration (`config/default.toml` documents every key): parsed with serde
//! from TOML, unknown keys refused, each value checked, and every error naming the key.
//! Defaults apply key by key, so a file holds only what differs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The shipped defaults, with every key documented.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelSection,
    pub audio: AudioSection,
    pub vad: VadSection,
    pub mode: ModeSection,
    pub generation: GenerationSection,
    pub earcons: EarconSection,
    pub control: ControlSection,
    pub log: LogSection,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub path: String,
    pub backend: String,
    pub adapter: String,
    pub quant: String,
    pub context: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSection {
    pub input_device: String,
    pub output_device: String,
    pub sample_rate: u32,
    pub buffer_frames: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadSection {
    pub aggressiveness: u8,
    pub pre_roll_ms: u32,
    pub hangover_ms: u32,
    pub min_speech_ms: u32,
    pub noise_margin_db: f32,
    pub min_level_dbfs: f32,
}

/// How turns start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    AlwaysOn,
    PushToTalk,
    Text,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeSection {
    pub default: Mode,
    pub barge_in: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSection {
    pub system_prompt: String,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarconSection {
    pub listening: String,
    pub reply_ready: String,
    pub volume: f32,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    pub socket: String,
    pub allowed_uids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub level: String,
    pub file: String,
}

impl Default for Config {
    /// The defaults, equal to what config/default.toml documents (a test checks they agree).
    fn default() -> Self {
        Config::defaults()
    }
}

macro_rules! section_default {
    ($t:ty) => {
        impl Default for $t {
            fn default() -> Self {
                Config::default_section::<$t>()
            }
        }
    };
}

impl Config {
    fn defaults() -> Self {
        Config {
            model: ModelSection {
                path: String::new(),
                backend: "auto".into(),
                adapter: String::new(),
                quant: String::new(),
                context: 8192,
            },
            audio: AudioSection {
                input_device: String::new(),
                output_device: String::new(),
                sample_rate: 0,
                buffer_frames: 1024,
            },
            vad: VadSection {
                aggressiveness: 2,
                pre_roll_ms: 300,
                hangover_ms: 700,
                min_speech_ms: 250,
                noise_margin_db: 10.0,
                min_level_dbfs: -54.0,
            },
            mode: ModeSection {
                default: Mode::AlwaysOn,
                barge_in: true,
            },
            generation: GenerationSection {
                system_prompt: "You are a helpful voice assistant. Answer briefly.".into(),
                max_tokens: 512,
                temperature: 0.7,
                top_k: 20,
                top_p: 0.8,
            },
            earcons: EarconSection {
                listening: "builtin".into(),
                reply_ready: "builtin".into(),
                volume: 0.5,
            },
            control: ControlSection::default(),
            log: LogSection {
                level: "info".into(),
                file: String::new(),
            },
        }
    }

    fn default_section<T: SectionOf>() -> T {
        T::of(&Config::defaults())
    }

    /// Parse `text` (the contents of `path`, for messages) and check every value.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        Self::parse_with(text, path, |_| {})
    }

    /// As `parse`, with `overrides` (command-line flags) applied before the values are
    /// checked, so a flag may supply what the file leaves out.
    pub fn parse_with(
        text: &str,
        path: &Path,
        overrides: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            msg: e.message().to_string() + &key_hint(&e, text),
        })?;
        overrides(&mut cfg);
        cfg.validate().map_err(|msg| Error::Config {
            path: path.to_path_buf(),
            msg,
        })?;
        Ok(cfg)
    }

    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// `$XDG_CONFIG_HOME/omni/config.toml`, else `~/.config/omni/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("omni").join("config.toml"))
    }

    /// The control socket: `control.socket`, else `$XDG_RUNTIME_DIR/omni/omni.sock`.
    pub fn socket_path(&self) -> Result<PathBuf> {
        if !self.control.socket.is_empty() {
            return Ok(PathBuf::from(&self.control.socket));
        }
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("omni").join("omni.sock"))
            .ok_or_else(|| {
                Error::Invalid(
                    "control.socket is empty and XDG_RUNTIME_DIR is not set: give a socket path"
                        .into(),
                )
            })
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let m = &self.model;
        if m.path.is_empty() {
            return Err("model.path is required (a Qwen3-Omni model directory)".into());
        }
        if !matches!(m.backend.as_str(), "auto" | "gpu" | "cpu") {
            return Err(format!(
                "model.backend `{}`: expected auto, gpu or cpu",
                m.backend
            ));
        }
        if !matches!(m.quant.as_str(), "" | "q8_0") {
            return Err(format!("model.quant `{}`: expected \"\" or q8_0", m.quant));
        }
        if m.context < 256 {
            return Err(format!(
                "model.context {} is too small (at least 256 tokens)",
                m.context
            ));
        }
        let rate = self.audio.sample_rate;
        if rate != 0 && !(8000..=192_000).contains(&rate) {
            return Err(format!(
                "audio.sample_rate {rate}: expected 0 (the device's own) or 8000..=192000"
            ));
        }
        if !(64..=16384).contains(&self.audio.buffer_frames) {
            return Err(format!(
                "audio.buffer_frames {}: expected 64..=16384",
                self.audio.buffer_frames
            ));
        }
        let v = &self.vad;
        if v.aggressiveness > 3 {
            return Err(format!(
                "vad.aggressiveness {}: expected 0..=3",
                v.aggressiveness
            ));
        }
        if v.hangover_ms == 0 || v.hangover_ms > 10_000 {
            return Err(format!(
                "vad.hangover_ms {}: expected 1..=10000",
                v.hangover_ms
            ));
        }
        if !(0.0..=40.0).contains(&v.noise_margin_db) {
            return Err(format!(
                "vad.noise_margin_db {}: expected 0 ..= 40",
                v.noise_margin_db
            ));
        }
        if !(-120.0..=0.0).contains(&v.min_level_dbfs) {
            return Err(format!(
                "vad.min_level_dbfs {}: expected -120 ..= 0",
                v.min_level_dbfs
            ));
        }
        if v.pre_roll_ms > 5_000 {
            return Err(format!(
                "vad.pre_roll_ms {}: expected at most 5000",
                v.pre_roll_ms
            ));
        }
        let g = &self.generation;
        if g.max_tokens == 0 {
            return Err("generation.max_tokens must be positive".into());
        }
        if !(g.temperature >= 0.0 && g.temperature.is_finite()) {
            return Err(format!(
                "generation.temperature {}: expected >= 0",
                g.temperature
            ));
        }
        if !(g.top_p > 0.0 && g.top_p <= 1.0) {
            return Err(format!("generation.top_p {}: expected in (0, 1]", g.top_p));
        }
        if !(0.0..=1.0).contains(&self.earcons.volume) {
            return Err(format!(
                "earcons.volume {}: expected 0.0 ..= 1.0",
                self.earcons.volume
            ));
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) && !self.log.level.contains('=')
        {
            return Err(format!(
                "log.level `{}`: expected error, warn, info, debug, trace or a filter such as qwen_omni=debug",
                self.log.level
            ));
        }
        Ok(())
    }
}

/// " (line L: `…`)" for a TOML error with a location, so the message shows the offending key.
fn key_hint(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    format!(" (line {line_no}: `{line}`)")
}

/// Picks one section out of the defaults.
trait SectionOf {
    fn of(c: &Config) -> Self;
}

macro_rules! section_of {
    ($t:ty, $f:ident) => {
        impl SectionOf for $t {
            fn of(c: &Config) -> Self {
                c.$f.clone()
            }
        }
        section_default!($t);
    };
}

section_of!(ModelSection, model);
section_of!(AudioSection, audio);
section_of!(VadSection, vad);
section_of!(ModeSection, mode);
section_of!(GenerationSection, generation);
section_of!(EarconSection, earcons);
section_of!(LogSection, log);
