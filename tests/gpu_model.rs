//! The Qwen3 model on the GPU engine against transformers' fixtures and the CPU engine:
//! logits at every position, greedy ids for 32 steps without reading logits back, prefill in
//! several steps, and a model whose embedding exceeds the storage-binding limit.

mod common;

use common::tol::GPU_VS_CPU_REL;
use common::{FIXTURE_MODELS, assert_close, fixture, reference, tensor};
use common::{gpu, gpu_with};
use qwen_omni::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};
use qwen_omni::models::qwen3::{Logits, Qwen3Model};

fn opts() -> GpuModelOptions {
    // max_prefill 8 splits the 19-token prompts into three steps
    GpuModelOptions {
        ctx: 96,
        max_prefill: 8,
        all_logits: true,
    }
}

#[test]
fn gpu_logits_match_transformers_at_every_position() {
    let ctx = gpu();
    for name in FIXTURE_MODELS {
        let cpu = Qwen3Model::load(&fixture(name)).unwrap();
        let mut g = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
        let (r, store) = reference(&fixture(name));
        for (i, p) in r.prompts.iter().enumerate() {
            g.reset();
            let logits = g.prefill(&p.ids, Some(Logits::All)).unwrap();
            let want = tensor(&store, &format!("p{i}.logits"));
            let ours = &logits[logits.len() - want.len()..];
            assert_close(
                &format!("{name} p{i} GPU logits"),
                ours,
                &want,
                GPU_VS_CPU_REL,
            );
        }
    }
}

#[test]
fn gpu_greedy_ids_match_transformers_for_32_steps() {
    let ctx = gpu();
    for name in FIXTURE_MODELS {
        let cpu = Qwen3Model::load(&fixture(name)).unwrap();
        let mut g = Qwen3Gpu::new(
            &ctx,
            &cpu,
            GpuModelOptions {
                all_logits: false,
                ..opts()
            },
        )
        .unwrap();
        let (r, _) = reference(&fixture(name));
        for (i, p) in r.prompts.iter().enumerate() {
            let got = common::device_greedy(&mut g, &p.ids, p.greedy.len());
            assert_eq!(got, p.greedy, "{name} prompt {i}");
        }
    }
}

#[test]
fn gpu_decode_matches_cpu_engine_step_by_step() {
    let ctx = gpu();
    let name = "odd-gqa3";
    let cpu = Qwen3Model::load(&fixture(name)).unwrap();
    let mut g = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    let mut cache = cpu.new_cache(96);
    let ids = [3u32, 200, 17, 99, 5, 250, 1, 2, 3, 4, 60];
    let mut ours = g.prefill(&ids[..1], Some(Logits::Last)).unwrap();
    let mut want = cpu.forward(&ids[..1], &mut cache, Logits::Last).unwrap();
    assert_close("step 0", &ours, &want, GPU_VS_CPU_REL);
    for (s, &id) in ids.iter().enumerate().skip(1) {
        ours = g.decode(Some(id), true).unwrap();
        want = cpu.forward(&[id], &mut cache, Logits::Last).unwrap();
        assert_close(&format!("step {s}"), &ours, &want, GPU_VS_CPU_REL);
    }
}

#[test]
fn context_overflow_and_bad_ids_are_errors() {
    let ctx = gpu();
    let cpu = Qwen3Model::load(&fixture("tied-gqa2")).unwrap();
    let mut g = Qwen3Gpu::new(
        &ctx,
        &cpu,
        GpuModelOptions {
            ctx: 4,
            max_prefill: 4,
            all_logits: false,
        },
    )
    .unwrap();
    assert!(
        g.prefill(&[1, 2, 3, 4, 5], None)
            .unwrap_err()
            .to_string()
            .contains("context holds 4")
    );
    assert!(
        g.prefill(&[1, 9999], None)
            .unwrap_err()
            .to_string()
            .contains("9999")
    );
    g.prefill(&[1, 2, 3, 4], None).unwrap();
    assert!(g.decode(None, false).is_err());
}

/// A one-layer model with the real vocabulary and hidden 448: its tied embedding is
/// 151936 x 448 BF16 = 136 MB, above lavapipe's 128 MiB binding limit (on GPUs with larger
/// limits the test caps the limit at 128 MiB, so the same split runs everywhere).
fn wide_model(dir: &std::path::Path) {
    write_model(dir, (151_936, 448, 4, 2, 32, 64, 1), false);
}

/// A tied Qwen3 model of (vocab, hidden, heads, kv heads, head_dim, intermediate, layers)
/// with uniform random BF16 weights; norm weights 1, or random in [0.5, 1.5) with
/// `random_norms`.
fn write_model(
    dir: &std::path::Path,
    (v, h, heads, kvh, hd, inter, layers): (usize, usize, usize, usize, usize, usize, usize),
    random_norms: bool,
) {
    use qwen_omni::tensor::{DType, f32_to_bf16};
    use qwen_omni::weights::{SafetensorsWriter, TensorSpec};
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "vocab_size": v, "hidden_size": h,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kvh, "head_dim": hd, "hidden_act": "silu", "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![v, h])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        shapes.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![heads * hd, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kvh * hd, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kvh * hd, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, heads * hd]),
            (format!("{p}.self_attn.q_norm.weight"), vec![hd]),
            (format!("{p}.self_attn.k_norm.weight"), vec![hd]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![inter, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![inter, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, inter]),
        ]);
    }
    shapes.push(("model.norm.weight".into(), vec![h]));
    let specs: Vec<TensorSpec> = shapes
        .iter()
        .map(|(n, s)| TensorSpec::new(n, DType::BF16, s))
        .collect();
    let mut w = SafetensorsWriter::create(&dir.join("model.safetensors"), &specs).unwrap();
    let mut rng = qwen_omni::models::sampler::Rng::new(77);
    for (n, s) in &shapes {
        let count: usize = s.iter().product();
        let scale = if s.len() == 1 {
            0.0
        } else {
            1.0 / (s[1] as f32).sqrt() * 1.7
        };
        let bytes: Vec<u8> = (0..count)
            .flat_map(|_| {
                let x = match (s.len(), random_norms) {
                    (1, false) => 1.0,
                    (1, true) => 0.5 + rng.next_f32(),
                    _ => (rng.next_f32() * 2.0 - 1.0) * scale,
                };
                let x = if n.contains("embed") { x * 8.0 } else { x };
                f32_to_bf16(x).to_le_bytes()
            })
            .collect();
        w.write(&bytes).unwrap();
    }
    w.finish().unwrap();
}

/// Decode with the whole Q8_0 chain (gpu/matvec_q8.rs): head_dim 32, so the attention also
/// hands o_proj its output quantised, through one chunk and past it (the combining pass
/// writes it then), and each layer's o_proj .. next qkv (the lm_head after the last) run as
/// one phased dispatch (and the same as a persistent kernel); also with a dispatch per matvec,
/// and with every matrix read ahead into the L2 cache, and with rows shared by two subgroups
/// (KSPLIT). Against the CPU Q8_0 engine within the Q8_0 budget, and against the same
/// model unchained, where every matvec quantises its own input: the same roundings of the same
/// values, so within the f32 budget.
#[test]
fn chained_q8_0_decode_with_quantised_attention_matches_the_cpu_q8_0_engine() {
    let ctx = gpu();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hd32");
    write_model(&dir, (320, 96, 4, 2, 32, 128, 2), true);
    let mut cpu = Qwen3Model::load(&dir).unwrap();
    assert!(cpu.quantize_q8_0() > 0);
    let phased = qwen_omni::gpu::Tuning {
        q8_phases: true,
        ..Default::default()
    };
    let mut chained = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), phased).unwrap();
    assert!(chained.q8_chained() && chained.q8_chained_attention() && chained.q8_phased());
    // ... as a persistent kernel (every phase by the same workgroups in turn): one workgroup
    // where they run one at a time; elsewhere 8 (any GPU runs them at once), an H200 one per
    // SM of its 132
    let g = if common::one_workgroup_at_a_time(&ctx) {
        1
    } else if ctx.info.name.contains("H200") {
        132
    } else {
        8
    };
    let persist = qwen_omni::gpu::Tuning {
        q8_persist: g,
        ..Default::default()
    };
    let mut persistent = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), persist).unwrap();
    assert!(persistent.q8_phased());
    // the same chain with a dispatch per matvec (the default; not the adapter's tuning, which
    // may run o_proj inside the attention's dispatch, summed in another order)
    let mut linked = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), Default::default()).unwrap();
    assert!(linked.q8_chained_attention() && !linked.q8_phased());
    let unchained = qwen_omni::gpu::Tuning {
        q8_chain: false,
        ..Default::default()
    };
    let mut plain = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), unchained).unwrap();
    // every matrix of the chain also read ahead into the L2 cache (gpu/prefetch.rs): read-only
    // dispatches beside the real ones, so the logits must not move at all
    let ahead = qwen_omni::gpu::Tuning {
        l2_prefetch: [100; 5],
        ..Default::default()
    };
    let mut prefetched = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), ahead).unwrap();
    // rows shared by two subgroups each (KSPLIT) where the subgroup size is fixed: the links'
    // shapes and the chain with it on, against the CPU engine within the Q8_0 budget (this
    // model's rows fit one subgroup's stretch of blocks, so the second part adds nothing: the
    // parts' arithmetic is chained_q8_0_matvecs_match_their_cpu_twin's)
    let split = qwen_omni::gpu::Tuning {
        q8_ksplit: 2,
        q8_wide_ksplit: 2,
        ..Default::default()
    };
    let mut halves = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), split).unwrap();
    // o_proj, gate_up, down of 2 layers, the second layer's qkv, the lm_head
    let base = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), Default::default()).unwrap();
    assert_eq!(prefetched.decode_op_count(), base.decode_op_count() + 8);
    let ids = [3u32, 1, 4, 1, 5];
    let mut cache = cpu.new_cache(96);
    let want = cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
    chained.prefill(&ids, None).unwrap();
    persistent.prefill(&ids, None).unwrap();
    plain.prefill(&ids, None).unwrap();
    linked.prefill(&ids, None).unwrap();
    prefetched.prefill(&ids, None).unwrap();
    halves.prefill(&ids, None).unwrap();
    let mut next = qwen_omni::cpu::argmax(&want) as u32;
    for s in 0..70 {
        let want = cpu.forward(&[next], &mut cache, Logits::Last).unwrap();
        let got = chained.decode(Some(next), true).unwrap();
        let other = plain.decode(Some(next), true).unwrap();
        assert_close(
            &format!("chained step {s}"),
            &got,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
        assert_close(
            &format!("chained vs not, step {s}"),
            &got,
            &other,
            GPU_VS_CPU_REL,
        );
        let one_each = linked.decode(Some(next), true).unwrap();
        assert_close(
            &format!("phased vs not, step {s}"),
            &got,
            &one_each,
            GPU_VS_CPU_REL,
        );
        let persisted = persistent.decode(Some(next), true).unwrap();
        assert_close(
            &format!("persistent vs phased, step {s}"),
            &persisted,
            &got,
            GPU_VS_CPU_REL,
        );
        let read_ahead = prefetched.decode(Some(next), true).unwrap();
        assert_eq!(read_ahead, one_each, "prefetched vs not, step {s}");
        let split = halves.decode(Some(next), true).unwrap();
        assert_close(
            &format!("rows in halves, step {s}"),
            &split,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
        next = qwen_omni::cpu::argmax(&want) as u32;
    }
}

/// o_proj inside the decode attention's dispatch (attn_oproj.wgsl): its workgroups load their
/// weights, wait on a device counter for every head's quantised output, then add their rows to
/// the residual and hand them on quantised. Against the same chain with o_proj a dispatch of
/// its own (the same int8 products, summed in another order: the f32 budget, but for the
/// occasional step where a row rounds to the other int8, tol::CHAIN_FLIP_STEPS_PERCENT) and the
/// CPU Q8_0 engine (the Q8_0 budget), past 128 cached rows so the heads' chunks are merged by
/// their last workgroup before o_proj may start. One dispatch fewer per layer. Two shapes: 4
/// heads of 32 (K = 128: one block per invocation), and 32 heads of 128 (K = 4096, the real
/// models' o_proj: eight blocks per invocation, every register of the preload in use).
#[test]
fn o_proj_inside_the_attention_dispatch_matches_its_own_dispatch() {
    let ctx = gpu();
    let tmp = tempfile::tempdir().unwrap();
    for (name, shape) in [
        ("hd32", (320, 96, 4, 2, 32, 128, 2)),
        ("k4096", (320, 64, 32, 4, 128, 64, 1)),
    ] {
        let dir = tmp.path().join(name);
        write_model(&dir, shape, true);
        let mut cpu = Qwen3Model::load(&dir).unwrap();
        assert!(cpu.quantize_q8_0() > 0);
        let long = GpuModelOptions {
            ctx: 200,
            max_prefill: 8,
            all_logits: false,
        };
        let fused_tuning = qwen_omni::gpu::Tuning {
            attn_oproj_wgs: u32::MAX,
            ..Default::default()
        };
        let mut fused = Qwen3Gpu::new_tuned(&ctx, &cpu, long, fused_tuning).unwrap();
        let mut apart = Qwen3Gpu::new_tuned(&ctx, &cpu, long, Default::default()).unwrap();
        // ... with o_proj's last rows read into L2 beside qkv first: read-only, so bit-identical
        let tail = qwen_omni::gpu::Tuning {
            l2_prefetch_tail: 30,
            ..fused_tuning
        };
        let mut tailed = Qwen3Gpu::new_tuned(&ctx, &cpu, long, tail).unwrap();
        // ... and both with the QK-norms' sums of squares in two steps (NSPLIT): another
        // summation order, so against the CPU within the Q8_0 budget
        let nsplit = |t: qwen_omni::gpu::Tuning| qwen_omni::gpu::Tuning {
            attn_nsplit: true,
            ..t
        };
        let mut fused_ns = Qwen3Gpu::new_tuned(&ctx, &cpu, long, nsplit(fused_tuning)).unwrap();
        let mut apart_ns =
            Qwen3Gpu::new_tuned(&ctx, &cpu, long, nsplit(Default::default())).unwrap();
        let layers = cpu.config.num_hidden_layers;
        assert!(fused.q8_chained_attention(), "{name}");
        assert_eq!(
            fused.decode_op_count() + layers,
            apart.decode_op_count(),
            "{name}"
        );
        assert_eq!(tailed.decode_prefetch_count(), layers, "{name}");
        let ids = [3u32, 1, 4, 1, 5];
        let mut cache = cpu.new_cache(200);
        let want = cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
        fused.prefill(&ids, None).unwrap();
        apart.prefill(&ids, None).unwrap();
        tailed.prefill(&ids, None).unwrap();
        fused_ns.prefill(&ids, None).unwrap();
        apart_ns.prefill(&ids, None).unwrap();
        let mut next = qwen_omni::cpu::argmax(&want) as u32;
        let steps = 150;
        let mut flips = 0;
        for s in 0..steps {
            let want = cpu.forward(&[next], &mut cache, Logits::Last).unwrap();
            let got = fused.decode(Some(next), true).unwrap();
            let other = apart.decode(Some(next), true).unwrap();
            let what = format!("{name}, step {s}");
            // a row rounded to the other int8 (tol::CHAIN_FLIP_STEPS_PERCENT): Q8_0 budget
            if common::rel_err(&got, &other) > GPU_VS_CPU_REL {
                flips += 1;
                let budget = common::tol::Q8_LOGITS_REL;
                assert_close(&format!("fused vs apart, {what}"), &got, &other, budget);
            }
            assert_close(
                &format!("fused vs CPU, {what}"),
                &got,
                &want,
                common::tol::Q8_LOGITS_REL,
            );
            let t = tailed.decode(Some(next), true).unwrap();
            assert_eq!(t, got, "tail prefetch, {what}");
            for (m, how) in [(&mut fused_ns, "fused"), (&mut apart_ns, "apart")] {
                let ns = m.decode(Some(next), true).unwrap();
                let budget = common::tol::Q8_LOGITS_REL;
                assert_close(&format!("{how} NSPLIT vs CPU, {what}"), &ns, &want, budget);
            }
            next = qwen_omni::cpu::argmax(&want) as u32;
        }
        let most = steps * common::tol::CHAIN_FLIP_STEPS_PERCENT / 100;
        assert!(
            flips <= most,
            "{name}: {flips} of {steps} steps off the f32 budget"
        );
    }
}

/// The chain with a 16-bit lm_head (`omni quantize --keep-bf16 lm_head`): the last layer's down
/// projection then hands nothing on quantised, and the final norm and the lm_head take the f32
/// residual as before. Against the CPU engine with the same mixed weights.
#[test]
fn chained_q8_0_decode_with_a_bf16_lm_head_matches_the_cpu_engine() {
    let ctx = gpu();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hd32");
    write_model(&dir, (320, 96, 4, 2, 32, 128, 2), true);
    let mut cpu = Qwen3Model::load(&dir).unwrap();
    let head = cpu.lm_head.clone();
    assert!(cpu.quantize_q8_0() > 0);
    cpu.lm_head = head;
    let mut g = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    assert!(g.q8_chained() && g.q8_chained_attention());
    let ids = [2u32, 7, 1, 8];
    let mut cache = cpu.new_cache(96);
    let want = cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
    g.prefill(&ids, None).unwrap();
    let mut next = qwen_omni::cpu::argmax(&want) as u32;
    for s in 0..12 {
        let want = cpu.forward(&[next], &mut cache, Logits::Last).unwrap();
        let got = g.decode(Some(next), true).unwrap();
        assert_close(
            &format!("bf16 lm_head, step {s}"),
            &got,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
        next = qwen_omni::cpu::argmax(&want) as u32;
    }
}

#[test]
fn tensor_above_the_binding_limit_loads_and_computes() {
    let ctx = gpu_with(Some(128 << 20));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wide");
    wide_model(&dir);
    let cpu = Qwen3Model::load(&dir).unwrap();
    let embed_bytes = cpu.embed_tokens.weight.byte_len() as u64;
    assert!(
        embed_bytes > ctx.max_binding(),
        "test premise: the {embed_bytes}-byte embedding must exceed this adapter's {}-byte binding limit",
        ctx.max_binding()
    );
    let mut g = Qwen3Gpu::new(
        &ctx,
        &cpu,
        GpuModelOptions {
            ctx: 32,
            max_prefill: 8,
            all_logits: false,
        },
    )
    .unwrap();
    // ids from both halves of the table, so rows of every chunk are gathered
    let ids = [5u32, 151_000, 77_777, 140_001, 12];
    let ours = g.prefill(&ids, Some(Logits::Last)).unwrap();
    let mut cache = cpu.new_cache(32);
    let want = cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
    assert_close("wide model logits", &ours, &want, GPU_VS_CPU_REL);
    let mut next = qwen_omni::cpu::argmax(&want) as u32;
    assert_eq!(g.last_id().unwrap(), next);
    for _ in 0..4 {
        g.decode(None, false).unwrap();
        let want = cpu.forward(&[next], &mut cache, Logits::Last).unwrap();
        next = qwen_omni::cpu::argmax(&want) as u32;
        assert_eq!(g.last_id().unwrap(), next);
    }
}

#[test]
fn sampling_on_the_device_follows_the_cpu_twin_step_by_step() {
    use qwen_omni::models::sampler::{Rng, SamplingParams};
    let ctx = gpu();
    let cpu = Qwen3Model::load(&fixture("tied-gqa2")).unwrap();
    let mut g = Qwen3Gpu::new(
        &ctx,
        &cpu,
        GpuModelOptions {
            all_logits: false,
            ..opts()
        },
    )
    .unwrap();
    let mut cache = cpu.new_cache(96);
    let p = SamplingParams {
        temperature: 1.2,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.01,
        ..Default::default()
    };
    let mut rng = Rng::new(9);
    let mut ids = vec![5u32, 6, 7];
    let mut logits = cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
    let u = rng.next_f32();
    g.set_sampling(Some((p.clone(), u)));
    g.prefill(&ids, None).unwrap();
    let mut id = g.last_id().unwrap();
    common::assert_pick_consistent(&logits, &p, u, id);
    for _ in 0..24 {
        ids.push(id);
        logits = cpu.forward(&[id], &mut cache, Logits::Last).unwrap();
        let u = rng.next_f32();
        g.set_sampling(Some((p.clone(), u)));
        g.decode(None, false).unwrap();
        id = g.last_id().unwrap();
        common::assert_pick_consistent(&logits, &p, u, id);
    }
    assert!(
        ids.iter().collect::<std::collections::HashSet<_>>().len() > 3,
        "sampling should wander: {ids:?}"
    );
}

#[test]
fn q8_0_model_on_the_gpu_matches_the_cpu_q8_0_engine() {
    let ctx = gpu();
    let mut cpu = Qwen3Model::load(&fixture("tied-gqa2")).unwrap();
    assert!(cpu.quantize_q8_0() > 0);
    // the exact path (f32 activations, as the CPU engine): within the f32 budget
    let exact = qwen_omni::gpu::Tuning {
        q8_dot: false,
        ..Default::default()
    };
    let mut g = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), exact).unwrap();
    let ids = [5u32, 6, 7, 100, 200, 300, 11, 12, 13, 14, 15];
    let mut cache = cpu.new_cache(96);
    // prefill in two steps (max_prefill 8), then decode
    let ours = g.prefill(&ids, Some(Logits::All)).unwrap();
    let want = cpu.forward(&ids, &mut cache, Logits::All).unwrap();
    assert_close("q8 prefill logits", &ours, &want, GPU_VS_CPU_REL);
    // the default decode path also rounds the activations to int8 blocks (dot4I8Packed):
    let mut fast = Qwen3Gpu::new(&ctx, &cpu, opts()).unwrap();
    fast.prefill(&ids, None).unwrap();
    // ... with its matvecs chained (each quantises its output for the next, gpu/matvec_q8.rs);
    // unchained, every matvec quantises its own input: the same roundings of the same values,
    // so only the order of the norms' sums of squares differs
    assert!(
        fast.q8_chained(),
        "the fixture's decode should chain its Q8_0 matvecs"
    );
    let unchained = qwen_omni::gpu::Tuning {
        q8_chain: false,
        ..Default::default()
    };
    let mut plain = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), unchained).unwrap();
    assert!(!plain.q8_chained());
    plain.prefill(&ids, None).unwrap();
    let mut next = qwen_omni::cpu::argmax(&want[want.len() - cpu.config.vocab_size..]) as u32;
    for s in 0..12 {
        let ours = g.decode(Some(next), true).unwrap();
        let want = cpu.forward(&[next], &mut cache, Logits::Last).unwrap();
        assert_close(&format!("q8 decode step {s}"), &ours, &want, GPU_VS_CPU_REL);
        // a second rounding of the same size as the weights': the Q8_0 budget (tol.rs)
        let f = fast.decode(Some(next), true).unwrap();
        assert_close(
            &format!("q8 int8-activation decode step {s}"),
            &f,
            &want,
            common::tol::Q8_LOGITS_REL,
        );
        let p = plain.decode(Some(next), true).unwrap();
        assert_close(
            &format!("q8 chained decode step {s}"),
            &f,
            &p,
            GPU_VS_CPU_REL,
        );
        next = qwen_omni::cpu::argmax(&want) as u32;
    }
}

/// generate() on the GPU engine queues steps ahead of reading their ids; it must stop, count
/// and leave its cache exactly as the plain loop on the CPU engine does: at a stop id, at the
/// token limit and at a full context, and a second turn after each must continue identically.
#[test]
fn run_ahead_generation_stops_and_leaves_the_cache_like_the_plain_loop() {
    use qwen_omni::models::generation::{CpuSession, StopRule, TextModel, generate};
    use qwen_omni::models::sampler::{Sampler, SamplingParams};
    let ctx = gpu();
    let name = "tied-gqa2";
    let cpu = Qwen3Model::load(&fixture(name)).unwrap();
    let (r, _) = reference(&fixture(name));
    let p = &r.prompts[1];
    let greedy = || {
        Sampler::new(SamplingParams {
            greedy: true,
            ..Default::default()
        })
        .unwrap()
    };
    // (capacity, stop rule) for: a stop id at the 11th token, a limit of 5, a full context
    let first_of = |i: usize| p.greedy.iter().position(|&t| t == p.greedy[i]).unwrap();
    let cases = [
        (
            96,
            StopRule {
                max_new_tokens: 32,
                stop_ids: vec![p.greedy[10]],
            },
        ),
        (
            96,
            StopRule {
                max_new_tokens: 5,
                stop_ids: vec![],
            },
        ),
        (
            p.ids.len() + 3,
            StopRule {
                max_new_tokens: 32,
                stop_ids: vec![],
            },
        ),
    ];
    assert!(first_of(10) > 0);
    for (cap, stop) in cases {
        let mut g = Qwen3Gpu::new(
            &ctx,
            &cpu,
            GpuModelOptions {
                ctx: cap,
                max_prefill: 8,
                all_logits: false,
            },
        )
        .unwrap();
        assert!(g.runs_ahead());
        let mut c = CpuSession {
            model: &cpu,
            cache: cpu.new_cache(cap),
        };
        let run = |m: &mut dyn TextModel, prompt: &[u32], stop: &StopRule| {
            generate(m, prompt, &mut greedy(), stop, |_| {
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap()
        };
        let a = run(&mut g, &p.ids, &stop);
        let b = run(&mut c, &p.ids, &stop);
        let what = format!("cap {cap} stop {stop:?}");
        assert_eq!(a.generated, b.generated, "{what}");
        assert_eq!(
            (a.stopped_by_eos, a.stopped_by_context),
            (b.stopped_by_eos, b.stopped_by_context),
            "{what}"
        );
        assert_eq!(g.cached(), c.cached(), "{what}");
        // a second turn continues from the same cache
        if g.cached() + 3 <= cap {
            let more = StopRule {
                max_new_tokens: cap - g.cached() - 2,
                stop_ids: vec![],
            };
            let a2 = run(&mut g, &[7, 9], &more);
            let b2 = run(&mut c, &[7, 9], &more);
            assert_eq!(a2.generated, b2.generated, "second turn after {what}");
            assert_eq!(g.cached(), c.cached(), "second turn after {what}");
        }
    }
    // the caller's break drops the queued step too
    let mut g = Qwen3Gpu::new(
        &ctx,
        &cpu,
        GpuModelOptions {
            ctx: 96,
            max_prefill: 8,
            all_logits: false,
        },
    )
    .unwrap();
    let stop = StopRule {
        max_new_tokens: 32,
        stop_ids: vec![],
    };
    let mut n = 0;
    let s = generate(&mut g, &p.ids, &mut greedy(), &stop, |_| {
        n += 1;
        Ok(if n == 4 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        })
    })
    .unwrap();
    assert_eq!(s.generated, p.greedy[..4]);
    assert_eq!(g.cached(), p.ids.len() + 3);
}

/// A model that does not fit the GPU memory it may use is refused before any upload, with
/// what it needs and what is available, and nothing panics.
#[test]
fn a_model_larger_than_the_gpu_memory_budget_is_a_clear_error() {
    let ctx = qwen_omni::gpu::GpuContext::new(&qwen_omni::gpu::GpuOptions {
        adapter: std::env::var("OMNI_TEST_ADAPTER").ok(),
        allow_software: true,
        max_binding: None,
        memory_budget: Some(1_000_000),
    })
    .expect("GPU tests need an adapter (lavapipe in CI)");
    let cpu = Qwen3Model::load(&fixture("real-vocab")).unwrap();
    let err = Qwen3Gpu::new(&ctx, &cpu, opts())
        .err()
        .expect("does not fit")
        .to_string();
    assert!(
        err.contains("needs about")
            && err.contains("weights")
            && err.contains("1.0 MB are available"),
        "{err}"
    );
}

/// Decode steps past one 128-row attention chunk (64 where the adapter lacks 512-invocation
/// workgroups, crossed too): the fused QK-norm / RoPE / cache store runs in the last chunk's
/// workgroups while earlier chunks read older rows, and the head's last workgroup merges them.
#[test]
fn decode_past_one_attention_chunk_matches_the_cpu_engine() {
    let ctx = gpu();
    let cpu = Qwen3Model::load(&fixture("odd-gqa3")).unwrap();
    let o = GpuModelOptions { ctx: 160, ..opts() };
    let mut g = Qwen3Gpu::new(&ctx, &cpu, o).unwrap();
    let mut cache = cpu.new_cache(160);
    let ids: Vec<u32> = (0..124u32).map(|i| (i * 31 + 7) % 257).collect();
    g.prefill(&ids, None).unwrap();
    cpu.forward(&ids, &mut cache, Logits::Last).unwrap();
    for (s, id) in [3u32, 250, 17, 99, 5, 1].into_iter().enumerate() {
        let ours = g.decode(Some(id), true).unwrap();
        let want = cpu.forward(&[id], &mut cache, Logits::Last).unwrap();
        assert_close(
            &format!("decode at position {}", 124 + s),
            &ours,
            &want,
            GPU_VS_CPU_REL,
        );
    }
}
