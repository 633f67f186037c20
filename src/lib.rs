//! qwen-omni: a local real-time voice assistant running Qwen Omni models on its own engine.
//!
//! Layers, lower never importing higher (see docs/architecture.md):
//! L0 `tensor`, `error` · L1 `cpu`, `weights` · L2 `nn` · L3 `models` · L5 `app` (commands).

// Kernels index several arrays in lockstep; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

pub mod app;
pub mod config;
pub mod control;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod models;
pub mod nn;
pub mod pipeline;
pub mod quant;
pub mod tensor;
pub mod weights;

pub use error::{Error, Result};
