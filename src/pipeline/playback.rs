//! The `playback` stage: sounds (earcons today, speech once the talker exists) arrive on a
//! bounded channel at the output's rate and are written into the output ring as the device
//! drains it. Stopping drains what is queued before the stream is dropped (dropping an output
//! stream cuts its buffered audio). Earcons are short tones made here, or WAV files resampled
//! to the output rate once at start.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use ringbuf::traits::{Observer, Producer};

use super::audio_io::{AudioCounters, AudioOut, HeapProd};
use crate::config::EarconSection;
use crate::error::{Error, Result};

/// Sounds waiting for the ring.
const QUEUE: usize = 8;

/// A sound at the output rate, shared so an earcon is made once and played many times.
pub type Sound = Arc<[f32]>;

/// The two earcons at the output rate (None: switched off).
#[derive(Clone, Default)]
pub struct Earcons {
    pub listening: Option<Sound>,
    pub reply_ready: Option<Sound>,
}

impl Earcons {
    /// From the config: "builtin", "" (none) or a WAV path, scaled by `volume`.
    pub fn load(cfg: &EarconSection, rate: u32) -> Result<Self> {
        let one = |value: &str, key: &str, builtin: &[(f32, f32)]| -> Result<Option<Sound>> {
            let samples = match value {
                "" => return Ok(None),
                "builtin" => tones(builtin, rate),
                path => {
                    let s = crate::models::audio_encoder::wav::load_wav_16k_mono(Path::new(path))
                        .map_err(|e| Error::Invalid(format!("earcons.{key}: {e}")))?;
                    crate::models::audio_encoder::wav::resample(&s, 16_000, rate)
                        .map_err(|e| Error::Invalid(format!("earcons.{key} `{path}`: {e}")))?
                }
            };
            Ok(Some(samples.iter().map(|v| v * cfg.volume).collect()))
        };
        Ok(Earcons {
            // rising for "I'm listening", falling for "here is the answer"
            listening: one(&cfg.listening, "listening", &[(660.0, 0.06), (880.0, 0.08)])?,
            reply_ready: one(
                &cfg.reply_ready,
                "reply_ready",
                &[(880.0, 0.06), (660.0, 0.08)],
            )?,
        })
    }
}

/// Sine tones (frequency Hz, seconds) one after another, each with 5 ms fades so nothing clicks.
pub fn tones(parts: &[(f32, f32)], rate: u32) -> Vec<f32> {
    let mut out = Vec::new();
    let fade = (rate as f32 * 0.005) as usize;
    for &(freq, secs) in parts {
        let n = (secs * rate as f32) as usize;
        for i in 0..n {
            let env = (i.min(n - 1 - i) as f32 / fade.max(1) as f32).min(1.0);
            let phase = 2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32;
            out.push(env * phase.sin());
        }
    }
    out
}

/// The running playback stage.
pub struct Playback {
    tx: Option<Sender<Sound>>,
    /// the feeder hands the ring back when its queue closes, so a drain can watch it empty
    thread: Option<JoinHandle<HeapProd<f32>>>,
    counters: Arc<AudioCounters>,
    pub rate: u32,
    /// keeps the device (or headless sink) running until after the drain
    out: Option<AudioOut>,
}

impl Playback {
    pub fn start(mut out: AudioOut) -> Result<Self> {
        let ring = out
            .ring
            .take()
            .ok_or_else(|| Error::Invalid("the output's ring is already taken".into()))?;
        let (tx, rx) = bounded::<Sound>(QUEUE);
        let counters = out.counters.clone();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("playback".into())
            .spawn(move || feed(rx, ring, c))
            .map_err(|e| Error::Invalid(format!("cannot start the playback thread: {e}")))?;
        Ok(Playback {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            rate: out.rate,
            out: Some(out),
        })
    }

    /// A sender for other stages.
    pub fn sender(&self) -> Option<Sender<Sound>> {
        self.tx.clone()
    }

    /// Discard everything queued or buffered (barge-in).
    pub fn flush(&self) {
        self.counters.flush.store(true, Ordering::SeqCst);
    }

    /// The output's counters: the flag [`Playback::flush`] sets (for a stage that flushes
    /// from its own thread), xruns, failure.
    pub fn counters(&self) -> Arc<AudioCounters> {
        self.counters.clone()
    }

    pub fn xruns(&self) -> u64 {
        self.counters.xruns.load(Ordering::Relaxed)
    }

    /// Samples the device has taken so far.
    pub fn played(&self) -> u64 {
        self.counters.played.load(Ordering::Relaxed)
    }

    pub fn device_name(&self) -> &str {
        self.out.as_ref().map_or("", |o| o.name.as_str())
    }

    /// What a collecting sink receives (it goes on being readable after the stop).
    pub fn collected(&self) -> Option<Arc<std::sync::Mutex<Vec<f32>>>> {
        self.out.as_ref().and_then(|o| o.collected.clone())
    }

    /// Let everything queued play out (at most `limit`), then stop the stream.
    pub fn drain_and_stop(&mut self, limit: Duration) {
        self.tx = None; // the feeder ends after the queue
        let ring = self.thread.take().and_then(|t| t.join().ok());
        let t0 = Instant::now();
        while ring.as_ref().is_some_and(|r| !r.is_empty()) && t0.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        // the device's own buffer: one more period or two
        std::thread::sleep(Duration::from_millis(50));
        self.out = None;
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.drain_and_stop(Duration::from_secs(2));
        }
    }
}

/// The feeder: sounds into the ring as space frees up.
fn feed(
    rx: Receiver<Sound>,
    mut ring: HeapProd<f32>,
    counters: Arc<AudioCounters>,
) -> HeapProd<f32> {
    for sound in rx {
        let mut rest: &[f32] = &sound;
        while !rest.is_empty() {
            if counters.flush.load(Ordering::SeqCst) {
                break; // the rest of a flushed sound is not played
            }
            let n = ring.push_slice(rest);
            rest = &rest[n..];
            if !rest.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    ring
}
