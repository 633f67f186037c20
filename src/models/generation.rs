//! The generation loop shared by every front end and both engines: prefill the prompt, then
//! decode one token at a time until a stop id, the token limit, a full context, or the caller
//! says stop. Greedy decoding without a repetition penalty asks the engine for the chosen id
//! only, so the GPU engine never reads logits back.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::models::qwen3::gpu::Qwen3Gpu;
use crate::models::qwen3::{Logits, Qwen3Model};
use crate::models::sampler::Sampler;
use crate::nn::KvCache;

/// What a step should return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want {
    /// the arg-max id of the last position
    Greedy,
    /// an id sampled on the device with the draw u in [0, 1) (after `sample_on_device`)
    Sample(f32),
    /// the last position's logits
    Logits,
}

pub enum StepOut {
    Id(u32),
    Logits(Vec<f32>),
}

/// A text decoder with its own KV cache, on either engine.
pub trait TextModel {
    /// Run `ids` after what is cached.
    fn step(&mut self, ids: &[u32], want: Want) -> Result<StepOut>;
    /// Tokens cached.
    fn cached(&self) -> usize;
    /// Most tokens the cache holds.
    fn capacity(&self) -> usize;
    /// Use these settings for `Want::Sample` steps; false when the engine cannot sample itself.
    fn sample_on_device(&mut self, _params: &crate::models::sampler::SamplingParams) -> bool {
        false
    }
    /// Whether the engine can queue steps ahead of reading their ids ([`TextModel::submit`]).
    fn runs_ahead(&self) -> bool {
        false
    }
    /// Queue a step choosing its id on the device (`want` Greedy or Sample) without waiting:
    /// `ids` None feeds the id the previous step chose, still on the device.
    fn submit(&mut self, _ids: Option<&[u32]>, _want: Want) -> Result<()> {
        Err(crate::Error::Invalid(
            "this engine does not run ahead".into(),
        ))
    }
    /// The id of the oldest queued step not read yet.
    fn take_id(&mut self) -> Result<u32> {
        Err(crate::Error::Invalid(
            "this engine does not run ahead".into(),
        ))
    }
    /// Drop the last `steps` queued steps: their ids are not wanted and their cache rows are
    /// forgotten.
    fn forget_ahead(&mut self, _steps: usize) {}
}

/// The CPU engine with a cache.
pub struct CpuSession<'a> {
    pub model: &'a Qwen3Model,
    pub cache: KvCache,
}

impl TextModel for CpuSession<'_> {
    fn step(&mut self, ids: &[u32], want: Want) -> Result<StepOut> {
        let logits = self.model.forward(ids, &mut self.cache, Logits::Last)?;
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

impl Qwen3Gpu {
    pub(crate) fn choose_by(&mut self, want: Want) {
        match (want, &self.device_sampling) {
            (Want::Sample(u), Some(p)) => {
                let p = p.clone();
                self.set_sampling(Some((p, u)));
            }
            _ => self.set_sampling(None),
        }
    }
}

impl TextModel for Qwen3Gpu {
    fn runs_ahead(&self) -> bool {
        true
    }
    fn submit(&mut self, ids: Option<&[u32]>, want: Want) -> Result<()> {
        if want == Want::Logits {
            return Err(crate::Error::Invalid(
                "a step run ahead chooses its id on the device".into(),
            ));
        }
        self.choose_by(want);
        match ids {
            None => self.decode(None, false)?,
            Some([id]) if self.len > 0 => self.decode(Some(*id), false)?,
            Some(ids) => self.prefill(ids, None)?,
        };
        Ok(())
    }
    fn take_id(&mut self) -> Result<u32> {
        self.last_id()
    }
    fn forget_ahead(&mut self, steps: usize) {
        Qwen3Gpu::forget_ahead(self, steps);
    }
    fn step(&mut self, ids: &[u32], want: Want) -> Result<StepOut> {
        let read = want == Want::Logits;
        self.choose_by(want);
        let logits = if ids.len() == 1 && self.len > 0 {
            self.decode(Some(ids[0]), read)?
        } else {
            self.prefill(ids, read.then_some(Logits::Last))?
        };
        Ok(match want {
            Want::Greedy | Want::Sample(_) => StepOut::Id(self.last_id()?),
            Want::Logits => StepOut::Logits(logits),
        })
    }
    fn cached(&self) -> usize {
        self.len
    }
    fn sample_on_device(&mut self, params: &crate::models::sampler::SamplingParams) -> bool {
        self.device_sampling = Some(params.clone());
        true
    }
    fn capacity(&self) -> usize {
        self.opts.ctx
    }
}

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
    model: &mut dyn TextModel,
    prompt: &[u32],
    sampler: &mut Sampler,
    stop: &StopRule,
    mut on_token: impl FnMut(u32) -> Result<ControlFlow<()>>,
) -> Result<GenerationStats> {
    if model.cached() + prompt.len() > model.capacity() {
        return Err(crate::Error::ContextOverflow {
            needed: model.cached() + prompt.len(),
            context: model.capacity(),
        });
    }
    // Greedy and (without repetition penalty) sampling run on the engine when it can;
    // otherwise the logits come back and the CPU sampler decides.
    let no_penalty = sampler.params.repetition_penalty == 1.0;
    let on_device =
        no_penalty && !sampler.params.is_greedy() && model.sample_on_device(&sampler.params);
    let want_for = |sampler: &mut Sampler| {
        if no_penalty && sampler.params.is_greedy() {
            Want::Greedy
        } else if on_device {
            Want::Sample(sampler.next_uniform())
        } else {
            Want::Logits
        }
    };
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    let chooses_on_device = no_penalty && (sampler.params.is_greedy() || on_device);
    if chooses_on_device && model.runs_ahead() {
        return generate_ahead(model, prompt, sampler, stop, stats, want_for, on_token);
    }
    let mut history = prompt.to_vec();
    let t0 = Instant::now();
    let mut out = model.step(prompt, want_for(sampler))?;
    stats.prefill_time = t0.elapsed();
    let t1 = Instant::now();
    for step in 0..stop.max_new_tokens {
        let id = match out {
            StepOut::Id(id) => id,
            StepOut::Logits(mut logits) => sampler.sample(&mut logits, &history),
        };
        if stop.stop_ids.contains(&id) {
            stats.stopped_by_eos = true;
            break;
        }
        stats.generated.push(id);
        history.push(id);
        if on_token(id)?.is_break() || step + 1 == stop.max_new_tokens {
            break;
        }
        if model.cached() >= model.capacity() {
            stats.stopped_by_context = true;
            break;
        }
        out = model.step(&[id], want_for(sampler))?;
    }
    stats.decode_time = t1.elapsed();
    Ok(stats)
}

/// [`generate`] on an engine that chooses ids on the device: two steps stay queued, each fed by
/// the id its predecessor chose without a trip through the host, so the GPU never waits for the
/// host to read an id, encode and submit. Steps queued past the end (a stop id, the caller's
/// break) are dropped with their cache rows, leaving the cache as the plain loop leaves it.
fn generate_ahead(
    model: &mut dyn TextModel,
    prompt: &[u32],
    sampler: &mut Sampler,
    stop: &StopRule,
    mut stats: GenerationStats,
    want_for: impl Fn(&mut Sampler) -> Want,
    mut on_token: impl FnMut(u32) -> Result<ControlFlow<()>>,
) -> Result<GenerationStats> {
    const IN_FLIGHT: usize = 2;
    let t0 = Instant::now();
    model.submit(Some(prompt), want_for(sampler))?;
    if stop.max_new_tokens == 0 {
        model.take_id()?;
        stats.prefill_time = t0.elapsed();
        return Ok(stats);
    }
    let (mut submitted, mut taken) = (1usize, 0usize);
    let mut t1 = Instant::now();
    loop {
        while submitted < taken + IN_FLIGHT
            && submitted < stop.max_new_tokens
            && model.cached() < model.capacity()
        {
            model.submit(None, want_for(sampler))?;
            submitted += 1;
        }
        if taken == submitted {
            // more ids are wanted but none could be queued: the context is full
            stats.stopped_by_context = true;
            break;
        }
        let id = model.take_id()?;
        taken += 1;
        if taken == 1 {
            stats.prefill_time = t0.elapsed();
            t1 = Instant::now();
        }
        if stop.stop_ids.contains(&id) {
            stats.stopped_by_eos = true;
            break;
        }
        stats.generated.push(id);
        if on_token(id)?.is_break() || taken == stop.max_new_tokens {
            break;
        }
    }
    model.forget_ahead(submitted - taken);
    stats.decode_time = t1.elapsed();
    Ok(stats)
}
