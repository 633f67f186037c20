//! `omni synth`: a complete model directory with random weights at a known model's real
//! shapes, so benchmarks run at true size without downloads. Weights are uniform with the
//! std of the reference initialiser (0.02); norms are 1.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

use super::progress::DelayedProgress;
use crate::models::presets;
use crate::models::sampler::Rng;
use crate::tensor::{DType, f32_to_bf16};
use crate::weights::{SafetensorsWriter, TensorSpec};

/// Shard size as in published checkpoints (a few GB per file).
pub const MAX_SHARD_BYTES: usize = 4 << 30;
/// Values generated per parallel chunk.
const CHUNK: usize = 1 << 20;

pub fn run(
    preset: &str,
    out: &Path,
    dtype: &str,
    tokenizer: Option<&Path>,
    seed: u64,
) -> Result<()> {
    let omni_audio = preset.eq_ignore_ascii_case(presets::OMNI_AUDIO);
    let p = presets::find(preset).filter(|_| !omni_audio);
    if p.is_none() && !omni_audio {
        bail!(
            "unknown preset `{preset}` (known: {}, {})",
            presets::names(),
            presets::OMNI_AUDIO
        );
    }
    let dt = DType::parse_float(dtype)
        .with_context(|| format!("--dtype `{dtype}`: expected bf16, f16 or f32"))?;
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
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let dtype_name = match dt {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    let tensors = match p {
        Some(p) => {
            write_json(&out.join("config.json"), &p.config_json(dtype_name))?;
            write_json(
                &out.join("generation_config.json"),
                &p.generation_config_json(),
            )?;
            p.tensors()
        }
        None => {
            write_json(
                &out.join("config.json"),
                &presets::omni_audio_config_json(dtype_name),
            )?;
            presets::omni_audio_tensors()
        }
    };
    if let Some(t) = tokenizer {
        copy_tokenizer(t, out)?;
    }
    write_weights(&tensors, dt, out, seed)?;
    eprintln!("wrote {preset} ({dtype_name}) to {}", out.display());
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Copy tokenizer.json (a file, or the tokenizer.json inside a directory) and, when it sits
/// beside it, tokenizer_config.json.
fn copy_tokenizer(src: &Path, out: &Path) -> Result<()> {
    let file = if src.is_dir() {
        src.join("tokenizer.json")
    } else {
        src.to_path_buf()
    };
    crate::models::tokenizer::Tokenizer::from_file(&file)?;
    std::fs::copy(&file, out.join("tokenizer.json"))
        .with_context(|| format!("copying {}", file.display()))?;
    if let Some(cfg) = file
        .parent()
        .map(|d| d.join("tokenizer_config.json"))
        .filter(|p| p.is_file())
    {
        std::fs::copy(&cfg, out.join("tokenizer_config.json"))
            .with_context(|| format!("copying {}", cfg.display()))?;
    }
    Ok(())
}

fn write_weights(tensors: &[(String, Vec<usize>)], dt: DType, out: &Path, seed: u64) -> Result<()> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, s)| TensorSpec::new(n, dt, s))
        .collect();
    let shards = crate::weights::split_shards(&specs, MAX_SHARD_BYTES);
    let total: usize = specs.iter().map(TensorSpec::byte_len).sum();
    let mut bar = DelayedProgress::new(total as u64, "writing");
    let mut weight_map = serde_json::Map::new();
    for (si, shard) in shards.iter().enumerate() {
        let name = if shards.len() == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", si + 1, shards.len())
        };
        let mut w = SafetensorsWriter::create(&out.join(&name), shard)?;
        for spec in shard {
            let tensor_seed = seed ^ hash(&spec.name);
            fill_tensor(spec, tensor_seed, &mut |bytes| {
                bar.inc(bytes.len() as u64);
                w.write(bytes)
            })?;
            weight_map.insert(spec.name.clone(), name.clone().into());
        }
        w.finish()?;
    }
    bar.finish();
    if shards.len() > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        write_json(&out.join("model.safetensors.index.json"), &index)?;
    }
    Ok(())
}

/// Generate a tensor's values chunk by chunk (in parallel) and hand over its bytes in order.
fn fill_tensor(
    spec: &TensorSpec,
    seed: u64,
    sink: &mut dyn FnMut(&[u8]) -> crate::Result<()>,
) -> Result<()> {
    let n = crate::tensor::numel(&spec.shape);
    let is_norm = spec.shape.len() == 1;
    // uniform(-a, a) has std a / sqrt(3); 0.02 is the reference initializer_range.
    let a = 0.02f32 * 3f32.sqrt();
    let chunks = n.div_ceil(CHUNK);
    // Up to 64 chunks (64 M values) generated at once, then written in order.
    for group in (0..chunks).collect::<Vec<_>>().chunks(64) {
        let parts: Vec<Vec<u8>> = group
            .par_iter()
            .map(|&c| {
                let len = CHUNK.min(n - c * CHUNK);
                let mut rng = Rng::new(
                    seed.wrapping_add(c as u64)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let mut bytes = Vec::with_capacity(len * spec.dtype.size());
                for _ in 0..len {
                    let v = if is_norm {
                        1.0
                    } else {
                        (rng.next_f32() * 2.0 - 1.0) * a
                    };
                    match spec.dtype {
                        DType::BF16 => bytes.extend_from_slice(&f32_to_bf16(v).to_le_bytes()),
                        DType::F16 => {
                            bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())
                        }
                        _ => bytes.extend_from_slice(&v.to_le_bytes()),
                    }
                }
                bytes
            })
            .collect();
        for p in parts {
            sink(&p)?;
        }
    }
    Ok(())
}

fn hash(s: &str) -> u64 {
    // FNV-1a: a stable per-tensor seed offset.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
