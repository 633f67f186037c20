//! The AuT audio encoder on the CPU against transformers' `Qwen3OmniMoeAudioEncoder` on the
//! tiny Omni checkpoint (tests/fixtures/omni/tiny): the intermediates and outputs for both
//! clips from the reference mels, the token-count formula, the attention windows, GELU's
//! accuracy, and bad inputs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{assert_close, reference_store, rel_err, repo_root, tensor, tol};
use qwen_omni::models::audio_encoder::aut::{AudioEncoder, AudioEncoderConfig, AudioTrace, gelu};
use qwen_omni::weights::{SafetensorsWriter, TensorSpec, WeightStore};

const PREFIX: &str = "thinker.audio_tower.";

/// Every output and intermediate: max |ours − ref| / max |ref|. Both sides decode the same
/// bf16 weights exactly and compute in f32; they differ in summation order, in exp (softmax)
/// and in erf (ours: a fit with relative error ≤ 1.2e-7). That is the situation of the text
/// model's budget, so the same 1e-5 applies. Measured 2026-11-27: at most 5.5e-7 (short
/// clip, conv_out); outputs 4.1e-7 (short) and 4.9e-7 (long). A misplaced position, a missed
/// window or a wrong padding moves the outputs by 1e-2 or more (see the tests below).
const BUDGET: f32 = tol::F32_VS_F32_REL;

/// GELU against an erfc computed to ~1e-14 here: the fit's 1.05e-7 (measured against
/// Python's math.erfc) plus one f32 rounding of the result (2^-24 ≈ 6e-8), with a little room.
const GELU_REL: f64 = 2e-7;

fn tiny_dir() -> PathBuf {
    repo_root().join("tests/fixtures/omni/tiny")
}

fn load_encoder(dir: &Path) -> AudioEncoder {
    let cfg = AudioEncoderConfig::load(dir).unwrap_or_else(|e| panic!("{e}"));
    let store = WeightStore::open(dir).unwrap_or_else(|e| panic!("{e}"));
    AudioEncoder::load(&store, PREFIX, cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// A reference mel (num_mel_bins, frames) and its frame count.
fn mel(refs: &WeightStore, clip: &str) -> (Vec<f32>, usize) {
    let name = format!("mel.{clip}");
    let frames = refs.get(&name).unwrap().shape[1];
    (tensor(refs, &name), frames)
}

/// Frames start..end of a bin-major mel.
fn frames_of(mel: &[f32], frames: usize, start: usize, end: usize) -> Vec<f32> {
    mel.chunks_exact(frames)
        .flat_map(|bin| bin[start..end].iter().copied())
        .collect()
}

fn check_clip(enc: &AudioEncoder, refs: &WeightStore, clip: &str) {
    let (mel, frames) = mel(refs, clip);
    let mut trace = AudioTrace::default();
    let start = Instant::now();
    let out = enc.forward_traced(&mel, frames, Some(&mut trace)).unwrap();
    let took = start.elapsed();
    let mut report = vec![format!("{clip} ({frames} frames, {took:.2?})")];
    let mut check = |what: &str, ours: &[f32]| {
        let want = tensor(refs, &format!("audio.{clip}{what}"));
        report.push(format!("{what}: {:.2e}", rel_err(ours, &want)));
        assert_close(&format!("audio.{clip}{what}"), ours, &want, BUDGET);
    };
    check(".conv_out", &trace.conv_out);
    check(".embed", &trace.embed);
    for (l, h) in trace.layers.iter().enumerate() {
        check(&format!(".layer.{l}"), h);
    }
    check("", &out);
    eprintln!("{}", report.join("  "));
}

#[test]
fn both_clips_match_transformers_at_every_stage() {
    let enc = load_encoder(&tiny_dir());
    let refs = reference_store(&tiny_dir());
    check_clip(&enc, &refs, "short");
    check_clip(&enc, &refs, "long");
}

#[test]
fn output_tokens_follows_the_reference_formula() {
    let cfg = AudioEncoderConfig::load(&tiny_dir()).unwrap();
    // reference clips, and the architecture brief §2.2: 1 s -> 13, 8 s -> 104, 12.34 s -> 161
    for (frames, tokens) in [
        (202, 27),
        (644, 84),
        (100, 13),
        (1, 1),
        (800, 104),
        (1234, 161),
    ] {
        assert_eq!(cfg.output_tokens(frames), tokens, "{frames} frames");
    }
    // 13·⌊F/100⌋ + ⌈(F mod 100)/8⌉ over a range, including F mod 100 = 0
    for frames in 0..1000usize {
        let want = 13 * (frames / 100) + (frames % 100).div_ceil(8);
        assert_eq!(cfg.output_tokens(frames), want, "{frames} frames");
    }
}

#[test]
fn output_tokens_is_the_row_count_for_other_chunk_sizes_too() {
    // The reference hard-codes 13 tokens per chunk (right only for n_window 50); ours derives
    // it. With n_window 25 a 50-frame chunk gives 25 -> 13 -> 7 tokens.
    let dir = tiny_dir();
    let store = WeightStore::open(&dir).unwrap();
    let refs = reference_store(&dir);
    let (mel, frames) = mel(&refs, "short");
    for (n_window, n_window_infer) in [(50, 400), (25, 400)] {
        let mut cfg = AudioEncoderConfig::load(&dir).unwrap();
        cfg.n_window = n_window;
        cfg.n_window_infer = n_window_infer;
        let enc = AudioEncoder::load(&store, PREFIX, cfg.clone()).unwrap();
        for f in [1, 7, 8, 9, 49, 50, 51, 99, 100, 101, 150, 202] {
            let out = enc.forward(&frames_of(&mel, frames, 0, f), f).unwrap();
            assert_eq!(
                out.len(),
                cfg.output_tokens(f) * cfg.output_dim,
                "n_window {n_window}, {f} frames"
            );
        }
    }
    let mut cfg = AudioEncoderConfig::load(&dir).unwrap();
    cfg.n_window = 25;
    assert_eq!(cfg.tokens_per_chunk(), 7);
    assert_eq!(cfg.output_tokens(202), 4 * 7 + 1);
}

#[test]
fn each_attention_window_of_the_long_clip_equals_encoding_its_frames_alone() {
    // n_window_infer 400 frames = 52 tokens: the long clip's windows are tokens [0, 52) from
    // frames [0, 400) and [52, 84) from frames [400, 644). Both conv chunks and positions
    // restart at those frame boundaries, so each window must equal an encoding of its own
    // frames; without the window the first rows would also see tokens 52..84.
    let enc = load_encoder(&tiny_dir());
    let refs = reference_store(&tiny_dir());
    let (mel, frames) = mel(&refs, "long");
    let width = enc.config.output_dim;
    let whole = enc.forward(&mel, frames).unwrap();
    let first = enc.forward(&frames_of(&mel, frames, 0, 400), 400).unwrap();
    let second = enc
        .forward(&frames_of(&mel, frames, 400, 644), 244)
        .unwrap();
    assert_eq!(first.len(), 52 * width);
    assert_eq!(second.len(), 32 * width);
    let e1 = rel_err(&whole[..52 * width], &first);
    let e2 = rel_err(&whole[52 * width..], &second);
    eprintln!("window 0 vs alone: {e1:.2e}, window 1 vs alone: {e2:.2e}");
    assert!(e1 <= BUDGET && e2 <= BUDGET, "{e1:e} {e2:e}");
}

#[test]
fn one_window_over_the_whole_long_clip_would_not_match_the_reference() {
    // n_window_infer 800 (the real model's 8 s) puts all 84 tokens in one window; the
    // reference says that moves outputs by up to 0.081 (reference.json
    // `unwindowed_max_abs_diff`), so the windowing is what makes the long clip match.
    let dir = tiny_dir();
    let mut cfg = AudioEncoderConfig::load(&dir).unwrap();
    cfg.n_window_infer = 800;
    let enc = AudioEncoder::load(&WeightStore::open(&dir).unwrap(), PREFIX, cfg).unwrap();
    let refs = reference_store(&dir);
    let (mel, frames) = mel(&refs, "long");
    let out = enc.forward(&mel, frames).unwrap();
    let e = rel_err(&out, &tensor(&refs, "audio.long"));
    eprintln!("unwindowed vs reference: {e:.2e}");
    assert!(
        e > 100.0 * BUDGET,
        "unwindowed output within {e:e} of the windowed reference"
    );
}

/// Row 5 (the last) of transformers 5.24's output for the first 44 frames of `mel.short`
/// encoded alone: `Qwen3OmniMoeAudioEncoder` (eager, f32) with the tiny checkpoint's
/// audio_tower weights, `forward(input_features=mel.short[:, :44], feature_lens=[44])`. A clip
/// shorter than one chunk is padded to its own length, not to 100 frames (padding it to 100
/// changes this output by 0.037, 1.7% of its scale).
const SHORTER_THAN_A_CHUNK_LAST_ROW: [f32; 64] = [
    -1.5593312,
    0.94533694,
    -0.20892876,
    0.11389628,
    0.28195065,
    0.39672077,
    -0.83251613,
    0.02795218,
    0.65850013,
    0.26447105,
    -0.7822914,
    -1.1189265,
    -0.019768476,
    1.4733198,
    0.8702464,
    -0.871359,
    0.6943831,
    -1.524583,
    -1.7232227,
    0.042120904,
    -0.74420905,
    -0.6193448,
    -0.4724013,
    0.50968707,
    -0.9263178,
    0.12256825,
    -0.3221117,
    0.97860575,
    0.61415213,
    0.68060744,
    -0.64557254,
    0.3032039,
    -0.5021744,
    0.72417337,
    0.42558554,
    -0.49396306,
    -0.3574277,
    -0.88679075,
    0.68628514,
    0.5373813,
    -1.7563069,
    0.021948889,
    0.0030973107,
    0.6018265,
    0.6517592,
    1.6457994,
    1.591667,
    0.4701041,
    -0.73282176,
    -1.0474731,
    0.19781244,
    -0.9316305,
    -0.7265148,
    -0.8612009,
    -0.16777503,
    1.1126437,
    -0.7199584,
    -1.6987396,
    0.5011928,
    0.16494793,
    1.4728843,
    -0.6522263,
    -0.2249046,
    0.91003585,
];

#[test]
fn a_clip_shorter_than_one_chunk_is_padded_like_the_reference() {
    let enc = load_encoder(&tiny_dir());
    let refs = reference_store(&tiny_dir());
    let (mel, frames) = mel(&refs, "short");
    let out = enc.forward(&frames_of(&mel, frames, 0, 44), 44).unwrap();
    let width = enc.config.output_dim;
    assert_eq!(out.len(), 6 * width);
    let last = &out[5 * width..];
    let e = rel_err(last, &SHORTER_THAN_A_CHUNK_LAST_ROW);
    eprintln!("44-frame clip, last row: {e:.2e}");
    assert!(e <= BUDGET, "{e:e}");
}

// ---------------------------------------------------------------------------------------
// GELU
// ---------------------------------------------------------------------------------------

/// erfc in f64 to ~1e-14: the Maclaurin series of erf for |x| < 2 (terms peak near 1.6 at
/// x = 2, so cancellation costs about one digit) and the Laplace continued fraction beyond.
fn erfc_reference(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc_reference(-x);
    }
    if x < 2.0 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        return 1.0 - sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated backwards
    let mut f = x;
    for k in (1..200).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

#[test]
fn gelu_has_erfs_accuracy_everywhere() {
    let mut worst = (0f64, 0f32);
    for i in -12_000..=12_000 {
        let x = i as f32 * 1e-3;
        let want = 0.5 * x as f64 * erfc_reference(-(x as f64) / std::f64::consts::SQRT_2);
        let got = gelu(x) as f64;
        if want != 0.0 {
            let e = ((got - want) / want).abs();
            if e > worst.0 {
                worst = (e, x);
            }
        }
    }
    eprintln!(
        "gelu worst relative error {:.2e} at x = {}",
        worst.0, worst.1
    );
    assert!(worst.0 <= GELU_REL, "{:e} at {}", worst.0, worst.1);
    assert_eq!(gelu(0.0), 0.0);
    assert_eq!(gelu(-30.0), -0.0);
    assert_eq!(gelu(30.0), 30.0);
}

// ---------------------------------------------------------------------------------------
// Bad input: clear errors, no panic
// ---------------------------------------------------------------------------------------

fn error_of<T>(r: qwen_omni::error::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mel_with_the_wrong_bin_count_zero_frames_or_nan_is_an_error() {
    let enc = load_encoder(&tiny_dir());
    let e = error_of(enc.forward(&vec![0.0; 80 * 50], 50));
    assert!(
        e.contains("128 bins") && e.contains("80.00 bins per frame"),
        "{e}"
    );
    let e = error_of(enc.forward(&vec![0.0; 128 * 50 + 1], 50));
    assert!(e.contains("6400 values, got 6401"), "{e}");
    let e = error_of(enc.forward(&[], 0));
    assert!(e.contains("no frames"), "{e}");
    let mut mel = vec![0.0; 128 * 50];
    mel[3 * 50 + 7] = f32::NAN;
    let e = error_of(enc.forward(&mel, 50));
    assert!(
        e.contains("bin 3, frame 7") && e.contains("not finite"),
        "{e}"
    );
}

/// A copy of the tiny checkpoint (config.json, model.safetensors) in a temp dir.
fn copy_tiny() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny_dir().join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

/// Rewrite dir/model.safetensors without the tensor `drop`.
fn drop_tensor(dir: &Path, drop: &str) {
    let path = dir.join("model.safetensors");
    let old = dir.join("old.safetensors");
    std::fs::rename(&path, &old).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&old, src.path().join("model.safetensors")).unwrap();
    let store = WeightStore::open(src.path()).unwrap();
    let kept: Vec<_> = store.tensors().filter(|t| t.name != drop).collect();
    assert_eq!(
        kept.len() + 1,
        store.tensors().count(),
        "{drop} was in the file"
    );
    let specs: Vec<TensorSpec> = kept
        .iter()
        .map(|t| TensorSpec::new(&t.name, t.dtype, &t.shape))
        .collect();
    let mut w = SafetensorsWriter::create(&path, &specs).unwrap();
    for t in &kept {
        w.write(t.bytes()).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_checkpoint_missing_an_audio_tensor_names_it() {
    let (_tmp, dir) = copy_tiny();
    let missing = "thinker.audio_tower.layers.1.self_attn.k_proj.bias";
    drop_tensor(&dir, missing);
    let cfg = AudioEncoderConfig::load(&dir).unwrap();
    let store = WeightStore::open(&dir).unwrap();
    let e = error_of(AudioEncoder::load(&store, PREFIX, cfg));
    assert!(e.contains(&format!("`{missing}` is missing")), "{e}");
}

#[test]
fn a_config_that_disagrees_with_the_weights_names_the_tensor_and_shapes() {
    let dir = tiny_dir();
    let mut cfg = AudioEncoderConfig::load(&dir).unwrap();
    cfg.downsample_hidden_size = 16;
    let e = error_of(AudioEncoder::load(
        &WeightStore::open(&dir).unwrap(),
        PREFIX,
        cfg,
    ));
    assert!(
        e.contains("thinker.audio_tower.conv2d1.weight") && e.contains("[16, 1, 3, 3]"),
        "{e}"
    );
}

/// Write dir/config.json after `edit` changed its parsed form.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn a_config_without_audio_config_is_a_clear_error() {
    let (_tmp, dir) = copy_tiny();
    edit_config(&dir, |v| {
        v["thinker_config"]
            .as_object_mut()
            .unwrap()
            .remove("audio_config");
    });
    let e = error_of(AudioEncoderConfig::load(&dir));
    assert!(
        e.contains("config.json") && e.contains("no `thinker_config.audio_config`"),
        "{e}"
    );
}

#[test]
fn missing_or_unsupported_audio_config_keys_are_named() {
    let (_tmp, dir) = copy_tiny();
    edit_config(&dir, |v| {
        v["thinker_config"]["audio_config"]
            .as_object_mut()
            .unwrap()
            .remove("d_model");
    });
    let e = error_of(AudioEncoderConfig::load(&dir));
    assert!(
        e.contains("config.json") && e.contains("audio_config: `d_model` is missing"),
        "{e}"
    );

    let text = std::fs::read_to_string(tiny_dir().join("config.json")).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let audio = &root["thinker_config"]["audio_config"];
    assert!(AudioEncoderConfig::from_json(audio).is_ok());
    let cases: [(&str, serde_json::Value, &str); 5] = [
        ("activation_function", "relu".into(), "only gelu"),
        (
            "encoder_attention_heads",
            5.into(),
            "multiple of `encoder_attention_heads`",
        ),
        ("n_window_infer", 450.into(), "multiple of 2 * `n_window`"),
        (
            "n_window",
            0.into(),
            "`n_window` must be a positive integer, found 0",
        ),
        (
            "num_mel_bins",
            "128".into(),
            "`num_mel_bins` must be a positive integer",
        ),
    ];
    for (key, value, want) in cases {
        let mut bad = audio.clone();
        bad[key] = value;
        let e = error_of(AudioEncoderConfig::from_json(&bad));
        assert!(e.contains(want), "{key}: {e}");
    }
}
