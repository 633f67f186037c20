//! The Qwen3-Omni audio front end and encoder: WAV input converted to 16 kHz mono, 128-bin
//! log-mel features (`mel`), and the AuT encoder that turns them into thinker-width rows
//! (`aut`; `aut_gpu` runs it on the GPU engine).

pub mod aut;
pub mod aut_gpu;
pub mod mel;
pub mod wav;
