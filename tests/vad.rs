//! Utterance detection on the espeak clips: two questions with silence between them give
//! exactly two utterances in the right places, also under background noise; silence and a
//! click give none; pre-roll and hangover shape the boundaries.

use qwen_omni::config::Config;
use qwen_omni::models::audio_encoder::wav::load_wav_16k_mono;
use qwen_omni::models::sampler::Rng;
use qwen_omni::pipeline::vad::{Segmenter, VadEvent};

const RATE: u64 = 16000;

fn clip(name: &str) -> Vec<f32> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/omni")
        .join(name);
    load_wav_16k_mono(&p).unwrap()
}

/// (samples, [(start, end)] of each clip in the stream)
fn two_questions(noise: f32) -> (Vec<f32>, Vec<(u64, u64)>) {
    let mut s = vec![0f32; RATE as usize];
    let mut spans = Vec::new();
    for (name, gap) in [("short.wav", 1.2), ("long.wav", 1.0)] {
        let c = clip(name);
        spans.push((s.len() as u64, (s.len() + c.len()) as u64));
        s.extend(c);
        s.extend(vec![0f32; (gap * RATE as f64) as usize]);
    }
    let mut rng = Rng::new(3);
    for x in &mut s {
        *x += noise * (rng.next_f32() * 2.0 - 1.0);
    }
    (s, spans)
}

fn utterances(samples: &[f32], chunk: usize) -> Vec<(u64, u64)> {
    let mut seg = Segmenter::new(&Config::default().vad).unwrap();
    let mut ev = Vec::new();
    for c in samples.chunks(chunk) {
        seg.push(c, &mut ev);
    }
    seg.flush(&mut ev);
    ev.iter()
        .filter_map(|e| match e {
            VadEvent::Utterance {
                start,
                end,
                samples,
            } => {
                assert_eq!(samples.len() as u64, end - start);
                Some((*start, *end))
            }
            _ => None,
        })
        .collect()
}

fn check(found: &[(u64, u64)], spans: &[(u64, u64)], what: &str) {
    assert_eq!(found.len(), 2, "{what}: {found:?} for clips {spans:?}");
    for ((s, e), (cs, ce)) in found.iter().zip(spans) {
        // inside the clip give or take the pre-roll (300 ms) and hangover (700 ms) and the
        // silence espeak leaves at the clip's ends
        assert!(
            *s + RATE / 2 >= *cs && *s < *ce,
            "{what}: start {s} vs clip {cs}..{ce}"
        );
        assert!(
            *e <= *ce + RATE && *e > *cs,
            "{what}: end {e} vs clip {cs}..{ce}"
        );
    }
}

#[test]
fn two_questions_in_a_row_are_two_utterances() {
    let (s, spans) = two_questions(0.0);
    // the callback size must not matter
    for chunk in [160, 480, 1000, 4096] {
        check(
            &utterances(&s, chunk),
            &spans,
            &format!("chunks of {chunk}"),
        );
    }
}

#[test]
fn background_noise_does_not_make_or_merge_utterances() {
    // white noise at about -46 dBFS RMS (amplitude 0.005 uniform)
    let (s, spans) = two_questions(0.005);
    check(&utterances(&s, 480), &spans, "with noise");
}

#[test]
fn silence_and_a_click_are_not_speech() {
    assert!(utterances(&vec![0f32; 3 * RATE as usize], 480).is_empty());
    let mut s = vec![0f32; 2 * RATE as usize];
    for (i, x) in s[RATE as usize..RATE as usize + 160].iter_mut().enumerate() {
        *x = if i % 2 == 0 { 0.9 } else { -0.9 };
    }
    assert!(utterances(&s, 480).is_empty(), "a 10 ms click");
}

/// Background noise that fades in (a fan starting; recorded through PulseAudio in
/// tests/fixtures/omni/pulse_noise.wav), then a question over the noise: only the question is
/// an utterance. webrtc-vad alone takes the fade-in for seconds of speech; the noise gate
/// (vad.noise_margin_db) keeps it out, and turning the gate off brings the problem back.
#[test]
fn noise_that_fades_in_is_not_speech() {
    let noise = clip("pulse_noise.wav");
    let steady = &noise[noise.len() - 3 * RATE as usize..];
    let question = clip("short.wav");
    let mut s = noise.clone();
    let start = s.len() as u64;
    for (i, q) in question.iter().enumerate() {
        s.push(q + steady[i % steady.len()]);
    }
    let end = s.len() as u64;
    s.extend_from_slice(steady);
    let run = |margin_db: f32| {
        let mut cfg = Config::default().vad;
        cfg.noise_margin_db = margin_db;
        let mut seg = Segmenter::new(&cfg).unwrap();
        let mut ev = Vec::new();
        seg.push(&s, &mut ev);
        seg.flush(&mut ev);
        ev.iter()
            .filter_map(|e| match e {
                VadEvent::Utterance { start, end, .. } => Some((*start, *end)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let gated = run(Config::default().vad.noise_margin_db);
    assert_eq!(gated.len(), 1, "{gated:?}");
    let (s0, e0) = gated[0];
    // within the pre-roll (300 ms) and a frame of silence of the question
    assert!(
        s0 + 6000 >= start && s0 <= start + 480,
        "start {s0} vs {start}"
    );
    assert!(e0 + 4800 >= end && e0 <= end + 2 * 480, "end {e0} vs {end}");
    let ungated = run(0.0);
    assert!(
        ungated.len() != 1 || ungated[0].0 + 16000 < start,
        "without the gate the fade-in should count as speech: {ungated:?}"
    );
}
