//! Sound devices through cpal (the default `sound` feature): listing them, and opening a
//! capture or playback stream whose callback touches only the pipeline's ring and atomics.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ringbuf::traits::{Consumer, Observer, Producer};

use super::{AudioCounters, HeapCons, HeapProd, OpenDevice, ring};
use crate::error::{Error, Result};

/// A running device stream (stops when dropped).
pub type Stream = cpal::Stream;

/// The capture device matching `want` ("" = the default) at `rate` (0: its own), started.
pub fn open_capture(
    want: &str,
    rate: u32,
    buffer_frames: u32,
) -> Result<OpenDevice<HeapCons<f32>>> {
    open_device(
        true,
        want,
        rate,
        buffer_frames,
        |dev, fmt, cfg, ch, r, c| {
            let (prod, cons) = ring(r);
            capture_stream(dev, fmt, cfg, ch, prod, c).map(|s| (s, cons))
        },
    )
}

/// The playback device matching `want` ("" = the default) at `rate` (0: its own), started.
pub fn open_playback(
    want: &str,
    rate: u32,
    buffer_frames: u32,
) -> Result<OpenDevice<HeapProd<f32>>> {
    open_device(
        false,
        want,
        rate,
        buffer_frames,
        |dev, fmt, cfg, ch, r, c| {
            let (prod, cons) = ring(r);
            playback_stream(dev, fmt, cfg, ch, cons, c).map(|s| (s, prod))
        },
    )
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
