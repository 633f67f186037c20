//! `omni serve` in text mode driven over its socket: a spoken question from a WAV path answers
//! with the ids the thinker gives in process, a second turn continues, requests that need a
//! microphone get an error while the daemon keeps serving, and `shutdown` or SIGTERM stop it
//! cleanly (exit 0, socket removed).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use qwen_omni::models::omni::OmniThinker;
use serde_json::{Value, json};

fn fixture(p: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/omni")
        .join(p)
}

/// The daemon in text mode (no sound devices), greedy, without a system turn.
fn start(sock: &std::path::Path) -> Child {
    let cfg = sock.with_file_name("config.toml");
    std::fs::write(
        &cfg,
        "[mode]\ndefault = \"text\"\n[generation]\ntemperature = 0.0\nsystem_prompt = \"\"\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_omni"))
        .args(["serve", "--model"])
        .arg(fixture("tiny"))
        .arg("--socket")
        .arg(sock)
        .arg("--config")
        .arg(&cfg)
        .spawn()
        .expect("omni serve starts");
    let t = Instant::now();
    while UnixStream::connect(sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn request(sock: &std::path::Path, req: Value) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.write_all((req.to_string() + "\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn answers_a_spoken_question_and_stops_on_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("omni.sock");
    let child = start(&sock);
    let wav = fixture("short.wav");
    let reply = request(&sock, json!({"cmd": "ask", "wav": wav, "id": 1}));
    let ids: Vec<u32> = serde_json::from_value(reply["ok"]["ids"].clone()).unwrap();
    // the same turn in process: audio-only user turn, greedy, stopping at <|im_end|>
    let th = OmniThinker::load(&fixture("tiny")).unwrap();
    let audio = qwen_omni::models::audio_encoder::wav::load_wav_16k_mono(&wav).unwrap();
    let want = common::omni_greedy_turns(&th, &[audio], 512);
    assert_eq!(ids, want[0]);
    assert_eq!(reply["id"], 1);
    // a second turn follows the first in the same cache
    let second = request(&sock, json!({"cmd": "ask", "wav": fixture("long.wav")}));
    assert!(second["ok"]["prompt_tokens"].as_u64().unwrap() > 84);
    assert_eq!(
        request(&sock, json!({"cmd": "history"}))["ok"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // no microphone in text mode, and the daemon keeps serving
    assert_eq!(
        request(&sock, json!({"cmd": "ptt_start"}))["error"]["code"],
        "busy"
    );
    assert_eq!(
        request(&sock, json!({"cmd": "ask", "text": "hi"}))["error"]["code"],
        "bad_args"
    );
    assert_eq!(
        request(&sock, json!({"cmd": "ask", "wav": "/nope.wav"}))["error"]["code"],
        "bad_args"
    );
    assert_eq!(
        request(&sock, json!({"cmd": "status"}))["ok"]["state"],
        "idle"
    );
    assert_eq!(request(&sock, json!({"cmd": "shutdown"}))["ok"], true);
    assert!(wait_exit(child).success());
    assert!(!sock.exists(), "the socket is removed");
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("omni.sock");
    let child = start(&sock);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(child.id() as i32, 15) };
    assert!(wait_exit(child).success());
    assert!(!sock.exists());
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
