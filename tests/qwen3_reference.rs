//! The CPU engine against transformers on tiny random Qwen3 models (tests/fixtures/qwen3):
//! per-layer hidden states, logits, and 32-step greedy continuations.

mod common;

use common::{FIXTURE_MODELS, assert_close, fixture, reference, tensor, tol};
use qwen_omni::cpu::argmax;
use qwen_omni::models::qwen3::{Logits, Qwen3Model, Trace};

#[test]
fn hidden_states_and_logits_match_transformers_for_every_fixture() {
    for name in FIXTURE_MODELS {
        let dir = fixture(name);
        let model = Qwen3Model::load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (r, store) = reference(&dir);
        for (i, p) in r.prompts.iter().enumerate() {
            let mut cache = model.new_cache(64);
            let mut trace = Trace::default();
            let logits = model
                .forward_traced(&p.ids, &mut cache, Logits::All, Some(&mut trace))
                .unwrap();
            for (l, h) in trace.hidden.iter().enumerate() {
                let want = tensor(&store, &format!("p{i}.hidden.{l}"));
                assert_close(
                    &format!("{name} p{i} hidden.{l}"),
                    h,
                    &want,
                    tol::F32_VS_F32_REL,
                );
            }
            let want = tensor(&store, &format!("p{i}.final_norm"));
            assert_close(
                &format!("{name} p{i} final_norm"),
                &trace.final_norm,
                &want,
                tol::F32_VS_F32_REL,
            );
            let want = tensor(&store, &format!("p{i}.logits"));
            // real-vocab stores the last position only
            let ours = &logits[logits.len() - want.len()..];
            assert_close(
                &format!("{name} p{i} logits"),
                ours,
                &want,
                tol::F32_VS_F32_REL,
            );
        }
    }
}

#[test]
fn token_by_token_decode_equals_batched_prefill() {
    for name in FIXTURE_MODELS {
        let model = Qwen3Model::load(&fixture(name)).unwrap();
        let (r, _) = reference(&fixture(name));
        let ids = &r.prompts.last().unwrap().ids;
        let mut batch_cache = model.new_cache(64);
        let batched = model.forward(ids, &mut batch_cache, Logits::Last).unwrap();
        let mut step_cache = model.new_cache(64);
        let mut stepped = Vec::new();
        for &id in ids {
            stepped = model.forward(&[id], &mut step_cache, Logits::Last).unwrap();
        }
        assert_close(
            &format!("{name} decode vs prefill"),
            &stepped,
            &batched,
            tol::F32_VS_F32_REL,
        );
    }
}

#[test]
fn greedy_ids_match_transformers_for_32_steps() {
    for name in FIXTURE_MODELS {
        let model = Qwen3Model::load(&fixture(name)).unwrap();
        let (r, _) = reference(&fixture(name));
        for (i, p) in r.prompts.iter().enumerate() {
            let mut cache = model.new_cache(p.ids.len() + 40);
            let mut logits = model.forward(&p.ids, &mut cache, Logits::Last).unwrap();
            let mut got = Vec::new();
            for _ in 0..p.greedy.len() {
                let id = argmax(&logits) as u32;
                got.push(id);
                logits = model.forward(&[id], &mut cache, Logits::Last).unwrap();
            }
            assert_eq!(got, p.greedy, "{name} prompt {i}");
        }
    }
}

#[test]
fn sharded_checkpoint_loads_every_shard() {
    let dir = fixture("untied-mha");
    let store = qwen_omni::weights::WeightStore::open(&dir).unwrap();
    assert!(store.file_count() >= 2, "untied-mha is the sharded fixture");
    assert!(store.contains("lm_head.weight"));
    assert!(store.contains("model.layers.2.mlp.down_proj.weight"));
}

#[test]
fn config_styles_parse_to_the_same_meaning() {
    use qwen_omni::models::config::Qwen3Config;
    // odd-gqa3 has only rope_parameters (transformers 5 style); tied-gqa2 only rope_theta.
    let v5 = Qwen3Config::load(&fixture("odd-gqa3")).unwrap();
    assert_eq!(v5.rope_theta(), 10_000.0);
    assert_eq!(v5.head_dim(), 12);
    let v4 = Qwen3Config::load(&fixture("tied-gqa2")).unwrap();
    assert_eq!(v4.rope_theta(), 1_000_000.0);
    assert!(v4.tie_word_embeddings);
}
