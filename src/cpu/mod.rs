//! CPU reference kernels: plain f32 math over stored weights, multi-threaded with rayon.
//! They are the engine on machines without a GPU and the oracle every GPU kernel is tested
//! against, so each keeps the GPU kernel's name and contract.

pub mod attention;
pub mod bandwidth;
pub mod dot;
pub mod dot_q8;
pub mod elementwise;
pub mod matmul;
pub mod norm;
pub mod rope;

pub use attention::attention;
pub use elementwise::{add_in_place, argmax, embedding_gather, silu_mul, softmax_in_place};
pub use matmul::{matmul, matvec};
pub use norm::rms_norm;
pub use rope::rope;
