//! The control socket server: private directory and socket modes, 50 concurrent clients with
//! good and malformed lines, a 10 MiB line (refused at the 1 MiB limit, that client closed),
//! clients vanishing mid-line, stale and live socket files, a disallowed user: every client gets
//! its answer or is refused, and the server keeps serving the others. 50 subscribers get every
//! event in order while half of them vanish mid-stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use qwen_omni::control::protocol::{ProtocolError, Request};
use qwen_omni::control::server::{ControlServer, Handler, uid_allowed};
use serde_json::{Value, json};

struct Fake;

impl Handler for Fake {
    fn handle(&self, r: Request) -> Result<Value, ProtocolError> {
        match r {
            Request::Status => Ok(json!({"state": "idle"})),
            _ => Err(ProtocolError::new("busy", "not in this test")),
        }
    }
}

fn server(dir: &std::path::Path) -> ControlServer {
    ControlServer::bind(&dir.join("omni").join("omni.sock"), &[], Arc::new(Fake)).unwrap()
}

fn ask(s: &mut UnixStream, line: &str) -> Value {
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut reply = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut reply)
        .unwrap();
    serde_json::from_str(&reply).unwrap()
}

#[test]
fn socket_and_directory_are_private_and_the_file_goes_with_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("omni")), 0o700);
    assert_eq!(mode(srv.path()), 0o600);
    let path = srv.path().to_path_buf();
    drop(srv);
    assert!(!path.exists());
}

#[test]
fn fifty_clients_are_served_at_once_and_bad_lines_do_not_disconnect() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path());
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let path = srv.path().to_path_buf();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                let v = ask(&mut s, &format!(r#"{{"cmd":"status","id":{i}}}"#));
                assert_eq!(v, json!({"id": i, "ok": {"state": "idle"}}));
                assert_eq!(ask(&mut s, "{oops")["error"]["code"], "bad_json");
                assert_eq!(
                    ask(&mut s, r#"{"cmd":"dance"}"#)["error"]["code"],
                    "unknown_cmd"
                );
                assert_eq!(
                    ask(&mut s, r#"{"cmd":"mute","id":"m"}"#)["error"]["code"],
                    "busy"
                );
                // still connected after the errors
                assert_eq!(ask(&mut s, r#"{"cmd":"status"}"#)["ok"]["state"], "idle");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn an_oversize_line_closes_only_that_client() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path());
    let mut big = UnixStream::connect(srv.path()).unwrap();
    let mut other = UnixStream::connect(srv.path()).unwrap();
    let writer = {
        let mut b = big.try_clone().unwrap();
        std::thread::spawn(move || {
            // 10 MiB without a newline; the server stops reading after 1 MiB
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                if b.write_all(&chunk).is_err() {
                    break;
                }
            }
        })
    };
    let mut reply = String::new();
    BufReader::new(big.try_clone().unwrap())
        .read_line(&mut reply)
        .unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["error"]["code"], "too_long");
    let mut rest = Vec::new();
    let _ = big.read_to_end(&mut rest); // closed by the server
    let _ = writer.join();
    assert_eq!(
        ask(&mut other, r#"{"cmd":"status"}"#)["ok"]["state"],
        "idle"
    );
}

#[test]
fn vanishing_clients_and_stale_sockets_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("omni").join("omni.sock");
    {
        let srv = server(tmp.path());
        for _ in 0..5 {
            let mut s = UnixStream::connect(srv.path()).unwrap();
            s.write_all(br#"{"cmd":"sta"#).unwrap(); // half a line, then gone
        }
        let mut s = UnixStream::connect(srv.path()).unwrap();
        assert_eq!(ask(&mut s, r#"{"cmd":"status"}"#)["ok"]["state"], "idle");
        // a second daemon on the same live socket is refused
        let e = ControlServer::bind(&path, &[], Arc::new(Fake))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("another daemon"), "{e}");
        drop(srv);
    }
    // a socket file nobody listens on (a daemon that crashed) is replaced
    let stale = tmp.path().join("stale").join("omni.sock");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let srv = ControlServer::bind(&stale, &[], Arc::new(Fake)).unwrap();
    let mut s = UnixStream::connect(srv.path()).unwrap();
    assert_eq!(ask(&mut s, r#"{"cmd":"status"}"#)["ok"]["state"], "idle");
}

#[test]
fn only_the_daemons_user_and_listed_uids_are_allowed() {
    assert!(uid_allowed(1000, 1000, &[]));
    assert!(uid_allowed(1001, 1000, &[1001]));
    assert!(!uid_allowed(1002, 1000, &[1001]));
    // as root (CI), a real connection from `nobody` is refused by the private directory
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(tmp.path());
    let script = format!(
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect('{}')\nexcept OSError as e:\n print('refused', e); sys.exit(3)\nsys.exit(0)",
        srv.path().display()
    );
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("python3 runs");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut s = UnixStream::connect(srv.path()).unwrap();
    assert_eq!(ask(&mut s, r#"{"cmd":"status"}"#)["ok"]["state"], "idle");
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A handler whose events come from the daemon's bus.
struct WithEvents(Arc<qwen_omni::pipeline::events::EventBus>);

impl Handler for WithEvents {
    fn handle(&self, r: Request) -> Result<Value, ProtocolError> {
        Fake.handle(r)
    }
    fn subscribe(&self) -> Result<crossbeam_channel::Receiver<Value>, ProtocolError> {
        Ok(self.0.subscribe())
    }
}

#[test]
fn fifty_subscribers_get_every_event_while_others_vanish() {
    use qwen_omni::pipeline::events::{Event, EventBus};
    let tmp = tempfile::tempdir().unwrap();
    let bus = Arc::new(EventBus::new());
    let srv = ControlServer::bind(
        &tmp.path().join("omni.sock"),
        &[],
        Arc::new(WithEvents(bus.clone())),
    )
    .unwrap();
    let clients: Vec<UnixStream> = (0..50)
        .map(|_| {
            let mut s = UnixStream::connect(srv.path()).unwrap();
            assert_eq!(ask(&mut s, r#"{"cmd":"subscribe","id":7}"#)["ok"], true);
            s
        })
        .collect();
    let t = std::time::Instant::now();
    while bus.subscribers() < 50 {
        assert!(
            t.elapsed().as_secs() < 10,
            "{} subscribed",
            bus.subscribers()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut got = Vec::new();
                let mut line = String::new();
                while got.len() < 100 {
                    line.clear();
                    if r.read_line(&mut line).unwrap() == 0 {
                        break;
                    }
                    let v: Value = serde_json::from_str(&line).unwrap();
                    got.push(v["message"].as_str().unwrap().to_string());
                    // odd clients vanish after 10 events, mid-stream
                    if i % 2 == 1 && got.len() == 10 {
                        drop(r);
                        drop(s);
                        return got;
                    }
                }
                got
            })
        })
        .collect();
    for k in 0..100 {
        bus.publish(Event::Error {
            message: format!("e{k}"),
        });
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for (i, r) in readers.into_iter().enumerate() {
        let got = r.join().unwrap();
        let want: Vec<String> = (0..if i % 2 == 1 { 10 } else { 100 })
            .map(|k| format!("e{k}"))
            .collect();
        assert_eq!(got, want, "client {i}");
    }
    // the vanished subscribers are forgotten at the next event; requests still work
    bus.publish(Event::Error {
        message: "last".into(),
    });
    let t = std::time::Instant::now();
    while bus.subscribers() > 25 {
        assert!(
            t.elapsed().as_secs() < 10,
            "{} subscribers left",
            bus.subscribers()
        );
        bus.publish(Event::Error {
            message: "again".into(),
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut s = UnixStream::connect(srv.path()).unwrap();
    assert_eq!(ask(&mut s, r#"{"cmd":"status"}"#)["ok"]["state"], "idle");
}
