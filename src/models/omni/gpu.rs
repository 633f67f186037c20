//! The Omni thinker's text decoder on the GPU engine. Prompts with audio placeholders are
//! prefilled from embeddings (the encoder rows scattered in on the host, one upload); every
//! other step, run-ahead decoding included, is the plain GPU decoder's.

use std::sync::Arc;

use super::OmniThinker;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::models::generation::{StepOut, TextModel, Want};
use crate::models::qwen3::Logits;
use crate::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};
use crate::models::sampler::SamplingParams;

pub struct OmniGpuSession<'a> {
    pub thinker: &'a OmniThinker,
    pub gpu: Qwen3Gpu,
    audio: Vec<f32>,
}

impl<'a> OmniGpuSession<'a> {
    pub fn new(
        ctx: &Arc<GpuContext>,
        thinker: &'a OmniThinker,
        opts: GpuModelOptions,
    ) -> Result<Self> {
        Ok(OmniGpuSession {
            thinker,
            gpu: Qwen3Gpu::new(ctx, &thinker.text, opts)?,
            audio: Vec::new(),
        })
    }

    /// Audio rows (from `OmniThinker::encode_audio`) for the placeholders of the next prompt.
    pub fn attach_audio(&mut self, rows: Vec<f32>) {
        self.audio = rows;
    }

    fn has_audio(&self, ids: &[u32]) -> bool {
        ids.contains(&self.thinker.tokens.audio_pad)
    }

    /// Prefill `ids` with the attached audio rows at their placeholders.
    fn prefill_with_audio(&mut self, ids: &[u32], want: Want) -> Result<Vec<f32>> {
        self.gpu.choose_by(want);
        let x = self.thinker.embed(ids, &std::mem::take(&mut self.audio))?;
        let which = (want == Want::Logits).then_some(Logits::Last);
        self.gpu.prefill_embeds(&x, which)
    }
}

impl TextModel for OmniGpuSession<'_> {
    fn step(&mut self, ids: &[u32], want: Want) -> Result<StepOut> {
        if !self.has_audio(ids) {
            return self.gpu.step(ids, want);
        }
        let logits = self.prefill_with_audio(ids, want)?;
        Ok(match want {
            Want::Greedy | Want::Sample(_) => StepOut::Id(self.gpu.last_id()?),
            Want::Logits => StepOut::Logits(logits),
        })
    }
    fn cached(&self) -> usize {
        self.gpu.cached()
    }
    fn capacity(&self) -> usize {
        self.gpu.capacity()
    }
    fn sample_on_device(&mut self, params: &SamplingParams) -> bool {
        self.gpu.sample_on_device(params)
    }
    fn runs_ahead(&self) -> bool {
        true
    }
    fn submit(&mut self, ids: Option<&[u32]>, want: Want) -> Result<()> {
        match ids {
            Some(ids) if self.has_audio(ids) => self.prefill_with_audio(ids, want).map(|_| ()),
            _ => self.gpu.submit(ids, want),
        }
    }
    fn take_id(&mut self) -> Result<u32> {
        self.gpu.take_id()
    }
    fn forget_ahead(&mut self, steps: usize) {
        TextModel::forget_ahead(&mut self.gpu, steps);
    }
}
