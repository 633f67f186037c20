//! The `think` stage: one thread owns the conversation (the thinker session and its KV cache,
//! on the CPU or the shared GPU device) and answers jobs in order. An utterance goes through
//! log-mel and the audio encoder; its rows fill the prompt's audio placeholders; the reply
//! streams out as `text` events and stops early when interrupted (checked every token).
//!
//! Context policy: a turn needs its prompt plus `max_tokens` of room. When the cache cannot
//! hold that, the conversation restarts from the system prompt (the KV cache is cleared, the
//! history log keeps every turn) and a `context_reset` event says so. A single question too
//! long for an empty context is refused with an error naming both sizes.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{Value, json};

use super::events::{Event, EventBus, State, Timings};
use super::{Controls, Job, TurnReply};
use crate::control::protocol::ProtocolError;
use crate::error::{Error, Result};
use crate::models::generation::{GenerationStats, StopRule, generate};
use crate::models::omni::engine::ThinkerSession;
use crate::models::omni::{AudioEngine, OmniThinker, log_mel_checked};
use crate::models::sampler::{Sampler, SamplingParams};
use crate::models::tokenizer::{TextStream, Tokenizer};

pub struct ThinkSetup {
    pub thinker: &'static OmniThinker,
    pub session: ThinkerSession<'static>,
    pub encoder: AudioEngine<'static>,
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// the system turn's ids (empty: none)
    pub system: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop_ids: Vec<u32>,
    /// called when a reply is complete (plays the earcon)
    pub on_reply_ready: Box<dyn Fn() + Send>,
}

/// What the think stage shares with the control socket.
#[derive(Default)]
pub struct ThinkShared {
    pub history: Mutex<Vec<Value>>,
    pub last_timings: Mutex<Option<Timings>>,
    pub turns: AtomicU64,
}

pub fn spawn(
    setup: ThinkSetup,
    controls: Arc<Controls>,
    bus: Arc<EventBus>,
    shared: Arc<ThinkShared>,
    jobs: Receiver<Job>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("think".into())
        .spawn(move || {
            let mut t = Thinker {
                s: setup,
                controls,
                bus,
                shared,
            };
            t.run(jobs);
        })
        .map_err(|e| Error::Invalid(format!("cannot start the think thread: {e}")))
}

struct Thinker {
    s: ThinkSetup,
    controls: Arc<Controls>,
    bus: Arc<EventBus>,
    shared: Arc<ThinkShared>,
}

/// A question in the thinker's terms.
enum Question {
    Audio(Vec<f32>),
    Text(String),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Thinker {
    fn run(&mut self, jobs: Receiver<Job>) {
        loop {
            let job = match jobs.recv_timeout(Duration::from_millis(50)) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => {
                    if self.controls.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.controls.stop.load(Ordering::SeqCst) {
                return;
            }
            match job {
                Job::Reset { done } => {
                    self.s.session.reset();
                    if let Ok(mut h) = self.shared.history.lock() {
                        h.clear();
                    }
                    let _ = done.send(());
                }
                Job::Audio {
                    samples,
                    ended,
                    hangover_ms,
                    reply,
                } => self.answer(Question::Audio(samples), ended, hangover_ms, reply),
                Job::Text {
                    text,
                    received,
                    reply,
                } => self.answer(Question::Text(text), received, 0.0, reply),
            }
        }
    }

    fn answer(
        &mut self,
        q: Question,
        ended: Instant,
        hangover_ms: f64,
        reply: Option<crossbeam_channel::Sender<TurnReply>>,
    ) {
        let turn = self.shared.turns.fetch_add(1, Ordering::SeqCst) + 1;
        // one span per utterance or question: everything logged for the turn carries its number
        let span = tracing::info_span!("turn", turn);
        let _entered = span.enter();
        self.bus.publish(Event::State(State::Thinking));
        // a barge-in that stopped the previous reply does not stop this one
        self.controls.interrupt.store(false, Ordering::SeqCst);
        if let Ok(mut t) = self.controls.interrupt_at.lock() {
            *t = None;
        }
        self.controls.generating.store(true, Ordering::SeqCst);
        let result = self.turn(turn, q, ended, hangover_ms);
        self.controls.generating.store(false, Ordering::SeqCst);
        let out: TurnReply = match result {
            Ok(v) => Ok(v),
            Err(e) => {
                self.bus.publish(Event::Error {
                    message: format!("turn {turn}: {}", e.message),
                });
                Err(e)
            }
        };
        if let Some(tx) = reply {
            let _ = tx.send(out);
        }
        self.bus.publish(Event::State(self.controls.idle_state()));
    }

    fn turn(
        &mut self,
        turn: u64,
        q: Question,
        ended: Instant,
        hangover_ms: f64,
    ) -> std::result::Result<Value, ProtocolError> {
        let bad = |m: String| ProtocolError::new("bad_args", m);
        let internal = |e: Error| ProtocolError::new("internal", e.to_string());
        let mut t = Timings {
            vad_hangover_ms: hangover_ms,
            ..Default::default()
        };
        let (rows, text_ids, question) = match q {
            Question::Audio(samples) => {
                let t0 = Instant::now();
                let mel = log_mel_checked(&samples).map_err(|e| bad(e.to_string()))?;
                t.mel_ms = ms(t0.elapsed());
                let t1 = Instant::now();
                let rows = self.s.encoder.encode(&mel).map_err(internal)?;
                t.encoder_ms = ms(t1.elapsed());
                let secs = samples.len() as f64 / 16_000.0;
                (Some(rows), Vec::new(), format!("<audio {secs:.2} s>"))
            }
            Question::Text(text) => {
                let tok = self.s.tokenizer.as_ref().ok_or_else(|| {
                    bad("this model has no tokenizer (tokenizer.json, or vocab.json + merges.txt): ask with audio".into())
                })?;
                (None, tok.encode(&text).map_err(internal)?, text)
            }
        };
        let h = self.s.thinker.text.config.hidden_size;
        let user = self
            .s
            .thinker
            .tokens
            .user_turn(rows.as_ref().map(|r| r.len() / h), &text_ids);
        let prompt = self.fit_prompt(turn, &user)?;
        if let Some(r) = rows {
            self.s.session.attach_audio(r);
        }
        let stop = StopRule {
            max_new_tokens: self.s.max_tokens,
            stop_ids: self.s.stop_ids.clone(),
        };
        let mut sampler = Sampler::new(self.s.sampling.clone()).map_err(internal)?;
        let tokenizer = self.s.tokenizer.clone();
        let mut stream = tokenizer.as_deref().map(TextStream::new);
        let (bus, controls) = (self.bus.clone(), self.controls.clone());
        let gen_start = Instant::now();
        let mut firsts: Vec<Instant> = Vec::with_capacity(2);
        let mut interrupted = false;
        let stats = generate(self.s.session.model(), &prompt, &mut sampler, &stop, |id| {
            if firsts.len() < 2 {
                firsts.push(Instant::now());
            }
            let delta = match stream.as_mut() {
                Some(s) => s.push(id)?,
                None => String::new(),
            };
            bus.publish(Event::Text {
                turn,
                delta,
                ids: vec![id],
            });
            if controls.interrupt.load(Ordering::SeqCst) {
                interrupted = true;
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .map_err(internal)?;
        // generation is over: an interrupt from here on has nothing to stop, and one that reads
        // the flag after seeing this turn's reply event must learn so (the caller clears it
        // too, for turns that end in an error)
        self.controls.generating.store(false, Ordering::SeqCst);
        if let Some(first) = firsts.first() {
            t.prefill_ms = ms(first.duration_since(gen_start));
            t.to_first_token_ms = ms(first.duration_since(ended));
        }
        if let (Some(a), Some(b)) = (firsts.first(), firsts.get(1)) {
            t.first_decode_ms = ms(b.duration_since(*a));
        }
        if let Some(s) = stream.as_mut()
            && let Ok(rest) = s.finish()
            && !rest.is_empty()
        {
            self.bus.publish(Event::Text {
                turn,
                delta: rest,
                ids: Vec::new(),
            });
        }
        self.close_reply(&stats);
        t.reply_ms = ms(ended.elapsed());
        t.tokens = stats.generated.len();
        let stop_ms = self
            .controls
            .interrupt_at
            .lock()
            .ok()
            .and_then(|t| t.map(|at| ms(at.elapsed())));
        let text = tokenizer
            .as_deref()
            .and_then(|tk| tk.decode(&stats.generated).ok());
        self.bus.publish(Event::ReplyDone {
            turn,
            text: text.clone(),
            ids: stats.generated.clone(),
            interrupted,
            stop_ms,
        });
        self.bus.publish(Event::Timing {
            turn,
            timings: t.clone(),
        });
        tracing::info!(
            vad_hangover_ms = t.vad_hangover_ms,
            mel_ms = t.mel_ms,
            encoder_ms = t.encoder_ms,
            prefill_ms = t.prefill_ms,
            first_decode_ms = t.first_decode_ms,
            to_first_token_ms = t.to_first_token_ms,
            reply_ms = t.reply_ms,
            tokens = t.tokens,
            interrupted,
            "reply"
        );
        if let Ok(mut last) = self.shared.last_timings.lock() {
            *last = Some(t.clone());
        }
        if let Ok(mut h) = self.shared.history.lock() {
            h.push(json!({"turn": turn, "user": question, "assistant": text,
                          "ids": stats.generated, "interrupted": interrupted}));
        }
        if !interrupted {
            (self.s.on_reply_ready)();
        }
        Ok(json!({
            "turn": turn,
            "text": text,
            "ids": stats.generated,
            "prompt_tokens": stats.prompt_tokens,
            "interrupted": interrupted,
            "stop_ms": stop_ms,
            "timings": {
                "vad_hangover_ms": t.vad_hangover_ms, "mel_ms": t.mel_ms,
                "encoder_ms": t.encoder_ms, "prefill_ms": t.prefill_ms,
                "first_decode_ms": t.first_decode_ms, "to_first_token_ms": t.to_first_token_ms,
                "reply_ms": t.reply_ms,
            },
        }))
    }

    /// The prompt for `user` after what is cached, applying the context policy.
    fn fit_prompt(
        &mut self,
        turn: u64,
        user: &[u32],
    ) -> std::result::Result<Vec<u32>, ProtocolError> {
        let model = self.s.session.model();
        let (cached, capacity) = (model.cached(), model.capacity());
        let first = cached == 0;
        let mut prompt = if first {
            self.s.system.clone()
        } else {
            Vec::new()
        };
        prompt.extend_from_slice(user);
        let room = self.s.max_tokens.min(capacity / 2);
        if cached + prompt.len() + room <= capacity {
            return Ok(prompt);
        }
        let fresh = self.s.system.len() + user.len();
        if fresh + room > capacity {
            return Err(ProtocolError::new(
                "bad_args",
                format!(
                    "the question needs {fresh} tokens plus {room} for the reply, more than the context of {capacity} (model.context)"
                ),
            ));
        }
        if !first {
            self.s.session.reset();
            self.bus.publish(Event::ContextReset {
                turn,
                needed: cached + prompt.len() + room,
                context: capacity,
            });
            prompt = self.s.system.clone();
            prompt.extend_from_slice(user);
        }
        Ok(prompt)
    }

    /// End the reply in the cache (`<|im_end|>` and a newline) so the next turn follows it.
    fn close_reply(&mut self, _stats: &GenerationStats) {
        let end = self.s.thinker.tokens.end_of_reply();
        let model = self.s.session.model();
        if model.cached() + end.len() <= model.capacity() {
            let _ = model.step(&end, crate::models::generation::Want::Greedy);
        }
    }
}
