//! `omni bench` on the GPU engine: load (mmap + upload), prefill and decode speed, the
//! decode step's GPU time per kernel from timestamp queries, and decode bandwidth against the
//! device's copy bandwidth measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::bench::{BenchArgs, MemInfo, median};
use super::info::human_bytes;
use super::load::load_qwen3;
use crate::gpu::{GpuContext, measure_barrier_cost, measure_copy_bandwidth};
use crate::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};
use crate::models::sampler::Rng;

/// f32 FMA peak (TFLOP/s, non-tensor) of cards we have measured on, by adapter-name substring.
const KNOWN_PEAKS: &[(&str, f64)] = &[("H200", 66.9), ("H100", 66.9), ("A100", 19.5)];
/// Copy bandwidth (GB/s, read + write) the peers measured on the same cards
/// (../shared/reference/peer-baselines.md): the roofline issue 4's 75% target counts against.
const KNOWN_COPY: &[(&str, f64)] = &[("H200", 4280.0)];

/// The peers' copy bandwidth on this card (bytes per second), if measured.
pub fn peer_copy_bandwidth(ctx: &GpuContext) -> Option<f64> {
    known(KNOWN_COPY, ctx).map(|gbs| gbs * 1e9)
}

/// The figure of `table` for this adapter, by name substring.
fn known(table: &[(&str, f64)], ctx: &GpuContext) -> Option<f64> {
    table
        .iter()
        .find(|(n, _)| ctx.info.name.contains(n))
        .map(|(_, v)| *v)
}

pub fn run(a: &BenchArgs, ctx: &Arc<GpuContext>) -> Result<()> {
    let rss0 = MemInfo::read();
    let t0 = Instant::now();
    let cap = a.prompt_len + a.gen_len + 8;
    let opts = GpuModelOptions {
        ctx: cap,
        max_prefill: a.prompt_len.clamp(1, 512),
        all_logits: false,
    };
    let (mut g, vocab, layer_params, label) = match &a.synthetic {
        Some(name) => {
            let c = crate::models::presets::synthetic_config(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--synthetic `{name}`: unknown shape (known: {}, qwen3-30b-a3b, qwen3-omni-30b-a3b, qwen3-moe-tiny)",
                    crate::models::presets::names()
                )
            })?;
            let q8 = match a.quant.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None => false,
                Some("q8_0") => true,
                Some(other) => anyhow::bail!("--quant `{other}`: the only quantisation is q8_0"),
            };
            let g = Qwen3Gpu::synthetic(ctx, &c, q8, opts)?;
            let params = active_layer_params(&c) as f64;
            let label = format!(
                "synthetic {name} ({}, random weights made on the GPU)",
                if q8 { "Q8_0" } else { "BF16" }
            );
            (g, c.vocab_size as u64, params, label)
        }
        None => {
            let dir = super::model_dir(&a.model)?;
            let mut loaded = load_qwen3(&dir)?;
            super::load::apply_quant(&mut loaded, a.quant.as_deref())?;
            let g = Qwen3Gpu::new(ctx, &loaded.model, opts)?;
            let vocab = loaded.model.config.vocab_size as u64;
            let params = loaded.model.layer_matrix_params() as f64;
            // the GPU holds the only copy the engine uses
            (g, vocab, params, dir.display().to_string())
        }
    };
    ctx.wait()?;
    let load_time = t0.elapsed();
    let rss1 = MemInfo::read();
    let mut rng = Rng::new(42);
    let prompt: Vec<u32> = (0..a.prompt_len)
        .map(|_| (rng.next_u64() % vocab) as u32)
        .collect();

    // warm-up: compiles every pipeline
    g.prefill(&prompt[..1], None)?;
    g.decode(None, false)?;
    g.last_id()?;

    let (mut pre, mut dec_read, mut dec_after, mut dec_sync) = (vec![], vec![], vec![], vec![]);
    let mut host_step = vec![];
    for _ in 0..a.repeats.max(1) {
        // decode from an empty context, reading every id back (what generation does)
        g.reset();
        g.prefill(&prompt[..1], None)?;
        g.last_id()?;
        let t = Instant::now();
        for _ in 0..a.gen_len {
            g.decode(None, false)?;
            g.last_id()?;
        }
        dec_sync.push(a.gen_len as f64 / t.elapsed().as_secs_f64());
        // the same with the next step queued before each id is read (what generate does)
        g.reset();
        g.prefill(&prompt[..1], None)?;
        g.last_id()?;
        g.take_host_step_time();
        let t = Instant::now();
        decode_ahead(&mut g, a.gen_len, |_| {})?;
        dec_read.push(a.gen_len as f64 / t.elapsed().as_secs_f64());
        host_step.extend(g.take_host_step_time());
        // prefill, then decode after the prompt
        g.reset();
        let t = Instant::now();
        g.prefill(&prompt, None)?;
        g.last_id()?;
        pre.push(a.prompt_len as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        decode_ahead(&mut g, a.gen_len, |_| {})?;
        dec_after.push(a.gen_len as f64 / t.elapsed().as_secs_f64());
    }
    // decode with sampling on the device (Qwen3's defaults: T 0.6, top-k 20, top-p 0.95)
    let sp = crate::models::sampler::SamplingParams {
        temperature: 0.6,
        top_k: 20,
        top_p: 0.95,
        ..Default::default()
    };
    g.reset();
    g.set_sampling(Some((sp.clone(), rng.next_f32())));
    g.prefill(&prompt[..1], None)?;
    g.last_id()?;
    let t = Instant::now();
    decode_ahead(&mut g, a.gen_len, |g| {
        g.set_sampling(Some((sp.clone(), rng.next_f32())))
    })?;
    let sampled = a.gen_len as f64 / t.elapsed().as_secs_f64();
    g.set_sampling(None);
    g.reset();
    g.prefill(&prompt[..1], None)?;
    let kernels = if ctx.has_timestamps() {
        Some(g.profile_decode()?)
    } else {
        None
    };
    // a prefill step by kernel too (64 tokens by default: a spoken question's prompt is
    // 30-100 tokens)
    let short = a.profile_prefill.min(a.prompt_len).max(1);
    g.reset();
    let prefill_kernels = if ctx.has_timestamps() {
        Some(g.profile_prefill(short)?)
    } else {
        None
    };
    let copy = measure_copy_bandwidth(ctx, 1 << 30, 7)?;
    let bw = copy.roofline();
    // 264 workgroups: two per SM on an H200, the order of the step's matvecs
    let barrier = measure_barrier_cost(ctx, 264, 7)?;

    let (pre, dr, da, ds) = (
        median(&mut pre),
        median(&mut dec_read),
        median(&mut dec_after),
        median(&mut dec_sync),
    );
    let bpt = g.bytes_per_decoded_token() as f64;
    let flops = 2.0 * layer_params * pre; // one multiply-add per layer weight per token
    let peak = a.peak_tflops.or_else(|| known(KNOWN_PEAKS, ctx));
    let share = peak
        .map(|p| format!(", {:.1}% of {p} f32 peak", 100.0 * flops / 1e12 / p))
        .unwrap_or_default();
    println!("| metric | value |");
    println!("|---|---|");
    println!("| model | {label} |");
    println!(
        "| device | {} ({}, {}) |",
        ctx.info.name, ctx.info.backend, ctx.info.driver
    );
    println!(
        "| load (mmap + upload {}) | {:.2} s |",
        human_bytes(bpt as usize),
        load_time.as_secs_f64()
    );
    println!(
        "| prefill {} tokens | {:.1} tok/s ({:.2} TFLOP/s{share}) |",
        a.prompt_len,
        pre,
        flops / 1e12
    );
    println!(
        "| decode {} from empty context (next step queued before each id is read) | {:.1} tok/s ({:.2} ms/token) |",
        a.gen_len,
        dr,
        1e3 / dr
    );
    println!(
        "| decode {} from empty context, each id read before the next step is queued | {:.1} tok/s |",
        a.gen_len, ds
    );
    println!(
        "| decode {} after the {}-token prompt | {:.1} tok/s |",
        a.gen_len, a.prompt_len, da
    );
    println!(
        "| decode {} from empty context, sampled on the device (T 0.6, top-k 20, top-p 0.95) | {:.1} tok/s |",
        a.gen_len, sampled
    );
    println!(
        "| weight bytes per decoded token | {} |",
        human_bytes(bpt as usize)
    );
    println!(
        "| copy bandwidth (read + write): shader best / median of 7, copy engine best | {:.0} / {:.0} GB/s, {:.0} GB/s |",
        copy.shader_best / 1e9,
        copy.shader_median / 1e9,
        copy.engine_best / 1e9
    );
    println!(
        "| read bandwidth (read only): shader best of 7 | {:.0} GB/s |",
        copy.read_best / 1e9
    );
    println!(
        "| decode bandwidth (empty context) | {:.0} GB/s |",
        bpt * dr / 1e9
    );
    println!(
        "| share of the roofline (the best copy or read rate measured, {:.0} GB/s) | {:.1}% |",
        bw / 1e9,
        100.0 * bpt * dr / bw
    );
    if let Some(gbs) = known(KNOWN_COPY, ctx) {
        println!(
            "| share of the peers' {gbs:.0} GB/s copy on this card | {:.1}% |",
            100.0 * bpt * dr / (gbs * 1e9)
        );
    }
    // the step's floor: its barriers (every dispatch but the read-ahead ones waits for the one
    // before) with no work, plus its weights at the best bandwidth measured
    let barriers = g.decode_op_count() - g.decode_prefetch_count();
    let floor = barriers as f64 * barrier + bpt / bw;
    println!(
        "| an empty dispatch behind a barrier (264 workgroups, best of 7) | {:.2} us |",
        barrier * 1e6
    );
    let peers = known(KNOWN_COPY, ctx)
        .map(|gbs| {
            format!(
                ", {:.1}% of the peers' {gbs:.0} GB/s",
                100.0 * bpt / floor / (gbs * 1e9)
            )
        })
        .unwrap_or_default();
    println!(
        "| floor of this step: {barriers} such dispatches + the weights at the roofline | {:.2} ms = {:.0} tok/s at most{peers} |",
        floor * 1e3,
        1.0 / floor
    );
    let ahead = g.decode_prefetch_count();
    if ahead > 0 {
        println!(
            "| dispatches per decode step | {} ({ahead} of them L2 prefetches, without a barrier) |",
            g.decode_op_count()
        );
    } else {
        println!("| dispatches per decode step | {} |", g.decode_op_count());
    }
    if !host_step.is_empty() {
        let n = g.decode_op_count().max(1) as f64;
        let mut rec: Vec<f64> = host_step.iter().map(|d| d.0.as_secs_f64() * 1e6).collect();
        let mut sub: Vec<f64> = host_step.iter().map(|d| d.1.as_secs_f64() * 1e6).collect();
        let (rec, sub) = (median(&mut rec), median(&mut sub));
        // recording above the step's wall time means the CPU, not the GPU, bounds decoding
        println!(
            "| host time per decode step: record / submit | {rec:.0} us ({:.2} us per dispatch) / {sub:.0} us |",
            rec / n
        );
    }
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        println!(
            "| host anonymous memory after load | {} (+{}) |",
            human_bytes(r1.anon),
            human_bytes(r1.anon.saturating_sub(r0.anon))
        );
    }
    if let Some(k) = kernels {
        print_kernels("GPU time of one decode step by kernel", &k);
        println!("| wall time per token | | {:.1} | |", 1e6 / dr);
        // the matvec kernel's own streaming rate, free of the step's launch costs: its
        // longest call is the lm_head, the largest matrix
        if let Some(m) = k
            .iter()
            .filter(|t| t.name.starts_with("matvec"))
            .max_by(|a, b| a.max_ns.total_cmp(&b.max_ns))
        {
            let lm = g.lm_head_bytes() as f64;
            println!();
            println!(
                "Largest {} call (the lm_head, {}): {:.1} us = {:.0} GB/s read = {:.1}% of the roofline",
                m.name,
                human_bytes(lm as usize),
                m.max_ns / 1e3,
                lm / m.max_ns,
                100.0 * lm / m.max_ns * 1e9 / bw
            );
        }
    }
    if let Some(k) = prefill_kernels {
        print_kernels(
            &format!("GPU time of one {short}-token prefill step by kernel"),
            &k,
        );
    }
    if let Some(filter) = &a.shader_stats {
        print_shader_stats(ctx, filter)?;
    }
    Ok(())
}

/// The driver's statistics of every pipeline the run built whose shader name contains `filter`.
pub(crate) fn print_shader_stats(ctx: &GpuContext, filter: &str) -> Result<()> {
    let built: Vec<_> = ctx
        .pipelines
        .built()
        .into_iter()
        .filter(|(n, _)| n.contains(filter))
        .collect();
    print_stats_table(&crate::gpu::shader_stats::driver_statistics(
        &ctx.info.name,
        &built,
    )?);
    Ok(())
}

/// The driver's statistics as a table: a row per executable of each pipeline.
pub(crate) fn print_stats_table(stats: &[crate::gpu::shader_stats::ShaderStats]) {
    println!();
    println!("Pipelines as the driver compiled them (VK_KHR_pipeline_executable_properties):");
    println!();
    println!("| shader | constants | executable | subgroup | statistics |");
    println!("|---|---|---|---:|---|");
    for s in stats {
        let c: Vec<String> = s
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &s.executables {
            let l: Vec<String> = e.stats.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!(
                "| {} | {} | {} | {} | {} |",
                s.shader,
                c.join(" "),
                e.name,
                e.subgroup_size,
                l.join("; ")
            );
        }
    }
}

pub(crate) fn print_kernels(title: &str, k: &[crate::gpu::KernelTiming]) {
    let total: f64 = k.iter().map(|t| t.total_ns).sum();
    println!();
    println!("{title} (timestamp queries, one pass per op):");
    println!();
    println!("| kernel | calls | us | share |");
    println!("|---|---:|---:|---:|");
    for t in k {
        println!(
            "| {} | {} | {:.1} | {:.1}% |",
            t.name,
            t.calls,
            t.total_ns / 1e3,
            100.0 * t.total_ns / total
        );
    }
    println!("| total GPU time | | {:.1} | |", total / 1e3);
}

/// `n` decode steps, each queued before the previous step's id is read (two in flight, as
/// `generate` runs them); `before` runs before each step is queued.
fn decode_ahead(g: &mut Qwen3Gpu, n: usize, mut before: impl FnMut(&mut Qwen3Gpu)) -> Result<()> {
    for i in 0..n {
        before(g);
        g.decode(None, false)?;
        if i > 0 {
            g.last_id()?;
        }
    }
    if n > 0 {
        g.last_id()?;
    }
    Ok(())
}

/// Weights of the layers' matrices one token uses (MoE: router and top-k experts).
fn active_layer_params(c: &crate::models::config::Qwen3Config) -> usize {
    let (h, hd) = (c.hidden_size, c.head_dim());
    let attn = h * (c.num_attention_heads + 2 * c.num_key_value_heads) * hd
        + c.num_attention_heads * hd * h;
    (0..c.num_hidden_layers)
        .map(|i| {
            attn + if c.is_moe_layer(i) {
                c.num_experts * h + c.num_experts_per_tok * 3 * h * c.moe_intermediate_size
            } else {
                3 * h * c.intermediate_size
            }
        })
        .sum()
}
