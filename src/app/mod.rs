//! The `omni` commands (L5): each parses nothing itself (main.rs does) and reports errors
//! through `anyhow` with context, printed as one line.

pub mod ask;
pub mod bench;
pub mod bench_audio;
pub mod bench_gpu;
pub mod bench_latency;
pub mod bench_stream;
pub mod ctl;
pub mod devices;
pub mod engine;
pub mod generate;
pub mod info;
pub mod load;
pub mod progress;
pub mod quant_report;
pub mod quantize;
pub mod serve;
pub mod synth;
pub mod tokenize;

use std::path::PathBuf;

use crate::error::Result;

/// Resolve `--model` (directory or HF repo id in the local cache).
pub fn model_dir(arg: &str) -> Result<PathBuf> {
    crate::weights::resolve_model_path(arg)
}
