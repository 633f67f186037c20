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
