//! The daemon's pipeline headless: a WAV file plays as the microphone (in real time, or faster)
//! and a collecting sink stands in for the speakers, with the tiny Qwen3-Omni fixture on the
//! CPU engine. Asserted: utterance boundaries and turn order (ids equal to the thinker run in
//! process on the same utterances), push-to-talk and mute, barge-in and `interrupt` stopping a
//! reply within 100 ms, backpressure on the job queue, earcons reaching the output, shutdown
//! in the middle of a reply.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use qwen_omni::config::{Config, Mode};
use qwen_omni::models::audio_encoder::wav::load_wav_16k_mono;
use qwen_omni::models::omni::OmniThinker;
use qwen_omni::pipeline::audio_io::{InputSpec, OutputSpec};
use qwen_omni::pipeline::events::EventBus;
use qwen_omni::pipeline::vad::{Segmenter, VadEvent};
use qwen_omni::pipeline::{Pipeline, PipelineSetup};
use serde_json::Value;

const RATE: usize = 16000;

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/omni")
        .join(p)
}

fn thinker() -> &'static OmniThinker {
    Box::leak(Box::new(OmniThinker::load(&fixture("tiny")).unwrap()))
}

/// silence, then each (clip, silence after it); written as 16-bit WAV and read back, so the
/// samples are the ones the pipeline reads
fn stream(dir: &Path, lead_s: f64, parts: &[(&str, f64)]) -> (PathBuf, Vec<f32>) {
    let mut s = vec![0f32; (lead_s * RATE as f64) as usize];
    for (name, gap) in parts {
        s.extend(load_wav_16k_mono(&fixture(name)).unwrap());
        s.extend(vec![0f32; (gap * RATE as f64) as usize]);
    }
    let path = dir.join("mic.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &x in &s {
        w.write_sample((x * 32768.0).clamp(-32768.0, 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let back = load_wav_16k_mono(&path).unwrap();
    (path, back)
}

struct Opts {
    mode: Mode,
    speed: f32,
    max_tokens: usize,
    context: usize,
    ignore_eos: bool,
}

impl Opts {
    /// replies of at most `max_tokens`, ending at `<|im_end|>` as usual
    fn short(mode: Mode, speed: f32, max_tokens: usize) -> Self {
        Opts {
            mode,
            speed,
            max_tokens,
            context: 4096,
            ignore_eos: false,
        }
    }

    /// always-on in real time, replies that run for seconds until something stops them
    fn endless() -> Self {
        Opts {
            mode: Mode::AlwaysOn,
            speed: 1.0,
            max_tokens: 60_000,
            context: 65_536,
            ignore_eos: true,
        }
    }
}

fn start(
    th: &'static OmniThinker,
    wav: &Path,
    o: Opts,
) -> (Arc<Pipeline>, Receiver<Value>, Config) {
    let mut cfg = Config::default();
    cfg.model.path = "tiny".into();
    cfg.mode.default = o.mode;
    cfg.generation.temperature = 0.0;
    cfg.generation.system_prompt = String::new();
    cfg.generation.max_tokens = o.max_tokens;
    cfg.model.context = o.context;
    let bus = Arc::new(EventBus::new());
    let rx = bus.subscribe();
    let p = Pipeline::start(PipelineSetup {
        cfg: cfg.clone(),
        input: Some(InputSpec::Wav {
            path: wav.to_path_buf(),
            speed: o.speed,
            tail: Duration::from_secs(1),
        }),
        output: OutputSpec::Collect { rate: 48_000 },
        thinker: th,
        tokenizer: None,
        gpu: None,
        extra_stop_ids: Vec::new(),
        ignore_eos: o.ignore_eos,
        bus: Some(bus),
        model: "tiny".into(),
    })
    .unwrap();
    (Arc::new(p), rx, cfg)
}

/// Events until `done` holds for the list so far (or the time runs out: a failure).
fn events_until(rx: &Receiver<Value>, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let t = Instant::now();
    let mut all = Vec::new();
    while !done(&all) {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out; events so far: {:#?}",
            all.iter()
                .filter(|e| e["event"] != "text")
                .collect::<Vec<_>>()
        );
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(50)) {
            all.push(v);
        }
    }
    all
}

fn count(ev: &[Value], kind: &str, key: &str, val: &str) -> usize {
    ev.iter()
        .filter(|e| e["event"] == kind && (key.is_empty() || e[key] == val))
        .count()
}

fn replies(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["event"] == "reply").collect()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v["ids"].clone()).unwrap()
}

/// The utterances the VAD finds in `samples` (what the listen stage must send).
fn utterances(samples: &[f32], cfg: &Config) -> Vec<Vec<f32>> {
    let mut seg = Segmenter::new(&cfg.vad).unwrap();
    let mut ev = Vec::new();
    seg.push(samples, &mut ev);
    seg.flush(&mut ev);
    ev.into_iter()
        .filter_map(|e| match e {
            VadEvent::Utterance { samples, .. } => Some(samples),
            _ => None,
        })
        .collect()
}

#[test]
fn always_on_answers_two_spoken_questions_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    // 2.5 s between the questions: at 4x, the first turn has 0.45 s after the VAD's hangover
    // before the second question's speech would barge in
    let (wav, samples) = stream(tmp.path(), 1.0, &[("short.wav", 2.5), ("long.wav", 1.0)]);
    let th = thinker();
    let o = Opts::short(Mode::AlwaysOn, 4.0, 48);
    let (p, rx, cfg) = start(th, &wav, o);
    let ev = events_until(&rx, 60, |e| {
        replies(e).len() == 2 && count(e, "earcon", "name", "reply_ready") == 2
    });
    // exactly the two questions, answered in order, as the thinker answers them in process
    assert_eq!(count(&ev, "vad", "speech", "end"), 2, "two utterances");
    let want = common::omni_greedy_turns(th, &utterances(&samples, &cfg), 48);
    let got = replies(&ev);
    assert_eq!(got[0]["interrupted"], false);
    assert_eq!(got[0]["turn"], 1);
    assert_eq!(got[1]["turn"], 2);
    assert_eq!(ids(got[0]), want[0]);
    assert_eq!(ids(got[1]), want[1]);
    // per turn: speech start < speech end < first text < reply < timing, on one clock
    for turn in [1u64, 2] {
        let pos = |pred: &dyn Fn(&Value) -> bool| ev.iter().position(pred).unwrap();
        let ends: Vec<usize> = ev
            .iter()
            .enumerate()
            .filter(|(_, e)| e["speech"] == "end")
            .map(|(i, _)| i)
            .collect();
        let starts: Vec<usize> = ev
            .iter()
            .enumerate()
            .filter(|(_, e)| e["speech"] == "start")
            .map(|(i, _)| i)
            .collect();
        let k = turn as usize - 1;
        let text = pos(&|e| e["event"] == "text" && e["turn"] == turn);
        let reply = pos(&|e| e["event"] == "reply" && e["turn"] == turn);
        let timing = pos(&|e| e["event"] == "timing" && e["turn"] == turn);
        assert!(starts[k] < ends[k] && ends[k] < text && text < reply && reply < timing);
        let t = &ev[timing];
        assert_eq!(t["vad_hangover_ms"], cfg.vad.hangover_ms as f64);
        for key in ["mel_ms", "encoder_ms", "prefill_ms", "to_first_token_ms"] {
            assert!(t[key].as_f64().unwrap() > 0.0, "{key}: {t}");
        }
    }
    // earcons: listening at start, reply_ready after each reply, all through the output ring
    assert_eq!(count(&ev, "earcon", "name", "listening"), 1);
    assert_eq!(count(&ev, "earcon", "name", "reply_ready"), 2);
    p.shutdown();
    let played = p.played_audio();
    let earcon_len = (0.14 * 48_000.0) as usize;
    assert!(
        played.len() >= 3 * earcon_len,
        "{} samples played, 3 earcons of {earcon_len} expected",
        played.len()
    );
    assert!(
        played.iter().any(|v| v.abs() > 0.3),
        "the earcons are audible"
    );
    assert_eq!(p.status()["turns"], 2);
}

#[test]
fn push_to_talk_takes_only_the_audio_between_start_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    // at 4x: the first question ends at 0.76 s, the second starts at 1.51 s
    let (wav, _) = stream(tmp.path(), 1.0, &[("short.wav", 3.0), ("long.wav", 1.0)]);
    let th = thinker();
    let o = Opts::short(Mode::PushToTalk, 4.0, 16);
    let (p, rx, _) = start(th, &wav, o);
    p.push_to_talk(true).unwrap();
    assert_eq!(p.push_to_talk(true).unwrap_err().code, "busy");
    std::thread::sleep(Duration::from_millis(1130));
    p.push_to_talk(false).unwrap();
    assert_eq!(p.push_to_talk(false).unwrap_err().code, "busy");
    let ev = events_until(&rx, 60, |_| {
        p.controls.input_ended.load(Ordering::SeqCst)
            && !p.controls.generating.load(Ordering::SeqCst)
    });
    let ev: Vec<Value> = ev
        .into_iter()
        .chain(std::iter::from_fn(|| {
            rx.recv_timeout(Duration::from_millis(300)).ok()
        }))
        .collect();
    // one turn: the first question, trimmed by the VAD; the second (no button) is ignored
    assert_eq!(count(&ev, "vad", "speech", "end"), 1, "{ev:?}");
    assert_eq!(replies(&ev).len(), 1);
    let end = ev.iter().find(|e| e["speech"] == "end").unwrap();
    let dur = end["duration_ms"].as_f64().unwrap();
    assert!(
        (2000.0..3100.0).contains(&dur),
        "trimmed utterance of {dur} ms"
    );
    // two listening earcons: at start and when the button went down
    assert_eq!(count(&ev, "earcon", "name", "listening"), 2);
}

#[test]
fn muted_audio_is_never_heard() {
    let tmp = tempfile::tempdir().unwrap();
    let (wav, _) = stream(tmp.path(), 1.0, &[("short.wav", 1.0)]);
    let th = thinker();
    let o = Opts::short(Mode::AlwaysOn, 4.0, 16);
    let (p, rx, _) = start(th, &wav, o);
    p.set_muted(true).unwrap();
    let ev = events_until(&rx, 30, |_| p.controls.input_ended.load(Ordering::SeqCst));
    assert_eq!(count(&ev, "vad", "", ""), 0, "{ev:?}");
    assert_eq!(count(&ev, "state", "state", "muted"), 1);
    assert_eq!(p.status()["turns"], 0);
}

#[test]
fn barge_in_and_interrupt_stop_a_reply_within_100_ms() {
    let tmp = tempfile::tempdir().unwrap();
    // the second question starts 1.2 s after the first ends: during the first reply
    let (wav, _) = stream(tmp.path(), 0.5, &[("short.wav", 1.2), ("long.wav", 0.5)]);
    let th = thinker();
    let o = Opts::endless();
    let (p, rx, _) = start(th, &wav, o);
    let ev = events_until(&rx, 60, |e| !replies(e).is_empty());
    let first = replies(&ev)[0];
    assert_eq!(first["interrupted"], true, "the second question barged in");
    let stop_ms = first["stop_ms"].as_f64().unwrap();
    assert!(
        stop_ms < 100.0,
        "barge-in stopped the reply after {stop_ms} ms"
    );
    // the second question's speech start came before the first reply ended
    let start2 = ev.iter().filter(|e| e["speech"] == "start").nth(1);
    assert!(start2.is_some(), "the barge-in's speech start is an event");
    // the second reply runs until `interrupt`
    let t = Instant::now();
    while !(p.status()["turns"] == 2 && p.controls.generating.load(Ordering::SeqCst)) {
        assert!(t.elapsed() < Duration::from_secs(30), "no second turn");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.interrupt(), "a reply was being generated");
    let ev = events_until(&rx, 30, |e| !replies(e).is_empty());
    let second = replies(&ev)[0];
    assert_eq!(second["turn"], 2);
    assert_eq!(second["interrupted"], true);
    let stop_ms = second["stop_ms"].as_f64().unwrap();
    assert!(
        stop_ms < 100.0,
        "interrupt stopped the reply after {stop_ms} ms"
    );
    // nothing of turn 2 is left to interrupt: under load the VAD may have cut long.wav in two,
    // and a third turn may already be running; if so, the reply this stops is that turn's
    if p.interrupt() {
        let ev = events_until(&rx, 30, |e| !replies(e).is_empty());
        let leftover = replies(&ev)[0];
        assert!(
            leftover["turn"].as_u64().unwrap_or(0) > 2,
            "turn 2 still generating after its interrupt: {leftover}"
        );
    }
}

#[test]
fn a_full_queue_refuses_and_shutdown_stops_a_reply() {
    let tmp = tempfile::tempdir().unwrap();
    let (wav, _) = stream(tmp.path(), 0.2, &[]);
    let th = thinker();
    let o = Opts::endless();
    let (p, rx, _) = start(th, &wav, o);
    let audio = load_wav_16k_mono(&fixture("short.wav")).unwrap();
    // one reply running, JOB_QUEUE waiting, the next refused
    let mut waiting = Vec::new();
    let p1 = p.clone();
    let a1 = audio.clone();
    waiting.push(std::thread::spawn(move || p1.ask_audio(a1)));
    let _ = events_until(&rx, 30, |e| count(e, "state", "state", "thinking") > 0);
    for _ in 0..qwen_omni::pipeline::JOB_QUEUE {
        let (pq, aq) = (p.clone(), audio.clone());
        waiting.push(std::thread::spawn(move || pq.ask_audio(aq)));
    }
    let t = Instant::now();
    while p.status()["turns"] != 1 || t.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = p.ask_audio(audio.clone()).unwrap_err();
    assert_eq!(refused.code, "busy", "{refused:?}");
    // shutdown in the middle of the first reply: everything stops promptly
    let t = Instant::now();
    p.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
    let first = waiting.remove(0).join().unwrap().unwrap();
    assert_eq!(first["interrupted"], true);
    for w in waiting {
        // queued questions are dropped with an error, never left hanging
        assert!(w.join().unwrap().is_err());
    }
}
