//! Checkpoint loading: safetensors files mapped with memmap2, sharded checkpoints through
//! `model.safetensors.index.json`, and Hugging Face cache lookup. Tensors stay views into the
//! mmap: nothing here copies weights into anonymous memory.

mod hf_cache;
mod safetensors_file;
mod store;
mod writer;

pub use hf_cache::resolve_model_path;
pub use safetensors_file::{SafetensorsFile, TensorView};
pub use store::WeightStore;
pub use writer::{SafetensorsWriter, TensorSpec, split_shards};
