//! The control socket's requests mapped onto the running pipeline. Each client has its own
//! thread, so a client waiting for its reply blocks nobody else; the think stage answers
//! questions in arrival order.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;
use serde_json::{Value, json};

use super::Pipeline;
use crate::control::protocol::{AskInput, ProtocolError, Request};
use crate::control::server::Handler;
use crate::models::audio_encoder::wav::{load_wav_16k_mono, to_16k_mono};

pub struct Daemon {
    pub pipeline: Arc<Pipeline>,
    /// set by `shutdown`; the main thread watches it
    pub stop: Arc<AtomicBool>,
}

impl Daemon {
    fn ask(&self, input: AskInput) -> std::result::Result<Value, ProtocolError> {
        let bad = |m: String| ProtocolError::new("bad_args", m);
        match input {
            AskInput::Text(t) => self.pipeline.ask_text(t),
            AskInput::Wav(p) => {
                let samples = load_wav(&p).map_err(bad)?;
                self.pipeline.ask_audio(samples)
            }
            AskInput::Pcm { samples, rate } => {
                let s = to_16k_mono(&samples, rate, 1).map_err(|e| bad(e.to_string()))?;
                self.pipeline.ask_audio(s)
            }
        }
    }
}

fn load_wav(p: &Path) -> std::result::Result<Vec<f32>, String> {
    load_wav_16k_mono(p).map_err(|e| e.to_string())
}

impl Handler for Daemon {
    fn handle(&self, r: Request) -> std::result::Result<Value, ProtocolError> {
        let p = &self.pipeline;
        match r {
            Request::Status => Ok(p.status()),
            Request::Ask(input) => self.ask(input),
            Request::PttStart => p.push_to_talk(true).map(|_| json!(true)),
            Request::PttStop => p.push_to_talk(false).map(|_| json!(true)),
            Request::Interrupt => Ok(json!({"stopped": p.interrupt()})),
            Request::Mute => p.set_muted(true).map(|_| json!(true)),
            Request::Unmute => p.set_muted(false).map(|_| json!(true)),
            Request::Reset => p.reset().map(|_| json!(true)),
            Request::History => Ok(json!(
                p.shared
                    .history
                    .lock()
                    .map(|h| h.clone())
                    .unwrap_or_default()
            )),
            // answered by the server through `subscribe`
            Request::Subscribe => Ok(json!(true)),
            Request::Shutdown => {
                self.stop.store(true, Ordering::SeqCst);
                Ok(json!(true))
            }
        }
    }

    fn subscribe(&self) -> std::result::Result<Receiver<Value>, ProtocolError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(ProtocolError::new("busy", "the daemon is stopping"));
        }
        Ok(self.pipeline.bus.subscribe())
    }
}
