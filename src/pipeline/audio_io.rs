//! Where the pipeline's audio comes from and goes to. Real devices run through cpal; their
//! callbacks touch only a lock-free SPSC ring (ringbuf) and atomics: no locks, no allocation,
//! no logging. Headless stand-ins (a WAV file played as the microphone in real time, a sink
//! that collects or discards what would be played) drive the same pipeline in tests and on
//! machines without sound hardware.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};

use crate::error::{Error, Result};

pub use ringbuf::{HeapCons, HeapProd};

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
    Stream(Option<cpal::Stream>),
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

/// Names of the capture (`input`) or playback devices of the default host.
pub fn device_names(input: bool) -> Result<Vec<String>> {
    let host = cpal::default_host();
    let devices = if input {
        host.input_devices().map(|d| d.collect::<Vec<_>>())
    } else {
        host.output_devices().map(|d| d.collect::<Vec<_>>())
    }
    .map_err(|e| Error::Invalid(format!("listing audio devices: {e}")))?;
    Ok(devices
        .iter()
        .map(|d| match d.id() {
            Ok(id) => format!("{id}  ({})", device_name(d)),
            Err(_) => device_name(d),
        })
        .collect())
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|x| x.name().to_string())
        .or_else(|_| d.id().map(|i| i.to_string()))
        .unwrap_or_else(|_| "<unnamed>".into())
}

/// The device whose name (or id) contains `want`, or the default one for "".
fn find_device(input: bool, want: &str, key: &str) -> Result<cpal::Device> {
    let host = cpal::default_host();
    let what = if input { "capture" } else { "playback" };
    if want.is_empty() {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or_else(|| {
            Error::Invalid(format!(
                "{key}: there is no default {what} device (is a sound server running? see `omni devices --audio`)"
            ))
        });
    }
    let devices: Vec<cpal::Device> = if input {
        host.input_devices().map(|d| d.collect())
    } else {
        host.output_devices().map(|d| d.collect())
    }
    .map_err(|e| Error::Invalid(format!("{key}: listing {what} devices: {e}")))?;
    let names: Vec<String> = devices.iter().map(device_name).collect();
    let id = |d: &cpal::Device| d.id().map(|i| i.to_string()).unwrap_or_default();
    devices
        .into_iter()
        .zip(&names)
        .find(|(d, n)| n.contains(want) || id(d).contains(want))
        .map(|(d, _)| d)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{key} `{want}`: no {what} device matches (available: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
}

/// A started device stream and the pipeline's end of its ring.
struct OpenDevice<R> {
    stream: cpal::Stream,
    ring: R,
    rate: u32,
    name: String,
    counters: Arc<AudioCounters>,
}

/// Open the capture (`input`) or playback device matching `want` at `rate` (0: its own) with
/// a fixed buffer of `buffer_frames`, or its default buffer if it refuses that; `build` makes
/// the stream with a fresh ring and hands back the ring's other end. Errors name the config key.
fn open_device<R>(
    input: bool,
    want: &str,
    rate: u32,
    buffer_frames: u32,
    build: impl Fn(
        &cpal::Device,
        cpal::SampleFormat,
        cpal::StreamConfig,
        usize,
        u32,
        &Arc<AudioCounters>,
    ) -> std::result::Result<(cpal::Stream, R), String>,
) -> Result<OpenDevice<R>> {
    let key = if input {
        "audio.input_device"
    } else {
        "audio.output_device"
    };
    let device = find_device(input, want, key)?;
    let name = device_name(&device);
    let supported = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|e| Error::Invalid(format!("{key} `{name}`: no usable format: {e}")))?;
    let rate = if rate == 0 {
        supported.sample_rate()
    } else {
        rate
    };
    let channels = supported.channels().max(1) as usize;
    let counters = Arc::new(AudioCounters::default());
    let mut config: cpal::StreamConfig = supported.config();
    config.sample_rate = rate;
    let format = supported.sample_format();
    let mut last_err = String::new();
    // a device that refuses the fixed buffer size gets its default
    for size in [
        cpal::BufferSize::Fixed(buffer_frames),
        cpal::BufferSize::Default,
    ] {
        config.buffer_size = size;
        match build(&device, format, config, channels, rate, &counters) {
            Ok((stream, ring)) => {
                stream
                    .play()
                    .map_err(|e| Error::Invalid(format!("{key} `{name}`: cannot start: {e}")))?;
                return Ok(OpenDevice {
                    stream,
                    ring,
                    rate,
                    name,
                    counters,
                });
            }
            Err(e) => last_err = e,
        }
    }
    Err(Error::Invalid(format!(
        "{key} `{name}` at {rate} Hz: {last_err} (audio.sample_rate 0 takes the device's own)"
    )))
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
        let d = open_device(
            true,
            want,
            rate,
            buffer_frames,
            |dev, fmt, cfg, ch, r, c| {
                let (prod, cons) = ring(r);
                capture_stream(dev, fmt, cfg, ch, prod, c).map(|s| (s, cons))
            },
        )?;
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

fn capture_stream(
    device: &cpal::Device,
    format: cpal::SampleFormat,
    config: cpal::StreamConfig,
    channels: usize,
    prod: HeapProd<f32>,
    counters: &Arc<AudioCounters>,
) -> std::result::Result<cpal::Stream, String> {
    match format {
        cpal::SampleFormat::F32 => in_stream::<f32>(device, config, channels, prod, counters),
        cpal::SampleFormat::I16 => in_stream::<i16>(device, config, channels, prod, counters),
        cpal::SampleFormat::I32 => in_stream::<i32>(device, config, channels, prod, counters),
        cpal::SampleFormat::U16 => in_stream::<u16>(device, config, channels, prod, counters),
        other => Err(format!("sample format {other:?} is not supported")),
    }
}

fn in_stream<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    channels: usize,
    mut prod: HeapProd<f32>,
    counters: &Arc<AudioCounters>,
) -> std::result::Result<cpal::Stream, String>
where
    T: cpal::SizedSample,
    f32: cpal::FromSample<T>,
{
    let c = counters.clone();
    let failed = counters.clone();
    let on_data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        // real-time: the downmix, the ring and atomics only
        for frame in data.chunks_exact(channels) {
            let mut sum = 0.0f32;
            for &s in frame {
                sum += <f32 as cpal::FromSample<T>>::from_sample_(s);
            }
            if prod.try_push(sum / channels as f32).is_err() {
                c.xruns.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let on_error = move |_e: cpal::Error| {
        failed.failed.store(true, Ordering::Relaxed);
    };
    device
        .build_input_stream::<T, _, _>(config, on_data, on_error, None)
        .map_err(|e| e.to_string())
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
        let d = open_device(
            false,
            want,
            rate,
            buffer_frames,
            |dev, fmt, cfg, ch, r, c| {
                let (prod, cons) = ring(r);
                playback_stream(dev, fmt, cfg, ch, cons, c).map(|s| (s, prod))
            },
        )?;
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

fn playback_stream(
    device: &cpal::Device,
    format: cpal::SampleFormat,
    config: cpal::StreamConfig,
    channels: usize,
    cons: HeapCons<f32>,
    counters: &Arc<AudioCounters>,
) -> std::result::Result<cpal::Stream, String> {
    match format {
        cpal::SampleFormat::F32 => out_stream::<f32>(device, config, channels, cons, counters),
        cpal::SampleFormat::I16 => out_stream::<i16>(device, config, channels, cons, counters),
        cpal::SampleFormat::I32 => out_stream::<i32>(device, config, channels, cons, counters),
        cpal::SampleFormat::U16 => out_stream::<u16>(device, config, channels, cons, counters),
        other => Err(format!("sample format {other:?} is not supported")),
    }
}

fn out_stream<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    channels: usize,
    mut cons: HeapCons<f32>,
    counters: &Arc<AudioCounters>,
) -> std::result::Result<cpal::Stream, String>
where
    T: cpal::SizedSample + cpal::FromSample<f32>,
{
    let c = counters.clone();
    let failed = counters.clone();
    let on_data = move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
        // real-time: the ring and atomics only
        if c.flush.swap(false, Ordering::Relaxed) {
            cons.clear();
        }
        let playing = !cons.is_empty();
        let mut n = 0u64;
        for frame in data.chunks_exact_mut(channels) {
            let v = match cons.try_pop() {
                Some(v) => {
                    n += 1;
                    v
                }
                None => 0.0,
            };
            let s = T::from_sample(v);
            for out in frame.iter_mut() {
                *out = s;
            }
        }
        let frames = (data.len() / channels) as u64;
        if playing && n < frames && !cons.is_empty() {
            c.xruns.fetch_add(frames - n, Ordering::Relaxed);
        }
        c.played.fetch_add(n, Ordering::Relaxed);
    };
    let on_error = move |_e: cpal::Error| {
        failed.failed.store(true, Ordering::Relaxed);
    };
    device
        .build_output_stream::<T, _, _>(config, on_data, on_error, None)
        .map_err(|e| e.to_string())
}
