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

/// Runs `op` for `t` tokens twice (device counters must be left ready for the next dispatch)
/// and reads the slots' expert ids and weights.
fn run_route(
    k: &Kernels,
    op: &qwen_omni::gpu::Op,
    t: usize,
    ids: &GpuBuffer,
    w: &GpuBuffer,
    top_k: usize,
) -> (Vec<u32>, Vec<f32>) {
    for _ in 0..2 {
        k.run(
            [op],
            StepDims {
                t: t as u32,
                pos0: 0,
            },
        )
        .unwrap();
    }
    let ctx = &k.ctx;
    (
        ids.read_u32(ctx, 0, t * top_k).unwrap(),
        w.read_f32(ctx, 0, t * top_k).unwrap(),
    )
}

/// Token `tok`'s slots (of `top_k`) against `nn::moe::route` of its `logits`: ids exactly,
/// weights within the f32 budget.
fn assert_route(
    what: &str,
    ids: &[u32],
    w: &[f32],
    tok: usize,
    top_k: usize,
    logits: &[f32],
    renorm: bool,
) {
    let want = qwen_omni::nn::moe::route(logits, top_k, renorm);
    let s = tok * top_k..(tok + 1) * top_k;
    assert_eq!(
        ids[s.clone()],
        want.iter().map(|r| r.0 as u32).collect::<Vec<_>>(),
        "{what}, token {tok}"
    );
    let ww: Vec<f32> = want.iter().map(|r| r.1).collect();
    assert_close(&format!("{what} weights"), &w[s], &ww, GPU_VS_CPU_REL);
}

#[test]
fn moe_routing_on_the_device_matches_the_cpu_route() {
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
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
        // the expert count as a pipeline constant (an unrolled rank loop) and at run time,
        // each into buffers of its own (nothing left from the other to pass on)
        for fixed_e in [true, false] {
            let ids = GpuBuffer::zeros(&ctx, t * top_k, "ids").unwrap();
            let w = GpuBuffer::zeros(&ctx, t * top_k, "w").unwrap();
            k.tuning.route_fixed_e = fixed_e;
            let op = k.moe_route(&gl, experts, top_k, renorm, &ids, &w).unwrap();
            let (got_ids, got_w) = run_route(&k, &op, t, &ids, &w, top_k);
            for tok in 0..t {
                let lg = &logits[tok * experts..(tok + 1) * experts];
                let what = format!("{experts} experts, E {fixed_e}");
                assert_route(&what, &got_ids, &got_w, tok, top_k, lg, renorm);
            }
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
    // ... and the same with o_proj read ahead into the L2 cache during the attention
    // (gpu/prefetch.rs; the MoE layers' only prefetch site): read-only, so bit-identical
    let ahead = qwen_omni::gpu::Tuning {
        l2_prefetch: [100; 5],
        ..Default::default()
    };
    let mut prefetched = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), ahead).unwrap();
    let plain_ops = Qwen3Gpu::new_tuned(&ctx, &cpu, opts(), Default::default()).unwrap();
    assert_eq!(
        prefetched.decode_op_count(),
        plain_ops.decode_op_count() + cpu.config.num_hidden_layers
    );
    prefetched.prefill(ids, None).unwrap();
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
        assert_eq!(
            prefetched.decode(Some(id), true).unwrap(),
            f,
            "prefetched, id {id}"
        );
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

/// MoE decode with each of this engine's decode-only MoE shortcuts turned off in turn, against
/// the default program, step after step (their device counters must be left ready for the next):
/// - the down matvec adding the slots into the residual (`Tuning::moe_sum_fold`) vs a moe_sum
///   dispatch: the same sums in the same order;
/// - the router and routing in one dispatch (`Tuning::moe_router`) vs the router matvec and
///   moe_route: the same logits up to summation order, the same route;
/// - the attention handing o_proj its output quantised (`Tuning::q8_chain_attn`) vs o_proj
///   quantising it itself: the same roundings of the same values;
/// - and on, o_proj inside the attention's dispatch (`Tuning::attn_oproj_wgs`, attn_oproj.wgsl)
///   vs its own dispatch: the same int8 products summed in another order.
///
/// Each within the f32 budget. On the synthetic toy MoE with head_dim 32 (so the attention can
/// quantise whole blocks), whose 32-wide experts quantise (the fixture's 40 stay BF16).
#[test]
fn moe_decode_shortcuts_match_the_plain_program() {
    let ctx = gpu();
    let mut json = qwen_omni::models::presets::moe_config_json("qwen3-moe-tiny").unwrap();
    json["head_dim"] = serde_json::json!(32);
    let c = qwen_omni::models::config::Qwen3Config::from_json(json, std::path::Path::new("toy"))
        .unwrap();
    let opts = GpuModelOptions {
        ctx: 64,
        max_prefill: 8,
        all_logits: false,
    };
    let model =
        |t: qwen_omni::gpu::Tuning| Qwen3Gpu::synthetic_tuned(&ctx, &c, true, opts, t).unwrap();
    let d = qwen_omni::gpu::Tuning::default;
    let layers = c.num_hidden_layers;
    let more = layers as isize;
    let mut plain = model(d());
    // o_proj reads the attention's quantised output in every layer
    assert_eq!(plain.decode_ops_with("(quantised in)"), layers);
    let variants = [
        (
            "moe_sum dispatch",
            qwen_omni::gpu::Tuning {
                moe_sum_fold: false,
                ..d()
            },
            more,
        ),
        (
            "router matvec + moe_route",
            qwen_omni::gpu::Tuning {
                moe_router: false,
                ..d()
            },
            more,
        ),
        (
            "o_proj quantising its input",
            qwen_omni::gpu::Tuning {
                q8_chain_attn: false,
                ..d()
            },
            0,
        ),
        (
            "o_proj inside the attention's dispatch",
            qwen_omni::gpu::Tuning {
                attn_oproj_wgs: u32::MAX,
                ..d()
            },
            -more,
        ),
    ];
    let ids = [3u32, 14, 15, 92, 65];
    plain.prefill(&ids, None).unwrap();
    for (what, tuning, extra) in variants {
        let mut other = model(tuning);
        assert_eq!(
            other.decode_op_count() as isize,
            plain.decode_op_count() as isize + extra,
            "{what}"
        );
        let linked = if extra > 0 { layers } else { 0 };
        assert_eq!(other.decode_ops_with("(quantised in)"), linked, "{what}");
        other.prefill(&ids, None).unwrap();
        let mut base = model(d());
        base.prefill(&ids, None).unwrap();
        let mut next = 7u32;
        for step in 0..12 {
            let a = base.decode(Some(next), true).unwrap();
            let b = other.decode(Some(next), true).unwrap();
            assert_close(&format!("{what}, step {step}"), &b, &a, GPU_VS_CPU_REL);
            next = qwen_omni::cpu::argmax(&a) as u32;
        }
    }
}

/// The decode router and routing in one dispatch (moe_router.wgsl: the router's rows over
/// several workgroups, the token's last one routing) against the CPU: RMSNorm of x with its
/// weight, the 16-bit router's logits, `nn::moe::route`. Ids exactly, weights within
/// the f32 budget; BF16 and F16 routers, 6 to 300 experts, several tokens. Shapes outside the
/// kernel (hidden not a multiple of 8, above 4096) are declined, so the caller keeps the
/// two-dispatch path.
#[test]
fn fused_router_and_routing_match_the_cpu() {
    use qwen_omni::gpu::GpuMatrix;
    use qwen_omni::tensor::DType;
    let ctx = gpu();
    let mut k = Kernels::new(&ctx);
    let values = |n: usize, seed: u64| -> Vec<f32> {
        let mut r = qwen_omni::models::sampler::Rng::new(seed);
        (0..n).map(|_| r.next_f32() * 2.0 - 1.0).collect()
    };
    let to_16 = |dtype: DType, v: &[f32]| -> (Vec<u8>, Vec<f32>) {
        let mut bytes = Vec::new();
        let mut back = Vec::new();
        for &x in v {
            if dtype == DType::BF16 {
                let b = qwen_omni::tensor::f32_to_bf16(x);
                bytes.extend(b.to_le_bytes());
                back.push(f32::from_bits((b as u32) << 16));
            } else {
                let h = half::f16::from_f32(x);
                bytes.extend(h.to_le_bytes());
                back.push(h.to_f32());
            }
        }
        (bytes, back)
    };
    let eps = 1e-6f32;
    let shapes = [
        (6usize, 3usize, true, 3usize, 64usize, DType::BF16),
        (128, 8, true, 2, 2048, DType::BF16),
        (7, 2, false, 1, 200, DType::F16),
        (300, 1, true, 1, 256, DType::BF16),
    ];
    // each with the router rows loaded before the norm's prologue (PRE) and after it, the
    // expert count a pipeline constant and read at run time, at several workgroup sizes
    // (rows a workgroup: one per subgroup)
    let variants = [
        (true, true, 256u32),
        (false, false, 128),
        (true, false, 32),
        (false, true, 1024),
    ];
    let runs = shapes
        .iter()
        .flat_map(|&s| variants.iter().map(move |&v| (s, v)));
    for ((experts, top_k, renorm, t, hidden, dtype), (pre, fixed_e, wg)) in runs {
        k.tuning.router_pre = pre;
        k.tuning.route_fixed_e = fixed_e;
        k.tuning.router_wg = wg;
        let (bytes, w) = to_16(dtype, &values(experts * hidden, 31));
        let router = GpuMatrix::upload(&ctx, dtype, &bytes, experts, hidden, "router").unwrap();
        let x = values(t * hidden, 32);
        let g: Vec<f32> = values(hidden, 33).iter().map(|v| 1.0 + 0.5 * v).collect();
        let (gx, gg) = (
            GpuBuffer::from_f32(&ctx, &x, "x").unwrap(),
            GpuBuffer::from_f32(&ctx, &g, "g").unwrap(),
        );
        let ids = GpuBuffer::zeros(&ctx, t * top_k, "ids").unwrap();
        let wts = GpuBuffer::zeros(&ctx, t * top_k, "w").unwrap();
        let lg = GpuBuffer::zeros(&ctx, t * experts, "logits").unwrap();
        let op = k
            .moe_router(&router, &lg, &gx, &gg, eps, top_k, renorm, &ids, &wts)
            .unwrap()
            .expect("the kernel takes this shape");
        let (got_ids, got_w) = run_route(&k, &op, t, &ids, &wts, top_k);
        for tok in 0..t {
            let xt = &x[tok * hidden..(tok + 1) * hidden];
            let ms = xt.iter().map(|v| v * v).sum::<f32>() / hidden as f32;
            let rms = (ms + eps).sqrt();
            let logits: Vec<f32> = (0..experts)
                .map(|e| {
                    let row = &w[e * hidden..(e + 1) * hidden];
                    row.iter()
                        .zip(xt)
                        .zip(&g)
                        .map(|((a, b), c)| a * b * c)
                        .sum::<f32>()
                        / rms
                })
                .collect();
            let what =
                format!("fused, {experts} experts, hidden {hidden}, {wg} invocations, E {fixed_e}");
            assert_route(&what, &got_ids, &got_w, tok, top_k, &logits, renorm);
        }
    }
    // declined shapes
    for hidden in [44usize, 4104] {
        let (bytes, _) = to_16(DType::BF16, &values(8 * hidden, 34));
        let router = GpuMatrix::upload(&ctx, DType::BF16, &bytes, 8, hidden, "router").unwrap();
        let x = GpuBuffer::zeros(&ctx, hidden, "x").unwrap();
        let b = GpuBuffer::zeros(&ctx, 8, "b").unwrap();
        let got = k
            .moe_router(&router, &b, &x, &x, eps, 2, true, &b, &b)
            .unwrap();
        assert!(got.is_none(), "hidden {hidden} must be declined");
    }
}
