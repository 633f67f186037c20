//! The daemon's real-time pipeline (issue 6): `listen` (capture -> 16 kHz -> VAD or
//! push-to-talk -> utterances), `think` (mel -> audio encoder -> thinker, streaming text) and
//! `playback` (earcons now, speech later), as named threads joined by bounded channels, with
//! one event bus for clients.

pub mod audio_io;
pub mod events;
pub mod vad;
pub mod playback;
