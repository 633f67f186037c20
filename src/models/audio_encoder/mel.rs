//! 128-bin log-mel features of 16 kHz mono audio, mirroring transformers'
//! `WhisperFeatureExtractor._torch_extract_fbank_features` (feature_extraction_whisper.py) with
//! the Qwen3-Omni preprocessor values, as `Qwen3OmniMoeProcessor` calls it for one clip
//! (`padding=True`: no padding to 30 s or 300 s, so `frames = samples / 160`).
//!
//! Recipe (facts in shared/reference/qwen-omni-architecture.md §2.1, tests/fixtures/README.md):
//! 1. `torch.stft(n_fft 400, hop 160, periodic Hann, center=True)`: reflect-pad 200 samples on
//!    each side, one frame every 160 samples, power `|X|²` on 201 bins; the last frame is dropped.
//! 2. 128 triangular filters on the Slaney mel scale, 0-8000 Hz, Slaney area normalisation
//!    (`audio_utils.mel_filter_bank(norm="slaney", mel_scale="slaney")`).
//! 3. `log10(max(mel, 1e-10))`, clamped from below at (maximum over the whole clip − 8), then
//!    `(x + 4) / 4`.
//!
//! Everything is computed in f64. The reference values were computed by torch in f32; the numpy
//! float64 path of the same class differs from them by up to 4e-5 (tests/fixtures/README.md), and
//! so do we (2.5e-5 and 3.9e-5 on the fixture clips). Because of the clip-wide maximum in
//! step 3, features of a clip are not the concatenation of features of its pieces: compute them
//! on the whole utterance.

use std::f64::consts::PI;
use std::sync::OnceLock;

/// Window and FFT length (25 ms at 16 kHz), preprocessor_config.json `n_fft`.
pub const N_FFT: usize = 400;
/// Frame step (10 ms), preprocessor_config.json `hop_length`.
pub const HOP: usize = 160;
/// Mel filters, preprocessor_config.json `feature_size` (the AuT encoder's `num_mel_bins`).
pub const N_MELS: usize = 128;
/// Frequency bins of a real 400-point transform: 0..=200, i.e. 0..=8000 Hz in 40 Hz steps.
const N_BINS: usize = N_FFT / 2 + 1;
/// `log10` floor of the reference: silence maps to -10 before normalisation.
const LOG_FLOOR: f64 = 1e-10;
/// Dynamic range kept below the clip's loudest value, in log10 units (80 dB).
const DYNAMIC_RANGE: f64 = 8.0;

/// Log-mel features of one clip.
#[derive(Clone, Debug, PartialEq)]
pub struct Mel {
    /// Number of mel bins, always [`N_MELS`].
    pub bins: usize,
    /// Number of 10 ms frames: `samples / 160`, rounded down.
    pub frames: usize,
    /// (bins, frames) f32, bin-major like HF's `input_features[0]`: `data[bin * frames + frame]`.
    pub data: Vec<f32>,
}

/// Log-mel features of 16 kHz mono samples in [-1, 1).
///
/// A clip shorter than one hop (160 samples, 10 ms) has no frame: the result is a `Mel` with
/// `frames == 0` and no data, and the caller decides whether that is an error (the encoder needs
/// at least one frame). Clips of 160..=200 samples are shorter than the 200-sample reflect pad;
/// torch refuses them, numpy's `pad(mode="reflect")` reflects repeatedly, and so do we.
pub fn log_mel(samples_16k: &[f32]) -> Mel {
    let frames = samples_16k.len() / HOP;
    if frames == 0 {
        return Mel {
            bins: N_MELS,
            frames: 0,
            data: Vec::new(),
        };
    }
    let tables = Tables::get();
    let padded = reflect_pad(samples_16k, N_FFT / 2);
    // frames in parallel (each exactly as alone: the result does not depend on the threads);
    // this sits on the daemon's path from the end of speech to the first token
    use rayon::prelude::*;
    let per_frame: Vec<[f64; N_MELS]> = (0..frames)
        .into_par_iter()
        .map_init(
            || [0f64; N_BINS],
            |power, frame| {
                let start = frame * HOP;
                tables.power_spectrum(&padded[start..start + N_FFT], power);
                let mut out = [0f64; N_MELS];
                for (o, filter) in out.iter_mut().zip(&tables.mel_filters) {
                    *o = filter.apply(power).max(LOG_FLOOR).log10();
                }
                out
            },
        )
        .collect();
    // (bins, frames) log10 mel energies
    let mut log_mel = vec![0f64; N_MELS * frames];
    for (frame, bins) in per_frame.iter().enumerate() {
        for (bin, v) in bins.iter().enumerate() {
            log_mel[bin * frames + frame] = *v;
        }
    }
    let floor = log_mel.iter().copied().fold(f64::NEG_INFINITY, f64::max) - DYNAMIC_RANGE;
    let data = log_mel
        .iter()
        .map(|&x| ((x.max(floor) + 4.0) / 4.0) as f32)
        .collect();
    Mel {
        bins: N_MELS,
        frames,
        data,
    }
}

/// `samples` with `pad` samples mirrored onto each end, the edge sample not repeated
/// (`torch.nn.functional.pad(mode="reflect")`; numpy's repeated reflection when `pad` exceeds
/// the clip). Needs at least 2 samples. (len + 2 pad,) f64
fn reflect_pad(samples: &[f32], pad: usize) -> Vec<f64> {
    let len = samples.len() as isize;
    let period = 2 * (len - 1);
    (-(pad as isize)..len + pad as isize)
        .map(|i| {
            let j = i.rem_euclid(period);
            samples[(if j < len { j } else { period - j }) as usize] as f64
        })
        .collect()
}

/// Everything that depends only on the constants, built once per process.
struct Tables {
    /// Periodic Hann window (`torch.hann_window(400)`): (400,)
    window: [f64; N_FFT],
    /// `cos(2π k n / 400)` and `sin(2π k n / 400)` for bin k and n in 0..200: (201, 200) each.
    cos: Vec<[f64; N_FFT / 2]>,
    sin: Vec<[f64; N_FFT / 2]>,
    /// One triangular filter per mel bin: (128,)
    mel_filters: Vec<MelFilter>,
}

impl Tables {
    fn get() -> &'static Tables {
        static TABLES: OnceLock<Tables> = OnceLock::new();
        TABLES.get_or_init(|| {
            let angle = |k: usize, n: usize| 2.0 * PI * ((k * n) % N_FFT) as f64 / N_FFT as f64;
            Tables {
                window: std::array::from_fn(|n| 0.5 - 0.5 * angle(1, n).cos()),
                cos: (0..N_BINS)
                    .map(|k| std::array::from_fn(|n| angle(k, n).cos()))
                    .collect(),
                sin: (0..N_BINS)
                    .map(|k| std::array::from_fn(|n| angle(k, n).sin()))
                    .collect(),
                mel_filters: slaney_mel_filters(),
            }
        })
    }

    /// `|X[k]|²` for k in 0..=200 of one windowed 400-sample frame.
    ///
    /// A direct real DFT, folded: for real x, `X[k] = Σ x[n] e^{-2πikn/N}` pairs n with N - n,
    /// whose cosines are equal and sines opposite, so the 400 terms become 200 sums of
    /// `x[n] + x[N-n]` (cos) and `x[n] - x[N-n]` (sin) plus the lone middle term x[200] (e^{-iπk}).
    /// That is 80k multiply-adds per frame; the whole of `log_mel` measured 81 ms for 30 s of
    /// audio on one core (tests/audio_frontend.rs), fast enough to stay simpler than an FFT, and
    /// exact to f64 rounding.
    fn power_spectrum(&self, frame: &[f64], power: &mut [f64; N_BINS]) {
        let x: [f64; N_FFT] = std::array::from_fn(|n| frame[n] * self.window[n]);
        let half = N_FFT / 2;
        let mut even = [0f64; N_FFT / 2];
        let mut odd = [0f64; N_FFT / 2];
        even[0] = x[0];
        for n in 1..half {
            even[n] = x[n] + x[N_FFT - n];
            odd[n] = x[n] - x[N_FFT - n];
        }
        let middle = x[half];
        for (k, p) in power.iter_mut().enumerate() {
            let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
            let re = dot(&even, &self.cos[k]) + sign * middle;
            let im = dot(&odd, &self.sin[k]);
            *p = re * re + im * im;
        }
    }
}

/// Dot product with 8 independent partial sums, so the compiler can keep them in vector
/// registers (float addition is not reassociated on its own).
fn dot(a: &[f64; N_FFT / 2], b: &[f64; N_FFT / 2]) -> f64 {
    let mut acc = [0f64; 8];
    for (a8, b8) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += a8[i] * b8[i];
        }
    }
    acc.iter().sum()
}

/// One triangular mel filter: its non-zero weights over the power bins from `first_bin` on.
struct MelFilter {
    first_bin: usize,
    weights: Vec<f64>,
}

impl MelFilter {
    fn apply(&self, power: &[f64; N_BINS]) -> f64 {
        let bins = &power[self.first_bin..self.first_bin + self.weights.len()];
        bins.iter().zip(&self.weights).map(|(p, w)| p * w).sum()
    }
}

/// `audio_utils.mel_filter_bank(201, 128, 0.0, 8000.0, 16000, norm="slaney",
/// mel_scale="slaney")`: 130 edges evenly spaced in Slaney mel, each filter rising from edge m
/// to m + 1 and falling to m + 2 over the bin frequencies 40·k Hz, scaled by
/// `2 / (f[m+2] - f[m])` so every filter has the same area.
fn slaney_mel_filters() -> Vec<MelFilter> {
    let mel_max = hertz_to_slaney_mel(8000.0);
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| slaney_mel_to_hertz(mel_max * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let bin_hz = |k: usize| 8000.0 * k as f64 / (N_BINS - 1) as f64;
    (0..N_MELS)
        .map(|m| {
            let (lo, centre, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let area_norm = 2.0 / (hi - lo);
            let weight = |k: usize| {
                let f = bin_hz(k);
                let rising = (f - lo) / (centre - lo);
                let falling = (hi - f) / (hi - centre);
                rising.min(falling).max(0.0) * area_norm
            };
            let nonzero: Vec<usize> = (0..N_BINS).filter(|&k| weight(k) > 0.0).collect();
            let first_bin = nonzero.first().copied().unwrap_or(0);
            let last_bin = nonzero.last().copied().unwrap_or(0);
            MelFilter {
                first_bin,
                weights: (first_bin..=last_bin).map(weight).collect(),
            }
        })
        .collect()
}

/// Slaney's mel scale (librosa `htk=False`): linear below 1 kHz (3 mels per 200 Hz), logarithmic
/// above (27 mels per factor 6.4).
fn hertz_to_slaney_mel(hz: f64) -> f64 {
    if hz < 1000.0 {
        3.0 * hz / 200.0
    } else {
        15.0 + (hz / 1000.0).ln() * 27.0 / 6.4f64.ln()
    }
}

fn slaney_mel_to_hertz(mel: f64) -> f64 {
    if mel < 15.0 {
        200.0 * mel / 3.0
    } else {
        1000.0 * ((mel - 15.0) * 6.4f64.ln() / 27.0).exp()
    }
}
