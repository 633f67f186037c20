//! The `omni` binary end to end: reference ids through `generate --print-ids`, text streaming
//! on synthetic real-shape models with the real tokenizer, HF cache lookup, tokenize and info.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{FIXTURE_MODELS, fixture, real_tokenizer_dir, reference};

pub fn omni(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(args)
        .output()
        .expect("omni runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "omni failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn ids_arg(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn generate_print_ids_reproduces_reference_greedy_ids() {
    for name in FIXTURE_MODELS {
        let dir = fixture(name);
        let (r, _) = reference(&dir);
        for p in &r.prompts {
            let out = omni(&[
                "generate",
                "--model",
                dir.to_str().unwrap(),
                "--prompt-ids",
                &ids_arg(&p.ids),
                "--greedy",
                "--print-ids",
                "--max-tokens",
                "32",
            ]);
            let got: Vec<u32> = stdout(&out)
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(got, p.greedy, "{name}");
        }
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_differs_across_seeds() {
    let dir = fixture("tied-gqa2");
    let run = |seed: &str| {
        stdout(&omni(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt-ids",
            "5,6,7",
            "--print-ids",
            "--max-tokens",
            "24",
            "--ignore-eos",
            "--temperature",
            "1.5",
            "--top-k",
            "50",
            "--top-p",
            "0.98",
            "--min-p",
            "0.01",
            "--repetition-penalty",
            "1.1",
            "--seed",
            seed,
        ]))
    };
    assert_eq!(run("1"), run("1"));
    assert_ne!(run("1"), run("2"));
}

fn synth(preset: &str, out: &Path) {
    let tok = real_tokenizer_dir().join("tokenizer.json");
    stdout(&omni(&[
        "synth",
        "--preset",
        preset,
        "--out",
        out.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
    ]));
}

#[test]
fn synthetic_model_with_real_tokenizer_streams_text_tokenizes_and_describes_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    synth("qwen3-tiny", &dir);
    let m = dir.to_str().unwrap();
    assert_eq!(
        stdout(&omni(&["tokenize", "--model", m, "Hello world"])).trim(),
        "9707 1879"
    );
    let text = stdout(&omni(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Hi there",
        "--max-tokens",
        "12",
        "--seed",
        "3",
        "--ignore-eos",
    ]));
    assert!(!text.trim().is_empty(), "no text streamed");
    let info = stdout(&omni(&["info", "--model", m]));
    assert!(info.contains("qwen3") && info.contains("151936"), "{info}");
}

#[test]
fn synthetic_qwen3_0_6b_at_real_shape_streams_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q06");
    synth("qwen3-0.6b", &dir);
    let size = std::fs::metadata(dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert_eq!(
        size, 1_192_135_096,
        "0.6B has 596,049,920 params in BF16 plus the header"
    );
    let m = dir.to_str().unwrap();
    let out = omni(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Tell me a story",
        "--max-tokens",
        "6",
        "--seed",
        "1",
        "--ignore-eos",
        "--stats",
    ]);
    assert!(!stdout(&out).trim().is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tok/s"));
}

#[test]
fn model_resolves_from_hugging_face_cache_by_repo_id() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--Test--Tiny");
    let snap = repo.join("snapshots").join("0123abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abc\n").unwrap();
    for f in std::fs::read_dir(fixture("tied-gqa2")).unwrap().flatten() {
        std::os::unix::fs::symlink(f.path(), snap.join(f.file_name())).unwrap();
    }
    let (r, _) = reference(&fixture("tied-gqa2"));
    let p = &r.prompts[1];
    let out = Command::new(env!("CARGO_BIN_EXE_omni"))
        .env("HF_HUB_CACHE", cache.path())
        .args([
            "generate",
            "--model",
            "Test/Tiny",
            "--prompt-ids",
            &ids_arg(&p.ids),
            "--greedy",
            "--print-ids",
            "--max-tokens",
            "32",
        ])
        .output()
        .unwrap();
    let got: Vec<u32> = stdout(&out)
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(got, p.greedy);
    // HF_HOME/hub is the fallback
    let out = Command::new(env!("CARGO_BIN_EXE_omni"))
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", cache.path().join("nowhere"))
        .args(["info", "--model", "Test/Tiny"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere/hub/models--Test--Tiny"));
}

#[test]
fn gpu_backend_reproduces_reference_ids_and_devices_lists_the_adapter() {
    let dir = fixture("odd-gqa3");
    let (r, _) = reference(&dir);
    for p in &r.prompts {
        let out = omni(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt-ids",
            &ids_arg(&p.ids),
            "--greedy",
            "--print-ids",
            "--max-tokens",
            "32",
            "--backend",
            "gpu",
        ]);
        let got: Vec<u32> = stdout(&out)
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, p.greedy);
    }
    let devices = stdout(&omni(&["devices"]));
    assert!(
        devices.contains("[0]") && devices.contains("max storage binding"),
        "{devices}"
    );
    // a named adapter that does not exist is an error listing what exists
    let o = omni(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        "1",
        "--print-ids",
        "--backend",
        "gpu",
        "--adapter",
        "no-such-gpu",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-gpu") && err.contains("adapters found"),
        "{err}"
    );
}

#[test]
fn quantize_writes_a_q8_0_directory_that_loads_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q8");
    let src = fixture("tied-gqa2");
    stdout(&omni(&[
        "quantize",
        "--model",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    // size: every matrix is quantised (rows of 64 / 96), at 34 bytes per 32 weights, plus norms
    let store = qwen_omni::weights::WeightStore::open(&src).unwrap();
    let (mut mat, mut other) = (0usize, 0usize);
    for t in store.tensors() {
        if t.shape.len() == 2 {
            mat += t.numel()
        } else {
            other += t.byte_len()
        }
    }
    let expect = qwen_omni::quant::q8_0_bytes(mat) + other;
    let got = std::fs::metadata(out.join("model.safetensors"))
        .unwrap()
        .len() as usize;
    assert!(
        got >= expect && (got as f64) <= expect as f64 * 1.07,
        "file {got} bytes vs {expect} of payload"
    );
    let cfg = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(cfg.contains("omni_q8_0"));
    let ids = stdout(&omni(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--prompt-ids",
        "342",
        "--greedy",
        "--print-ids",
        "--max-tokens",
        "8",
        "--backend",
        "cpu",
    ]));
    assert_eq!(ids.split_whitespace().count(), 8);
}

#[test]
fn a_quantized_directory_runs_the_same_on_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q8");
    let src = fixture("tied-gqa2");
    stdout(&omni(&[
        "quantize",
        "--model",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let run = |backend: &str| {
        stdout(&omni(&[
            "generate",
            "--model",
            out.to_str().unwrap(),
            "--prompt-ids",
            "250,103,348",
            "--greedy",
            "--print-ids",
            "--max-tokens",
            "16",
            "--backend",
            backend,
        ]))
    };
    assert_eq!(run("gpu"), run("cpu"));
}

#[test]
fn quant_report_measures_weight_and_output_error_within_the_format_bounds() {
    let out = stdout(&omni(&[
        "quant-report",
        "--model",
        fixture("tied-gqa2").to_str().unwrap(),
        "--tokens",
        "24",
    ]));
    // Gaussian weights: per-block max ~2.2 sigma, grid step d = max / 127, error variance
    // d^2 / 12 -> relative MSE ~2.5e-5; blocks with a larger max (up to ~3 sigma) raise it, so
    // any kind's mean stays under 5e-5, and cosine = 1 - MSE/2 >= 0.99997.
    let mut kinds = 0;
    for line in out
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("_proj |") || l.starts_with("| lm_head |"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let mean_mse: f64 = cells[3].parse().unwrap();
        let cos: f64 = cells[5].parse().unwrap();
        assert!(mean_mse < 5e-5 && cos > 0.99997, "{line}");
        kinds += 1;
    }
    assert_eq!(kinds, 8, "{out}");
    assert!(
        out.contains("top-1 agreement") && out.contains("KL(orig || Q8_0)"),
        "{out}"
    );
    // the output table compares every matrix quantised with the lm_head kept: both rows
    // present with cosines near 1 (the same per-weight bound, through a 2-layer model)
    for row in [
        "| every matrix Q8_0 |",
        "| lm_head kept in the original dtype |",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row: {out}"));
        let cos: f64 = line
            .split('|')
            .nth(2)
            .unwrap()
            .trim()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cos > 0.999, "{line}");
    }
}
