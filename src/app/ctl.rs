//! `omni ctl`: send one request to the daemon's control socket and print its reply line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

pub struct CtlArgs {
    pub socket: Option<PathBuf>,
    pub cmd: String,
    pub text: Option<String>,
    pub wav: Option<PathBuf>,
}

pub fn run(a: &CtlArgs) -> Result<()> {
    let socket = match &a.socket {
        Some(s) => s.clone(),
        None => {
            let cfg = crate::config::Config::default_path()
                .filter(|p| p.is_file())
                .map(|p| crate::config::Config::load(&p))
                .transpose()?;
            match cfg {
                Some(c) => c.socket_path()?,
                None => std::env::var_os("XDG_RUNTIME_DIR")
                    .map(|d| PathBuf::from(d).join("omni").join("omni.sock"))
                    .context("no --socket and no XDG_RUNTIME_DIR")?,
            }
        }
    };
    let mut req = Map::new();
    req.insert("cmd".into(), Value::String(a.cmd.clone()));
    if let Some(t) = &a.text {
        req.insert("text".into(), Value::String(t.clone()));
    }
    if let Some(w) = &a.wav {
        let abs = std::fs::canonicalize(w).with_context(|| format!("{}", w.display()))?;
        req.insert("wav".into(), Value::String(abs.display().to_string()));
    }
    let mut s = UnixStream::connect(&socket).with_context(|| {
        format!(
            "connecting to {} (is `omni serve` running?)",
            socket.display()
        )
    })?;
    s.write_all((Value::Object(req).to_string() + "\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    print!("{line}");
    let v: Value = serde_json::from_str(line.trim_end()).context("the daemon's reply")?;
    if v.get("error").is_some() {
        bail!("the daemon answered with an error");
    }
    Ok(())
}
