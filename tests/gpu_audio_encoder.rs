//! The AuT audio encoder on the GPU engine against the CPU encoder and transformers' outputs
//! (tiny Omni checkpoint, tests/fixtures/omni/tiny), against the CPU encoder on odd shapes
//! with random weights, and its GELU against the CPU's. Runs on whatever adapter wgpu finds
//! (lavapipe in CI) and fails, never skips, when there is none.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::{gpu, gpu_with, reference_store, rel_err, repo_root, tensor, tol};
use qwen_omni::gpu::{GpuBuffer, GpuContext, Kernels, StepDims};
use qwen_omni::models::audio_encoder::aut::{AudioEncoder, AudioEncoderConfig, gelu};
use qwen_omni::models::audio_encoder::aut_gpu::AudioEncoderGpu;
use qwen_omni::tensor::{DType, f32_to_bf16};
use qwen_omni::weights::{SafetensorsWriter, TensorSpec, WeightStore};

const PREFIX: &str = "thinker.audio_tower.";

/// GPU vs CPU encoder, max |gpu − cpu| / max |cpu|. Both compute in f32 from the same bf16
/// weights; they differ in summation order (tree sums in LayerNorm, another order in the
/// convolution and matmul tiles), in exp (softmax, the erfc fit's exponential) and in the
/// statistics of LayerNorm (f64 on the CPU). That is what every GPU kernel test budgets for
/// (`GPU_VS_CPU_REL`, 2e-5), and the encoder is no deeper than the decoders those tests run.
/// Measured on lavapipe 2026-11-27: at most 7.8e-7 at the tiny and odd shapes, 2.0e-6 at the
/// real widths (sums over up to 7680 terms). A wrong window, position or padding moves the
/// outputs by 1e-2 or more (tests/audio_encoder.rs).
const GPU_VS_CPU: f32 = tol::GPU_VS_CPU_REL;

/// GPU vs transformers: the CPU encoder's own distance to the reference (≤ 5e-7 measured,
/// budget `F32_VS_F32_REL` = 1e-5 in tests/audio_encoder.rs) plus the GPU's distance to the
/// CPU, each within its budget.
const GPU_VS_REFERENCE: f32 = tol::F32_VS_F32_REL + tol::GPU_VS_CPU_REL;

fn tiny_dir() -> PathBuf {
    repo_root().join("tests/fixtures/omni/tiny")
}

fn load_encoder(dir: &Path, config: AudioEncoderConfig) -> AudioEncoder {
    let store = WeightStore::open(dir).unwrap_or_else(|e| panic!("{e}"));
    AudioEncoder::load(&store, PREFIX, config).unwrap_or_else(|e| panic!("{e}"))
}

fn tiny_encoders(ctx: &Arc<GpuContext>) -> (AudioEncoder, AudioEncoderGpu) {
    let cfg = AudioEncoderConfig::load(&tiny_dir()).unwrap_or_else(|e| panic!("{e}"));
    let cpu = load_encoder(&tiny_dir(), cfg);
    let gpu = AudioEncoderGpu::new(ctx, &cpu).unwrap_or_else(|e| panic!("{e}"));
    (cpu, gpu)
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

/// GPU and CPU outputs for `frames` frames, and the GPU's distance to the CPU (asserted).
fn gpu_vs_cpu(cpu: &AudioEncoder, gpu: &AudioEncoderGpu, mel: &[f32], frames: usize) -> Vec<f32> {
    let want = cpu.forward(mel, frames).unwrap();
    let got = gpu.forward(mel, frames).unwrap();
    assert_eq!(
        got.len(),
        cpu.config.output_tokens(frames) * cpu.config.output_dim,
        "{frames} frames: row count"
    );
    let e = rel_err(&got, &want);
    eprintln!("{frames} frames: GPU vs CPU {e:.2e}");
    assert!(
        e <= GPU_VS_CPU,
        "{frames} frames: GPU vs CPU {e:.2e} > {GPU_VS_CPU:.0e}"
    );
    got
}

#[test]
fn both_clips_match_the_cpu_encoder_and_transformers() {
    let (cpu, gpu) = tiny_encoders(&gpu());
    let refs = reference_store(&tiny_dir());
    for clip in ["short", "long"] {
        let (mel, frames) = mel(&refs, clip);
        let got = gpu_vs_cpu(&cpu, &gpu, &mel, frames);
        let e = rel_err(&got, &tensor(&refs, &format!("audio.{clip}")));
        eprintln!("{clip}: GPU vs transformers {e:.2e}");
        assert!(
            e <= GPU_VS_REFERENCE,
            "{clip}: {e:.2e} > {GPU_VS_REFERENCE:.0e}"
        );
    }
    // forwards of the long clip once the first has compiled the pipelines: the median of 5
    let (mel, frames) = mel(&refs, "long");
    let mut times: Vec<_> = (0..5)
        .map(|_| {
            let start = Instant::now();
            gpu.forward(&mel, frames).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "long clip ({frames} frames), one GPU forward: median {:.2?}, fastest {:.2?}",
        times[2], times[0]
    );
}

#[test]
fn the_long_clip_spans_two_windows_each_equal_to_encoding_its_frames_alone() {
    // n_window_infer 400 frames = 52 tokens: the long clip's 84 tokens form the windows
    // [0, 52) from frames [0, 400) and [52, 84) from frames [400, 644). Chunks and positions
    // restart at those frame boundaries too, so each window must equal an encoding of its own
    // frames; without the window the first rows would also see tokens 52..84 (and the
    // reference says that moves the output by up to 0.081).
    let (cpu, gpu) = tiny_encoders(&gpu());
    let refs = reference_store(&tiny_dir());
    let (mel, frames) = mel(&refs, "long");
    let width = cpu.config.output_dim;
    let whole = gpu.forward(&mel, frames).unwrap();
    assert_eq!(whole.len(), 84 * width);
    let first = gpu.forward(&frames_of(&mel, frames, 0, 400), 400).unwrap();
    let second = gpu
        .forward(&frames_of(&mel, frames, 400, 644), 244)
        .unwrap();
    let e1 = rel_err(&whole[..52 * width], &first);
    let e2 = rel_err(&whole[52 * width..], &second);
    eprintln!("GPU window 0 vs alone: {e1:.2e}, window 1 vs alone: {e2:.2e}");
    assert!(e1 <= GPU_VS_CPU && e2 <= GPU_VS_CPU, "{e1:e} {e2:e}");
}

#[test]
fn clips_shorter_than_one_chunk_exactly_one_chunk_and_one_frame_over_match_the_cpu() {
    // 1 and 44 frames: one chunk padded to its own length; 100: one full chunk; 101: a full
    // chunk and a one-frame chunk padded to 100 frames, of which one token is kept.
    let (cpu, gpu) = tiny_encoders(&gpu());
    let refs = reference_store(&tiny_dir());
    let (mel, frames) = mel(&refs, "short");
    for f in [1, 44, 100, 101] {
        gpu_vs_cpu(&cpu, &gpu, &frames_of(&mel, frames, 0, f), f);
    }
}

#[test]
fn bad_mels_are_the_cpu_encoders_errors() {
    let (_cpu, gpu) = tiny_encoders(&gpu());
    let error = |mel: &[f32], frames| match gpu.forward(mel, frames) {
        Ok(_) => panic!("expected an error for {frames} frames"),
        Err(e) => e.to_string(),
    };
    assert!(error(&[], 0).contains("no frames"));
    assert!(error(&vec![0.0; 128 * 50 + 1], 50).contains("6400 values, got 6401"));
    let mut mel = vec![0.0; 128 * 50];
    mel[3 * 50 + 7] = f32::INFINITY;
    assert!(error(&mel, 50).contains("bin 3, frame 7"));
}

// ---------------------------------------------------------------------------------------
// Odd shapes: a random encoder where no size is a multiple of anything
// ---------------------------------------------------------------------------------------

/// Sizes chosen so no kernel sees a friendly shape: 37 mel bins (-> 19 -> 10 -> 5), 5
/// channels, conv_out 25 -> 30 (not a multiple of 16: the matmul's scalar path), 2 heads of
/// 15, ffn 47, output 23; chunks of 14 frames give 2 tokens, windows of 3 chunks 6 tokens.
fn odd_config() -> AudioEncoderConfig {
    AudioEncoderConfig::from_json(&serde_json::json!({
        "num_mel_bins": 37,
        "d_model": 30,
        "encoder_layers": 2,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 47,
        "downsample_hidden_size": 5,
        "output_dim": 23,
        "n_window": 7,
        "n_window_infer": 42,
        "activation_function": "gelu",
    }))
    .unwrap()
}

/// Deterministic values in [-1, 1) with no structure.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = qwen_omni::models::sampler::Rng::new(seed);
    (0..n).map(|_| r.next_f32() * 2.0 - 1.0).collect()
}

/// Write a random BF16 encoder for `c` into dir/model.safetensors: weights scaled by
/// 1/√fan_in so activations stay near unit size, norm weights near 1, biases small.
fn write_random_encoder(dir: &Path, c: &AudioEncoderConfig) {
    let (d, ch, ffn) = (c.d_model, c.downsample_hidden_size, c.encoder_ffn_dim);
    let features = ch * c.num_mel_bins.div_ceil(2).div_ceil(2).div_ceil(2);
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("conv2d1.weight".into(), vec![ch, 1, 3, 3]),
        ("conv2d1.bias".into(), vec![ch]),
        ("conv2d2.weight".into(), vec![ch, ch, 3, 3]),
        ("conv2d2.bias".into(), vec![ch]),
        ("conv2d3.weight".into(), vec![ch, ch, 3, 3]),
        ("conv2d3.bias".into(), vec![ch]),
        ("conv_out.weight".into(), vec![d, features]),
        ("ln_post.weight".into(), vec![d]),
        ("ln_post.bias".into(), vec![d]),
        ("proj1.weight".into(), vec![d, d]),
        ("proj1.bias".into(), vec![d]),
        ("proj2.weight".into(), vec![c.output_dim, d]),
        ("proj2.bias".into(), vec![c.output_dim]),
    ];
    for l in 0..c.encoder_layers {
        let p = |n: &str| format!("layers.{l}.{n}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            tensors.push((p(&format!("self_attn.{proj}.weight")), vec![d, d]));
            tensors.push((p(&format!("self_attn.{proj}.bias")), vec![d]));
        }
        for norm in ["self_attn_layer_norm", "final_layer_norm"] {
            tensors.push((p(&format!("{norm}.weight")), vec![d]));
            tensors.push((p(&format!("{norm}.bias")), vec![d]));
        }
        tensors.push((p("fc1.weight"), vec![ffn, d]));
        tensors.push((p("fc1.bias"), vec![ffn]));
        tensors.push((p("fc2.weight"), vec![d, ffn]));
        tensors.push((p("fc2.bias"), vec![d]));
    }
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, shape)| TensorSpec::new(format!("{PREFIX}{name}"), DType::BF16, shape))
        .collect();
    let mut w = SafetensorsWriter::create(&dir.join("model.safetensors"), &specs).unwrap();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let v = values(n, 1000 + i as u64);
        let scaled: Vec<f32> = if name.contains("norm") && name.ends_with("weight") {
            v.iter().map(|x| 1.0 + 0.2 * x).collect()
        } else if name.ends_with("bias") {
            v.iter().map(|x| 0.1 * x).collect()
        } else {
            // uniform [-a, a] has std a/√3: a = √(3 / fan_in) gives unit-variance products
            let a = (3.0 / fan_in as f32).sqrt();
            v.iter().map(|x| a * x).collect()
        };
        let bytes: Vec<u8> = scaled
            .iter()
            .flat_map(|&x| f32_to_bf16(x).to_le_bytes())
            .collect();
        w.write(&bytes).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn odd_shapes_with_random_weights_match_the_cpu_encoder() {
    let cfg = odd_config();
    let tmp = tempfile::tempdir().unwrap();
    write_random_encoder(tmp.path(), &cfg);
    let cpu = load_encoder(tmp.path(), cfg.clone());
    // 1 frame; 9 (under a chunk); 14 (one chunk); 100 (7 chunks and a 2-frame tail: 15
    // tokens in windows of 6, 6 and 3); 130 (9 chunks and a 4-frame tail: 19 tokens in
    // windows of 6, 6, 6 and 1)
    let frame_counts = [1, 9, 14, 100, 130];
    let mel = values(cfg.num_mel_bins * 130, 7);
    let gpu_enc = AudioEncoderGpu::new(&gpu(), &cpu).unwrap();
    for f in frame_counts {
        gpu_vs_cpu(&cpu, &gpu_enc, &frames_of(&mel, 130, 0, f), f);
    }
    // the token stage is kept per capacity bucket: a shorter clip after a longer one in the
    // same bucket reuses its buffers, whose rows past the clip hold the longer clip's values
    gpu_vs_cpu(&cpu, &gpu_enc, &frames_of(&mel, 130, 0, 100), 100);
    // A binding limit of 24 000 bytes fits the second convolution's patches of 3 chunks
    // (10 · 4 positions × 45 taps = 7200 bytes each): the 10 chunks then go through the
    // convolutions in groups of 3, 3, 3 and 1, the scratch buffers reused.
    let small = gpu_with(Some(24_000));
    let grouped = AudioEncoderGpu::new(&small, &cpu).unwrap();
    gpu_vs_cpu(&cpu, &grouped, &mel, 130);
}

#[test]
fn the_real_models_widths_match_the_cpu_encoder() {
    // Qwen3-Omni's AuT widths (d_model 1280, 20 heads of 64, ffn 5120, 480 channels, 128
    // bins, output 2048) on one layer of random weights: the matmul's 16-byte path, norms
    // wider than a workgroup, 4320-tap convolutions. 237 frames: two chunks and a 37-frame
    // tail, 31 tokens in one 104-token window.
    let cfg = AudioEncoderConfig::from_json(&serde_json::json!({
        "num_mel_bins": 128,
        "d_model": 1280,
        "encoder_layers": 1,
        "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120,
        "downsample_hidden_size": 480,
        "output_dim": 2048,
        "n_window": 50,
        "n_window_infer": 800,
        "activation_function": "gelu",
    }))
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    write_random_encoder(tmp.path(), &cfg);
    let cpu = load_encoder(tmp.path(), cfg.clone());
    let gpu_enc = AudioEncoderGpu::new(&gpu(), &cpu).unwrap();
    let frames = 237;
    let mel = values(cfg.num_mel_bins * frames, 11);
    let t = Instant::now();
    cpu.forward(&mel, frames).unwrap();
    eprintln!("real widths, CPU forward: {:.2?}", t.elapsed());
    gpu_vs_cpu(&cpu, &gpu_enc, &mel, frames);
    let t = Instant::now();
    gpu_enc.forward(&mel, frames).unwrap();
    eprintln!("real widths, GPU forward: {:.2?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------
// GELU
// ---------------------------------------------------------------------------------------

/// GPU GELU vs the CPU's, max |gpu − cpu| / max(|cpu|, 1). Both evaluate the same erfc fit
/// (relative error ≤ 1.2e-7), the GPU in f32 where the CPU uses f64: a few f32 roundings of
/// the polynomial and of the result (2^-24 ≈ 6e-8 each). The exponential's argument −z² +
/// poly, rounded to f32, costs up to z² · 2^-24 relative, but only where |x| is large and
/// GELU is tiny (x ≤ −3: |gelu| < 4e-3), so against max(|gelu|, 1) it stays below 1e-7.
/// Measured on lavapipe 2026-11-27: 1.2e-7 (at x = 0.843). The budget leaves 8x; a wrong
/// coefficient or the tanh approximation (4.7e-4 off) cannot pass.
const GELU_GPU_VS_CPU: f32 = 1e-6;

#[test]
fn gpu_gelu_has_the_accuracy_of_the_cpu_gelu() {
    let ctx = gpu();
    let k = Kernels::new(&ctx);
    let x: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 * 1e-3).collect();
    let n = x.len();
    let buf = GpuBuffer::from_f32(&ctx, &x, "x").unwrap();
    let zero = GpuBuffer::zeros(&ctx, n, "bias").unwrap();
    let op = k.add_bias(&buf, &zero, n, 1, true).unwrap();
    k.run([&op], StepDims { t: 1, pos0: 0 }).unwrap();
    let got = buf.read_f32(&ctx, 0, n).unwrap();
    let (mut worst, mut at) = (0f32, 0f32);
    for (&xi, &g) in x.iter().zip(&got) {
        let want = gelu(xi);
        let e = (g - want).abs() / want.abs().max(1.0);
        if e > worst {
            (worst, at) = (e, xi);
        }
    }
    eprintln!("GPU GELU vs CPU: {worst:.2e} at x = {at}");
    assert!(worst <= GELU_GPU_VS_CPU, "{worst:e} at {at}");
}
