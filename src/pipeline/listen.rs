//! The `listen` stage: samples from the capture ring, resampled to 16 kHz, become utterances.
//! Always-on: the VAD decides where speech starts and ends. Push-to-talk (`ptt_start` ..
//! `ptt_stop`, in any mode with a microphone): the audio between them is the utterance and the
//! VAD only trims silence from its ends. Muted: the audio is dropped. Speech heard while a reply
//! is being generated interrupts it (barge-in).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use ringbuf::traits::{Consumer, Observer};
use rubato::{Resampler, SincFixedIn, SincInterpolationType};

use super::audio_io::{AudioCounters, HeapCons};
use super::events::{Event, EventBus};
use super::vad::{Segmenter, VadEvent};
use super::{Controls, Job};
use crate::config::{Mode, VadSection};
use crate::error::{Error, Result};

const RATE: u32 = 16_000;

/// Streaming resampling of the capture to 16 kHz in 10 ms chunks (a shorter sinc than the
/// file path's: this runs all the time, and the VAD and the encoder do not need more).
pub struct StreamResampler {
    inner: Option<SincFixedIn<f32>>,
    pending: Vec<f32>,
    chunk: usize,
}

impl StreamResampler {
    pub fn new(rate: u32) -> Result<Self> {
        if rate == RATE {
            return Ok(StreamResampler {
                inner: None,
                pending: Vec::new(),
                chunk: 0,
            });
        }
        let params =
            crate::models::audio_encoder::wav::sinc_params(64, SincInterpolationType::Linear, 128);
        let chunk = (rate / 100).max(1) as usize;
        let inner = SincFixedIn::<f32>::new(RATE as f64 / rate as f64, 1.0, params, chunk, 1)
            .map_err(|e| Error::Invalid(format!("resampler for {rate} Hz: {e}")))?;
        Ok(StreamResampler {
            inner: Some(inner),
            pending: Vec::with_capacity(chunk * 2),
            chunk,
        })
    }

    /// Feed samples at the input rate; 16 kHz samples are appended to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut used = 0;
        while self.pending.len() - used >= self.chunk {
            if let Ok(o) = r.process(&[&self.pending[used..used + self.chunk]], None) {
                out.extend_from_slice(&o[0]);
            }
            used += self.chunk;
        }
        self.pending.drain(..used);
    }
}

/// What the listen stage needs besides its input.
pub struct ListenSetup {
    pub vad: VadSection,
    pub ring: HeapCons<f32>,
    pub rate: u32,
    pub input: Arc<AudioCounters>,
    /// called on barge-in (discards queued playback)
    pub on_barge_in: Box<dyn Fn() + Send>,
    /// called when listening starts (startup, unmute, ptt_start): plays the earcon
    pub on_listening: Box<dyn Fn() + Send>,
}

pub fn spawn(
    setup: ListenSetup,
    controls: Arc<Controls>,
    bus: Arc<EventBus>,
    jobs: Sender<Job>,
) -> Result<JoinHandle<()>> {
    let resampler = StreamResampler::new(setup.rate)?;
    // checked here so a bad setting fails the start; the VAD itself is made on the thread
    // (webrtc-vad's handle may not cross threads)
    drop(Segmenter::new(&setup.vad)?);
    std::thread::Builder::new()
        .name("listen".into())
        .spawn(move || {
            let Ok(segmenter) = Segmenter::new(&setup.vad) else {
                return;
            };
            let mut l = Listener {
                setup,
                controls,
                bus,
                jobs,
                resampler,
                segmenter,
                pos: 0,
                ptt: None,
                muted: false,
            };
            l.run();
        })
        .map_err(|e| Error::Invalid(format!("cannot start the listen thread: {e}")))
}

struct Listener {
    setup: ListenSetup,
    controls: Arc<Controls>,
    bus: Arc<EventBus>,
    jobs: Sender<Job>,
    resampler: StreamResampler,
    segmenter: Segmenter,
    /// 16 kHz samples seen so far
    pos: u64,
    /// push-to-talk audio while the button is held, and where it began
    ptt: Option<(u64, Vec<f32>)>,
    muted: bool,
}

fn ms(samples: u64) -> f64 {
    samples as f64 * 1000.0 / RATE as f64
}

impl Listener {
    fn run(&mut self) {
        (self.setup.on_listening)();
        // OMNI_DUMP_MIC=FILE.wav keeps what the VAD hears (16 kHz) for diagnosing detection
        let dump_path = std::env::var_os("OMNI_DUMP_MIC");
        let mut dump: Vec<f32> = Vec::new();
        let mut raw = vec![0.0f32; self.setup.rate as usize / 50]; // 20 ms
        let mut s16 = Vec::with_capacity(RATE as usize / 25);
        let mut events = Vec::new();
        while !self.controls.stop.load(Ordering::SeqCst) {
            if self.setup.input.failed.load(Ordering::SeqCst) {
                // the device or its sound server went away: say so once and stop listening
                // (questions over the socket are still answered)
                self.bus.publish(Event::Error {
                    message: "the capture device failed (unplugged, or its sound server stopped); the microphone is off until the daemon restarts".into(),
                });
                break;
            }
            self.follow_controls();
            let n = self.setup.ring.pop_slice(&mut raw);
            if n == 0 {
                if self.setup.input.finished.load(Ordering::SeqCst) && self.setup.ring.is_empty() {
                    self.end_of_input(&mut events);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            s16.clear();
            self.resampler.push(&raw[..n], &mut s16);
            if dump_path.is_some() {
                dump.extend_from_slice(&s16);
            }
            self.hear(&s16, &mut events);
        }
        if let Some(p) = dump_path {
            write_dump(std::path::Path::new(&p), &dump);
        }
    }

    /// Mute and push-to-talk changes made over the socket.
    fn follow_controls(&mut self) {
        let muted = self.controls.muted.load(Ordering::SeqCst);
        if muted != self.muted {
            self.muted = muted;
            // an utterance in progress is dropped either way
            self.ptt = None;
            if !muted {
                (self.setup.on_listening)();
            }
        }
        let held = self.controls.ptt.load(Ordering::SeqCst);
        match (&self.ptt, held) {
            (None, true) if !self.muted => {
                self.ptt = Some((self.pos, Vec::new()));
                self.barge_in();
                (self.setup.on_listening)();
            }
            (Some(_), false) => {
                if let Some((start, audio)) = self.ptt.take() {
                    self.ptt_released(start, audio);
                }
            }
            _ => {}
        }
    }

    fn hear(&mut self, s16: &[f32], events: &mut Vec<VadEvent>) {
        self.pos += s16.len() as u64;
        // muted, the button held, or push-to-talk mode: the VAD does not decide turns
        if self.muted || self.ptt.is_some() || self.controls.mode == Mode::PushToTalk {
            if let Some((_, audio)) = self.ptt.as_mut() {
                audio.extend_from_slice(s16);
            }
            self.segmenter.skip(s16.len() as u64);
            return;
        }
        events.clear();
        self.segmenter.push(s16, events);
        for e in events.drain(..) {
            self.vad_event(e);
        }
    }

    fn vad_event(&mut self, e: VadEvent) {
        match e {
            VadEvent::SpeechStart { at } => {
                self.bus.publish(Event::SpeechStart { at_ms: ms(at) });
                self.barge_in();
            }
            VadEvent::Utterance {
                start,
                end,
                samples,
            } => {
                self.bus.publish(Event::SpeechEnd {
                    at_ms: ms(end),
                    duration_ms: ms(end - start),
                });
                self.send(samples, self.setup.vad.hangover_ms as f64);
            }
            VadEvent::Discarded { start, .. } => {
                self.bus
                    .publish(Event::SpeechDiscarded { at_ms: ms(start) });
            }
        }
    }

    /// New speech while a reply is being generated stops that reply.
    fn barge_in(&self) {
        if self.controls.barge_in && self.controls.generating.load(Ordering::SeqCst) {
            self.controls.request_interrupt();
            (self.setup.on_barge_in)();
        }
    }

    /// The button was released: the VAD trims silence from both ends.
    fn ptt_released(&mut self, start: u64, audio: Vec<f32>) {
        let end = start + audio.len() as u64;
        let Ok(mut trim) = Segmenter::new(&self.setup.vad) else {
            return;
        };
        let mut ev = Vec::new();
        trim.push(&audio, &mut ev);
        trim.flush(&mut ev);
        let spans: Vec<(u64, u64)> = ev
            .iter()
            .filter_map(|e| match e {
                VadEvent::Utterance { start, end, .. } => Some((*start, *end)),
                _ => None,
            })
            .collect();
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            self.bus
                .publish(Event::SpeechDiscarded { at_ms: ms(start) });
            self.bus.publish(Event::Error {
                message: "push-to-talk: no speech was heard between ptt_start and ptt_stop".into(),
            });
            return;
        };
        let (a, b) = (first.0 as usize, (last.1 as usize).min(audio.len()));
        self.bus.publish(Event::SpeechStart {
            at_ms: ms(start + first.0),
        });
        self.bus.publish(Event::SpeechEnd {
            at_ms: ms(end),
            duration_ms: ms((b - a) as u64),
        });
        // the release is the end of speech: no hangover to wait for
        self.send(audio[a..b].to_vec(), 0.0);
    }

    fn send(&self, samples: Vec<f32>, hangover_ms: f64) {
        let job = Job::Audio {
            samples,
            ended: Instant::now(),
            hangover_ms,
            reply: None,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.bus.publish(Event::Error {
                message:
                    "busy: an utterance was dropped (questions are queued faster than answered)"
                        .into(),
            }),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A finite input (a WAV file) ended: close an open utterance and say so.
    fn end_of_input(&mut self, events: &mut Vec<VadEvent>) {
        events.clear();
        self.segmenter.flush(events);
        for e in events.drain(..) {
            self.vad_event(e);
        }
        if let Some((start, audio)) = self.ptt.take() {
            self.ptt_released(start, audio);
        }
        self.controls.input_ended.store(true, Ordering::SeqCst);
    }
}

fn write_dump(path: &std::path::Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let Ok(mut w) = hound::WavWriter::create(path, spec) else {
        tracing::warn!("OMNI_DUMP_MIC: cannot write {}", path.display());
        return;
    };
    for &s in samples {
        let _ = w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16);
    }
    let _ = w.finalize();
}
