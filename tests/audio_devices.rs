//! The daemon on real sound devices: a private user-mode PulseAudio with two null sinks, one
//! of them remapped as the microphone (see ../shared/reference/environment.md), reached by cpal
//! through ALSA's PulseAudio plugin. espeak questions are played into the microphone with
//! paplay; the daemon must detect exactly the utterances played (two in a row, then the same
//! two over sox background noise), answer each over the socket, and its earcons must arrive
//! at the speakers' monitor. Needs pulseaudio, pulseaudio-utils, libasound2-plugins and sox
//! (installed by .ci/run); without them the test fails and says what is missing.
//! OMNI_TEST_KEEP=DIR keeps the recordings (the speakers, and what the VAD heard) in DIR.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/omni")
        .join(p)
}

/// A private PulseAudio server, stopped on drop.
struct Pulse {
    runtime: PathBuf,
}

impl Pulse {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("PULSE_RUNTIME_PATH", self.runtime.join("pulse"));
        c
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.cmd(program).args(args).output().unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (install pulseaudio, pulseaudio-utils, libasound2-plugins and sox; .ci/run does)")
        });
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(dir: &Path) -> Pulse {
        let runtime = dir.join("xdg");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let p = Pulse { runtime };
        // as root PulseAudio warns that it is not meant to run as root, and works
        p.run(
            "pulseaudio",
            &[
                "-D",
                "--exit-idle-time=-1",
                "--log-target=stderr",
                "-n",
                "--load=module-native-protocol-unix",
            ],
        );
        let t = Instant::now();
        while !p
            .cmd("pactl")
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "PulseAudio did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p.run(
            "pactl",
            &["load-module", "module-null-sink", "sink_name=spk"],
        );
        p.run(
            "pactl",
            &["load-module", "module-null-sink", "sink_name=mic"],
        );
        p.run(
            "pactl",
            &[
                "load-module",
                "module-remap-source",
                "master=mic.monitor",
                "source_name=vmic",
            ],
        );
        p.run("pactl", &["set-default-sink", "spk"]);
        p.run("pactl", &["set-default-source", "vmic"]);
        p
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.cmd("pulseaudio").arg("--kill").output();
    }
}

/// short.wav and long.wav with silence around them, 16 kHz mono 16-bit.
fn questions(dir: &Path) -> PathBuf {
    let path = dir.join("questions.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    let silence = |w: &mut hound::WavWriter<_>, s: f64| {
        for _ in 0..(s * 16000.0) as usize {
            w.write_sample(0i16).unwrap();
        }
    };
    silence(&mut w, 0.5);
    for (name, gap) in [("short.wav", 1.5), ("long.wav", 1.5)] {
        let mut r = hound::WavReader::open(fixture(name)).unwrap();
        for s in r.samples::<i16>() {
            w.write_sample(s.unwrap()).unwrap();
        }
        silence(&mut w, gap);
    }
    w.finalize().unwrap();
    path
}

/// `secs` of sox white noise at about -50 dBFS RMS, the level of tests/vad.rs (repeatable:
/// sox -R), fading in over 3 s. It plays into the microphone beside the questions (PulseAudio
/// mixes the two) and starts well before them, as background noise is there all along. The
/// fade stands for that: a real microphone never delivers digital silence, so the VAD has
/// adapted to the room before anyone speaks; a null sink does, and webrtc-vad judges a step
/// from digital silence to noise as seconds of speech (measured: 3.3 s).
fn noise(dir: &Path, secs: f64) -> PathBuf {
    let noise = dir.join("noise.wav");
    let ok = Command::new("sox")
        .args(["-R", "-n", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(&noise)
        .args([
            "synth",
            &format!("{secs:.3}"),
            "whitenoise",
            "vol",
            "0.01",
            "fade",
            "t",
            "3",
        ])
        .status()
        .expect("sox runs (apt-get install sox)");
    assert!(ok.success());
    noise
}

/// The daemon, killed if a failed assertion leaves it running.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn serve(pulse: &Pulse, dir: &Path, config: &str) -> (Daemon, PathBuf) {
    let sock = dir.join("omni.sock");
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let child = pulse
        .cmd(env!("CARGO_BIN_EXE_omni"))
        .args(["serve", "--model"])
        .arg(fixture("tiny"))
        .arg("--socket")
        .arg(&sock)
        .arg("--config")
        .arg(&cfg)
        .env("OMNI_DUMP_MIC", dir.join("heard.wav"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (Daemon(child), sock)
}

const CONFIG: &str = "[mode]\ndefault = \"always-on\"\n[generation]\ntemperature = 0.0\nsystem_prompt = \"\"\nmax_tokens = 32\n[audio]\nbuffer_frames = 1024\n";

#[test]
fn the_daemon_hears_questions_through_pulseaudio_and_its_earcons_play() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let keep = std::env::var_os("OMNI_TEST_KEEP").map(PathBuf::from);
    let dir = keep.as_deref().unwrap_or(dir);
    let pulse = Pulse::start(dir);
    let clean = questions(dir);
    let noise = noise(dir, 24.0);
    // record the speakers from before the daemon starts
    let recording = dir.join("speakers.wav");
    let mut rec = pulse
        .cmd("parecord")
        .args([
            "-d",
            "spk.monitor",
            "--file-format=wav",
            "--rate=16000",
            "--channels=1",
        ])
        .arg(&recording)
        .spawn()
        .unwrap();
    let (mut daemon, sock) = serve(&pulse, dir, CONFIG);
    let t = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        if let Ok(Some(st)) = daemon.0.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut err);
            panic!("the daemon exited ({st}): {err}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut events = UnixStream::connect(&sock).unwrap();
    events.write_all(b"{\"cmd\":\"subscribe\"}\n").unwrap();
    let mut lines = BufReader::new(events.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"), "{line}");
    events
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut all: Vec<Value> = Vec::new();
    let mut background = None;
    for i in 0..2 {
        if i == 1 {
            background = Some(
                pulse
                    .cmd("paplay")
                    .args(["--device=mic"])
                    .arg(&noise)
                    .spawn()
                    .unwrap(),
            );
            std::thread::sleep(Duration::from_secs(6));
        }
        pulse.run("paplay", &["--device=mic", clean.to_str().unwrap()]);
        // both answers of this round
        let t = Instant::now();
        while all.iter().filter(|e| e["event"] == "reply").count() < 2 * (i + 1) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {i}: events {all:?}"
            );
            line.clear();
            if lines.read_line(&mut line).is_ok() && !line.is_empty() {
                all.push(serde_json::from_str(&line).unwrap());
            }
        }
    }
    // a little longer: nothing else may be heard
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        line.clear();
        if lines.read_line(&mut line).is_ok() && !line.is_empty() {
            all.push(serde_json::from_str(&line).unwrap());
        }
    }
    let n = |kind: &str, key: &str, val: &str| {
        all.iter()
            .filter(|e| e["event"] == kind && e[key] == val)
            .count()
    };
    if let Some(mut b) = background {
        let _ = b.kill();
        let _ = b.wait();
    }
    let mut ctl = UnixStream::connect(&sock).unwrap();
    ctl.write_all(b"{\"cmd\":\"status\"}\n{\"cmd\":\"shutdown\"}\n")
        .unwrap();
    let mut status = String::new();
    BufReader::new(&ctl).read_line(&mut status).unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["ok"]["turns"], 4);
    assert_eq!(status["ok"]["xruns"]["input"], 0, "{status}");
    let t = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.0.wait().unwrap().success());
    assert_eq!(
        n("vad", "speech", "end"),
        4,
        "exactly the utterances played"
    );
    let durations: Vec<f64> = all
        .iter()
        .filter(|e| e["speech"] == "end")
        .map(|e| e["duration_ms"].as_f64().unwrap())
        .collect();
    for (k, d) in durations.iter().enumerate() {
        // short.wav is 2.0 s and long.wav 6.4 s; pre-roll and one frame of silence around
        let clip = if k % 2 == 0 { 2026.0 } else { 6441.0 };
        assert!(
            (*d - clip).abs() < 600.0,
            "utterance {k}: {d} ms for a clip of {clip} ms ({durations:?})"
        );
    }
    assert_eq!(n("earcon", "name", "reply_ready"), 4);
    // stop the recorder cleanly so it finishes the WAV header
    unsafe { kill(rec.id() as i32, 2) };
    let _ = rec.wait();
    let mut r = hound::WavReader::open(&recording).unwrap();
    let rec: Vec<f32> = r
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    // the earcons: 140 ms tones at half volume (rms ~0.35); count 50 ms windows above 0.1
    let loud = rec
        .chunks(800)
        .filter(|w| (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt() > 0.1)
        .count();
    assert!(
        loud >= 5 * 2,
        "{loud} loud 50 ms windows at the speakers; 5 earcons of 140 ms expected"
    );
}

#[test]
fn an_unknown_audio_device_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(tmp.path());
    let cfg = format!("{CONFIG}input_device = \"no-such-microphone\"\n");
    let (mut child, _) = serve(&pulse, tmp.path(), &cfg);
    let t = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon should refuse to start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("audio.input_device `no-such-microphone`") && err.contains("available:"),
        "{err}"
    );
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// The sound server goes away under the running daemon: it says so (status, an error event),
/// keeps answering over the socket, and still stops cleanly on SIGTERM (closing a stream whose
/// server is gone deadlocks inside ALSA's pulse plugin; the daemon must not wait on that).
#[test]
fn the_daemon_survives_its_sound_server_going_away() {
    let tmp = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(tmp.path());
    let (mut daemon, sock) = serve(&pulse, tmp.path(), CONFIG);
    let t = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(pulse); // pulseaudio --kill
    let status = |sock: &Path| -> Value {
        let mut s = UnixStream::connect(sock).unwrap();
        s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let t = Instant::now();
    while status(&sock)["ok"]["audio_failed"]["input"] != true {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the failure is never reported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // still serving: a spoken question from a file
    let mut s = UnixStream::connect(&sock).unwrap();
    let ask = format!(
        "{{\"cmd\":\"ask\",\"wav\":\"{}\"}}\n",
        fixture("short.wav").display()
    );
    s.write_all(ask.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\""), "{line}");
    unsafe { kill(daemon.0.id() as i32, 15) };
    let t = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the daemon did not stop after its sound server went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.0.wait().unwrap().success());
}
