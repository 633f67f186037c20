//! `omni bench-latency`: the daemon's latency from the end of speech to the first reply token,
//! stage by stage, as the think stage runs them: log-mel (CPU), the audio encoder, the prompt's
//! prefill with the encoder rows in place of the audio placeholders, and the first decode step.
//! The VAD's hangover (silence waited for before the end of speech is decided) comes on top and
//! is the configured `vad.hangover_ms`.
//!
//! The audio encoder comes from an Omni model directory (`omni synth --preset qwen3-omni-audio`
//! makes one of the real shape); the thinker's decoder either from the same directory or, with
//! `--synthetic qwen3-omni-30b-a3b`, as random weights of the real shape made in GPU memory.

use std::time::Instant;

use anyhow::{Result, bail};

use super::bench_audio::synthetic_clip;
use crate::models::audio_encoder::mel;
use crate::models::omni::OmniThinker;
use crate::models::qwen3::gpu::{GpuModelOptions, Qwen3Gpu};

pub struct BenchLatencyArgs {
    /// Omni model directory (its audio encoder; its decoder unless `synthetic`)
    pub model: String,
    pub synthetic: Option<String>,
    pub quant: Option<String>,
    pub secs: f32,
    pub repeats: usize,
    pub adapter: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Template tokens around the audio placeholders of a user turn and the assistant's start
/// (`<|im_start|>user\n<|audio_start|>` ... `<|audio_end|><|im_end|>\n<|im_start|>assistant\n`).
const TEMPLATE_TOKENS: usize = 10;

pub fn run(a: &BenchLatencyArgs) -> Result<()> {
    let q8 = match a.quant.as_deref() {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("q8_0") => true,
        Some(q) => bail!("--quant `{q}`: the only quantisation is q8_0"),
    };
    let dir = super::model_dir(&a.model)?;
    let ctx = super::engine::gpu_context(super::engine::Backend::Gpu, a.adapter.as_deref())?
        .ok_or_else(|| anyhow::anyhow!("bench-latency needs a GPU"))?;
    let mut thinker = OmniThinker::load(&dir)?;
    if q8 && a.synthetic.is_none() {
        thinker.text.quantize_q8_0();
    }
    let encoder = thinker.audio_engine(Some(&ctx))?;
    let opts = GpuModelOptions {
        ctx: 4096,
        max_prefill: 512,
        all_logits: false,
    };
    let (mut decoder, label) = match &a.synthetic {
        Some(name) => {
            let c = crate::models::presets::synthetic_config(name)
                .ok_or_else(|| anyhow::anyhow!("--synthetic `{name}`: unknown shape"))?;
            (
                Qwen3Gpu::synthetic(&ctx, &c, q8, opts)?,
                format!("synthetic {name} ({})", if q8 { "Q8_0" } else { "BF16" }),
            )
        }
        None => (
            Qwen3Gpu::new(&ctx, &thinker.text, opts)?,
            dir.display().to_string(),
        ),
    };
    let hidden = decoder.hidden;
    let clip = synthetic_clip(a.secs, 11);
    let (mut t_mel, mut t_enc, mut t_pre, mut t_dec, mut t_total) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut prompt_len = 0;
    // one warm-up turn (pipelines compiled), then the measured ones
    for i in 0..=a.repeats.max(1) {
        decoder.reset();
        let t0 = Instant::now();
        let m = mel::log_mel(&clip);
        let t1 = Instant::now();
        let rows = encoder.encode(&m)?;
        let t2 = Instant::now();
        if rows.len() % hidden != 0 {
            bail!(
                "the encoder's rows ({} wide) do not match the decoder's width {hidden}",
                rows.len() / (rows.len() / hidden).max(1)
            );
        }
        // the prompt's embeddings: template rows (any values time the same) and the audio rows
        let mut x = vec![0.01f32; TEMPLATE_TOKENS * hidden];
        x.extend_from_slice(&rows);
        prompt_len = x.len() / hidden;
        decoder.prefill_embeds(&x, None)?;
        let first = decoder.last_id()?;
        let t3 = Instant::now();
        decoder.decode(Some(first), false)?;
        decoder.last_id()?;
        let t4 = Instant::now();
        if i > 0 {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            t_mel.push(ms(t0, t1));
            t_enc.push(ms(t1, t2));
            t_pre.push(ms(t2, t3));
            t_dec.push(ms(t3, t4));
            t_total.push(ms(t0, t3));
        }
    }
    let hangover = crate::config::Config::default().vad.hangover_ms;
    println!("| metric | value |");
    println!("|---|---|");
    println!("| decoder | {label} |");
    println!(
        "| audio encoder | {} ({}) |",
        dir.display(),
        encoder.describe()
    );
    println!(
        "| device | {} ({}, {}) |",
        ctx.info.name, ctx.info.backend, ctx.info.driver
    );
    println!(
        "| question | {:.1} s of audio -> {} prompt tokens ({} audio) |",
        a.secs,
        prompt_len,
        prompt_len - TEMPLATE_TOKENS
    );
    println!(
        "| VAD hangover (config default, before the end of speech is decided) | {hangover} ms |"
    );
    println!("| log-mel (CPU) | {:.1} ms |", median(t_mel));
    println!("| audio encoder | {:.1} ms |", median(t_enc));
    println!(
        "| prefill of the prompt, first token chosen | {:.1} ms |",
        median(t_pre)
    );
    println!(
        "| end of speech -> first token (median of {}) | **{:.1} ms** |",
        a.repeats.max(1),
        median(t_total)
    );
    println!("| next decode step | {:.1} ms |", median(t_dec));
    Ok(())
}
