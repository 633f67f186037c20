//! The daemon's real-time pipeline (issue 6). So far: utterance detection (`vad`).

pub mod vad;
