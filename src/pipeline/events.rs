//! The daemon's events: one enum for everything a client may watch (state changes, speech
//! boundaries, reply text as it streams, per-turn timings, errors), and the bus that fans them
//! out to `subscribe`d clients. Only the pipeline's worker threads publish (never an audio
//! callback). A subscriber that cannot keep up loses events rather than slowing the pipeline:
//! each has a bounded queue, and a full queue drops the event and counts it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde_json::{Value, json};

/// Events a subscriber's queue holds before new ones are dropped for it.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Listening,
    Thinking,
    Muted,
    /// text mode: no microphone, questions over the socket only
    Idle,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Listening => "listening",
            State::Thinking => "thinking",
            State::Muted => "muted",
            State::Idle => "idle",
        }
    }
}

/// Where a turn's time went, in milliseconds from the end of speech (the VAD's decision or
/// `ptt_stop`; for text questions, the request's arrival).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// silence the VAD waited for before deciding the speech had ended (0 for push-to-talk)
    pub vad_hangover_ms: f64,
    pub mel_ms: f64,
    pub encoder_ms: f64,
    pub prefill_ms: f64,
    /// the first generated token's own step (after prefill)
    pub first_decode_ms: f64,
    /// end of speech (decision) to the first token, everything above but the hangover
    pub to_first_token_ms: f64,
    pub reply_ms: f64,
    pub tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(State),
    /// speech began; `at_ms` is its position in the input stream
    SpeechStart {
        at_ms: f64,
    },
    /// an utterance ended and goes to the thinker
    SpeechEnd {
        at_ms: f64,
        duration_ms: f64,
    },
    /// speech too short to be a question (a click, a cough)
    SpeechDiscarded {
        at_ms: f64,
    },
    /// a piece of the reply's text (or ids when the model has no tokenizer)
    Text {
        turn: u64,
        delta: String,
        ids: Vec<u32>,
    },
    /// the reply ended: complete, interrupted (barge-in or `interrupt`) or cut by max_tokens
    ReplyDone {
        turn: u64,
        text: Option<String>,
        ids: Vec<u32>,
        interrupted: bool,
        /// interrupted: ms from the request (barge-in or `interrupt`) to the reply's end
        stop_ms: Option<f64>,
    },
    Timing {
        turn: u64,
        timings: Timings,
    },
    /// the conversation filled the context: it restarted from the system prompt
    ContextReset {
        turn: u64,
        needed: usize,
        context: usize,
    },
    /// an earcon was queued for playback
    Earcon {
        name: &'static str,
    },
    Error {
        message: String,
    },
}

impl Event {
    pub fn to_json(&self) -> Value {
        match self {
            Event::State(s) => json!({"event": "state", "state": s.name()}),
            Event::SpeechStart { at_ms } => {
                json!({"event": "vad", "speech": "start", "at_ms": at_ms})
            }
            Event::SpeechEnd { at_ms, duration_ms } => {
                json!({"event": "vad", "speech": "end", "at_ms": at_ms, "duration_ms": duration_ms})
            }
            Event::SpeechDiscarded { at_ms } => {
                json!({"event": "vad", "speech": "discarded", "at_ms": at_ms})
            }
            Event::Text { turn, delta, ids } => {
                json!({"event": "text", "turn": turn, "delta": delta, "ids": ids})
            }
            Event::ReplyDone {
                turn,
                text,
                ids,
                interrupted,
                stop_ms,
            } => json!({"event": "reply", "turn": turn, "text": text, "ids": ids,
                        "interrupted": interrupted, "stop_ms": stop_ms}),
            Event::Timing { turn, timings: t } => json!({"event": "timing", "turn": turn,
                "vad_hangover_ms": t.vad_hangover_ms, "mel_ms": t.mel_ms,
                "encoder_ms": t.encoder_ms, "prefill_ms": t.prefill_ms,
                "first_decode_ms": t.first_decode_ms, "to_first_token_ms": t.to_first_token_ms,
                "reply_ms": t.reply_ms, "tokens": t.tokens}),
            Event::ContextReset {
                turn,
                needed,
                context,
            } => json!({"event": "context_reset", "turn": turn, "needed": needed,
                        "context": context}),
            Event::Earcon { name } => json!({"event": "earcon", "name": name}),
            Event::Error { message } => json!({"event": "error", "message": message}),
        }
    }
}

/// An event with the daemon-relative time it was published.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub t_ms: f64,
    pub event: Event,
}

impl Stamped {
    pub fn to_json(&self) -> Value {
        let mut v = self.event.to_json();
        v["t_ms"] = json!((self.t_ms * 1000.0).round() / 1000.0);
        v
    }
}

/// Fans events out to subscribers.
pub struct EventBus {
    started: Instant,
    subscribers: Mutex<Vec<Sender<Value>>>,
    dropped: AtomicU64,
}

impl EventBus {
    pub fn new() -> Self {
        EventBus {
            started: Instant::now(),
            subscribers: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// A new subscriber's queue of event lines (JSON objects with `event` and `t_ms`); it is
    /// forgotten once the receiver is dropped.
    pub fn subscribe(&self) -> Receiver<Value> {
        let (tx, rx) = bounded(SUBSCRIBER_QUEUE);
        if let Ok(mut s) = self.subscribers.lock() {
            s.push(tx);
        }
        rx
    }

    pub fn publish(&self, event: Event) {
        let stamped = Stamped {
            t_ms: self.started.elapsed().as_secs_f64() * 1e3,
            event,
        };
        let line = stamped.to_json();
        tracing::debug!(event = %line, "event");
        let Ok(mut subs) = self.subscribers.lock() else {
            return;
        };
        subs.retain(|tx| match tx.try_send(line.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().map_or(0, |s| s.len())
    }

    /// Events dropped because a subscriber's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}
