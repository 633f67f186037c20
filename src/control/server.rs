//! The control socket server: a Unix stream socket in a private directory (0700, the socket
//! 0600), peers checked by their credentials, one thread per client, JSON lines in and out
//! (protocol.rs). A bad line gets its error and the client stays connected; a line over the
//! limit closes that client; nothing a client sends stops the others being served.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::Value;

use super::protocol::{MAX_LINE, ProtocolError, Request, error_line, ok_line, parse_line};
use crate::error::{Error, Result};

/// What the daemon does with a request.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> std::result::Result<Value, ProtocolError>;

    /// A stream of event lines for a `subscribe`d connection (None when the daemon is
    /// stopping). The connection keeps taking requests while events flow.
    fn subscribe(&self) -> std::result::Result<Receiver<Value>, ProtocolError> {
        Err(ProtocolError::new("busy", "this daemon has no events"))
    }
}

pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Whether a peer with `uid` may connect: the daemon's own user, or one listed in the config.
pub fn uid_allowed(uid: u32, own: u32, allowed: &[u32]) -> bool {
    uid == own || allowed.contains(&uid)
}

/// The uid of the process at the other end of `s` (SO_PEERCRED).
fn peer_uid(s: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a properly sized ucred.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

impl ControlServer {
    /// Listen on `path`: its directory is created private (0700) if missing; a stale socket
    /// file (nobody listening) is replaced; a live one is an error.
    pub fn bind(path: &Path, allowed_uids: &[u32], handler: Arc<dyn Handler>) -> Result<Self> {
        let io = |e: std::io::Error| Error::io(path, e);
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(Error::Invalid(format!(
                    "{}: another daemon is listening on this socket",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (own, allowed) = (own_uid(), allowed_uids.to_vec());
        let stop_flag = stop.clone();
        let accept = std::thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let ok = peer_uid(&stream).is_some_and(|u| uid_allowed(u, own, &allowed));
                    if !ok {
                        let e = ProtocolError::new(
                            "not_allowed",
                            "this user may not control the daemon",
                        );
                        let _ = (&stream).write_all(error_line(None, &e).as_bytes());
                        continue;
                    }
                    let h = handler.clone();
                    let _ = std::thread::Builder::new()
                        .name("control-client".into())
                        .spawn(move || serve_client(stream, h.as_ref()));
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the control thread: {e}")))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            accept: Some(accept),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    /// Stop accepting, join the accept thread and remove the socket file.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path); // wakes the blocking accept
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Read lines (at most MAX_LINE bytes each) and answer each until the client leaves. After a
/// `subscribe`, a second thread writes the events; both write whole lines under one lock.
fn serve_client(stream: UnixStream, handler: &dyn Handler) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let out = Arc::new(Mutex::new(stream));
    let gone = Arc::new(AtomicBool::new(false));
    let mut events: Option<JoinHandle<()>> = None;
    let mut line = Vec::new();
    let send = |text: &str| -> bool {
        out.lock()
            .map(|mut s| s.write_all(text.as_bytes()).is_ok())
            .unwrap_or(false)
    };
    loop {
        line.clear();
        // read one line, refusing to buffer more than the limit
        let n = match std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break; // the client closed
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > MAX_LINE {
            let e = ProtocolError::new(
                "too_long",
                format!("request exceeds the {MAX_LINE}-byte line limit; closing"),
            );
            let _ = send(&error_line(None, &e));
            break;
        }
        if complete {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match parse_line(&line) {
            Ok(env) if env.request == Request::Subscribe => {
                if events.is_none() {
                    match handler.subscribe() {
                        Ok(rx) => {
                            // the reply goes out before the first event
                            if !send(&ok_line(env.id.as_ref(), Value::Bool(true))) {
                                break;
                            }
                            events = spawn_event_writer(rx, out.clone(), gone.clone());
                            continue;
                        }
                        Err(e) => error_line(env.id.as_ref(), &e),
                    }
                } else {
                    ok_line(env.id.as_ref(), Value::Bool(true))
                }
            }
            Ok(env) => match handler.handle(env.request) {
                Ok(v) => ok_line(env.id.as_ref(), v),
                Err(e) => error_line(env.id.as_ref(), &e),
            },
            Err((id, e)) => error_line(id.as_ref(), &e),
        };
        if !send(&reply) {
            break; // the client vanished
        }
    }
    gone.store(true, Ordering::SeqCst);
    if let Some(t) = events {
        let _ = t.join();
    }
}

/// Write each event as a line until the client or the daemon goes away.
fn spawn_event_writer(
    rx: Receiver<Value>,
    out: Arc<Mutex<UnixStream>>,
    gone: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control-events".into())
        .spawn(move || {
            while !gone.load(Ordering::SeqCst) {
                match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok(v) => {
                        let text = v.to_string() + "\n";
                        let ok = out
                            .lock()
                            .map(|mut s| s.write_all(text.as_bytes()).is_ok())
                            .unwrap_or(false);
                        if !ok {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })
        .ok()
}
