//! WAV input: any file hound reads (8/16/24/32-bit integer PCM or 32-bit float, any channel
//! count, any rate) as the 16 kHz mono f32 samples the mel front end expects.
//!
//! Integers are scaled by 2^-(bits-1), so 16-bit audio reads as `int16 / 32768` exactly as the
//! reference fixtures were read; channels are averaged; other rates go through rubato's windowed
//! sinc resampler. 16 kHz mono input comes back untouched, bit for bit.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use hound::{SampleFormat, WavReader};
use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
    calculate_cutoff,
};

use crate::error::{Error, Result};

/// The rate of everything after this module (preprocessor_config.json `sampling_rate`).
pub const SAMPLE_RATE: u32 = 16000;

/// Input rates accepted for resampling. Beyond these a file is almost certainly a broken header,
/// and the resampler's lead-in (see [`resample_to_16k`]) would grow with the rate.
const MIN_RATE: u32 = 1000;
const MAX_RATE: u32 = 1_000_000;

/// Reads a WAV file and converts it to 16 kHz mono. Errors name the file and what is wrong:
/// not a WAV, truncated, an unsupported encoding, no audio at all. Silence is not an error.
pub fn load_wav_16k_mono(path: &Path) -> Result<Vec<f32>> {
    let invalid = |msg: String| Error::Invalid(format!("{}: {msg}", path.display()));
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = WavReader::new(BufReader::new(file)).map_err(|e| match e {
        hound::Error::IoError(io) if !is_end_of_file(&io) => Error::io(path, io),
        other => invalid(header_error(other)),
    })?;
    let spec = reader.spec();
    let samples = read_samples(reader).map_err(invalid)?;
    convert(&samples, spec.sample_rate, spec.channels).map_err(invalid)
}

/// Converts interleaved samples (frames of `channels` values) at `rate` Hz to 16 kHz mono.
pub fn to_16k_mono(samples: &[f32], rate: u32, channels: u16) -> Result<Vec<f32>> {
    convert(samples, rate, channels).map_err(|msg| Error::Invalid(format!("audio input: {msg}")))
}

/// Whether a read error means the file ended early. hound reports a short file as
/// `UnexpectedEof` or as its own `ErrorKind::Other` ("Failed to read enough bytes."); only a
/// genuine I/O failure carries an OS error code.
fn is_end_of_file(e: &std::io::Error) -> bool {
    e.raw_os_error().is_none()
}

/// What went wrong while parsing a header, in words for the user.
fn header_error(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(_) => {
            "not a WAV file, or truncated: it ends inside the header".into()
        }
        hound::Error::FormatError(why) => format!("not a valid WAV file: {why}"),
        hound::Error::Unsupported => {
            "unsupported WAV encoding (readable: 8/16/24/32-bit integer PCM, 32-bit float)".into()
        }
        other => format!("not a readable WAV file: {other}"),
    }
}

/// All samples, interleaved, scaled to [-1, 1) for integers.
fn read_samples<R: std::io::Read>(
    mut reader: WavReader<R>,
) -> std::result::Result<Vec<f32>, String> {
    let spec = reader.spec();
    let declared = reader.len() as usize;
    let sample_error = |read: usize, e: hound::Error| match e {
        hound::Error::IoError(io) if is_end_of_file(&io) => format!(
            "truncated: the header declares {declared} samples but the file ends after {read}"
        ),
        other => format!("cannot read sample {read}: {other}"),
    };
    // The declared length comes from the file; cap the reservation so a lying header cannot
    // reserve gigabytes before the read fails.
    let mut out = Vec::with_capacity(declared.min(1 << 24));
    match spec.sample_format {
        SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let s = s.map_err(|e| sample_error(out.len(), e))?;
                if !s.is_finite() {
                    return Err(format!("sample {} is {s}, not a finite number", out.len()));
                }
                out.push(s);
            }
        }
        SampleFormat::Int => {
            // Exact power of two: int16 / 32768 is bit-identical to the reference's reading.
            let scale = 0.5f64.powi(spec.bits_per_sample as i32 - 1);
            for s in reader.samples::<i32>() {
                let s = s.map_err(|e| sample_error(out.len(), e))?;
                out.push((s as f64 * scale) as f32);
            }
        }
    }
    Ok(out)
}

fn convert(samples: &[f32], rate: u32, channels: u16) -> std::result::Result<Vec<f32>, String> {
    if channels == 0 {
        return Err("zero channels".into());
    }
    if rate == 0 {
        return Err("sample rate is 0 Hz".into());
    }
    if samples.is_empty() {
        return Err("contains no audio (0 samples)".into());
    }
    let channels = channels as usize;
    if !samples.len().is_multiple_of(channels) {
        return Err(format!(
            "{} samples do not make whole frames of {channels} channels",
            samples.len()
        ));
    }
    if rate != SAMPLE_RATE && !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!(
            "sample rate {rate} Hz is outside the supported {MIN_RATE}..={MAX_RATE} Hz"
        ));
    }
    let mono = if channels == 1 {
        samples.to_vec()
    } else {
        samples
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    if rate == SAMPLE_RATE {
        return Ok(mono);
    }
    resample(&mono, rate, SAMPLE_RATE).map_err(|e| format!("resampling {rate} Hz to 16 kHz: {e}"))
}

/// Band-limited resampling of a whole clip from `rate` to `to` Hz (16 kHz for the encoder, the
/// sound card's rate for earcons), time-aligned: output sample j sits at input time
/// `j · rate / to` (as sox does), and there are `round(len · to / rate)` of them.
///
/// Quality: a 256-tap Blackman-Harris windowed sinc, 256-times oversampled with cubic
/// interpolation between the oversampled points (rubato's recommended high-quality setting);
/// the passband reaches ~95% of the lower Nyquist frequency.
///
/// Alignment: rubato's `SincFixedIn` (0.16) puts its output k at input time `(k + 1)·r − 1`,
/// r = rate / to (measured; tests/audio_frontend.rs checks it), which for most ratios is not
/// a whole number of samples off the ideal `k·r`. With r = p / q in lowest terms, prepending
/// p − 1 zeros and dropping the first q − 1 outputs moves output q − 1 + j onto `j·r` exactly.
pub fn resample(mono: &[f32], rate: u32, to: u32) -> std::result::Result<Vec<f32>, String> {
    if rate == to {
        return Ok(mono.to_vec());
    }
    let common = gcd(rate, to);
    let (p, q) = ((rate / common) as usize, (to / common) as usize);
    let wanted = ((mono.len() as u64 * to as u64 + rate as u64 / 2) / rate as u64) as usize;

    let params = sinc_params(256, SincInterpolationType::Cubic, 256);
    let chunk = 4096;
    let ratio = to as f64 / rate as f64;
    let mut resampler =
        SincFixedIn::<f64>::new(ratio, 1.0, params, chunk, 1).map_err(|e| e.to_string())?;

    let input: Vec<f64> = std::iter::repeat_n(0.0, p - 1)
        .chain(mono.iter().map(|&s| s as f64))
        .collect();
    let skip = q - 1;
    let mut out: Vec<f64> = Vec::with_capacity(skip + wanted + chunk);
    let mut pieces = input.chunks_exact(chunk);
    for piece in &mut pieces {
        out.extend(
            &resampler
                .process(&[piece], None)
                .map_err(|e| e.to_string())?[0],
        );
    }
    let rest = pieces.remainder();
    out.extend(
        &resampler
            .process_partial(Some(&[rest]), None)
            .map_err(|e| e.to_string())?[0],
    );
    // The filter's tail (and, when upsampling, many outputs per input) is still inside the
    // resampler: flush with silence until every wanted sample has come out.
    while out.len() < skip + wanted {
        let tail = resampler
            .process_partial::<&[f64]>(None, None)
            .map_err(|e| e.to_string())?;
        if tail[0].is_empty() {
            return Err("the resampler stopped producing output".into());
        }
        out.extend(&tail[0]);
    }
    Ok(out[skip..skip + wanted].iter().map(|&s| s as f32).collect())
}

/// A Blackman-Harris windowed sinc of `sinc_len` taps with its matching cutoff, oversampled
/// `oversampling` times (rubato's parameters, shared by the file and streaming resamplers).
pub fn sinc_params(
    sinc_len: usize,
    interpolation: SincInterpolationType,
    oversampling: usize,
) -> SincInterpolationParameters {
    let window = WindowFunction::BlackmanHarris2;
    SincInterpolationParameters {
        sinc_len,
        f_cutoff: calculate_cutoff(sinc_len, window),
        interpolation,
        oversampling_factor: oversampling,
        window,
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
