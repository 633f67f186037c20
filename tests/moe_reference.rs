//! Mixture-of-experts decoders against transformers: the tiny `qwen3_moe` model
//! (tests/fixtures/qwen3_moe/tiny) and the text decoder of the tiny Qwen3-Omni thinker
//! (tests/fixtures/omni/tiny, tensors under `thinker.model.*`): router logits, hidden states and
//! logits per layer, and 32 greedy ids.

mod common;

use common::{assert_close, reference, reference_store, tensor, tol};
use qwen_omni::cpu::argmax;
use qwen_omni::models::qwen3::{FeedForward, Logits, Qwen3Model, Trace};
use qwen_omni::weights::WeightStore;

fn moe_fixture() -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/qwen3_moe/tiny")
}

fn omni_fixture() -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/omni/tiny")
}

#[test]
fn qwen3_moe_matches_transformers_layer_by_layer_with_its_router() {
    let dir = moe_fixture();
    let model = Qwen3Model::load(&dir).unwrap();
    assert!(
        model
            .layers
            .iter()
            .all(|l| matches!(l.ffn, FeedForward::Moe(_)))
    );
    let (r, store) = reference(&dir);
    for (i, p) in r.prompts.iter().enumerate() {
        assert_layers_match(&model, &p.ids, &store, &format!("p{i}"));
    }
}

/// Every layer's output, every MoE router's logits and the logits of `ids` against the
/// reference tensors `{prefix}.hidden.{l}`, `{prefix}.router.{l}`, `{prefix}.logits`.
fn assert_layers_match(model: &Qwen3Model, ids: &[u32], store: &WeightStore, prefix: &str) {
    let mut cache = model.new_cache(64);
    let mut trace = Trace::default();
    let logits = model
        .forward_traced(ids, &mut cache, Logits::All, Some(&mut trace))
        .unwrap();
    for (l, h) in trace.hidden.iter().enumerate() {
        let want = tensor(store, &format!("{prefix}.hidden.{l}"));
        assert_close(
            &format!("{prefix} hidden.{l}"),
            h,
            &want,
            tol::F32_VS_F32_REL,
        );
    }
    for (l, rl) in trace.router.iter().enumerate() {
        let want = tensor(store, &format!("{prefix}.router.{l}"));
        assert_close(
            &format!("{prefix} router.{l}"),
            rl,
            &want,
            tol::F32_VS_F32_REL,
        );
    }
    let want = tensor(store, &format!("{prefix}.logits"));
    assert_close(
        &format!("{prefix} logits"),
        &logits,
        &want,
        tol::F32_VS_F32_REL,
    );
}

fn greedy(model: &Qwen3Model, ids: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache(ids.len() + n + 1);
    let mut logits = model.forward(ids, &mut cache, Logits::Last).unwrap();
    let mut got = Vec::new();
    for _ in 0..n {
        let id = argmax(&logits) as u32;
        got.push(id);
        logits = model.forward(&[id], &mut cache, Logits::Last).unwrap();
    }
    got
}

#[test]
fn qwen3_moe_greedy_ids_match_transformers_for_32_steps() {
    let dir = moe_fixture();
    let model = Qwen3Model::load(&dir).unwrap();
    let (r, _) = reference(&dir);
    for (i, p) in r.prompts.iter().enumerate() {
        assert_eq!(
            greedy(&model, &p.ids, p.greedy.len()),
            p.greedy,
            "prompt {i}"
        );
    }
}

#[derive(serde::Deserialize)]
struct OmniRef {
    prompts: std::collections::HashMap<String, OmniPrompt>,
}

#[derive(serde::Deserialize)]
struct OmniPrompt {
    ids: Vec<u32>,
    greedy: Vec<u32>,
}

fn omni_ref() -> OmniRef {
    let text = std::fs::read_to_string(omni_fixture().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn omni_thinker_text_decoder_matches_transformers_on_a_text_prompt() {
    let dir = omni_fixture();
    // the full checkpoint (audio, vision, talker, code2wav tensors) loads only the decoder
    let model = Qwen3Model::load(&dir).unwrap();
    let r = omni_ref();
    let store = reference_store(&dir);
    let p = &r.prompts["text"];
    assert_layers_match(&model, &p.ids, &store, "text");
    assert_eq!(greedy(&model, &p.ids, p.greedy.len()), p.greedy);
}
