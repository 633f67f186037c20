//! `omni bench-audio`: the speech front end of a Qwen3-Omni model on clips of given lengths:
//! log-mel time and audio-encoder time (CPU, or GPU when one is in use), median of repeats. The
//! clip is synthetic (a chirp with noise): the encoder's cost depends only on its length.

use std::time::Instant;

use anyhow::Result;

use crate::models::audio_encoder::mel;
use crate::models::omni::OmniThinker;
use crate::models::sampler::Rng;

pub struct BenchAudioArgs {
    pub model: String,
    pub secs: Vec<f32>,
    pub repeats: usize,
    pub backend: super::engine::Backend,
    pub adapter: Option<String>,
}

/// `secs` seconds of 16 kHz audio: a 200 -> 3000 Hz chirp plus a little noise.
pub fn synthetic_clip(secs: f32, seed: u64) -> Vec<f32> {
    let n = (secs * 16000.0) as usize;
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let t = i as f32 / 16000.0;
            let f = 200.0 + 2800.0 * t / secs.max(1e-3);
            0.3 * (std::f32::consts::TAU * f * t).sin() + 0.01 * (rng.next_f32() - 0.5)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: &BenchAudioArgs) -> Result<()> {
    let dir = super::model_dir(&a.model)?;
    let t0 = Instant::now();
    let thinker = OmniThinker::load(&dir)?;
    let gpu = super::engine::gpu_context(a.backend, a.adapter.as_deref())?;
    let encoder = thinker.audio_engine(gpu.as_ref())?;
    let load = t0.elapsed().as_secs_f64();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| model | {} |", dir.display());
    println!("| encoder engine | {} |", encoder.describe());
    println!("| load (thinker + encoder) | {load:.2} s |");
    // the listen stage as it runs, without the devices: 48 kHz stereo in 10 ms periods,
    // downmixed into the SPSC ring (the callback's work), popped in 20 ms blocks, streamed to
    // 16 kHz and judged by the VAD
    let secs = 30.0f32;
    let mono = synthetic_clip(secs * 3.0, 9); // 48 kHz worth of samples
    let stereo: Vec<f32> = mono.iter().flat_map(|&x| [x, x]).collect();
    let t = Instant::now();
    listen_stage(&stereo)?;
    let listen = t.elapsed().as_secs_f64();
    println!(
        "| listen stage (48 kHz stereo -> ring -> 16 kHz mono + VAD), per second of audio | {:.2} ms = {:.2}% of one core |",
        1e3 * listen / secs as f64,
        100.0 * listen / secs as f64
    );
    for &secs in &a.secs {
        let clip = synthetic_clip(secs, 7);
        let (mut mel_t, mut enc_t, mut host_t, mut dev_t) = (vec![], vec![], vec![], vec![]);
        let mut tokens = 0;
        // one warm-up run (pipelines, caches), then the measured ones
        for i in 0..=a.repeats.max(1) {
            let t = Instant::now();
            let m = mel::log_mel(&clip);
            let t_mel = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let rows = encoder.encode(&m)?;
            let t_enc = t.elapsed().as_secs_f64();
            tokens = rows.len() / thinker.text.config.hidden_size;
            if i > 0 {
                mel_t.push(t_mel);
                enc_t.push(t_enc);
                if let Some((h, d)) = encoder.last_split() {
                    host_t.push(h);
                    dev_t.push(d);
                }
            }
        }
        println!(
            "| {secs} s of speech: log-mel / encoder ({tokens} tokens) | {:.1} ms / {:.1} ms |",
            1e3 * median(mel_t),
            1e3 * median(enc_t)
        );
        if !host_t.is_empty() {
            println!(
                "| {secs} s: encoder on the host (shapes, buffers, ops, recording) / on the device (submit to read-back) | {:.1} ms / {:.1} ms |",
                median(host_t),
                median(dev_t)
            );
        }
    }
    // where the device time goes, for the first clip length
    if let Some(&secs) = a.secs.first() {
        let m = mel::log_mel(&synthetic_clip(secs, 7));
        if let Some(k) = encoder.profile(&m)? {
            super::bench_gpu::print_kernels(
                &format!("GPU time of one {secs} s encode by kernel"),
                &k,
            );
        }
    }
    Ok(())
}

/// The listen stage's per-sample work on 48 kHz stereo: downmix into a ring as the capture
/// callback does, then pop, resample and segment as the listen thread does.
fn listen_stage(stereo: &[f32]) -> Result<()> {
    use ringbuf::traits::{Consumer, Producer, Split};
    let (mut prod, mut cons) = ringbuf::HeapRb::<f32>::new(48_000).split();
    let mut resampler = crate::pipeline::listen::StreamResampler::new(48_000)?;
    let mut seg = crate::pipeline::vad::Segmenter::new(&crate::config::Config::default().vad)?;
    let (mut raw, mut s16, mut events) = (vec![0f32; 960], Vec::new(), Vec::new());
    for period in stereo.chunks(960) {
        for frame in period.chunks_exact(2) {
            let _ = prod.try_push((frame[0] + frame[1]) / 2.0);
        }
        let n = cons.pop_slice(&mut raw);
        s16.clear();
        resampler.push(&raw[..n], &mut s16);
        seg.push(&s16, &mut events);
        events.clear();
    }
    Ok(())
}
