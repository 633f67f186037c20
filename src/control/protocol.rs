//! The control protocol's wire format (docs/protocol.md): one JSON object per line, at most
//! `MAX_LINE` bytes. A request names its command in `cmd` and may carry an `id` that the reply
//! echoes; a reply holds `ok` or `error: {code, message}`. Parsing never panics: every bad line
//! becomes a `ProtocolError` with a stable code for programs and a message for people.

use std::path::PathBuf;

use base64::Engine;
use serde_json::{Map, Value, json};

/// Longest request line accepted (1 MiB): enough for 30 s of 16 kHz PCM in base64.
pub const MAX_LINE: usize = 1 << 20;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Status,
    PttStart,
    PttStop,
    Ask(AskInput),
    Interrupt,
    Mute,
    Unmute,
    Reset,
    History,
    Subscribe,
    Shutdown,
}

/// The question of an `ask`: text, a WAV file the daemon reads, or 16-bit PCM samples.
#[derive(Debug, Clone, PartialEq)]
pub enum AskInput {
    Text(String),
    Wav(PathBuf),
    /// mono samples in [-1, 1) at `rate` Hz (sent as little-endian i16, base64)
    Pcm {
        samples: Vec<f32>,
        rate: u32,
    },
}

/// A parsed request with the client's `id` (any JSON value, echoed in the reply).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: Option<Value>,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    /// bad_json, too_long, unknown_cmd, bad_args (and, from the daemon, not_allowed, busy,
    /// internal)
    pub code: &'static str,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// Parse one line (without its newline). On error, the request's `id` when it could be read.
pub fn parse_line(line: &[u8]) -> Result<Envelope, (Option<Value>, ProtocolError)> {
    if line.len() > MAX_LINE {
        return Err((
            None,
            ProtocolError::new(
                "too_long",
                format!(
                    "request of {} bytes exceeds the {MAX_LINE}-byte line limit",
                    line.len()
                ),
            ),
        ));
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            None,
            ProtocolError::new("bad_json", format!("not a JSON object: {e}")),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err((
            None,
            ProtocolError::new("bad_json", "a request is a JSON object"),
        ));
    };
    let id = obj.get("id").cloned();
    parse_request(&obj)
        .map(|request| Envelope {
            id: id.clone(),
            request,
        })
        .map_err(|e| (id, e))
}

fn parse_request(obj: &Map<String, Value>) -> Result<Request, ProtocolError> {
    let cmd = obj
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or_else(|| ProtocolError::new("bad_args", "missing string field `cmd`"))?;
    let simple = match cmd {
        "status" => Some(Request::Status),
        "ptt_start" => Some(Request::PttStart),
        "ptt_stop" => Some(Request::PttStop),
        "interrupt" => Some(Request::Interrupt),
        "mute" => Some(Request::Mute),
        "unmute" => Some(Request::Unmute),
        "reset" => Some(Request::Reset),
        "history" => Some(Request::History),
        "subscribe" => Some(Request::Subscribe),
        "shutdown" => Some(Request::Shutdown),
        "ask" => None,
        other => {
            return Err(ProtocolError::new(
                "unknown_cmd",
                format!(
                    "unknown cmd `{other}` (status, ptt_start, ptt_stop, ask, interrupt, mute, unmute, reset, history, subscribe, shutdown)"
                ),
            ));
        }
    };
    let allowed: &[&str] = if simple.is_some() {
        &["cmd", "id"]
    } else {
        &["cmd", "id", "text", "wav", "pcm_base64", "sample_rate"]
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ProtocolError::new(
            "bad_args",
            format!("`{cmd}` takes no field `{k}`"),
        ));
    }
    match simple {
        Some(r) => Ok(r),
        None => parse_ask(obj).map(Request::Ask),
    }
}

fn parse_ask(obj: &Map<String, Value>) -> Result<AskInput, ProtocolError> {
    let string = |k: &str| -> Result<Option<&str>, ProtocolError> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ProtocolError::new(
                "bad_args",
                format!("`{k}` must be a string"),
            )),
        }
    };
    let (text, wav, pcm) = (string("text")?, string("wav")?, string("pcm_base64")?);
    match (text, wav, pcm) {
        (Some(t), None, None) => {
            if t.trim().is_empty() {
                return Err(ProtocolError::new("bad_args", "`text` is empty"));
            }
            Ok(AskInput::Text(t.to_string()))
        }
        (None, Some(w), None) => Ok(AskInput::Wav(PathBuf::from(w))),
        (None, None, Some(b)) => {
            let rate = match obj.get("sample_rate") {
                None => 16000,
                Some(v) => v
                    .as_u64()
                    .filter(|r| (1000..=1_000_000).contains(r))
                    .ok_or_else(|| {
                        ProtocolError::new(
                            "bad_args",
                            "`sample_rate` must be an integer in 1000..=1000000",
                        )
                    })? as u32,
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| {
                    ProtocolError::new("bad_args", format!("`pcm_base64` is not base64: {e}"))
                })?;
            if bytes.is_empty() || bytes.len() % 2 != 0 {
                return Err(ProtocolError::new(
                    "bad_args",
                    "`pcm_base64` must hold a whole, non-zero number of 16-bit samples",
                ));
            }
            let samples = bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
                .collect();
            Ok(AskInput::Pcm { samples, rate })
        }
        (None, None, None) => Err(ProtocolError::new(
            "bad_args",
            "`ask` needs one of `text`, `wav` or `pcm_base64`",
        )),
        _ => Err(ProtocolError::new(
            "bad_args",
            "`ask` takes only one of `text`, `wav` and `pcm_base64`",
        )),
    }
}

/// `{"id": ..., "ok": value}` as one line (with its newline).
pub fn ok_line(id: Option<&Value>, value: Value) -> String {
    line(id, "ok", value)
}

/// `{"id": ..., "error": {"code": ..., "message": ...}}` as one line (with its newline).
pub fn error_line(id: Option<&Value>, e: &ProtocolError) -> String {
    line(id, "error", json!({"code": e.code, "message": e.message}))
}

fn line(id: Option<&Value>, key: &str, value: Value) -> String {
    let mut obj = Map::new();
    if let Some(id) = id {
        obj.insert("id".into(), id.clone());
    }
    obj.insert(key.into(), value);
    let mut s = Value::Object(obj).to_string();
    s.push('\n');
    s
}
