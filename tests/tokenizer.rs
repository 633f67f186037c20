//! The real Qwen3 tokenizer through our wrapper against HF `tokenizers` (314 strings), and our
//! Rust chat format against the official Jinja template's rendering.

mod common;

use common::{real_tokenizer_dir, repo_root};
use qwen_omni::models::chat::{self, Message, Role};
use qwen_omni::models::tokenizer::{TextStream, Tokenizer};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct ChatCase {
    messages: Vec<ChatMsg>,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct ChatMsg {
    role: String,
    content: String,
}

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let p = repo_root().join("tests/fixtures/tokenizer").join(file);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture parses")
}

#[test]
fn ids_match_hf_tokenizers_on_every_reference_string() {
    let tok = Tokenizer::load(&real_tokenizer_dir()).unwrap();
    let cases: Vec<Case> = load("cases.json");
    assert!(cases.len() >= 200);
    let mut failures = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text).unwrap();
        if got != c.ids {
            failures.push(format!("{:?}: got {:?}, want {:?}", c.text, got, c.ids));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(tok.encode("Hello world").unwrap(), vec![9707, 1879]);
}

#[test]
fn decode_round_trips_and_streaming_never_splits_characters() {
    let tok = Tokenizer::load(&real_tokenizer_dir()).unwrap();
    let cases: Vec<Case> = load("cases.json");
    for c in cases.iter().filter(|c| !c.text.contains("<|")) {
        let mut stream = TextStream::new(&tok);
        let mut out = String::new();
        for &id in &c.ids {
            let delta = stream.push(id).unwrap();
            assert!(
                !delta.contains('\u{FFFD}') || c.text.contains('\u{FFFD}'),
                "{:?}",
                c.text
            );
            out.push_str(&delta);
        }
        out.push_str(&stream.finish().unwrap());
        assert_eq!(out, tok.decode(&c.ids).unwrap(), "{:?}", c.text);
    }
}

#[test]
fn chat_format_matches_the_official_template() {
    let tok = Tokenizer::load(&real_tokenizer_dir()).unwrap();
    let cases: Vec<ChatCase> = load("chat.json");
    assert!(!cases.is_empty());
    for c in &cases {
        let msgs: Vec<Message> = c
            .messages
            .iter()
            .map(|m| {
                let role = match m.role.as_str() {
                    "system" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => panic!("unexpected role {other}"),
                };
                Message::new(role, &m.content)
            })
            .collect();
        let text = chat::render(&msgs, c.add_generation_prompt);
        assert_eq!(text, c.text);
        assert_eq!(tok.encode(&text).unwrap(), c.ids);
    }
    assert_eq!(tok.token_id("<|im_end|>"), Some(151645));
}

/// Writes the real tokenizer as a checkpoint without a tokenizer.json ships it: vocab.json,
/// merges.txt (with its "#version" header) and tokenizer_config.json.
fn bpe_files_from_tokenizer_json(dir: &std::path::Path) {
    let src = real_tokenizer_dir();
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    std::fs::write(dir.join("vocab.json"), t["model"]["vocab"].to_string()).unwrap();
    let mut merges = String::from("#version: 0.2\n");
    for m in t["model"]["merges"].as_array().unwrap() {
        // merges are [a, b] pairs in this file's format version (older ones: "a b" strings)
        let line = match m {
            serde_json::Value::Array(p) => {
                format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())
            }
            other => other.as_str().unwrap().to_string(),
        };
        merges.push_str(&line);
        merges.push('\n');
    }
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    std::fs::copy(
        src.join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap();
}

/// A checkpoint with vocab.json + merges.txt + tokenizer_config.json and no tokenizer.json (as
/// some Qwen Omni repositories are published): the tokenizer built from them gives the HF ids
/// on every reference string, special tokens included, and decodes them back.
#[test]
fn tokenizer_from_vocab_and_merges_matches_hf_on_every_reference_string() {
    let tmp = tempfile::tempdir().unwrap();
    bpe_files_from_tokenizer_json(tmp.path());
    assert!(!tmp.path().join("tokenizer.json").exists());
    let tok = Tokenizer::load(tmp.path()).unwrap();
    let full = Tokenizer::load(&real_tokenizer_dir()).unwrap();
    assert_eq!(tok.vocab_size(), full.vocab_size());
    assert_eq!(tok.token_id("<|im_start|>"), full.token_id("<|im_start|>"));
    let cases: Vec<Case> = load("cases.json");
    let mut failures = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text).unwrap();
        if got != c.ids {
            failures.push(format!("{:?}: {:?} vs {:?}", c.text, got, c.ids));
        }
        assert_eq!(tok.decode(&c.ids).unwrap(), full.decode(&c.ids).unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ: {:?}",
        failures.len(),
        cases.len(),
        &failures[..failures.len().min(3)]
    );
}

/// Bad tokenizer files: each a clear error naming the file, never a panic.
#[test]
fn broken_vocab_and_merges_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bpe_files_from_tokenizer_json(dir);
    let err = |dir: &std::path::Path| match Tokenizer::load(dir) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    // a merge line with three tokens
    let merges = std::fs::read_to_string(dir.join("merges.txt")).unwrap();
    std::fs::write(dir.join("merges.txt"), format!("{merges}a b c\n")).unwrap();
    let e = err(dir);
    assert!(e.contains("merges.txt") && e.contains("two tokens"), "{e}");
    // where a tokenizer is optional (serve, ask), broken files are still an error, not "none"
    assert!(Tokenizer::load_optional(dir).is_err());
    std::fs::write(dir.join("merges.txt"), &merges).unwrap();
    assert!(Tokenizer::load_optional(dir).unwrap().is_some());
    // another tokenizer class
    let cfg = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    let other = cfg.replace("Qwen2Tokenizer", "LlamaTokenizer");
    assert_ne!(other, cfg);
    std::fs::write(dir.join("tokenizer_config.json"), other).unwrap();
    let e = err(dir);
    assert!(
        e.contains("tokenizer_config.json") && e.contains("LlamaTokenizer"),
        "{e}"
    );
    // no tokenizer_config.json
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    assert!(err(dir).contains("tokenizer_config.json"));
    std::fs::write(dir.join("tokenizer_config.json"), &cfg).unwrap();
    // vocab.json not an object of ids
    std::fs::write(dir.join("vocab.json"), "[1, 2]").unwrap();
    assert!(err(dir).contains("vocab.json"));
    std::fs::write(dir.join("vocab.json"), r#"{"a": "x"}"#).unwrap();
    assert!(err(dir).contains("vocab.json"));
    // neither file set
    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    let e = err(dir);
    assert!(
        e.contains("tokenizer.json") && e.contains("merges.txt"),
        "{e}"
    );
    assert!(Tokenizer::load_optional(dir).unwrap().is_none());
}
