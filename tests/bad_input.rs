//! Every user-facing input error ends with a non-zero exit and one readable line on stderr
//! naming what is wrong and where; never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture;
use qwen_omni::tensor::DType;
use qwen_omni::weights::{SafetensorsWriter, TensorSpec, WeightStore};

/// Run omni, expect failure, return its single stderr line.
fn fails(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success(),
        "expected failure for {args:?}, got success"
    );
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line for {args:?}: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// A copy of tied-gqa2 (config, generation config, weights) in a temp dir.
fn copy_model() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture("tied-gqa2").join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

/// Rewrite dir/model.safetensors, letting `edit` change or drop each tensor's spec.
fn rewrite(dir: &Path, edit: impl Fn(&mut TensorSpec) -> bool) {
    let src = dir.join("model.safetensors");
    let old = dir.join("old.safetensors");
    std::fs::rename(&src, &old).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&old, tmp.path().join("model.safetensors")).unwrap();
    let store = WeightStore::open(tmp.path()).unwrap();
    let mut kept = Vec::new();
    for t in store.tensors() {
        let mut spec = TensorSpec::new(&t.name, t.dtype, &t.shape);
        if edit(&mut spec) {
            assert_eq!(spec.byte_len(), t.byte_len(), "edits keep the byte size");
            kept.push((spec, t.bytes().to_vec()));
        }
    }
    let specs: Vec<TensorSpec> = kept.iter().map(|k| k.0.clone()).collect();
    let mut w = SafetensorsWriter::create(&src, &specs).unwrap();
    for (_, bytes) in &kept {
        w.write(bytes).unwrap();
    }
    w.finish().unwrap();
    std::fs::remove_file(old).unwrap();
}

fn gen_args(dir: &Path) -> Vec<String> {
    [
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1,2,3",
        "--max-tokens",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn fails_gen(dir: &Path) -> String {
    let a = gen_args(dir);
    fails(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn missing_model_directory() {
    let e = fails(&[
        "generate",
        "--model",
        "/nonexistent/model",
        "--prompt-ids",
        "1",
    ]);
    assert!(
        e.contains("/nonexistent/model") && e.contains("no such directory"),
        "{e}"
    );
}

#[test]
fn missing_config_json() {
    let (_t, dir) = copy_model();
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(fails_gen(&dir).contains("no config.json"));
}

#[test]
fn missing_tokenizer_is_an_error_for_text_but_not_for_prompt_ids() {
    let (_t, dir) = copy_model();
    let e = fails(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert!(
        e.contains("tokenizer.json") && e.contains("--prompt-ids"),
        "{e}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args([
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt-ids",
            "1,2",
            "--print-ids",
            "--max-tokens",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn truncated_safetensors_file() {
    let (_t, dir) = copy_model();
    let f = dir.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = fails_gen(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn corrupt_safetensors_header() {
    let (_t, dir) = copy_model();
    let f = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[8..16].copy_from_slice(b"#garbage");
    std::fs::write(&f, bytes).unwrap();
    let e = fails_gen(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("header"),
        "{e}"
    );
}

#[test]
fn header_longer_than_file() {
    let (_t, dir) = copy_model();
    std::fs::write(dir.join("model.safetensors"), 1_000_000u64.to_le_bytes()).unwrap();
    assert!(fails_gen(&dir).contains("truncated"));
}

#[test]
fn missing_tensor_is_named() {
    let (_t, dir) = copy_model();
    rewrite(&dir, |s| s.name != "model.layers.1.self_attn.k_norm.weight");
    let e = fails_gen(&dir);
    assert!(
        e.contains("`model.layers.1.self_attn.k_norm.weight` is missing"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_tensor_file_and_shapes() {
    let (_t, dir) = copy_model();
    rewrite(&dir, |s| {
        if s.name == "model.layers.0.mlp.up_proj.weight" {
            s.shape = vec![64, 96]; // stored (96, 64)
        }
        true
    });
    let e = fails_gen(&dir);
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight") && e.contains("model.safetensors"),
        "{e}"
    );
    assert!(e.contains("[96, 64]") && e.contains("[64, 96]"), "{e}");
}

#[test]
fn unsupported_dtype_names_tensor_and_file() {
    let (_t, dir) = copy_model();
    rewrite(&dir, |s| {
        if s.name == "model.norm.weight" {
            s.dtype = DType::I32;
            s.shape = vec![32]; // 64 bf16 = 32 i32, same bytes
        }
        true
    });
    let e = fails_gen(&dir);
    assert!(
        e.contains("model.norm.weight") && e.contains("I32") && e.contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn unknown_model_type() {
    let (_t, dir) = copy_model();
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"qwen3\"", "\"llama\"");
    std::fs::write(&p, s).unwrap();
    let e = fails_gen(&dir);
    assert!(
        e.contains("unknown model_type `llama`") && e.contains("config.json"),
        "{e}"
    );
}

#[test]
fn config_json_that_is_not_json() {
    let (_t, dir) = copy_model();
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert!(fails_gen(&dir).contains("not valid JSON"));
}

#[test]
fn unsupported_config_value_is_named() {
    let (_t, dir) = copy_model();
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"silu\"", "\"gelu\"");
    std::fs::write(&p, s).unwrap();
    assert!(fails_gen(&dir).contains("hidden_act"));
}

#[test]
fn prompt_longer_than_context() {
    let (_t, dir) = copy_model();
    let e = fails(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1,2,3,4,5,6,7",
        "--ctx",
        "4",
    ]);
    assert!(e.contains("context holds 4"), "{e}");
}

#[test]
fn token_id_outside_vocabulary() {
    let (_t, dir) = copy_model();
    let e = fails(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1,99999",
    ]);
    assert!(e.contains("99999") && e.contains("vocabulary"), "{e}");
    let e = fails(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1,x",
    ]);
    assert!(e.contains("`x`"), "{e}");
}

#[test]
fn invalid_sampling_values() {
    let (_t, dir) = copy_model();
    let m = dir.to_str().unwrap();
    for (flag, val, word) in [
        ("--top-p", "1.5", "top-p"),
        ("--top-p", "0", "top-p"),
        ("--temperature", "-1", "temperature"),
        ("--min-p", "2", "min-p"),
        ("--repetition-penalty", "0", "repetition penalty"),
    ] {
        let e = fails(&["generate", "--model", m, "--prompt-ids", "1", flag, val]);
        assert!(e.contains(word), "{flag} {val}: {e}");
    }
}

#[test]
fn shard_index_naming_a_missing_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir(&dir).unwrap();
    for f in std::fs::read_dir(fixture("untied-mha")).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().to_string();
        if !name.starts_with("model-00002") {
            std::fs::copy(f.path(), dir.join(&name)).unwrap();
        }
    }
    let e = fails_gen(&dir);
    assert!(e.contains("model-00002") && e.contains("missing"), "{e}");
}

#[test]
fn synth_refuses_unknown_preset_and_nonempty_output() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(&[
        "synth",
        "--preset",
        "gpt-5",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(
        e.contains("unknown preset") && e.contains("qwen3-0.6b"),
        "{e}"
    );
    std::fs::write(tmp.path().join("f"), "x").unwrap();
    let e = fails(&[
        "synth",
        "--preset",
        "qwen3-tiny",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(e.contains("not empty"), "{e}");
}

/// A disk that fills up mid-write: a file-size limit (ulimit -f, below the 2.5 MB Q8_0 output
/// of the real-vocab fixture) makes the weights' write fail like a full disk. The error names
/// the file, and neither the output directory nor its `.partial` stand-in is left behind.
#[test]
fn quantising_onto_a_full_disk_leaves_no_directory_that_looks_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q8");
    let o = Command::new("sh")
        .args([
            "-c",
            "ulimit -f 1024 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_omni"),
            "quantize",
            "--model",
            fixture("real-vocab").to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "quantize succeeded past the limit: {err}"
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "an error exit, not a signal: {err}"
    );
    assert!(
        err.contains("model.safetensors") && err.contains("too large"),
        "the error names the file and the cause: {err}"
    );
    assert!(!q.exists(), "no output directory");
    assert!(
        !tmp.path().join("q8.partial").exists(),
        "no partial directory"
    );
}

#[test]
fn quantising_a_quantised_model_and_a_missing_scale_tensor_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q8");
    let o = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args([
            "quantize",
            "--model",
            fixture("tied-gqa2").to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !tmp.path().join("q8.partial").exists(),
        "no partial directory left behind"
    );
    let e = fails(&[
        "quantize",
        "--model",
        q.to_str().unwrap(),
        "--out",
        tmp.path().join("again").to_str().unwrap(),
    ]);
    assert!(e.contains("already quantised"), "{e}");
    assert!(!tmp.path().join("again").exists());
    // drop one scale tensor: loading names it
    rewrite(&q, |s| {
        s.name != "model.layers.0.mlp.down_proj.weight_scale"
    });
    let e = fails_gen(&q);
    assert!(
        e.contains("model.layers.0.mlp.down_proj.weight_scale") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn unknown_quantisation_values_are_rejected() {
    let (_t, dir) = copy_model();
    let e = fails(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1",
        "--quant",
        "q4_k",
    ]);
    assert!(e.contains("q4_k"), "{e}");
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p).unwrap().replacen(
        '{',
        "{\"quantization_config\": {\"quant_method\": \"gptq\"},",
        1,
    );
    std::fs::write(&p, s).unwrap();
    let e = fails_gen(&dir);
    assert!(
        e.contains("quantization_config") && e.contains("gptq"),
        "{e}"
    );
}
