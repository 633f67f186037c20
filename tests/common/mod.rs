//! Shared test helpers and the one table of numerical tolerances.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use qwen_omni::weights::WeightStore;

/// Tolerances, reasoned once (see docs/testing.md):
///
/// The engine and the reference both decode the same bf16 weights exactly to f32 and compute
/// in f32; they differ only in summation order and in libm vs torch transcendental functions.
/// One f32 dot product of length K has a relative error around sqrt(K) * 2^-24 (~3e-6 for
/// K = 3072); through the fixtures' 2-3 layers we measured at most 6e-7 of the tensor's scale
/// (2026-11-27). The budget sits ~15x above that, still far below any bf16-sized error (4e-3),
/// so a real mistake (wrong rounding, a missed norm, a shifted position) cannot hide in it.
pub mod tol {
    /// max |ours - ref| / max |ref| for hidden states and logits, f32 vs f32 math.
    pub const F32_VS_F32_REL: f32 = 1e-5;
    /// CPU kernels against hand-computed values (few terms, exactly representable inputs).
    pub const KERNEL_ABS: f32 = 1e-5;
    /// GPU kernel vs its CPU twin (max error / max |cpu|): both f32 from identical inputs;
    /// only summation order (tree vs serial partial sums) and the GPU's exp differ.
    pub const GPU_VS_CPU_REL: f32 = 2e-5;
    /// Q8_0 vs the BF16 reference. Rounding to the block grid costs at most d / 2 with
    /// d = max|w| / 127, uniform: a std of max|w| / 440, about 0.5% of a Gaussian weight's
    /// std (max of 32 ~ 2.2 sigma). Independent errors add in quadrature over the ~4 products
    /// per layer: ~1% relative RMS on the logits of 2-3 layers, so 1 - cosine ~ 5e-5; the bound
    /// 1e-3 leaves 20x. The largest single error, against the largest logit, ~4 sigma of 1% of a
    /// typical logit, itself ~1/3 of the largest: ~1.5%; bound 4%.
    /// The GPU's default Q8_0 decode also rounds the activations to int8 blocks (the same
    /// rule): a second independent error of the same size, ~1.4% instead of 1% RMS, inside the
    /// same bounds.
    pub const Q8_LOGITS_COSINE: f64 = 0.999;
    pub const Q8_LOGITS_REL: f32 = 0.04;
    /// MoE with int8 activations: the rounding moves the router's input by ~1%, enough to swap
    /// a near-tied expert at an occasional position (measured: one of 19 positions of the tiny
    /// qwen3_moe prompt, 6% there, 0.5-1% elsewhere). A swap replaces one of the top-k experts
    /// (k = 3 there, renormalised weight ~1/3) in one layer, whose output is a fraction of the
    /// residual: ~1/3 x ~1/2 of a typical logit, ~1/3 of the largest: up to ~6%; bound 20%, for
    /// at most 2 positions of a prompt. The other positions keep Q8_LOGITS_REL.
    pub const Q8_MOE_SWAP_REL: f32 = 0.2;
    pub const Q8_MOE_SWAPS: usize = 2;
    /// Greedy choices: the fixtures' top-1 / top-2 gaps are > 0.047 on logits with std ~4,
    /// against ~1% errors: nearly all positions agree; 90% allows a few close calls.
    pub const Q8_TOP1_AGREE_PERCENT: usize = 90;
    /// Two GPU programs with the same int8 products summed in another order, whose outputs are
    /// rounded to int8 blocks again for the next matvec (a chain link): their f32 rows differ by
    /// a few ulps of the sum (~4e-6 relative at K = 4096), i.e. ~5e-4 of a rounding step, so a
    /// value lands on the other side of a rounding boundary with probability ~5e-4; at 64-192
    /// values per step that is one step in 30-100. Such a step moves one input by one step of
    /// its block (1/127 of the block's largest): inside the Q8_0 budget (measured: 1e-3 of
    /// the largest logit). Other steps keep the f32 budget; at most 10% of steps may flip.
    pub const CHAIN_FLIP_STEPS_PERCENT: usize = 10;
}

/// The one GPU context the tests of a binary share, as the product's stages do. Fails (never
/// skips) without an adapter; OMNI_TEST_ADAPTER picks one by name.
pub fn gpu() -> std::sync::Arc<qwen_omni::gpu::GpuContext> {
    static CTX: std::sync::OnceLock<std::sync::Arc<qwen_omni::gpu::GpuContext>> =
        std::sync::OnceLock::new();
    CTX.get_or_init(|| gpu_with(None)).clone()
}

/// A context of its own, with the binding limit capped (split-tensor tests).
pub fn gpu_with(max_binding: Option<u64>) -> std::sync::Arc<qwen_omni::gpu::GpuContext> {
    let opts = qwen_omni::gpu::GpuOptions {
        adapter: std::env::var("OMNI_TEST_ADAPTER").ok(),
        allow_software: true,
        max_binding,
        memory_budget: None,
    };
    qwen_omni::gpu::GpuContext::new(&opts)
        .unwrap_or_else(|e| panic!("GPU tests need an adapter (lavapipe in CI): {e}"))
}

/// Whether the adapter may not run a dispatch's workgroups all at once (lavapipe: a few CPU
/// threads take them in turn, one on a 1-core machine): a persistent kernel's wait on another
/// workgroup could then never end, so such tests use a single workgroup there.
pub fn one_workgroup_at_a_time(ctx: &qwen_omni::gpu::GpuContext) -> bool {
    ctx.info.name.contains("llvmpipe")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/qwen3").join(name)
}

pub const FIXTURE_MODELS: &[&str] = &["tied-gqa2", "untied-mha", "odd-gqa3", "real-vocab"];

/// The real Qwen3 tokenizer fetched by scripts/setup-test-data.sh. Tests fail (never skip)
/// when it is absent.
pub fn real_tokenizer_dir() -> PathBuf {
    let d = repo_root().join("target/test-data/qwen3-tokenizer");
    assert!(
        d.join("tokenizer.json").is_file(),
        "{} is missing: run scripts/setup-test-data.sh",
        d.display()
    );
    d
}

#[derive(serde::Deserialize)]
pub struct Reference {
    pub prompts: Vec<RefPrompt>,
}

#[derive(serde::Deserialize)]
pub struct RefPrompt {
    pub ids: Vec<u32>,
    pub greedy: Vec<u32>,
}

pub fn reference(model_dir: &Path) -> (Reference, WeightStore) {
    let text = std::fs::read_to_string(model_dir.join("reference.json")).expect("reference.json");
    let r: Reference = serde_json::from_str(&text).expect("reference.json parses");
    let store = reference_store(model_dir);
    (r, store)
}

/// reference.safetensors opened through our own loader.
pub fn reference_store(model_dir: &Path) -> WeightStore {
    let tmp = tempfile::tempdir().expect("tempdir");
    // WeightStore opens a directory; link the reference file in as model.safetensors.
    let link = tmp.path().join("model.safetensors");
    std::os::unix::fs::symlink(model_dir.join("reference.safetensors"), &link).expect("symlink");
    let store = WeightStore::open(tmp.path()).expect("reference.safetensors opens");
    std::mem::forget(tmp); // the mapping outlives the directory entry anyway; keep it simple
    store
}

pub fn tensor(store: &WeightStore, name: &str) -> Vec<f32> {
    store
        .get(name)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_f32_vec()
        .expect("float tensor")
}

/// max |a - b| / max |b|
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

pub fn assert_close(what: &str, ours: &[f32], reference: &[f32], budget: f32) {
    let e = rel_err(ours, reference);
    assert!(
        e <= budget,
        "{what}: relative error {e:.3e} exceeds budget {budget:.1e}"
    );
}

/// `assert_close` per row of `row_len` (positions), scaled by the whole reference's largest
/// value, with up to `swaps` rows allowed `swap_budget` (near-tied MoE routing, see tol).
pub fn assert_close_rows(
    what: &str,
    ours: &[f32],
    reference: &[f32],
    row_len: usize,
    budget: f32,
    swaps: usize,
    swap_budget: f32,
) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference
        .iter()
        .fold(0f32, |a, b| a.max(b.abs()))
        .max(f32::MIN_POSITIVE);
    let errs: Vec<f32> = ours
        .chunks(row_len)
        .zip(reference.chunks(row_len))
        .map(|(a, b)| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale)
        .collect();
    let over: Vec<(usize, f32)> = errs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, e)| e > budget)
        .collect();
    assert!(
        over.len() <= swaps && over.iter().all(|&(_, e)| e <= swap_budget),
        "{what}: rows over {budget:.1e}: {over:?} (at most {swaps}, each within {swap_budget:.1e})"
    );
}

/// The GPU's pick `g` for draw `u` is consistent with the twin's distribution: `g` survives the
/// twin's thresholds (up to float slack at the boundary) and the twin's cumulative mass in index
/// order passes u * total at `g`. Summation order differs (a tree on the GPU), so the masses
/// carry float32 error: about sqrt(n) * 2^-24 relative (2.3e-5 at n = 151936); the slack is 1e-4.
pub fn assert_pick_consistent(
    logits: &[f32],
    p: &qwen_omni::models::sampler::SamplingParams,
    u: f32,
    g: u32,
) {
    let (q, tau) = qwen_omni::models::sampler::device_threshold(logits, p);
    let slack = 1e-4f64;
    let kept = |i: usize| q[i] as f64 >= tau as f64 * (1.0 - slack);
    assert!(
        kept(g as usize),
        "pick {g} (p {}) is below the threshold {tau}",
        q[g as usize]
    );
    let total: f64 = (0..q.len())
        .filter(|&i| q[i] >= tau)
        .map(|i| q[i] as f64)
        .sum();
    let before: f64 = (0..g as usize)
        .filter(|&i| q[i] >= tau)
        .map(|i| q[i] as f64)
        .sum();
    let after = before + q[g as usize] as f64;
    let goal = u as f64 * total;
    assert!(
        before <= goal + slack * total && after >= goal - slack * total,
        "pick {g}: mass {before}..{after} vs goal {goal} of {total}"
    );
}

/// `n` greedy ids on the GPU engine from a fresh cache: prefill, then decode steps fed by the
/// previous argmax on the device (only each chosen id is read back).
pub fn device_greedy(
    g: &mut qwen_omni::models::qwen3::gpu::Qwen3Gpu,
    prompt: &[u32],
    n: usize,
) -> Vec<u32> {
    g.reset();
    g.prefill(prompt, None).unwrap();
    let mut got = vec![g.last_id().unwrap()];
    while got.len() < n {
        g.decode(None, false).unwrap();
        got.push(g.last_id().unwrap());
    }
    got
}

/// Greedy replies of the Omni `thinker` to `turns` of 16 kHz audio in one conversation (audio-
/// only user turns, stopping at `<|im_end|>`, each reply closed as the daemon closes it): what
/// the daemon must answer.
pub fn omni_greedy_turns(
    th: &qwen_omni::models::omni::OmniThinker,
    turns: &[Vec<f32>],
    max_tokens: usize,
) -> Vec<Vec<u32>> {
    use qwen_omni::models::generation::{StopRule, TextModel, Want, generate};
    use qwen_omni::models::sampler::{Sampler, SamplingParams};
    let mut session = th.session(4096);
    let mut out = Vec::new();
    for audio in turns {
        let rows = th.encode_audio(audio).unwrap();
        let prompt = th
            .tokens
            .user_turn(Some(rows.len() / th.text.config.hidden_size), &[]);
        session.attach_audio(rows);
        let mut sampler = Sampler::new(SamplingParams {
            greedy: true,
            ..Default::default()
        })
        .unwrap();
        let stop = StopRule {
            max_new_tokens: max_tokens,
            stop_ids: vec![th.tokens.im_end],
        };
        let g = generate(&mut session, &prompt, &mut sampler, &stop, |_| {
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        session
            .step(&th.tokens.end_of_reply(), Want::Greedy)
            .unwrap();
        out.push(g.generated);
    }
    out
}
