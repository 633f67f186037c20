//! `omni bench`: what a user cares about (load time, prefill and decode speed, memory) and how
//! close decode comes to the memory-bandwidth limit measured in the same run.

use std::time::Instant;

use anyhow::Result;

use super::info::human_bytes;
use super::load::load_qwen3;
use crate::cpu::bandwidth::measure_read_bandwidth_stats;
use crate::models::qwen3::Logits;
use crate::models::sampler::Rng;

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub model: String,
    /// a preset name: random weights made on the GPU instead of a model directory
    pub synthetic: Option<String>,
    pub prompt_len: usize,
    pub gen_len: usize,
    /// size of the buffer for the bandwidth measurement
    pub bandwidth_mib: usize,
    pub repeats: usize,
    pub backend: super::engine::Backend,
    pub adapter: Option<String>,
    pub quant: Option<String>,
    /// the GPU's f32 FMA peak in TFLOP/s, for the prefill share (known cards are built in)
    pub peak_tflops: Option<f64>,
    /// tokens of the prefill step profiled by kernel (GPU)
    pub profile_prefill: usize,
    /// print the driver's statistics of the pipelines whose shader name contains this (GPU)
    pub shader_stats: Option<String>,
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let gpu = super::engine::gpu_context(a.backend, a.adapter.as_deref())?;
    if let Some(ctx) = gpu {
        return super::bench_gpu::run(a, &ctx);
    }
    if let Some(s) = &a.synthetic {
        anyhow::bail!(
            "--synthetic {s} makes its weights on a GPU: no GPU adapter is in use (--backend gpu)"
        );
    }
    let dir = super::model_dir(&a.model)?;
    let rss_before = MemInfo::read();
    let mut loaded = load_qwen3(&dir)?;
    super::load::apply_quant(&mut loaded, a.quant.as_deref())?;
    let rss_loaded = MemInfo::read();
    let model = &loaded.model;
    let vocab = model.config.vocab_size as u64;
    let mut rng = Rng::new(42);
    let prompt: Vec<u32> = (0..a.prompt_len)
        .map(|_| (rng.next_u64() % vocab) as u32)
        .collect();

    // Bandwidth before and after the runs: this class of shared VM drifts by up to 2x within
    // minutes; the higher median is the roofline (a share above 100% would mean it drifted).
    let before = measure_read_bandwidth_stats(a.bandwidth_mib << 20, 9);
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let mut decode_empty = Vec::new();
    for _ in 0..a.repeats.max(1) {
        // As llama-bench's tg test: decode from an empty context (one token of prompt).
        let mut cache = model.new_cache(a.gen_len + 2);
        let mut logits = model.forward(&prompt[..1], &mut cache, Logits::Last)?;
        let t0 = Instant::now();
        for _ in 0..a.gen_len {
            let id = crate::cpu::argmax(&logits) as u32;
            logits = model.forward(&[id], &mut cache, Logits::Last)?;
        }
        decode_empty.push(a.gen_len as f64 / t0.elapsed().as_secs_f64());

        let mut cache = model.new_cache(a.prompt_len + a.gen_len + 1);
        let t0 = Instant::now();
        let mut logits = model.forward(&prompt, &mut cache, Logits::Last)?;
        prefill.push(a.prompt_len as f64 / t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        for _ in 0..a.gen_len {
            let id = crate::cpu::argmax(&logits) as u32;
            logits = model.forward(&[id], &mut cache, Logits::Last)?;
        }
        decode.push(a.gen_len as f64 / t1.elapsed().as_secs_f64());
    }
    let rss_peak = MemInfo::read();
    let after = measure_read_bandwidth_stats(a.bandwidth_mib << 20, 9);
    let (bw_min, bw, bw_max) = if before.1 >= after.1 { before } else { after };

    let prefill_tps = median(&mut prefill);
    let decode_tps = median(&mut decode);
    let decode_empty_tps = median(&mut decode_empty);
    let bytes_per_token = model.bytes_per_decoded_token();
    let achieved = bytes_per_token as f64 * decode_tps;
    // Prefill runs lm_head for the last token only: count the layers' weights.
    // one multiply-add per weight of every layer matrix (whatever its storage)
    let flops_per_token = 2.0 * model.layer_matrix_params() as f64;
    println!("| metric | value |");
    println!("|---|---|");
    println!("| model | {} |", dir.display());
    println!("| threads | {} |", rayon::current_num_threads());
    println!(
        "| load time (map + fault in {}) | {:.2} s |",
        human_bytes(loaded.file_bytes),
        loaded.load_time.as_secs_f64()
    );
    println!(
        "| prefill {} tokens | {:.1} tok/s ({:.1} GFLOP/s in matmuls) |",
        a.prompt_len,
        prefill_tps,
        prefill_tps * flops_per_token / 1e9
    );
    println!(
        "| decode {} tokens from an empty context (as llama-bench tg) | {:.2} tok/s ({:.1} ms/token) |",
        a.gen_len,
        decode_empty_tps,
        1e3 / decode_empty_tps
    );
    println!(
        "| decode {} tokens after the {}-token prompt | {:.2} tok/s ({:.1} ms/token) |",
        a.gen_len,
        a.prompt_len,
        decode_tps,
        1e3 / decode_tps
    );
    println!(
        "| weight bytes per decoded token | {} |",
        human_bytes(bytes_per_token)
    );
    let achieved_empty = bytes_per_token as f64 * decode_empty_tps;
    println!(
        "| achieved decode bandwidth (empty / after prompt) | {:.1} / {:.1} GB/s |",
        achieved_empty / 1e9,
        achieved / 1e9
    );
    println!(
        "| measured read bandwidth ({} MiB, higher of the medians of 9 before / after; min-max) | {:.1} GB/s ({:.1}-{:.1}) |",
        a.bandwidth_mib,
        bw / 1e9,
        bw_min / 1e9,
        bw_max / 1e9
    );
    println!(
        "| decode / median bandwidth (roofline share; empty / after prompt) | {:.0}% / {:.0}% |",
        100.0 * achieved_empty / bw,
        100.0 * achieved / bw
    );
    if let (Some(b), Some(l), Some(p)) = (rss_before, rss_loaded, rss_peak) {
        println!(
            "| anonymous memory growth at load | {} |",
            human_bytes(l.anon.saturating_sub(b.anon))
        );
        println!(
            "| RSS after load (anon + file-backed) | {} + {} |",
            human_bytes(l.anon),
            human_bytes(l.file)
        );
        println!("| peak RSS | {} |", human_bytes(p.peak));
    }
    println!("| runs (median of) | {} |", a.repeats.max(1));
    Ok(())
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Resident memory of this process from /proc/self/status (Linux only).
#[derive(Debug, Clone, Copy)]
pub struct MemInfo {
    pub anon: usize,
    pub file: usize,
    pub peak: usize,
}

impl MemInfo {
    pub fn read() -> Option<Self> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |key: &str| -> Option<usize> {
            let line = s.lines().find(|l| l.starts_with(key))?;
            let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        };
        Some(MemInfo {
            anon: field("RssAnon:")?,
            file: field("RssFile:")?,
            peak: field("VmHWM:")?,
        })
    }
}
