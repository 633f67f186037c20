//! The model's `tokenizer.json` through the `tokenizers` crate, plus streaming detokenisation.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl Tokenizer {
    /// Load `dir/tokenizer.json`, or, where a checkpoint ships none, the Qwen2 byte-level BPE
    /// of its `vocab.json`, `merges.txt` and `tokenizer_config.json`
    /// (models/tokenizer_files.rs).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if path.is_file() {
            return Self::from_file(&path);
        }
        if super::tokenizer_files::has_bpe_files(dir) {
            let text = super::tokenizer_files::tokenizer_json(dir)?;
            let vocab = dir.join("vocab.json");
            let inner: tokenizers::Tokenizer = text.parse().map_err(|e| Error::Tokenizer {
                path: vocab.clone(),
                msg: format!("with merges.txt, does not make a tokenizer: {e}"),
            })?;
            return Ok(Tokenizer { inner, path: vocab });
        }
        Err(Error::Tokenizer {
            path,
            msg: "not found, nor vocab.json + merges.txt (pass --prompt-ids to run without a \
                  tokenizer)"
                .into(),
        })
    }

    /// [`Tokenizer::load`] where a model may have no tokenizer at all: None when `dir` has
    /// neither tokenizer.json nor vocab.json + merges.txt, an error when its files are broken.
    pub fn load_optional(dir: &Path) -> Result<Option<Self>> {
        let present =
            dir.join("tokenizer.json").is_file() || super::tokenizer_files::has_bpe_files(dir);
        present.then(|| Self::load(dir)).transpose()
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: format!("cannot be parsed: {e}"),
        })?;
        Ok(Tokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Ids of `text`. Special tokens written in the text (`<|im_start|>`) map to their ids, as
    /// in the reference tokenizer; nothing is prepended (Qwen adds no BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                msg: format!("encoding failed: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: format!("decoding failed: {e}"),
        })
    }

    /// Id of a special token such as `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Turns a stream of ids into text deltas, holding back bytes that do not yet form complete
/// characters (a multi-byte character or emoji can span several tokens).
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        TextStream {
            tok,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// Add one id; return the new complete text, if any.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tok.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let delta = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        Ok(delta)
    }

    /// Whatever is still held back at the end.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tok.decode(&self.ids)?;
        let delta = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        Ok(delta)
    }
}
