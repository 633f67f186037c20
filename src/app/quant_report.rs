//! `omni quant-report`: how much Q8_0 changes a model. Per kind of matrix: relative MSE and
//! cosine of the quantised weights against the originals; on the model's output for a prompt:
//! logits cosine, top-1 agreement and KL divergence (BF16 distribution || Q8_0 distribution)
//! at every position.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::models::qwen3::{Logits, Qwen3Model};
use crate::models::sampler::Rng;
use crate::nn::Linear;

pub struct ReportArgs {
    pub model: String,
    pub prompt_ids: Option<String>,
    /// random prompt length when no ids are given
    pub tokens: usize,
}

#[derive(Default)]
struct Agg {
    count: usize,
    mse_sum: f64,
    worst_mse: f64,
    worst_name: String,
    min_cos: f64,
}

pub fn run(a: &ReportArgs) -> Result<()> {
    let dir = super::model_dir(&a.model)?;
    let base = Qwen3Model::load(&dir)?;
    if base.is_quantized() {
        bail!(
            "{}: already Q8_0; run the report on the original checkpoint",
            dir.display()
        );
    }
    let mut q8 = Qwen3Model::load(&dir)?;
    q8.quantize_q8_0();

    let mut kinds: BTreeMap<&str, Agg> = BTreeMap::new();
    let mut visit = |kind: &'static str, name: String, b: &Linear, q: &Linear| {
        let Some((mse, cos)) = compare(b, q) else {
            return;
        };
        let e = kinds.entry(kind).or_insert_with(|| Agg {
            min_cos: 1.0,
            ..Default::default()
        });
        e.count += 1;
        e.mse_sum += mse;
        if mse > e.worst_mse {
            e.worst_mse = mse;
            e.worst_name = name;
        }
        e.min_cos = e.min_cos.min(cos);
    };
    for (i, (lb, lq)) in base.layers.iter().zip(&q8.layers).enumerate() {
        let (sb, sq) = (&lb.self_attn, &lq.self_attn);
        let p = |w: &str| format!("model.layers.{i}.{w}");
        visit("q_proj", p("self_attn.q_proj"), &sb.q_proj, &sq.q_proj);
        visit("k_proj", p("self_attn.k_proj"), &sb.k_proj, &sq.k_proj);
        visit("v_proj", p("self_attn.v_proj"), &sb.v_proj, &sq.v_proj);
        visit("o_proj", p("self_attn.o_proj"), &sb.o_proj, &sq.o_proj);
        let (fb, fq) = (lb.ffn.matrices(), lq.ffn.matrices());
        let kinds = ["gate_proj", "up_proj", "down_proj"];
        // dense: gate/up/down; MoE: the router first, then each listed expert's three
        let moe = fb.len() % 3 == 1;
        for (j, (b, q)) in fb.iter().zip(&fq).enumerate() {
            if moe && j == 0 {
                visit("router", p("mlp.gate"), b, q);
                continue;
            }
            let k = if moe { j - 1 } else { j };
            let name = if moe {
                p(&format!("mlp.experts.{}.{}", k / 3, kinds[k % 3]))
            } else {
                p(&format!("mlp.{}", kinds[k % 3]))
            };
            visit(kinds[k % 3], name, b, q);
        }
    }
    visit("lm_head", "lm_head".into(), &base.lm_head, &q8.lm_head);

    println!(
        "Q8_0 vs {} weights of {}",
        base.lm_head.weight.dtype,
        dir.display()
    );
    println!();
    println!(
        "| matrices | count | mean relative MSE | worst relative MSE (tensor) | lowest cosine |"
    );
    println!("|---|---:|---:|---|---:|");
    for (k, e) in &kinds {
        println!(
            "| {k} | {} | {:.3e} | {:.3e} ({}) | {:.6} |",
            e.count,
            e.mse_sum / e.count as f64,
            e.worst_mse,
            e.worst_name,
            e.min_cos
        );
    }

    let prompt: Vec<u32> = match &a.prompt_ids {
        Some(s) => super::generate::parse_ids(s)?,
        None => {
            let mut rng = Rng::new(7);
            (0..a.tokens.max(1))
                .map(|_| (rng.next_u64() % base.config.vocab_size as u64) as u32)
                .collect()
        }
    };
    let lb = base.forward(&prompt, &mut base.new_cache(prompt.len()), Logits::All)?;
    let lq = q8.forward(&prompt, &mut q8.new_cache(prompt.len()), Logits::All)?;
    // the same with the lm_head kept in its original dtype: what quantising it costs
    let mut kept = q8;
    kept.lm_head = base.lm_head.clone();
    let lk = kept.forward(&prompt, &mut kept.new_cache(prompt.len()), Logits::All)?;
    let v = base.config.vocab_size;
    println!();
    println!(
        "| output over {} positions | logits cosine, mean (lowest) | top-1 agreement | KL(orig || Q8_0), mean (highest), nats |",
        prompt.len()
    );
    println!("|---|---|---|---|");
    for (what, q) in [
        ("every matrix Q8_0", &lq),
        ("lm_head kept in the original dtype", &lk),
    ] {
        let m = OutputMetrics::of(&lb, q, v);
        println!(
            "| {what} | {:.6} ({:.6}) | {:.1}% ({} of {}) | {:.3e} ({:.3e}) |",
            m.cos_mean,
            m.cos_min,
            100.0 * m.agree as f64 / m.rows as f64,
            m.agree,
            m.rows,
            m.kl_mean,
            m.kl_max
        );
    }
    Ok(())
}

/// How far quantised logits are from the original ones, position by position.
struct OutputMetrics {
    rows: usize,
    cos_mean: f64,
    cos_min: f64,
    agree: usize,
    kl_mean: f64,
    kl_max: f64,
}

impl OutputMetrics {
    fn of(base: &[f32], quant: &[f32], vocab: usize) -> Self {
        let mut m = OutputMetrics {
            rows: 0,
            cos_mean: 0.0,
            cos_min: 1.0,
            agree: 0,
            kl_mean: 0.0,
            kl_max: 0.0,
        };
        for (b, q) in base.chunks(vocab).zip(quant.chunks(vocab)) {
            let c = cosine(b, q);
            m.rows += 1;
            m.cos_mean += c;
            m.cos_min = m.cos_min.min(c);
            m.agree += (crate::cpu::argmax(b) == crate::cpu::argmax(q)) as usize;
            let kl = kl_divergence(b, q);
            m.kl_mean += kl;
            m.kl_max = m.kl_max.max(kl);
        }
        let n = m.rows.max(1) as f64;
        m.cos_mean /= n;
        m.kl_mean /= n;
        m
    }
}

/// (MSE / mean square of the original, cosine) between a weight and its Q8_0 form; None when
/// the matrix was not quantised.
fn compare(b: &Linear, q: &Linear) -> Option<(f64, f64)> {
    q.q8.as_ref()?;
    let (mb, mq) = (b.mat(), q.mat());
    let cols = b.in_features();
    let (mut rb, mut rq) = (vec![0f32; cols], vec![0f32; cols]);
    let (mut err, mut sq, mut dot, mut sq2) = (0f64, 0f64, 0f64, 0f64);
    for r in 0..b.out_features() {
        mb.row_to_f32(r, &mut rb);
        mq.row_to_f32(r, &mut rq);
        for (x, y) in rb.iter().zip(&rq) {
            let (x, y) = (*x as f64, *y as f64);
            err += (x - y).powi(2);
            sq += x * x;
            sq2 += y * y;
            dot += x * y;
        }
    }
    Some((
        err / sq.max(1e-300),
        dot / (sq.sqrt() * sq2.sqrt()).max(1e-300),
    ))
}

/// Cosine similarity of two vectors, accumulated in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-300)
}

/// KL(softmax(p) || softmax(q)) in nats.
fn kl_divergence(p: &[f32], q: &[f32]) -> f64 {
    let lse = |x: &[f32]| {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let la = a as f64 - lp;
            la.exp() * (la - (b as f64 - lq))
        })
        .sum::<f64>()
        .max(0.0)
}
