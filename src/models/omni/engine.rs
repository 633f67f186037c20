//! One conversation with the thinker on whichever engine runs it: the CPU session or the GPU
//! session, with the audio encoder on the same side. `omni ask` and the daemon open it the same
//! way.

use std::sync::Arc;

use super::gpu::OmniGpuSession;
use super::{AudioEngine, OmniSession, OmniThinker};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::models::generation::TextModel;
use crate::models::qwen3::gpu::GpuModelOptions;

pub enum ThinkerSession<'a> {
    Cpu(OmniSession<'a>),
    Gpu(Box<OmniGpuSession<'a>>),
}

/// A conversation with a cache of `ctx` tokens, and the audio encoder beside it.
pub fn open<'a>(
    thinker: &'a OmniThinker,
    gpu: Option<&Arc<GpuContext>>,
    ctx: usize,
) -> Result<(ThinkerSession<'a>, AudioEngine<'a>)> {
    let session = match gpu {
        Some(g) => ThinkerSession::Gpu(Box::new(OmniGpuSession::new(
            g,
            thinker,
            GpuModelOptions {
                ctx,
                max_prefill: 256,
                all_logits: false,
            },
        )?)),
        None => ThinkerSession::Cpu(thinker.session(ctx)),
    };
    Ok((session, thinker.audio_engine(gpu)?))
}

impl ThinkerSession<'_> {
    /// Encoder rows for the next prompt's audio placeholders.
    pub fn attach_audio(&mut self, rows: Vec<f32>) {
        match self {
            ThinkerSession::Cpu(s) => s.attach_audio(rows),
            ThinkerSession::Gpu(s) => s.attach_audio(rows),
        }
    }

    /// Forget the conversation (the cache starts empty).
    pub fn reset(&mut self) {
        match self {
            ThinkerSession::Cpu(s) => s.cache.len = 0,
            ThinkerSession::Gpu(s) => s.gpu.reset(),
        }
    }

    pub fn model(&mut self) -> &mut dyn TextModel {
        match self {
            ThinkerSession::Cpu(s) => s,
            ThinkerSession::Gpu(s) => s.as_mut(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            ThinkerSession::Cpu(_) => "CPU",
            ThinkerSession::Gpu(_) => "GPU",
        }
    }
}
