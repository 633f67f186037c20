//! The audio front end (WAV -> 16 kHz mono -> log-mel) against the Qwen3-Omni processor's
//! features in tests/fixtures/omni, plus every kind of WAV a user may hand us: other depths,
//! rates and channel counts (converted), broken files (an error naming the file, no panic).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use hound::{SampleFormat, WavSpec, WavWriter};
use qwen_omni::models::audio_encoder::mel::{Mel, log_mel};
use qwen_omni::models::audio_encoder::wav::{SAMPLE_RATE, load_wav_16k_mono, to_16k_mono};

/// Acceptance bound for our f64 mel against the reference's torch-f32 mel: the numpy float64
/// path of the same class differs from the torch values by up to 4e-5 (tests/fixtures/README.md).
const MEL_ABS: f32 = 1e-4;

fn omni_fixture(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures/omni").join(name)
}

/// `mel.{clip}` of reference.safetensors: (shape, f32 values).
fn reference_mel(clip: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(omni_fixture("tiny/reference.safetensors")).expect("reference file");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("reference parses");
    let t = file.tensor(&format!("mel.{clip}")).expect("mel tensor");
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

/// `audio.{clip}` of reference.json.
fn reference_audio(clip: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(omni_fixture("tiny/reference.json")).expect("reference.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("reference.json parses");
    json["audio"][clip].clone()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .sum::<f64>()
        / a.len() as f64
}

fn int_spec(rate: u32, channels: u16, bits: u16) -> WavSpec {
    WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: SampleFormat::Int,
    }
}

fn write_int_wav(path: &Path, spec: WavSpec, samples: &[i32]) {
    let mut w = WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

fn write_float_wav(path: &Path, rate: u32, samples: &[f32]) {
    let spec = WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: SampleFormat::Float,
    };
    let mut w = WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// A 16-bit sine at `rate`, `amplitude` of full scale.
fn sine_i16(rate: u32, seconds: f64, hz: f64, amplitude: f64) -> Vec<i32> {
    let n = (rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i32
        })
        .collect()
}

/// The error of loading `path`, which must name the file; returns its message.
fn load_error(path: &Path) -> String {
    let e = load_wav_16k_mono(path)
        .expect_err("expected an error")
        .to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn mel_of_fixture_clips_matches_the_qwen3_omni_processor_within_1e_4() {
    for clip in ["short", "long"] {
        let samples = load_wav_16k_mono(&omni_fixture(&format!("{clip}.wav"))).unwrap();
        let mel = log_mel(&samples);
        let (shape, want) = reference_mel(clip);
        assert_eq!(shape, [mel.bins, mel.frames], "{clip}: (bins, frames)");
        let err = max_abs_diff(&mel.data, &want);
        println!(
            "{clip}: {} frames, max |ours - reference| = {err:.3e}",
            mel.frames
        );
        assert!(
            err <= MEL_ABS,
            "{clip}: max abs error {err:.3e} exceeds {MEL_ABS:.0e}"
        );
    }
}

#[test]
fn fixture_sample_and_frame_counts_equal_the_reference() {
    for clip in ["short", "long"] {
        let r = reference_audio(clip);
        let samples = load_wav_16k_mono(&omni_fixture(&format!("{clip}.wav"))).unwrap();
        assert_eq!(
            samples.len() as u64,
            r["samples"].as_u64().unwrap(),
            "{clip} samples"
        );
        // floor(samples / 160): the processor's unpadded count, not the padded path's ceil
        let mel = log_mel(&samples);
        assert_eq!(
            mel.frames as u64,
            r["mel_frames"].as_u64().unwrap(),
            "{clip} frames"
        );
        assert_eq!(mel.bins, 128);
        assert_eq!(mel.data.len(), mel.bins * mel.frames);
    }
}

#[test]
fn wav_at_16k_mono_comes_back_bit_exact_as_int16_over_32768() {
    let path = omni_fixture("short.wav");
    let ours = load_wav_16k_mono(&path).unwrap();
    let mut reader = hound::WavReader::open(&path).unwrap();
    let want: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let bit_identical = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    assert!(
        bit_identical(&ours, &want),
        "load_wav_16k_mono changed 16 kHz mono samples"
    );
    let again = to_16k_mono(&want, SAMPLE_RATE, 1).unwrap();
    assert!(
        bit_identical(&again, &want),
        "to_16k_mono changed 16 kHz mono samples"
    );
}

#[test]
fn stereo_44k_fixture_converts_to_a_mel_close_to_the_16k_original() {
    let original = load_wav_16k_mono(&omni_fixture("short.wav")).unwrap();
    let started = Instant::now();
    let converted = load_wav_16k_mono(&omni_fixture("short_44k_stereo.wav")).unwrap();
    let load_time = started.elapsed();
    let r = reference_audio("short_44k_stereo");
    assert_eq!(
        converted.len() as u64,
        r["sox_back_to_16k_samples"].as_u64().unwrap()
    );

    let diff_rms = (original
        .iter()
        .zip(&converted)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / original.len() as f64)
        .sqrt();
    let signal_rms =
        (original.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() / original.len() as f64).sqrt();
    let snr_db = 20.0 * (signal_rms / diff_rms).log10();

    let (_, want) = reference_mel("short");
    let mel = log_mel(&converted);
    let mean = mean_abs_diff(&mel.data, &want);
    let max = max_abs_diff(&mel.data, &want);
    println!(
        "44.1 kHz stereo -> 16 kHz: load {load_time:?}, waveform SNR {:.1} dB, mel mean |diff| \
         {mean:.4} max {max:.3} (sox: mean {}, max {})",
        snr_db,
        r["sox_back_to_16k_mel_mean_abs_diff_vs_mel_short"],
        r["sox_back_to_16k_mel_max_abs_diff_vs_mel_short"],
    );
    // The round trip 16 k -> 44.1 k (sox) -> 16 k (us) loses what lies above the two low-pass
    // filters' passbands (~95% of 8 kHz), and that edge content bounds the waveform SNR: 41 dB
    // with our 256-tap sinc (47 dB with 1024 taps, measured). Output misaligned by rubato's
    // native 0.64-sample offset measured 12 dB, so 30 dB catches a time shift on real speech.
    assert!(
        snr_db > 30.0,
        "waveform SNR {snr_db:.1} dB after the round trip"
    );
    // In the mel, the log floor turns tiny differences in near-silent frames into large ones
    // (sox's own round trip: max 0.47), so the maximum says little; the mean does. sox gives
    // 0.0018, we measured 0.0029; 0.01 leaves ~3x for another good resampler, and gross errors
    // land far above it: summing instead of averaging the channels multiplies the power by 4,
    // +0.15 on every value. (The mel barely sees sub-sample shifts: the misaligned output above
    // measured 0.0036, which is why the SNR bound is there.)
    assert!(
        mean < 0.01,
        "mel mean abs difference {mean:.4} after resampling"
    );
}

/// Output sample j of the resampler must sit at input time j · rate / 16000. A Gaussian pulse
/// (sigma 1 ms: its spectrum is negligible long before the lowest passband edge, 3.8 kHz) is
/// reproduced to ~1e-5 when aligned; a shift of d output samples costs about its steepest slope
/// (0.86 / sigma) times d / 16000 s, 5e-3 for d = 0.1, so the bound 1e-3 catches shifts of
/// ~0.02 samples and more.
#[test]
fn resampling_puts_each_output_sample_at_its_input_time() {
    let pulses = |t: f64| {
        let g = |centre: f64, sigma: f64| (-((t - centre) / sigma).powi(2) / 2.0).exp();
        0.5 * g(0.0123, 0.001) - 0.3 * g(0.2, 0.0015)
    };
    for rate in [8000, 11025, 22050, 37800, 44100, 48000, 96000] {
        let n = (rate as f64 * 0.25).round() as usize;
        let input: Vec<f32> = (0..n)
            .map(|i| pulses(i as f64 / rate as f64) as f32)
            .collect();
        let out = to_16k_mono(&input, rate, 1).unwrap();
        let wanted = (n as f64 * 16000.0 / rate as f64).round() as usize;
        assert_eq!(out.len(), wanted, "{rate} Hz: output length");
        let err = out
            .iter()
            .enumerate()
            .map(|(j, &y)| (y as f64 - pulses(j as f64 / 16000.0)).abs())
            .fold(0.0, f64::max);
        println!("{rate} Hz -> 16 kHz: max error vs the ideal samples {err:.2e}");
        assert!(
            err < 1e-3,
            "{rate} Hz: max error {err:.2e}, output is misaligned or distorted"
        );
    }
}

#[test]
fn text_file_named_wav_is_rejected_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wav");
    std::fs::write(&path, "this is not audio, just a text file\n").unwrap();
    let e = load_error(&path);
    assert!(e.contains("not a valid WAV file"), "{e}");
}

#[test]
fn truncated_wav_is_rejected_whether_cut_in_the_header_or_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.wav");
    write_int_wav(
        &whole,
        int_spec(16000, 1, 16),
        &sine_i16(16000, 0.5, 440.0, 0.5),
    );
    let bytes = std::fs::read(&whole).unwrap();
    assert_eq!(&bytes[36..40], b"data", "hound writes a 44-byte header");
    // inside RIFF/WAVE, the fmt chunk, the data chunk's header, then half-way through the data
    for cut in [6, 30, 42, bytes.len() / 2] {
        let path = dir.path().join(format!("cut_at_{cut}.wav"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load_error(&path);
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
}

#[test]
fn missing_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    load_error(&dir.path().join("nowhere.wav"));
}

#[test]
fn wav_with_no_samples_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.wav");
    write_int_wav(&path, int_spec(16000, 1, 16), &[]);
    let e = load_error(&path);
    assert!(e.contains("contains no audio"), "{e}");
}

#[test]
fn header_with_zero_channels_or_zero_rate_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_int_wav(
        &good,
        int_spec(16000, 1, 16),
        &sine_i16(16000, 0.1, 440.0, 0.5),
    );
    let bytes = std::fs::read(&good).unwrap();
    // canonical header: channels at byte 22 (u16), sample rate at 24 and byte rate at 28 (u32;
    // hound rejects a byte rate inconsistent with the sample rate before we see it)
    let mut zero_channels = bytes.clone();
    zero_channels[22..24].fill(0);
    let mut zero_rate = bytes.clone();
    zero_rate[24..32].fill(0);
    for (name, data, expect) in [
        ("zero_channels.wav", zero_channels, "zero channels"),
        ("zero_rate.wav", zero_rate, "0 Hz"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let e = load_error(&path);
        assert!(e.contains(expect), "{name}: {e}");
    }
}

#[test]
fn float_wav_with_a_nan_sample_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.wav");
    write_float_wav(&path, 16000, &[0.0, 0.5, f32::NAN, 0.1]);
    let e = load_error(&path);
    assert!(e.contains("sample 2"), "{e}");
}

#[test]
fn every_integer_depth_and_float_read_to_the_same_scale() {
    let dir = tempfile::tempdir().unwrap();
    for bits in [8u16, 16, 24, 32] {
        let full = 1i64 << (bits - 1);
        let ints = [-full, -full / 2, 0, full / 4, full - 1];
        let path = dir.path().join(format!("int{bits}.wav"));
        let samples: Vec<i32> = ints.iter().map(|&v| v as i32).collect();
        write_int_wav(&path, int_spec(16000, 1, bits), &samples);
        let got = load_wav_16k_mono(&path).unwrap();
        let want: Vec<f32> = ints
            .iter()
            .map(|&v| (v as f64 / full as f64) as f32)
            .collect();
        assert_eq!(got, want, "{bits}-bit");
        assert_eq!(got[0], -1.0);
    }
    let floats = [-1.0f32, -0.25, 0.0, 0.123_456_79, 0.999];
    let path = dir.path().join("float32.wav");
    write_float_wav(&path, 16000, &floats);
    assert_eq!(load_wav_16k_mono(&path).unwrap(), floats);
}

#[test]
fn eight_bit_and_8_khz_wavs_load_and_convert() {
    let dir = tempfile::tempdir().unwrap();
    // 8-bit at 44.1 kHz: scaled by 1/128, then resampled
    let eight_bit = dir.path().join("u8_44k.wav");
    let samples: Vec<i32> = sine_i16(44100, 0.5, 300.0, 0.5)
        .iter()
        .map(|s| s / 256)
        .collect();
    write_int_wav(&eight_bit, int_spec(44100, 1, 8), &samples);
    let out = load_wav_16k_mono(&eight_bit).unwrap();
    assert_eq!(out.len(), 8000);
    let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.5).abs() < 0.02, "8-bit peak {peak}");

    // 8 kHz 16-bit: upsampled 2x, the sine survives
    let narrow = dir.path().join("pcm16_8k.wav");
    write_int_wav(
        &narrow,
        int_spec(8000, 1, 16),
        &sine_i16(8000, 0.5, 440.0, 0.5),
    );
    let out = load_wav_16k_mono(&narrow).unwrap();
    assert_eq!(out.len(), 8000);
    let err = out
        .iter()
        .enumerate()
        .skip(400) // the sine starts abruptly at t = 0: skip the filter's ringing
        .take(7200)
        .map(|(j, &y)| {
            let t = j as f64 / 16000.0;
            (y as f64 - 0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()).abs()
        })
        .fold(0.0, f64::max);
    assert!(err < 1e-3, "8 kHz -> 16 kHz sine error {err:.2e}");
}

#[test]
fn stereo_48k_wav_is_averaged_and_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stereo_48k.wav");
    // left: a 440 Hz sine at 0.6; right: the same at -0.2; the average is a 0.2 sine
    let left = sine_i16(48000, 0.5, 440.0, 0.6);
    let right = sine_i16(48000, 0.5, 440.0, -0.2);
    let interleaved: Vec<i32> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .collect();
    write_int_wav(&path, int_spec(48000, 2, 16), &interleaved);
    let out = load_wav_16k_mono(&path).unwrap();
    assert_eq!(out.len(), 8000);
    let err = out[400..7600]
        .iter()
        .enumerate()
        .map(|(j, &y)| {
            let t = (j + 400) as f64 / 16000.0;
            (y as f64 - 0.2 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()).abs()
        })
        .fold(0.0, f64::max);
    assert!(err < 1e-3, "48 kHz stereo -> 16 kHz mono error {err:.2e}");
}

#[test]
fn silent_wav_is_valid_and_its_mel_is_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silence.wav");
    write_int_wav(&path, int_spec(16000, 1, 16), &vec![0; 16000]);
    let samples = load_wav_16k_mono(&path).unwrap();
    let mel = log_mel(&samples);
    assert_eq!(mel.frames, 100);
    // log10(1e-10) = -10 everywhere, which is also the maximum: (-10 + 4) / 4
    assert!(
        mel.data.iter().all(|&x| x == -1.5),
        "silence must map to -1.5"
    );
}

#[test]
fn clips_shorter_than_one_hop_have_no_frames() {
    let noise: Vec<f32> = (0..400)
        .map(|i| (((i * 7919) % 211) as f32 / 211.0) - 0.5)
        .collect();
    let empty = log_mel(&noise[..159]);
    assert_eq!((empty.bins, empty.frames, empty.data.len()), (128, 0, 0));
    // 160..=200 samples: one frame, the reflect pad longer than the clip (reflected again)
    for len in [160, 200, 320] {
        let mel: Mel = log_mel(&noise[..len]);
        assert_eq!(mel.frames, len / 160);
        assert!(mel.data.iter().all(|x| x.is_finite()), "{len} samples");
    }
}

#[test]
fn to_16k_mono_rejects_impossible_input() {
    let one_second = vec![0.1f32; 16000];
    for (samples, rate, channels, expect) in [
        (&one_second[..], 16000, 0, "zero channels"),
        (&one_second[..], 0, 1, "0 Hz"),
        (&[][..], 16000, 1, "contains no audio"),
        (&one_second[..15999], 16000, 2, "whole frames"),
        (&one_second[..], 5_000_000, 1, "outside the supported"),
    ] {
        let e = to_16k_mono(samples, rate, channels)
            .expect_err(expect)
            .to_string();
        assert!(e.contains(expect), "{e}");
    }
}

/// 30 s of audio must take well under a second (one core, this profile's opt-level 2); the
/// bound only catches an accidental O(n²) path or a per-frame allocation storm.
#[test]
fn log_mel_of_30_seconds_takes_well_under_a_second() {
    let samples: Vec<f32> = (0..30 * 16000usize)
        .map(|i| (i as f32 * 0.05).sin() * 0.3 + (((i * 7919) % 211) as f32 / 2110.0))
        .collect();
    let started = Instant::now();
    let mel = log_mel(&samples);
    let mel_time = started.elapsed();
    assert_eq!(mel.frames, 3000);
    let stereo_44k: Vec<f32> = (0..30 * 44100 * 2)
        .map(|i| (i as f32 * 0.01).sin() * 0.3)
        .collect();
    let started = Instant::now();
    let resampled = to_16k_mono(&stereo_44k, 44100, 2).unwrap();
    let resample_time = started.elapsed();
    assert_eq!(resampled.len(), 30 * 16000);
    println!("30 s: log_mel {mel_time:?}, 44.1 kHz stereo -> 16 kHz mono {resample_time:?}");
    assert!(
        mel_time.as_secs_f64() < 0.5,
        "log_mel of 30 s took {mel_time:?}"
    );
}
