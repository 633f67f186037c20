//! Choosing the engine a command runs on: `--backend auto|gpu|cpu` and `--adapter NAME`.

use std::sync::Arc;

use anyhow::{Result, bail};

use crate::gpu::{GpuContext, GpuOptions};
use crate::models::generation::{CpuSession, TextModel};
use crate::models::qwen3::Qwen3Model;
use crate::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// a hardware GPU when one is present, else the CPU engine
    #[default]
    Auto,
    /// the GPU engine on any adapter (software ones such as lavapipe included)
    Gpu,
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "gpu" => Ok(Backend::Gpu),
            "cpu" => Ok(Backend::Cpu),
            other => Err(format!("unknown backend `{other}` (auto, gpu or cpu)")),
        }
    }
}

/// The GPU context the backend choice asks for, or None for the CPU engine.
pub fn gpu_context(backend: Backend, adapter: Option<&str>) -> Result<Option<Arc<GpuContext>>> {
    let opts = |allow_software| GpuOptions {
        adapter: adapter.map(str::to_string),
        allow_software,
        max_binding: None,
        memory_budget: None,
    };
    match backend {
        Backend::Cpu => {
            if adapter.is_some() {
                bail!("--adapter needs --backend gpu or auto");
            }
            Ok(None)
        }
        Backend::Gpu => Ok(Some(GpuContext::new(&opts(true))?)),
        Backend::Auto => match GpuContext::new(&opts(adapter.is_some())) {
            Ok(ctx) => Ok(Some(ctx)),
            Err(e) if adapter.is_none() => {
                tracing::info!("no hardware GPU ({e}); using the CPU engine");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// An engine session over `model` with a cache of `ctx` tokens.
pub fn open<'a>(
    model: &'a Qwen3Model,
    gpu: Option<&Arc<GpuContext>>,
    ctx: usize,
) -> Result<Box<dyn TextModel + 'a>> {
    Ok(match gpu {
        Some(g) => Box::new(Qwen3Gpu::new(
            g,
            model,
            GpuModelOptions {
                ctx,
                ..Default::default()
            },
        )?),
        None => Box::new(CpuSession {
            model,
            cache: model.new_cache(ctx),
        }),
    })
}
