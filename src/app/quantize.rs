//! `omni quantize`: a BF16 / F16 / F32 checkpoint directory -> a Q8_0 one (crate::quant for
//! the format). Written under `<out>.partial` and renamed when complete, so a failed run (a
//! full disk, say) never leaves a directory that looks valid.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::progress::DelayedProgress;
use crate::models::config::{Q8_0_METHOD, Qwen3Config};
use crate::nn::linear::scale_name;
use crate::quant::{self, BLOCK};
use crate::tensor::{DType, MatRef};
use crate::weights::{SafetensorsWriter, TensorSpec, TensorView, WeightStore, split_shards};

/// Files copied beside the weights when present.
const SIDE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    // the tokenizer of checkpoints without a tokenizer.json (models/tokenizer_files.rs)
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
];

pub fn run(model: &str, out: &Path, keep: &[String]) -> Result<()> {
    let dir = super::model_dir(model)?;
    let cfg = Qwen3Config::load(&dir)?;
    if cfg.is_q8_0() {
        bail!(
            "{}: already quantised ({Q8_0_METHOD}); quantise the original BF16 checkpoint",
            dir.display()
        );
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{}: exists and is not empty (choose a new directory)",
            out.display()
        );
    }
    let store = WeightStore::open(&dir)?;
    let t0 = Instant::now();
    let tmp = out.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let (read, kept) = match convert(&dir, &store, &tmp, keep) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    for k in &kept {
        eprintln!("kept in its original dtype: {k}");
    }
    eprintln!(
        "quantised {} to {} in {secs:.1} s ({:.2} GB/s of input read)",
        dir.display(),
        out.display(),
        read as f64 / secs / 1e9
    );
    Ok(())
}

/// A mixture-of-experts router (`…layers.N.mlp.gate.weight` in Qwen3-MoE and the Omni
/// thinker; dense FFNs name theirs `gate_proj`).
fn is_moe_router(name: &str) -> bool {
    name.ends_with(".mlp.gate.weight")
}

/// Which tensors become Q8_0: 2-D float matrices with rows of whole blocks, not matched by
/// a --keep pattern (substring). Norms (1-D) stay as stored.
fn quantisable(t: &TensorView, keep: &[String]) -> Option<bool> {
    if t.shape.len() != 2 || !t.dtype.is_float() || keep.iter().any(|k| t.name.contains(k.as_str()))
    {
        return None;
    }
    Some(t.shape[1].is_multiple_of(BLOCK))
}

/// Bytes for the writer thread: a quantised tensor, or a slice of the mapped input.
enum Chunk<'a> {
    Owned(Vec<u8>),
    Borrowed(&'a [u8]),
}

impl Chunk<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Borrowed(b) => b,
        }
    }
}

fn send<'a>(tx: &crossbeam_channel::Sender<Chunk<'a>>, c: Chunk<'a>) -> Result<()> {
    tx.send(c)
        .map_err(|_| anyhow::anyhow!("the writer stopped"))
}

/// Write all tensors and side files into `tmp`; returns (bytes read, names kept as stored with why).
fn convert(
    dir: &Path,
    store: &WeightStore,
    tmp: &Path,
    keep: &[String],
) -> Result<(usize, Vec<String>)> {
    let mut tensors: Vec<&TensorView> = store.tensors().collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut specs = Vec::new();
    let mut kept = Vec::new();
    for t in &tensors {
        if is_moe_router(&t.name) && t.shape.len() == 2 {
            kept.push(format!(
                "{} (MoE router: rounding it flips near-tied expert choices)",
                t.name
            ));
            specs.push(TensorSpec::new(&t.name, t.dtype, &t.shape));
            continue;
        }
        match quantisable(t, keep) {
            Some(true) => {
                let (r, c) = (t.shape[0], t.shape[1]);
                specs.push(TensorSpec::new(&t.name, DType::I8, &[r, c]));
                specs.push(TensorSpec::new(
                    scale_name(&t.name),
                    DType::F16,
                    &[r, c / BLOCK],
                ));
            }
            Some(false) => {
                kept.push(format!(
                    "{} (rows of {} are not whole {BLOCK}-blocks)",
                    t.name, t.shape[1]
                ));
                specs.push(TensorSpec::new(&t.name, t.dtype, &t.shape));
            }
            None => specs.push(TensorSpec::new(&t.name, t.dtype, &t.shape)),
        }
    }
    let by_name: HashMap<&str, &TensorView> =
        tensors.iter().map(|t| (t.name.as_str(), *t)).collect();
    let total_in: usize = tensors.iter().map(|t| t.byte_len()).sum();
    let mut bar = DelayedProgress::new(total_in as u64, "quantising");
    let shards = split_shards(&specs, super::synth::MAX_SHARD_BYTES);
    let mut weight_map = serde_json::Map::new();
    let mut pending_scales: Option<(String, Vec<u8>)> = None;
    for (si, shard) in shards.iter().enumerate() {
        let name = if shards.len() == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, shards.len())
        };
        let w = SafetensorsWriter::create(&tmp.join(&name), shard)?;
        // A writer thread takes each tensor's bytes while the next one is quantised (two in
        // flight), so the disk and the cores work at the same time.
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = crossbeam_channel::bounded::<Chunk<'_>>(2);
            let writer = scope.spawn(move || -> Result<()> {
                let mut w = w;
                for c in rx {
                    w.write(c.bytes())?;
                }
                Ok(w.finish()?)
            });
            let produced = (|| -> Result<()> {
                for (i, spec) in shard.iter().enumerate() {
                    weight_map.insert(spec.name.clone(), name.clone().into());
                    // the disk reads the next tensor while this one is quantised
                    if let Some(next) = shard[i + 1..]
                        .iter()
                        .find_map(|s| by_name.get(s.name.as_str()))
                    {
                        next.advise_willneed();
                    }
                    if let Some((sname, bytes)) = pending_scales.take() {
                        if sname == spec.name {
                            send(&tx, Chunk::Owned(bytes))?;
                            continue;
                        }
                        pending_scales = Some((sname, bytes));
                    }
                    let t = by_name
                        .get(spec.name.as_str())
                        .context("internal: tensor plan out of step")?;
                    if spec.dtype == DType::I8 {
                        let m = MatRef::new(t.dtype, t.bytes(), t.shape[0], t.shape[1]);
                        let (qs, sc) = quant::quantize_matrix(t.shape[0], t.shape[1], |r, out| {
                            m.row_to_f32(r, out)
                        });
                        send(&tx, Chunk::Owned(qs))?;
                        pending_scales = Some((scale_name(&t.name), sc));
                    } else {
                        send(&tx, Chunk::Borrowed(t.bytes()))?;
                    }
                    bar.inc(t.byte_len() as u64);
                }
                Ok(())
            })();
            drop(tx);
            let written = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
            // the writer's error (a full disk) is the cause when both failed
            written?;
            produced
        })?;
    }
    bar.finish();
    if shards.len() > 1 {
        let index = serde_json::json!({"metadata": {"total_size": specs.iter().map(TensorSpec::byte_len).sum::<usize>()}, "weight_map": weight_map});
        std::fs::write(tmp.join("model.safetensors.index.json"), index.to_string())?;
    }
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
    cfg["quantization_config"] =
        serde_json::json!({"quant_method": Q8_0_METHOD, "block_size": BLOCK});
    std::fs::write(
        tmp.join("config.json"),
        serde_json::to_string_pretty(&cfg)? + "\n",
    )?;
    for f in SIDE_FILES {
        let src = dir.join(f);
        if src.is_file() {
            std::fs::copy(&src, tmp.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok((total_in, kept))
}

#[cfg(test)]
mod tests {
    #[test]
    fn moe_routers_are_recognised_and_dense_gates_are_not() {
        assert!(super::is_moe_router("model.layers.3.mlp.gate.weight"));
        assert!(super::is_moe_router(
            "thinker.model.layers.0.mlp.gate.weight"
        ));
        assert!(!super::is_moe_router("model.layers.3.mlp.gate_proj.weight"));
        assert!(!super::is_moe_router(
            "model.layers.3.mlp.experts.0.gate_proj.weight"
        ));
    }
}
