//! All wgpu code: the shared device context, buffers, the shader pipeline cache and kernel
//! wrappers. Nothing outside this module imports wgpu.

mod attention;
pub mod audio_kernels;
pub mod buffers;
mod context;
pub mod icache_probe;
mod kernels;
mod matvec_q8;
mod moe;
mod pipelines;
mod prefetch;
pub mod profiler;
mod random;
pub mod shader_stats;
pub mod stream_probe;
mod tuning;

pub use attention::FusedOProj;
pub use buffers::{GpuBuffer, GpuMatrix};
pub use context::{AdapterSummary, GpuContext, GpuOptions, list_adapters};
pub use kernels::{Kernels, MatFlags, Op, StepDims};
pub use matvec_q8::{ChainPhase, Q8Input, QuantOut, quantised_len};
pub use moe::MoeSum;
pub use pipelines::PipelineCache;
pub use profiler::{CopyBandwidth, KernelTiming, measure_barrier_cost, measure_copy_bandwidth};
pub use tuning::Tuning;
