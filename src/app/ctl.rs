//! `omni ctl`: send one request to the daemon's control socket and print its reply line;
//! `subscribe` prints event lines until the daemon stops (or Ctrl-C); `--events` prints the
//! events that arrive while the request runs (a reply's text as it streams).

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
    pub events: bool,
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
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    if a.cmd == "subscribe" {
        s.write_all(b"{\"cmd\":\"subscribe\"}\n")?;
        while reader.read_line(&mut line)? > 0 {
            print!("{line}");
            std::io::stdout().flush()?;
            line.clear();
        }
        return Ok(());
    }
    if a.events {
        s.write_all(b"{\"cmd\":\"subscribe\",\"id\":\"ctl-events\"}\n")?;
    }
    req.insert("id".into(), Value::String("ctl".into()));
    s.write_all((Value::Object(req).to_string() + "\n").as_bytes())?;
    // print lines until the reply to our request
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the daemon closed the connection before replying");
        }
        let v: Value = serde_json::from_str(line.trim_end()).context("the daemon's reply")?;
        if v.get("event").is_some() || v.get("id") == Some(&Value::String("ctl-events".into())) {
            if v.get("event").is_some() {
                print!("{line}");
            }
            continue;
        }
        print!("{line}");
        if v.get("error").is_some() {
            bail!("the daemon answered with an error");
        }
        return Ok(());
    }
}
