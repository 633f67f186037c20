//! The crate's one error type. Every variant carries the context a user needs to fix the input:
//! the file, the tensor name, expected against found.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is in the message, not a chained source: `{:#}` printed it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("model {path}: {msg}")]
    ModelDir { path: PathBuf, msg: String },

    #[error("{path}: invalid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },

    #[error("tensor `{name}` is missing from the model in {dir}")]
    MissingTensor { name: String, dir: PathBuf },

    #[error("tensor `{name}` in {file}: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tensor `{name}` in {file}: unsupported dtype {dtype} (expected {expected})")]
    TensorDtype {
        name: String,
        file: PathBuf,
        dtype: String,
        expected: String,
    },

    #[error("{path}: {msg}")]
    Config { path: PathBuf, msg: String },

    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },

    #[error("invalid sampling parameter: {0}")]
    Sampling(String),

    #[error(
        "the prompt and reply need {needed} tokens but the context holds {context} (raise --ctx)"
    )]
    ContextOverflow { needed: usize, context: usize },

    #[error("{0}")]
    Invalid(String),

    #[error("GPU: {0}")]
    Gpu(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }
}
