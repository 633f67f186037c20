//! Qwen model components, one folder per checkpoint family, plus the tokenizer, chat template
//! and sampler shared by all of them.

pub mod audio_encoder;
pub mod chat;
pub mod config;
pub mod generation;
pub mod omni;
pub mod presets;
pub mod qwen3;
pub mod sampler;
pub mod tokenizer;
pub mod tokenizer_files;
