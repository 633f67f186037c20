//! The daemon's real-time pipeline (issue 6): `listen` (capture -> 16 kHz -> VAD or
//! push-to-talk -> utterances), `think` (mel -> audio encoder -> thinker, streaming text) and
//! `playback` (earcons now, speech later), as named threads joined by bounded channels, with
//! one event bus for clients. `Pipeline` starts and stops them; `daemon` answers the control
//! socket with them.

pub mod audio_io;
pub mod daemon;
pub mod events;
pub mod listen;
pub mod playback;
pub mod think;
pub mod vad;

mod run;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;
use serde_json::Value;

pub use run::{Pipeline, PipelineSetup};

use crate::config::Mode;
use crate::control::protocol::ProtocolError;
use events::State;

/// Questions waiting for the thinker (utterances and socket questions together).
pub const JOB_QUEUE: usize = 4;

/// State shared by the stages and the control socket: flags only, read without locks.
pub struct Controls {
    pub mode: Mode,
    pub barge_in: bool,
    /// a capture device (or stand-in) runs: not text mode
    pub has_microphone: bool,
    pub muted: AtomicBool,
    /// the push-to-talk button is held
    pub ptt: AtomicBool,
    /// stop the reply being generated
    pub interrupt: AtomicBool,
    /// when the interrupt was asked for (for the stop latency)
    pub interrupt_at: Mutex<Option<Instant>>,
    /// a reply is being generated
    pub generating: AtomicBool,
    /// a finite input (a WAV file) has ended and its last utterance was sent
    pub input_ended: AtomicBool,
    /// every stage stops
    pub stop: AtomicBool,
}

impl Controls {
    pub fn new(mode: Mode, barge_in: bool, has_microphone: bool) -> Self {
        Controls {
            mode,
            barge_in,
            has_microphone,
            muted: AtomicBool::new(false),
            ptt: AtomicBool::new(false),
            interrupt: AtomicBool::new(false),
            interrupt_at: Mutex::new(None),
            generating: AtomicBool::new(false),
            input_ended: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    /// The daemon's state while no reply is being generated.
    pub fn idle_state(&self) -> State {
        if !self.has_microphone {
            State::Idle
        } else if self.muted.load(Ordering::SeqCst) {
            State::Muted
        } else {
            State::Listening
        }
    }

    /// The daemon's state.
    pub fn state(&self) -> State {
        if self.generating.load(Ordering::SeqCst) {
            State::Thinking
        } else {
            self.idle_state()
        }
    }

    /// Ask the reply being generated to stop; true when one was.
    pub fn request_interrupt(&self) -> bool {
        if !self.generating.load(Ordering::SeqCst) {
            return false;
        }
        if let Ok(mut t) = self.interrupt_at.lock() {
            t.get_or_insert_with(Instant::now);
        }
        self.interrupt.store(true, Ordering::SeqCst);
        true
    }
}

/// The answer to a socket question: the reply as JSON, or why there is none.
pub type TurnReply = std::result::Result<Value, ProtocolError>;

/// Work for the think stage, in arrival order.
pub enum Job {
    /// an utterance (16 kHz mono), its end of speech decided at `ended`
    Audio {
        samples: Vec<f32>,
        ended: Instant,
        /// silence waited for before `ended` (the VAD's hangover; 0 for push-to-talk)
        hangover_ms: f64,
        reply: Option<Sender<TurnReply>>,
    },
    Text {
        text: String,
        received: Instant,
        reply: Option<Sender<TurnReply>>,
    },
    /// forget the conversation
    Reset { done: Sender<()> },
}
