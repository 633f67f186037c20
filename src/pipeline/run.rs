//! Starting and stopping the stages, and the operations the control socket maps onto them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError, bounded};
use serde_json::{Value, json};

use super::audio_io::{AudioIn, AudioOut, InputSpec, OutputSpec};
use super::events::{Event, EventBus, State};
use super::playback::{Earcons, Playback, Sound};
use super::think::{ThinkSetup, ThinkShared};
use super::{Controls, JOB_QUEUE, Job, TurnReply, listen, think};
use crate::config::{Config, Mode};
use crate::control::protocol::ProtocolError;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::models::omni::OmniThinker;
use crate::models::sampler::SamplingParams;
use crate::models::tokenizer::Tokenizer;

pub struct PipelineSetup {
    pub cfg: Config,
    /// the microphone (None: no capture, e.g. text mode)
    pub input: Option<InputSpec>,
    pub output: OutputSpec,
    pub thinker: &'static OmniThinker,
    pub tokenizer: Option<Arc<Tokenizer>>,
    /// the shared GPU device (None: the CPU engine)
    pub gpu: Option<Arc<GpuContext>>,
    /// ids besides `<|im_end|>` that end a reply (generation_config.json's eos)
    pub extra_stop_ids: Vec<u32>,
    /// replies run to max_tokens whatever the model says (benchmarks and barge-in tests)
    pub ignore_eos: bool,
    /// publish on this bus (a caller that subscribes before anything happens), else a new one
    pub bus: Option<Arc<EventBus>>,
    /// the model, as `status` names it
    pub model: String,
}

/// The running stages.
pub struct Pipeline {
    pub controls: Arc<Controls>,
    pub bus: Arc<EventBus>,
    pub shared: Arc<ThinkShared>,
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    playback: Mutex<Option<Playback>>,
    input: Mutex<Option<AudioIn>>,
    input_counters: Option<Arc<super::audio_io::AudioCounters>>,
    collected: Option<Arc<Mutex<Vec<f32>>>>,
    started: Instant,
    info: Value,
}

fn sampling(cfg: &Config) -> SamplingParams {
    let g = &cfg.generation;
    SamplingParams {
        greedy: g.temperature == 0.0,
        temperature: g.temperature.max(1e-6),
        top_k: g.top_k,
        top_p: g.top_p,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        ..Default::default()
    }
}

impl Pipeline {
    pub fn start(setup: PipelineSetup) -> Result<Self> {
        let cfg = &setup.cfg;
        let mode = cfg.mode.default;
        let bus = setup.bus.clone().unwrap_or_default();
        let shared = Arc::new(ThinkShared::default());
        // devices first: a wrong device name fails before the model work starts
        let input = match (&setup.input, mode) {
            (_, Mode::Text) | (None, _) => None,
            (Some(spec), _) => Some(AudioIn::open(
                spec,
                cfg.audio.sample_rate,
                cfg.audio.buffer_frames,
            )?),
        };
        let controls = Arc::new(Controls::new(mode, cfg.mode.barge_in, input.is_some()));
        let output = AudioOut::open(
            &setup.output,
            cfg.audio.sample_rate,
            cfg.audio.buffer_frames,
        )?;
        let earcons = Earcons::load(&cfg.earcons, output.rate)?;
        let playback = Playback::start(output)?;
        let player = |sound: Option<Sound>, name: &'static str| -> Box<dyn Fn() + Send> {
            let (tx, bus) = (playback.sender(), bus.clone());
            Box::new(move || {
                if let (Some(s), Some(tx)) = (&sound, &tx)
                    && tx.try_send(s.clone()).is_ok()
                {
                    bus.publish(Event::Earcon { name });
                }
            })
        };
        let system = match (&setup.tokenizer, cfg.generation.system_prompt.as_str()) {
            (_, "") => Vec::new(),
            (Some(t), text) => setup.thinker.tokens.system_turn(&t.encode(text)?),
            (None, _) => {
                tracing::warn!(
                    "generation.system_prompt is set but the model has no tokenizer (tokenizer.json, or vocab.json + merges.txt): no system turn"
                );
                Vec::new()
            }
        };
        let ctx = cfg
            .model
            .context
            .min(setup.thinker.text.config.max_position_embeddings);
        let (session, encoder) =
            crate::models::omni::engine::open(setup.thinker, setup.gpu.as_ref(), ctx)?;
        let engine = session.describe();
        let mut stop_ids = vec![setup.thinker.tokens.im_end];
        stop_ids.extend(&setup.extra_stop_ids);
        if setup.ignore_eos {
            stop_ids.clear();
        }
        let (jobs_tx, jobs_rx) = bounded::<Job>(JOB_QUEUE);
        let mut threads = vec![think::spawn(
            ThinkSetup {
                thinker: setup.thinker,
                session,
                encoder,
                tokenizer: setup.tokenizer.clone(),
                system,
                max_tokens: cfg.generation.max_tokens,
                sampling: sampling(cfg),
                stop_ids,
                on_reply_ready: player(earcons.reply_ready.clone(), "reply_ready"),
            },
            controls.clone(),
            bus.clone(),
            shared.clone(),
            jobs_rx,
        )?];
        let mut input = input;
        let mut input_counters = None;
        let input_name = input.as_ref().map(|i| i.name.clone());
        if let Some(inp) = input.as_mut() {
            let ring = inp
                .ring
                .take()
                .ok_or_else(|| Error::Invalid("the input's ring is already taken".into()))?;
            input_counters = Some(inp.counters.clone());
            threads.push(listen::spawn(
                listen::ListenSetup {
                    vad: cfg.vad.clone(),
                    ring,
                    rate: inp.rate,
                    input: inp.counters.clone(),
                    on_barge_in: playback_flush(&playback),
                    on_listening: player(earcons.listening.clone(), "listening"),
                },
                controls.clone(),
                bus.clone(),
                jobs_tx.clone(),
            )?);
        }
        let info = json!({
            "model": setup.model,
            "engine": engine,
            "device": setup.gpu.as_ref().map(|g| g.info.name.clone()),
            "input": input_name,
            "output": playback.device_name(),
            "context": ctx,
        });
        bus.publish(Event::State(controls.idle_state()));
        let collected = playback.collected();
        Ok(Pipeline {
            collected,
            controls,
            bus,
            shared,
            jobs: Mutex::new(Some(jobs_tx)),
            threads: Mutex::new(threads),
            playback: Mutex::new(Some(playback)),
            input: Mutex::new(input),
            input_counters,
            started: Instant::now(),
            info,
        })
    }

    fn submit(&self, job: Job) -> std::result::Result<(), ProtocolError> {
        let guard = self
            .jobs
            .lock()
            .map_err(|_| ProtocolError::new("internal", "the job queue is poisoned"))?;
        let tx = guard
            .as_ref()
            .ok_or_else(|| ProtocolError::new("busy", "the daemon is stopping"))?;
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ProtocolError::new(
                "busy",
                format!("{JOB_QUEUE} questions are already waiting; try again"),
            ),
            TrySendError::Disconnected(_) => {
                ProtocolError::new("internal", "the think stage has stopped")
            }
        })
    }

    /// Ask and wait for the reply (this caller only; the daemon goes on serving others).
    pub fn ask_text(&self, text: String) -> TurnReply {
        let (tx, rx) = bounded(1);
        self.submit(Job::Text {
            text,
            received: Instant::now(),
            reply: Some(tx),
        })?;
        rx.recv()
            .map_err(|_| ProtocolError::new("internal", "the think stage stopped"))?
    }

    /// Ask with 16 kHz mono audio and wait for the reply.
    pub fn ask_audio(&self, samples: Vec<f32>) -> TurnReply {
        let (tx, rx) = bounded(1);
        self.submit(Job::Audio {
            samples,
            ended: Instant::now(),
            hangover_ms: 0.0,
            reply: Some(tx),
        })?;
        rx.recv()
            .map_err(|_| ProtocolError::new("internal", "the think stage stopped"))?
    }

    /// Stop the reply being generated (and its playback); true when one was.
    pub fn interrupt(&self) -> bool {
        let stopped = self.controls.request_interrupt();
        if stopped
            && let Ok(p) = self.playback.lock()
            && let Some(p) = p.as_ref()
        {
            p.flush();
        }
        stopped
    }

    /// Forget the conversation, after stopping the reply being generated.
    pub fn reset(&self) -> std::result::Result<(), ProtocolError> {
        self.interrupt();
        let (tx, rx) = bounded(1);
        self.submit(Job::Reset { done: tx })?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| ProtocolError::new("internal", "the think stage did not answer"))
    }

    fn has_microphone(&self) -> std::result::Result<(), ProtocolError> {
        if !self.controls.has_microphone {
            return Err(ProtocolError::new(
                "busy",
                "no microphone in text mode (set mode.default to always-on or push-to-talk)",
            ));
        }
        Ok(())
    }

    pub fn set_muted(&self, muted: bool) -> std::result::Result<(), ProtocolError> {
        self.has_microphone()?;
        self.controls.muted.store(muted, Ordering::SeqCst);
        if !self.controls.generating.load(Ordering::SeqCst) {
            self.bus.publish(Event::State(self.controls.idle_state()));
        }
        Ok(())
    }

    pub fn push_to_talk(&self, held: bool) -> std::result::Result<(), ProtocolError> {
        self.has_microphone()?;
        if self.controls.muted.load(Ordering::SeqCst) {
            return Err(ProtocolError::new("busy", "muted: send unmute first"));
        }
        let was = self.controls.ptt.swap(held, Ordering::SeqCst);
        if was == held {
            return Err(ProtocolError::new(
                "busy",
                if held {
                    "push-to-talk is already on"
                } else {
                    "ptt_stop without ptt_start"
                },
            ));
        }
        Ok(())
    }

    pub fn status(&self) -> Value {
        let c = &self.controls;
        let state = c.state();
        let timings = self
            .shared
            .last_timings
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .map(|t| {
                json!({"vad_hangover_ms": t.vad_hangover_ms, "mel_ms": t.mel_ms,
                       "encoder_ms": t.encoder_ms, "prefill_ms": t.prefill_ms,
                       "first_decode_ms": t.first_decode_ms,
                       "to_first_token_ms": t.to_first_token_ms})
            });
        let (xruns_out, played) = self
            .playback
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| (p.xruns(), p.played())))
            .unwrap_or((0, 0));
        json!({
            "state": state.name(),
            "mode": match c.mode { Mode::AlwaysOn => "always-on", Mode::PushToTalk => "push-to-talk", Mode::Text => "text" },
            "muted": c.muted.load(Ordering::SeqCst),
            "push_to_talk": c.ptt.load(Ordering::SeqCst),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "turns": self.shared.turns.load(Ordering::SeqCst),
            "model": self.info["model"],
            "engine": self.info["engine"], "device": self.info["device"],
            "input": self.info["input"], "output": self.info["output"],
            "context": self.info["context"],
            "xruns": {"input": self.input_counters.as_ref().map_or(0, |c| c.xruns.load(Ordering::Relaxed)),
                      "output": xruns_out},
            "samples_played": played,
            "audio_failed": {
                "input": self.input_counters.as_ref().is_some_and(|c| c.failed.load(Ordering::Relaxed)),
                "output": self.output_failed(),
            },
            "subscribers": self.bus.subscribers(),
            "events_dropped": self.bus.dropped(),
            "last_timings": timings,
        })
    }

    fn output_failed(&self) -> bool {
        self.playback
            .lock()
            .ok()
            .and_then(|p| {
                p.as_ref()
                    .map(|p| p.counters().failed.load(Ordering::Relaxed))
            })
            .unwrap_or(false)
    }

    /// Collected playback (a `Collect` output), for tests.
    pub fn played_audio(&self) -> Vec<f32> {
        self.collected
            .as_ref()
            .and_then(|c| c.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    /// Stop every stage: the reply in progress is interrupted, queued sounds play out, the
    /// threads are joined and the devices closed.
    pub fn shutdown(&self) {
        self.controls.stop.store(true, Ordering::SeqCst);
        self.controls.request_interrupt();
        if let Ok(mut j) = self.jobs.lock() {
            *j = None;
        }
        let threads: Vec<JoinHandle<()>> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
        if let Ok(mut i) = self.input.lock() {
            *i = None;
        }
        let playback = self.playback.lock().ok().and_then(|mut p| p.take());
        if let Some(mut p) = playback {
            p.drain_and_stop(Duration::from_secs(2));
        }
        self.bus.publish(Event::State(State::Idle));
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The barge-in hook: discard what is queued for playback.
fn playback_flush(p: &Playback) -> Box<dyn Fn() + Send> {
    let counters = p.counters();
    Box::new(move || counters.flush.store(true, Ordering::SeqCst))
}
