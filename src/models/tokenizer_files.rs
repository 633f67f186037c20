//! A Qwen2-style byte-level BPE tokenizer built from `vocab.json` + `merges.txt` +
//! `tokenizer_config.json`, for checkpoints published without a `tokenizer.json`. The pieces
//! around the BPE model are what transformers' `Qwen2Converter` gives `Qwen2TokenizerFast`
//! (the same ones Qwen's own `tokenizer.json` files carry): NFC, the Qwen2 split regex, byte
//! level pre-tokenisation and decoding; the added tokens come from `added_tokens_decoder`.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The Qwen2 pre-tokenisation pattern (transformers' `PRETOKENIZE_REGEX` for Qwen2).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// tokenizer_config.json classes this layout is right for.
const QWEN2_CLASSES: &[&str] = &["Qwen2Tokenizer", "Qwen2TokenizerFast"];

/// Whether `dir` has what [`tokenizer_json`] needs.
pub fn has_bpe_files(dir: &Path) -> bool {
    dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file()
}

/// The text of an equivalent `tokenizer.json` for the files in `dir`.
pub fn tokenizer_json(dir: &Path) -> Result<String> {
    let err = |file: &str, msg: String| Error::Tokenizer {
        path: dir.join(file),
        msg,
    };
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .map_err(|e| err(file, format!("cannot be read: {e}")))
    };
    let vocab: Map<String, Value> = serde_json::from_str(&read("vocab.json")?).map_err(|e| {
        err(
            "vocab.json",
            format!("is not a JSON object of token -> id: {e}"),
        )
    })?;
    if let Some((t, _)) = vocab.iter().find(|(_, v)| v.as_u64().is_none()) {
        return Err(err(
            "vocab.json",
            format!("the id of {t:?} is not a number"),
        ));
    }
    let mut merges = Vec::new();
    for (n, line) in read("merges.txt")?.lines().enumerate() {
        // "#version: 0.2" heads the file; blank lines carry nothing
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push(json!([a, b]))
            }
            _ => {
                return Err(err(
                    "merges.txt",
                    format!("line {}: expected two tokens separated by one space", n + 1),
                ));
            }
        }
    }
    let config: Value = if dir.join("tokenizer_config.json").is_file() {
        serde_json::from_str(&read("tokenizer_config.json")?)
            .map_err(|e| err("tokenizer_config.json", format!("is not valid JSON: {e}")))?
    } else {
        return Err(err(
            "tokenizer_config.json",
            "not found (its added_tokens_decoder names the special tokens)".into(),
        ));
    };
    let class = config["tokenizer_class"].as_str().unwrap_or("");
    if !QWEN2_CLASSES.contains(&class) {
        return Err(err(
            "tokenizer_config.json",
            format!(
                "tokenizer_class {class:?}: only Qwen2 byte-level BPE ({}) can be built from \
                 vocab.json + merges.txt; this model needs its tokenizer.json",
                QWEN2_CLASSES.join(", ")
            ),
        ));
    }
    let mut added = Vec::new();
    if let Some(decoder) = config["added_tokens_decoder"].as_object() {
        for (id, t) in decoder {
            let id: u64 = id
                .parse()
                .map_err(|_| err("tokenizer_config.json", format!("added token id {id:?}")))?;
            let content = t["content"].as_str().ok_or_else(|| {
                err(
                    "tokenizer_config.json",
                    format!("added token {id} has no content"),
                )
            })?;
            let flag = |k: &str, default: bool| t[k].as_bool().unwrap_or(default);
            added.push(json!({
                "id": id,
                "content": content,
                "single_word": flag("single_word", false),
                "lstrip": flag("lstrip", false),
                "rstrip": flag("rstrip", false),
                "normalized": flag("normalized", false),
                "special": flag("special", true),
            }));
        }
    }
    added.sort_by_key(|t| t["id"].as_u64());
    let byte_level = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false
    });
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
             "invert": false},
            byte_level.clone(),
        ]},
        "post_processor": byte_level.clone(),
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    Ok(tokenizer.to_string())
}
