//! Mixture-of-experts decoders on the GPU engine (lavapipe in CI): the tiny `qwen3_moe` model and
//! the Omni thinker's text decoder against transformers' logits and greedy ids, and the device
//! routing kernel against its CPU twin.

mod common;

use common::tol::GPU_VS_CPU_REL;
use common::{assert_close, gpu, reference, reference_store, tensor};
use qwen_omni::gpu::{GpuBuffer, Kernels, StepDims};
use qwen_omni::models::qwen3::Qwen3Model;
use qwen_omni::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};

fn moe_fixture() -> std::path::PathBuf {
    common::repo_root().join("tests/fixtures/qwen3_moe/tiny")
}

fn opts() -> GpuModelOptions {
    // max_prefill 8: the 19-token prompt runs in three prefill steps
    GpuModelOptions {
        ctx: 96,
        max_prefill: 8,
        all_logits: true,
    }
}

#[test]
fn moe_routing_on_the_device_matches_the_cpu_route() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    for &(experts, top_k, renorm, t) in &[
        (6usize, 3usize, true, 5usize),
        (128, 8, true, 2),
        (7, 2, false, 3),
        (300, 1, true, 1),
    ] {
        let logits: Vec<f32> = (0..t * experts)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0).sin() * 3.0)
            .collect();
        let gl = GpuBuffer::from_f32(&ctx, &logits, "logits").unwrap();
        let ids = GpuBuffer::zeros(&ctx, t * top_k, "ids").unwrap();
        let w = GpuBuffer::zeros(&ctx, t * top_k, "w").unwrap();
        let op = k.moe_route(&gl, experts, top_k, renorm, &ids, &w).unwrap();
        k.run(
            [&op],
            StepDims {
                t: t as u32,
                pos0: 0,
            },
        )
        .unwrap();
        let got_ids = ids.read_u32(&ctx, 0, t * top_k).unwrap();
        let got_w = w.read_f32(&ctx, 0, t * top_k).unwrap();
        for tok in 0..t {
            let want = qwen_omni::nn::moe::route(
                &logits[tok * experts..(tok + 1) * experts],
                top_k,
                renorm,
            );
            let s = tok * top_k..(tok + 1) * top_k;
            assert_eq!(
                got_ids[s.clone()],
                want.iter().map(|r| r.0 as u32).collect::<Vec<_>>(),
                "{experts} experts, token {tok}"
            );
            let ww: Vec<f32> = want.iter().map(|r| r.1).collect();
            assert_close(
                &format!("route weights {experts}"),
                &got_w[s],
                &ww,
                GPU_VS_CPU_REL,
            );
        }
    }
}

#[test]
fn qwen3_moe_on_the_gpu_matches_transformers() {
    let ctx = gpu();
    let cpu = Qwen3Model::load(&moe_fixture()).unwrap();
    let mut g = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    let (r, store) = reference(&moe_fixture());
    for (i, p) in r.prompts.iter().enumerate() {
        g.reset();
        let logits = g
            .prefill(&p.ids, Some(qwen_omni::models::qwen3::Logits::All))
            .unwrap();
        let want = tensor(&store, &format!("p{i}.logits"));
        assert_close(&format!("p{i} logits"), &logits, &want, GPU_VS_CPU_REL);
        let got = common::device_greedy(&mut g, &p.ids, p.greedy.len());
        assert_eq!(got, p.greedy, "prompt {i}");
    }
}

#[test]
fn omni_thinker_text_decoder_on_the_gpu_matches_transformers() {
    let ctx = gpu();
    let dir = common::repo_root().join("tests/fixtures/omni/tiny");
    let cpu = Qwen3Model::load(&dir).unwrap();
    let mut g = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    let text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let p = &text["prompts"]["text"];
    let ids: Vec<u32> = serde_json::from_value(p["ids"].clone()).unwrap();
    let greedy: Vec<u32> = serde_json::from_value(p["greedy"].clone()).unwrap();
    let store = reference_store(&dir);
    let logits = g
        .prefill(&ids, Some(qwen_omni::models::qwen3::Logits::All))
        .unwrap();
    assert_close(
        "text logits",
        &logits,
        &tensor(&store, "text.logits"),
        GPU_VS_CPU_REL,
    );
    assert_eq!(common::device_greedy(&mut g, &ids, greedy.len()), greedy);
}

#[test]
fn q8_0_experts_on_the_gpu_match_the_cpu_q8_0_engine() {
    let ctx = gpu();
    let mut cpu = Qwen3Model::load(&moe_fixture()).unwrap();
    assert!(cpu.quantize_q8_0() > 0);
    let exact = qwen_omni::gpu::Tuning {
        q8_dot: false,
        ..Default::default()
    };
    let mut g = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), exact).unwrap();
    let (r, _) = reference(&moe_fixture());
    let ids = &r.prompts[2].ids;
    let got = g
        .prefill(ids, Some(qwen_omni::models::qwen3::Logits::All))
        .unwrap();
    let mut cache = cpu.new_cache(64);
    let want = cpu
        .forward(ids, &mut cache, qwen_omni::models::qwen3::Logits::All)
        .unwrap();
    assert_close("q8 prefill logits", &got, &want, GPU_VS_CPU_REL);
    // decode steps through the Q8_0 slot matvecs
    // the default decode path rounds the activations to int8 blocks as well: Q8_0 budget
    // ... and its prefill steps (8 tokens) run matvecs over the tokens with int8 activations
    // (the grouped expert matvec, the dense layers' linear_prefill)
    let mut fast = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    let fp = fast
        .prefill(ids, Some(qwen_omni::models::qwen3::Logits::All))
        .unwrap();
    common::assert_close_rows(
        "q8 int8-activation prefill logits",
        &fp,
        &want,
        cpu.config.vocab_size,
        common::tol::Q8_LOGITS_REL,
        common::tol::Q8_MOE_SWAPS,
        common::tol::Q8_MOE_SWAP_REL,
    );
    for id in [5u32, 77, 300] {
        let got = g.decode(Some(id), true).unwrap();
        let want = cpu
            .forward(&[id], &mut cache, qwen_omni::models::qwen3::Logits::Last)
            .unwrap();
        assert_close("q8 decode logits", &got, &want, GPU_VS_CPU_REL);
        let f = fast.decode(Some(id), true).unwrap();
        assert_close(
            "q8 int8-activation decode logits",
            &f,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
    }
}

/// A 90-token prefill step: experts receive more than one 64-row tile of slots in the grouped
/// matmul, and some none.
#[test]
fn long_moe_prefill_step_matches_the_cpu_engine() {
    let ctx = gpu();
    let cpu = Qwen3Model::load(&moe_fixture()).unwrap();
    let mut g = Qwen3Gpu::new(
        &ctx,
        &cpu,
        GpuModelOptions {
            ctx: 128,
            max_prefill: 96,
            all_logits: true,
        },
    )
    .unwrap();
    let ids: Vec<u32> = (0..90u32).map(|i| (i * 37 + 11) % 320).collect();
    let got = g
        .prefill(&ids, Some(qwen_omni::models::qwen3::Logits::All))
        .unwrap();
    let mut cache = cpu.new_cache(128);
    let want = cpu
        .forward(&ids, &mut cache, qwen_omni::models::qwen3::Logits::All)
        .unwrap();
    assert_close("90-token MoE prefill", &got, &want, GPU_VS_CPU_REL);
    // Q8_0 experts through the grouped tiled matmul (32-token tiles; f32 activations, so the
    // CPU Q8_0 engine's tolerance): ~30 slots per expert, some past one tile
    let mut q = Qwen3Model::load(&moe_fixture()).unwrap();
    assert!(q.quantize_q8_0() > 0);
    for tile in [32, 64] {
        let tiled = qwen_omni::gpu::Tuning {
            q8_dot: false,
            small_t: 0,
            gather_tile: tile,
            ..Default::default()
        };
        let opts = GpuModelOptions {
            ctx: 128,
            max_prefill: 96,
            all_logits: true,
        };
        let mut g = Qwen3Gpu::new_tuned(&ctx, &q, opts, tiled).unwrap();
        let got = g
            .prefill(&ids, Some(qwen_omni::models::qwen3::Logits::All))
            .unwrap();
        let mut cache = q.new_cache(128);
        let want = q
            .forward(&ids, &mut cache, qwen_omni::models::qwen3::Logits::All)
            .unwrap();
        assert_close(
            &format!("90-token Q8_0 MoE prefill, {tile}-token tiles"),
            &got,
            &want,
            GPU_VS_CPU_REL,
        );
    }
}

/// A random qwen3_moe model whose every matrix quantises (rows multiples of 32; the fixture's
/// 40-wide experts stay BF16): hidden 96, 6 experts of 64, top 3, head_dim 32, 2 layers.
fn write_q8_moe_model(dir: &std::path::Path) {
    use qwen_omni::tensor::{DType, f32_to_bf16};
    use qwen_omni::weights::{SafetensorsWriter, TensorSpec};
    let (v, h, heads, kvh, hd, inter, experts, layers) = (320, 96, 4, 2, 32, 64, 6, 2);
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "vocab_size": v,
        "hidden_size": h, "intermediate_size": 128, "moe_intermediate_size": inter,
        "num_experts": experts, "num_experts_per_tok": 3, "norm_topk_prob": true,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kvh, "head_dim": hd,
        "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, h]),
        ("lm_head.weight".into(), vec![v, h]),
        ("model.norm.weight".into(), vec![h]),
    ];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        shapes.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![heads * hd, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kvh * hd, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kvh * hd, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, heads * hd]),
            (format!("{p}.self_attn.q_norm.weight"), vec![hd]),
            (format!("{p}.self_attn.k_norm.weight"), vec![hd]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate.weight"), vec![experts, h]),
        ]);
        for e in 0..experts {
            let q = format!("{p}.mlp.experts.{e}");
            shapes.extend([
                (format!("{q}.gate_proj.weight"), vec![inter, h]),
                (format!("{q}.up_proj.weight"), vec![inter, h]),
                (format!("{q}.down_proj.weight"), vec![h, inter]),
            ]);
        }
    }
    let specs: Vec<TensorSpec> = shapes
        .iter()
        .map(|(n, s)| TensorSpec::new(n, DType::BF16, s))
        .collect();
    let mut w = SafetensorsWriter::create(&dir.join("model.safetensors"), &specs).unwrap();
    let mut rng = qwen_omni::models::sampler::Rng::new(91);
    for (n, s) in &shapes {
        let count: usize = s.iter().product();
        let bytes: Vec<u8> = (0..count)
            .flat_map(|_| {
                let x = if s.len() == 1 {
                    0.5 + rng.next_f32()
                } else {
                    (rng.next_f32() * 2.0 - 1.0) * 1.7 / (s[1] as f32).sqrt()
                };
                let x = if n.contains("embed") { x * 8.0 } else { x };
                f32_to_bf16(x).to_le_bytes()
            })
            .collect();
        w.write(&bytes).unwrap();
    }
    w.finish().unwrap();
}

/// MoE decode with its residual stream in fixed point (gpu/matvec_q8.rs `FixedResidual`):
/// o_proj writes it (from the f32 embedding in layer 0, from the stream after), the down
/// experts add their weighted outputs into it by atomics (no moe_sum), the next qkv and the
/// lm_head read it. Against the separate moe_sum (the same roundings of the same values: the
/// f32 budget) and the CPU Q8_0 engine (the Q8_0 budget).
#[test]
fn fixed_point_moe_decode_matches_the_moe_sum_and_the_cpu_engine() {
    let ctx = gpu();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q8moe");
    write_q8_moe_model(&dir);
    let mut cpu = Qwen3Model::load(&dir).unwrap();
    assert!(cpu.quantize_q8_0() > 0);
    let mut folded = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    assert!(folded.moe_folded(), "every matrix is Q8_0: decode should fold the sum");
    let separate = qwen_omni::gpu::Tuning {
        q8_moe_fold: false,
        ..Default::default()
    };
    let mut summed = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), separate).unwrap();
    assert!(!summed.moe_folded());
    let ids = [3u32, 14, 15, 92, 65];
    let mut cache = cpu.new_cache(96);
    let want = cpu
        .forward(&ids, &mut cache, qwen_omni::models::qwen3::Logits::Last)
        .unwrap();
    folded.prefill(&ids, None).unwrap();
    summed.prefill(&ids, None).unwrap();
    let mut next = qwen_omni::cpu::argmax(&want) as u32;
    for s in 0..20 {
        let want = cpu
            .forward(&[next], &mut cache, qwen_omni::models::qwen3::Logits::Last)
            .unwrap();
        let got = folded.decode(Some(next), true).unwrap();
        let other = summed.decode(Some(next), true).unwrap();
        assert_close(&format!("folded vs moe_sum, step {s}"), &got, &other, GPU_VS_CPU_REL);
        assert_close(
            &format!("folded vs CPU Q8_0, step {s}"),
            &got,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
        next = qwen_omni::cpu::argmax(&want) as u32;
    }
}
