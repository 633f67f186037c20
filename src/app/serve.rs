//! `omni serve` (first cut, text and audio-file questions only): load the Qwen3-Omni thinker,
//! listen on the control socket, answer `ask` requests (text, a WAV path or base64 PCM) with
//! the reply's text and ids, keep the conversation's history and KV cache across turns, and stop
//! cleanly on `shutdown`, SIGINT or SIGTERM (socket removed, threads joined). The microphone
//! pipeline, VAD-driven turns, earcons and events come next (issue 6).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::config::Config;
use crate::control::protocol::{AskInput, ProtocolError, Request};
use crate::control::server::{ControlServer, Handler};
use crate::models::audio_encoder::wav::{load_wav_16k_mono, to_16k_mono};
use crate::models::generation::{StopRule, generate};
use crate::models::omni::{OmniSession, OmniThinker};
use crate::models::sampler::{Sampler, SamplingParams};
use crate::models::tokenizer::Tokenizer;

pub struct ServeArgs {
    pub config: Option<PathBuf>,
    /// overrides config model.path
    pub model: Option<String>,
    /// overrides config control.socket
    pub socket: Option<PathBuf>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Daemon {
    thinker: &'static OmniThinker,
    tokenizer: Option<Tokenizer>,
    session: Mutex<OmniSession<'static>>,
    system: Vec<u32>,
    max_tokens: usize,
    started: Instant,
    turns: Mutex<Vec<Value>>,
}

impl Daemon {
    fn ask(&self, input: AskInput) -> std::result::Result<Value, ProtocolError> {
        let bad = |m: String| ProtocolError::new("bad_args", m);
        let internal = |e: crate::Error| ProtocolError::new("internal", e.to_string());
        let mut session = self
            .session
            .try_lock()
            .map_err(|_| ProtocolError::new("busy", "a reply is being generated"))?;
        let (audio, text_ids, question) = match input {
            AskInput::Text(t) => {
                let tok = self.tokenizer.as_ref().ok_or_else(|| {
                    bad("this model has no tokenizer.json: ask with audio".into())
                })?;
                (None, tok.encode(&t).map_err(internal)?, t)
            }
            AskInput::Wav(p) => (
                Some(load_wav_16k_mono(&p).map_err(|e| bad(e.to_string()))?),
                Vec::new(),
                format!("<audio {}>", p.display()),
            ),
            AskInput::Pcm { samples, rate } => (
                Some(to_16k_mono(&samples, rate, 1).map_err(|e| bad(e.to_string()))?),
                Vec::new(),
                "<audio>".into(),
            ),
        };
        let mut prompt = if session.cache.len == 0 {
            self.system.clone()
        } else {
            Vec::new()
        };
        let rows = match &audio {
            Some(s) => Some(
                self.thinker
                    .encode_audio(s)
                    .map_err(|e| bad(e.to_string()))?,
            ),
            None => None,
        };
        let h = self.thinker.text.config.hidden_size;
        prompt.extend(
            self.thinker
                .tokens
                .user_turn(rows.as_ref().map(|r| r.len() / h), &text_ids),
        );
        if let Some(r) = rows {
            session.attach_audio(r);
        }
        let stop = StopRule {
            max_new_tokens: self.max_tokens,
            stop_ids: vec![self.thinker.tokens.im_end],
        };
        let mut sampler = Sampler::new(SamplingParams {
            greedy: true,
            ..Default::default()
        })
        .map_err(internal)?;
        let stats = generate(&mut *session, &prompt, &mut sampler, &stop, |_| {
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| match e {
            crate::Error::ContextOverflow { .. } => {
                ProtocolError::new("busy", format!("{e}; send reset"))
            }
            other => internal(other),
        })?;
        // close the reply in the cache so the next turn follows it
        let end = self.thinker.tokens.end_of_reply();
        if session.cache.len + end.len() <= session.cache.capacity {
            let _ = self.thinker.text.forward(
                &end,
                &mut session.cache,
                crate::models::qwen3::Logits::Last,
            );
        }
        let text = self
            .tokenizer
            .as_ref()
            .and_then(|t| t.decode(&stats.generated).ok());
        let reply =
            json!({"text": text, "ids": stats.generated, "prompt_tokens": stats.prompt_tokens});
        if let Ok(mut turns) = self.turns.lock() {
            turns.push(json!({"user": question, "assistant": reply["text"], "ids": reply["ids"]}));
        }
        Ok(reply)
    }
}

impl Handler for Daemon {
    fn handle(&self, r: Request) -> std::result::Result<Value, ProtocolError> {
        match r {
            Request::Status => Ok(json!({
                "state": if self.session.try_lock().is_ok() { "idle" } else { "thinking" },
                "mode": "text",
                "uptime_s": self.started.elapsed().as_secs_f64(),
            })),
            Request::Ask(input) => self.ask(input),
            Request::Reset => {
                let mut s = self
                    .session
                    .try_lock()
                    .map_err(|_| ProtocolError::new("busy", "a reply is being generated"))?;
                s.cache.len = 0;
                if let Ok(mut t) = self.turns.lock() {
                    t.clear();
                }
                Ok(json!(true))
            }
            Request::History => Ok(json!(
                self.turns.lock().map(|t| t.clone()).unwrap_or_default()
            )),
            Request::Shutdown => {
                STOP.store(true, Ordering::SeqCst);
                Ok(json!(true))
            }
            other => Err(ProtocolError::new(
                "busy",
                format!(
                    "{other:?} needs the audio pipeline, which this daemon build does not run yet"
                ),
            )),
        }
    }
}

pub fn run(a: &ServeArgs) -> Result<()> {
    let path = a.config.clone().or_else(Config::default_path);
    let overrides = |c: &mut Config| {
        if let Some(m) = &a.model {
            c.model.path = m.clone();
        }
        if let Some(s) = &a.socket {
            c.control.socket = s.display().to_string();
        }
    };
    let cfg = match path.as_ref().filter(|p| p.is_file()) {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::parse_with(&text, p, overrides)?
        }
        // no config file: the defaults and the flags (--model is then required)
        None => Config::parse_with("", std::path::Path::new("<command line>"), overrides)?,
    };
    let dir = super::model_dir(&cfg.model.path)?;
    let thinker: &'static OmniThinker = Box::leak(Box::new(OmniThinker::load(&dir)?));
    let tokenizer = Tokenizer::load(&dir).ok();
    let system = match (&tokenizer, cfg.generation.system_prompt.is_empty()) {
        (Some(t), false) => thinker
            .tokens
            .system_turn(&t.encode(&cfg.generation.system_prompt)?),
        _ => Vec::new(),
    };
    let daemon = Arc::new(Daemon {
        thinker,
        tokenizer,
        session: Mutex::new(thinker.session(cfg.model.context)),
        system,
        max_tokens: cfg.generation.max_tokens,
        started: Instant::now(),
        turns: Mutex::new(Vec::new()),
    });
    let socket = cfg.socket_path()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let server = ControlServer::bind(&socket, &cfg.control.allowed_uids, daemon)?;
    eprintln!("omni serve: listening on {}", server.path().display());
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server); // joins the accept thread and removes the socket
    eprintln!("omni serve: stopped");
    Ok(())
}
