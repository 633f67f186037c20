//! Where the pipeline's audio comes from and goes to. Real devices run through cpal
//! (audio_io/sound.rs, the default `sound` feature; without it, audio_io/nosound.rs); their
//! callbacks touch only a lock-free SPSC ring (ringbuf) and atomics: no locks, no allocation,
//! no logging. Headless stand-ins (a WAV file played as the microphone in real time, a sink
//! that collects or discards what would be played) drive the same pipeline in tests and on
//! machines without sound hardware.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Producer, Split};

use crate::error::{Error, Result};

pub use ringbuf::{HeapCons, HeapProd};

#[cfg(not(feature = "sound"))]
#[path = "audio_io/nosound.rs"]
mod device;
#[cfg(feature = "sound")]
#[path = "audio_io/sound.rs"]
mod device;

pub use device::device_names;

/// A started device stream (`device::Stream`: cpal's, or none in a build without sound) and
/// the pipeline's end of its ring.
struct OpenDevice<R> {
    stream: device::Stream,
    ring: R,
    rate: u32,
    name: String,
    counters: Arc<AudioCounters>,
}

/// Seconds of audio each ring holds: enough to ride out a busy moment in the worker threads.
const RING_SECONDS: usize = 4;

/// Counters shared with an audio callback.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// samples the callback could not store (capture) or had to invent as silence while a
    /// sound was playing (playback)
    pub xruns: AtomicU64,
    /// samples handed to the device (playback)
    pub played: AtomicU64,
    /// set by the pipeline to discard whatever is queued for playback (barge-in)
    pub flush: AtomicBool,
    /// the source has ended (a WAV input after its last sample and trailing silence)
    pub finished: AtomicBool,
    /// the stream reported an error (device unplugged, ...)
    pub failed: AtomicBool,
}

/// Keeps a source or sink running; dropping it stops it.
enum Keep {
    /// the stream runs while it lives (taken out when dropped)
    Stream(Option<device::Stream>),
    Thread {
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    },
}

impl Drop for Keep {
    fn drop(&mut self) {
        match self {
            Keep::Thread { stop, handle } => {
                stop.store(true, Ordering::SeqCst);
                if let Some(h) = handle.take() {
                    let _ = h.join();
                }
            }
            // Closing a stream joins cpal's worker thread, which deadlocks inside ALSA's pulse
            // plugin when the sound server has gone away (seen: the daemon hung on SIGTERM).
            // Close on a helper thread and wait a second at most; past that it is left behind
            // and the process exits anyway.
            Keep::Stream(stream) => {
                if let Some(s) = stream.take() {
                    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
                    let closer = std::thread::Builder::new()
                        .name("audio-close".into())
                        .spawn(move || {
                            drop(s);
                            let _ = tx.send(());
                        });
                    if closer.is_ok() && rx.recv_timeout(Duration::from_secs(1)).is_err() {
                        tracing::warn!(
                            "a sound stream did not close (sound server gone?); left behind"
                        );
                    }
                }
            }
        }
    }
}

/// A running capture: mono samples at `rate` arrive in `ring`.
pub struct AudioIn {
    pub ring: Option<HeapCons<f32>>,
    pub rate: u32,
    pub name: String,
    pub counters: Arc<AudioCounters>,
    _keep: Keep,
}

/// A running playback: mono samples at `rate` pushed into `ring` are played.
pub struct AudioOut {
    pub ring: Option<HeapProd<f32>>,
    pub rate: u32,
    pub name: String,
    pub counters: Arc<AudioCounters>,
    /// what a collecting sink received, in order
    pub collected: Option<Arc<Mutex<Vec<f32>>>>,
    _keep: Keep,
}

/// Where the microphone comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    /// a capture device whose name contains this text ("" = the default device)
    Device(String),
    /// a WAV file played in real time (times `speed`), then `tail` of silence, then the end
    Wav {
        path: PathBuf,
        speed: f32,
        tail: Duration,
    },
}

/// Where playback goes.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSpec {
    /// a playback device whose name contains this text ("" = the default device)
    Device(String),
    /// consumed in real time and kept in memory (tests), at this rate
    Collect { rate: u32 },
    /// consumed in real time and discarded
    Null { rate: u32 },
}

fn ring(rate: u32) -> (HeapProd<f32>, HeapCons<f32>) {
    HeapRb::<f32>::new(rate as usize * RING_SECONDS).split()
}

impl AudioIn {
    /// `rate` 0: the device's own rate.
    pub fn open(spec: &InputSpec, rate: u32, buffer_frames: u32) -> Result<Self> {
        match spec {
            InputSpec::Device(name) => Self::device(name, rate, buffer_frames),
            InputSpec::Wav { path, speed, tail } => Self::wav(path, *speed, *tail),
        }
    }

    fn device(want: &str, rate: u32, buffer_frames: u32) -> Result<Self> {
        let d = device::open_capture(want, rate, buffer_frames)?;
        Ok(AudioIn {
            ring: Some(d.ring),
            rate: d.rate,
            name: d.name,
            counters: d.counters,
            _keep: Keep::Stream(Some(d.stream)),
        })
    }

    fn wav(path: &Path, speed: f32, tail: Duration) -> Result<Self> {
        let samples = crate::models::audio_encoder::wav::load_wav_16k_mono(path)?;
        let rate = 16_000u32;
        let (mut prod, cons) = ring(rate);
        let counters = Arc::new(AudioCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        let tail_samples = (tail.as_secs_f64() * rate as f64) as usize;
        let speed = speed.max(0.01) as f64;
        let handle = std::thread::Builder::new()
            .name("wav-input".into())
            .spawn(move || {
                // 10 ms chunks on the wall clock, like a sound card's periods
                let chunk = (rate / 100) as usize;
                let t0 = Instant::now();
                let total = samples.len() + tail_samples;
                let mut sent = 0usize;
                while sent < total && !s.load(Ordering::SeqCst) {
                    let due =
                        ((t0.elapsed().as_secs_f64() * rate as f64 * speed) as usize).min(total);
                    while sent < due {
                        let n = chunk.min(due - sent);
                        for i in sent..sent + n {
                            let v = samples.get(i).copied().unwrap_or(0.0);
                            if prod.try_push(v).is_err() {
                                c.xruns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        sent += n;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                c.finished.store(true, Ordering::SeqCst);
            })
            .map_err(|e| Error::Invalid(format!("cannot start the WAV input thread: {e}")))?;
        Ok(AudioIn {
            ring: Some(cons),
            rate,
            name: format!("wav:{}", path.display()),
            counters,
            _keep: Keep::Thread {
                stop,
                handle: Some(handle),
            },
        })
    }
}

impl AudioOut {
    /// `rate` 0: the device's own rate.
    pub fn open(spec: &OutputSpec, rate: u32, buffer_frames: u32) -> Result<Self> {
        match spec {
            OutputSpec::Device(name) => Self::device(name, rate, buffer_frames),
            OutputSpec::Collect { rate } => Self::headless(*rate, true),
            OutputSpec::Null { rate } => Self::headless(*rate, false),
        }
    }

    fn device(want: &str, rate: u32, buffer_frames: u32) -> Result<Self> {
        let d = device::open_playback(want, rate, buffer_frames)?;
        Ok(AudioOut {
            ring: Some(d.ring),
            rate: d.rate,
            name: d.name,
            counters: d.counters,
            collected: None,
            _keep: Keep::Stream(Some(d.stream)),
        })
    }

    fn headless(rate: u32, keep: bool) -> Result<Self> {
        let (prod, mut cons) = ring(rate);
        let counters = Arc::new(AudioCounters::default());
        let collected = keep.then(|| Arc::new(Mutex::new(Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, sink) = (counters.clone(), stop.clone(), collected.clone());
        let handle = std::thread::Builder::new()
            .name("null-output".into())
            .spawn(move || {
                // a 10 ms period on the wall clock, like a sound card pulling samples
                let period = (rate / 100) as usize;
                let mut buf = vec![0.0f32; period];
                while !s.load(Ordering::SeqCst) {
                    if c.flush.swap(false, Ordering::SeqCst) {
                        cons.clear();
                    }
                    let n = cons.pop_slice(&mut buf);
                    if n > 0 {
                        c.played.fetch_add(n as u64, Ordering::SeqCst);
                        if let Some(v) = &sink
                            && let Ok(mut v) = v.lock()
                        {
                            v.extend_from_slice(&buf[..n]);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the output thread: {e}")))?;
        Ok(AudioOut {
            ring: Some(prod),
            rate,
            name: if keep { "collect" } else { "null" }.into(),
            counters,
            collected,
            _keep: Keep::Thread {
                stop,
                handle: Some(handle),
            },
        })
    }
}
