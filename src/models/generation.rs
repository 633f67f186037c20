//! The generation loop shared by every front end: prefill the prompt, then decode one token at
//! a time until a stop id, the token limit or the caller says stop.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::models::qwen3::{Logits, Qwen3Model};
use crate::models::sampler::Sampler;
use crate::nn::KvCache;

/// When to stop.
#[derive(Debug, Clone)]
pub struct StopRule {
    pub max_new_tokens: usize,
    /// ids that end the reply (not emitted)
    pub stop_ids: Vec<u32>,
}

/// What a run did, with its timings.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated: Vec<u32>,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    pub stopped_by_eos: bool,
    /// the context filled up before the reply ended
    pub stopped_by_context: bool,
}

/// Generate after `prompt`, calling `on_token` with each new id (before it is fed back).
pub fn generate(
    model: &Qwen3Model,
    cache: &mut KvCache,
    prompt: &[u32],
    sampler: &mut Sampler,
    stop: &StopRule,
    mut on_token: impl FnMut(u32) -> Result<ControlFlow<()>>,
) -> Result<GenerationStats> {
    cache.check_room(prompt.len())?;
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let mut history = prompt.to_vec();
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, cache, Logits::Last)?;
    stats.prefill_time = t0.elapsed();
    let t1 = Instant::now();
    for step in 0..stop.max_new_tokens {
        let id = sampler.sample(&mut logits, &history);
        if stop.stop_ids.contains(&id) {
            stats.stopped_by_eos = true;
            break;
        }
        stats.generated.push(id);
        history.push(id);
        if on_token(id)?.is_break() || step + 1 == stop.max_new_tokens {
            break;
        }
        if cache.len >= cache.capacity {
            stats.stopped_by_context = true;
            break;
        }
        logits = model.forward(&[id], cache, Logits::Last)?;
    }
    stats.decode_time = t1.elapsed();
    Ok(stats)
}
