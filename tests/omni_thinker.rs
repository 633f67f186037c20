//! The Qwen3-Omni thinker against transformers on the tiny checkpoint (tests/fixtures/omni/tiny):
//! prompt assembly with audio placeholders, logits with the audio rows scattered in (from the
//! reference encoder output and end to end from the WAV), 32 greedy ids, and a second turn that
//! continues the first turn's cache.

mod common;

use std::ops::ControlFlow;

use common::{assert_close, reference_store, tensor, tol};
use qwen_omni::models::audio_encoder::wav::load_wav_16k_mono;
use qwen_omni::models::generation::{StopRule, TextModel, generate};
use qwen_omni::models::omni::OmniThinker;
use qwen_omni::models::qwen3::{Logits, Trace};
use qwen_omni::models::sampler::{Sampler, SamplingParams};

fn dir() -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/omni/tiny")
}

fn wav(name: &str) -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/omni").join(name)
}

#[derive(serde::Deserialize)]
struct Ref {
    prompts: std::collections::HashMap<String, Prompt>,
}

#[derive(serde::Deserialize)]
struct Prompt {
    ids: Vec<u32>,
    greedy: Vec<u32>,
    #[serde(default)]
    prompt_before_expansion: Vec<u32>,
    #[serde(default)]
    logits_from: usize,
    #[serde(default)]
    history_answer_tokens: usize,
}

fn reference() -> Ref {
    serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap()).unwrap()
}

fn greedy_sampler() -> Sampler {
    Sampler::new(SamplingParams {
        greedy: true,
        ..Default::default()
    })
    .unwrap()
}

fn run_greedy(m: &mut dyn TextModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let stop = StopRule {
        max_new_tokens: n,
        stop_ids: vec![],
    };
    generate(m, prompt, &mut greedy_sampler(), &stop, |_| {
        Ok(ControlFlow::Continue(()))
    })
    .unwrap()
    .generated
}

#[test]
fn prompts_are_assembled_as_the_reference_processor_expands_them() {
    let th = OmniThinker::load(&dir()).unwrap();
    let r = reference();
    let text = &r.prompts["text"].ids;
    // <|im_start|>user\n {2 text ids} <|im_end|>\n<|im_start|>assistant\n
    assert_eq!(th.tokens.user_turn(None, &text[3..5]), *text);
    let a = &r.prompts["audio_prompt"];
    let n = a.ids.iter().filter(|&&i| i == th.tokens.audio_pad).count();
    assert_eq!(n, 27);
    assert_eq!(
        th.tokens
            .user_turn(Some(n), &a.ids[4 + n + 1..a.ids.len() - 5]),
        a.ids
    );
    assert_eq!(
        th.tokens
            .user_turn(Some(1), &a.ids[4 + n + 1..a.ids.len() - 5]),
        a.prompt_before_expansion
    );
    assert!(
        th.enable_audio_output,
        "the fixture asks for speech output; text is still served"
    );
}

#[test]
fn audio_prompt_logits_match_with_the_reference_encoder_rows() {
    let th = OmniThinker::load(&dir()).unwrap();
    let r = reference();
    let store = reference_store(&dir());
    let p = &r.prompts["audio_prompt"];
    let x = th.embed(&p.ids, &tensor(&store, "audio.short")).unwrap();
    let mut cache = th.text.new_cache(64);
    let mut trace = Trace::default();
    let logits = th
        .text
        .forward_embeds(x, &mut cache, Logits::All, Some(&mut trace))
        .unwrap();
    for (l, h) in trace.hidden.iter().enumerate() {
        let want = tensor(&store, &format!("audio_prompt.hidden.{l}"));
        assert_close(&format!("hidden.{l}"), h, &want, tol::F32_VS_F32_REL);
    }
    let want = tensor(&store, "audio_prompt.logits");
    assert_close("audio_prompt logits", &logits, &want, tol::F32_VS_F32_REL);
}

/// End to end from the WAV file: mel (within 1e-4 of the reference's), our encoder, the
/// decoder. The mel's error passes through the encoder, so the logits get the audio tests'
/// budget; the greedy ids (margin 0.198 here) must be the reference's exactly.
#[test]
fn spoken_question_gives_the_reference_greedy_answer() {
    assert_spoken_answer(&OmniThinker::load(&dir()).unwrap());
}

/// short.wav through `th`'s encoder and decoder gives the reference's greedy ids.
fn assert_spoken_answer(th: &OmniThinker) {
    let r = reference();
    let p = &r.prompts["audio_prompt"];
    let rows = th
        .encode_audio(&load_wav_16k_mono(&wav("short.wav")).unwrap())
        .unwrap();
    let mut s = th.session(p.ids.len() + 40);
    s.attach_audio(rows);
    assert_eq!(run_greedy(&mut s, &p.ids, p.greedy.len()), p.greedy);
}

/// A checkpoint whose config asks for speech output (`enable_audio_output`) but that holds no
/// talker or code2wav tensors (a thinker-only export) still answers in text: the same greedy
/// ids from a copy of the fixture with those tensors removed.
#[test]
fn a_checkpoint_without_talker_tensors_still_serves_text() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir().join("config.json"), tmp.path().join("config.json")).unwrap();
    let bytes = std::fs::read(dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("thinker."))
        .collect();
    assert!(
        kept.len() < st.len(),
        "the fixture has talker / code2wav tensors to drop"
    );
    safetensors::tensor::serialize_to_file(kept, None, &tmp.path().join("model.safetensors"))
        .unwrap();
    let th = OmniThinker::load(tmp.path()).unwrap();
    assert!(
        th.enable_audio_output,
        "the config still asks for speech output"
    );
    assert_spoken_answer(&th);
}

#[test]
fn a_second_turn_continues_the_first_turns_cache() {
    let th = OmniThinker::load(&dir()).unwrap();
    let r = reference();
    let store = reference_store(&dir());
    let t1 = &r.prompts["audio_prompt"];
    let t2 = &r.prompts["turn2"];
    let from = t2.logits_from;
    // turn 1: the prompt, the first answer tokens and <|im_end|>\n, as the history holds it
    let mut hist = t1.ids.clone();
    hist.extend_from_slice(&t1.greedy[..t2.history_answer_tokens]);
    hist.extend(th.tokens.end_of_reply());
    assert_eq!(hist, t2.ids[..from]);
    let mut cache = th.text.new_cache(t2.ids.len());
    let x1 = th.embed(&hist, &tensor(&store, "audio.short")).unwrap();
    th.text
        .forward_embeds(x1, &mut cache, Logits::Last, None)
        .unwrap();
    let x2 = th
        .embed(&t2.ids[from..], &tensor(&store, "audio.long"))
        .unwrap();
    let logits = th
        .text
        .forward_embeds(x2, &mut cache, Logits::All, None)
        .unwrap();
    assert_close(
        "turn2 logits",
        &logits,
        &tensor(&store, "turn2.logits"),
        tol::F32_VS_F32_REL,
    );
}

#[test]
fn placeholder_count_must_match_the_audio_rows() {
    let th = OmniThinker::load(&dir()).unwrap();
    let ids = th.tokens.user_turn(Some(5), &[10]);
    let h = th.text.config.hidden_size;
    let e = th.embed(&ids, &vec![0.0; 4 * h]).unwrap_err().to_string();
    assert!(
        e.contains("5 audio placeholders") && e.contains("4 rows"),
        "{e}"
    );
}

fn omni(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("omni runs")
}

/// `omni ask --wav ... --greedy --print-ids` reproduces the reference, from the 16 kHz clip
/// and from its 44.1 kHz stereo copy (converted on load), on both engines.
#[test]
fn omni_ask_answers_a_spoken_question_with_the_reference_ids() {
    let r = reference();
    let want: Vec<String> = r.prompts["audio_prompt"]
        .greedy
        .iter()
        .map(|i| i.to_string())
        .collect();
    let model = dir();
    for (clip, backend) in [
        ("short.wav", "cpu"),
        ("short_44k_stereo.wav", "cpu"),
        ("short.wav", "gpu"),
    ] {
        let out = omni(&[
            "ask",
            "--model",
            model.to_str().unwrap(),
            "--wav",
            wav(clip).to_str().unwrap(),
            "--prompt-ids",
            "66,196,354,69",
            "--greedy",
            "--print-ids",
            "--max-tokens",
            "32",
            "--backend",
            backend,
        ]);
        assert!(
            out.status.success(),
            "{clip} {backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>(),
            want,
            "{clip} on {backend}"
        );
    }
}

#[test]
fn omni_ask_rejects_bad_audio_and_non_omni_models_clearly() {
    let model = dir();
    let readme = common::repo_root().join("README.md");
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec!["--wav", readme.to_str().unwrap(), "--print-ids"],
            "not a valid WAV",
        ),
        (
            vec!["--wav", "/nonexistent.wav", "--print-ids"],
            "/nonexistent.wav",
        ),
        (vec!["--print-ids"], "nothing to ask"),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "ask",
            "--model",
            model.to_str().unwrap(),
            "--backend",
            "cpu",
        ];
        args.extend(extra);
        let out = omni(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{needle}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let moe = common::repo_root().join("tests/fixtures/qwen3_moe/tiny");
    let out = omni(&[
        "ask",
        "--model",
        moe.to_str().unwrap(),
        "--prompt-ids",
        "1",
        "--print-ids",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Qwen3-Omni checkpoint"));
}

/// A prompt longer than the context is refused with the limit named.
#[test]
fn omni_ask_names_the_context_limit() {
    let model = dir();
    let out = omni(&[
        "ask",
        "--model",
        model.to_str().unwrap(),
        "--wav",
        wav("long.wav").to_str().unwrap(),
        "--print-ids",
        "--ctx",
        "50",
        "--backend",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("context holds 50"),
        "{err}"
    );
}
