//! Loading a text model for a command: config, weights (mapped, then faulted in with a
//! progress bar when that takes over a second), generation defaults.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::models::config::{GenerationConfig, Qwen3Config};
use crate::models::qwen3::Qwen3Model;
use crate::weights::WeightStore;

pub struct Loaded {
    pub model: Qwen3Model,
    pub generation: GenerationConfig,
    pub load_time: Duration,
    pub file_bytes: usize,
}

pub fn load_qwen3(dir: &Path) -> Result<Loaded> {
    let t0 = Instant::now();
    let config = Qwen3Config::load(dir)?;
    let generation = GenerationConfig::load(dir)?;
    let store = WeightStore::open(dir)?;
    let model = Qwen3Model::from_store(config, &store)?;
    let file_bytes = store.file_bytes();
    let mut bar = super::progress::DelayedProgress::new(file_bytes as u64, "loading");
    store.prefault(&mut |n| bar.inc(n));
    bar.finish();
    Ok(Loaded {
        model,
        generation,
        load_time: t0.elapsed(),
        file_bytes,
    })
}

/// EOS ids: generation_config.json's, else config.json's.
pub fn stop_ids(l: &Loaded) -> Vec<u32> {
    l.generation
        .eos_token_id
        .as_ref()
        .or(l.model.config.eos_token_id.as_ref())
        .map(|e| e.to_vec())
        .unwrap_or_default()
}

/// `--quant`: quantise the loaded weights in memory (only q8_0 exists).
pub fn apply_quant(l: &mut Loaded, quant: Option<&str>) -> anyhow::Result<()> {
    match quant.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(()),
        Some("q8_0") => {
            let t = Instant::now();
            let n = l.model.quantize_q8_0();
            tracing::info!(
                matrices = n,
                secs = t.elapsed().as_secs_f64(),
                "quantised to Q8_0 at load"
            );
            Ok(())
        }
        Some(other) => anyhow::bail!("--quant `{other}`: the only quantisation is q8_0"),
    }
}
