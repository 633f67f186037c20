//! `omni info`: architecture, parameter counts, dtypes and a memory estimate per component.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::models::config::Qwen3Config;
use crate::weights::WeightStore;

pub fn run(model: &str, ctx: usize) -> Result<()> {
    let dir = super::model_dir(model)?;
    let c = Qwen3Config::load(&dir)?;
    let store = WeightStore::open(&dir)?;
    // Validates every tensor's presence, shape and dtype, as a load would.
    let m = crate::models::qwen3::Qwen3Model::from_store(c.clone(), &store)?;
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for t in store.tensors() {
        let g = component(&t.name);
        let e = groups.entry(g).or_default();
        e.0 += t.numel();
        e.1 += t.byte_len();
        *dtypes.entry(t.dtype.to_string()).or_default() += t.numel();
    }
    let total: usize = groups.values().map(|g| g.0).sum();
    println!("model        {}", dir.display());
    println!(
        "architecture {} ({})",
        c.model_type,
        c.architectures.join(", ")
    );
    println!(
        "shape        {} layers, hidden {}, heads {} / kv {} x head_dim {}, intermediate {}, vocab {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim(),
        c.intermediate_size,
        c.vocab_size
    );
    println!(
        "rope theta   {}, rms eps {}, tied embeddings {}, max positions {}",
        c.rope_theta(),
        c.rms_norm_eps,
        c.tie_word_embeddings,
        c.max_position_embeddings
    );
    let dt: Vec<String> = dtypes
        .iter()
        .map(|(d, n)| format!("{d} {}", human_count(*n)))
        .collect();
    println!("dtype        {}", dt.join(", "));
    println!(
        "files        {} safetensors file(s), {}",
        store.file_count(),
        human_bytes(store.file_bytes())
    );
    println!("parameters   {} total", human_count(total));
    println!();
    println!("| component | parameters | weight memory |");
    println!("|---|---:|---:|");
    for (g, (n, b)) in &groups {
        println!("| {g} | {} | {} |", human_count(*n), human_bytes(*b));
    }
    let kv_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim() * 4;
    println!(
        "| KV cache (f32), per 1024 tokens | | {} |",
        human_bytes(kv_per_token * 1024)
    );
    println!(
        "| KV cache at --ctx {ctx} | | {} |",
        human_bytes(kv_per_token * ctx)
    );
    println!();
    println!(
        "decode reads {} of weights per token (mapped from the files, not copied)",
        human_bytes(m.bytes_per_decoded_token())
    );
    Ok(())
}

fn component(name: &str) -> &'static str {
    if name.contains("embed_tokens") {
        "embedding"
    } else if name.starts_with("lm_head") {
        "lm_head"
    } else if name.contains("self_attn") {
        "attention"
    } else if name.contains(".mlp.") {
        "mlp"
    } else if name.contains("norm") {
        "norms"
    } else {
        "other"
    }
}

pub fn human_count(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub fn human_bytes(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
