//! Layers built from stored weights, computing with the CPU kernels. Each layer names its own
//! checkpoint tensors (`q_proj`, `k_norm`, ...) relative to a prefix.

pub mod attention;
pub mod kv_cache;
pub mod linear;
pub mod mlp;
pub mod moe;
pub mod rms_norm;

pub use attention::Attention;
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use mlp::Mlp;
pub use moe::Moe;
pub use rms_norm::RmsNorm;
