//! `omni serve`: load the Qwen3-Omni thinker as the config says (engine, adapter, quantisation,
//! context), start the pipeline (microphone -> VAD -> encoder -> thinker, earcons to the
//! speakers) and answer the control socket until `shutdown`, SIGINT or SIGTERM; then stop
//! cleanly (reply interrupted, sounds drained, threads joined, socket removed).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::{Config, Mode};
use crate::control::server::ControlServer;
use crate::models::config::GenerationConfig;
use crate::models::omni::OmniThinker;
use crate::models::tokenizer::Tokenizer;
use crate::pipeline::audio_io::{InputSpec, OutputSpec};
use crate::pipeline::daemon::Daemon;
use crate::pipeline::{Pipeline, PipelineSetup};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Config file (default: $XDG_CONFIG_HOME/omni/config.toml; see config/default.toml)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model directory or repo id (overrides model.path)
    #[arg(long)]
    pub model: Option<String>,
    /// Control socket (overrides control.socket)
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// always-on, push-to-talk or text (overrides mode.default)
    #[arg(long)]
    pub mode: Option<String>,
    /// auto, gpu or cpu (overrides model.backend)
    #[arg(long)]
    pub backend: Option<String>,
    /// Use this WAV file as the microphone, played once in real time (no sound card needed)
    #[arg(long)]
    pub input_wav: Option<PathBuf>,
    /// Write what would be played to this WAV file at exit instead of using a sound card
    #[arg(long)]
    pub output_wav: Option<PathBuf>,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// The config file with the flags applied.
fn load_config(a: &ServeArgs) -> Result<Config> {
    let path = a.config.clone().or_else(Config::default_path);
    let mode = match a.mode.as_deref() {
        None => None,
        Some("always-on") => Some(Mode::AlwaysOn),
        Some("push-to-talk") => Some(Mode::PushToTalk),
        Some("text") => Some(Mode::Text),
        Some(other) => bail!("--mode `{other}`: expected always-on, push-to-talk or text"),
    };
    let overrides = |c: &mut Config| {
        if let Some(m) = &a.model {
            c.model.path = m.clone();
        }
        if let Some(s) = &a.socket {
            c.control.socket = s.display().to_string();
        }
        if let Some(m) = mode {
            c.mode.default = m;
        }
        if let Some(b) = &a.backend {
            c.model.backend = b.clone();
        }
    };
    match path.as_ref().filter(|p| p.is_file() || a.config.is_some()) {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Config::parse_with(&text, p, overrides)?)
        }
        // no config file: the defaults and the flags (--model is then required)
        None => Ok(Config::parse_with(
            "",
            std::path::Path::new("<command line>"),
            overrides,
        )?),
    }
}

/// Logging as the config says: `log.level` (RUST_LOG overrides it) to stderr, and to
/// `log.file` too (appended) when set.
fn init_logging(cfg: &Config) -> Result<()> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .map_err(|e| anyhow::anyhow!("log.level `{}`: {e}", cfg.log.level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if cfg.log.file.is_empty() {
        let _ = builder.with_writer(std::io::stderr).try_init();
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log.file)
            .with_context(|| format!("log.file `{}`", cfg.log.file))?;
        let _ = builder
            .with_ansi(false)
            .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
            .try_init();
    }
    Ok(())
}

pub fn run(a: &ServeArgs) -> Result<()> {
    let cfg = load_config(a)?;
    init_logging(&cfg)?;
    let dir = super::model_dir(&cfg.model.path)?;
    let backend: super::engine::Backend = cfg
        .model
        .backend
        .parse()
        .map_err(|e: String| anyhow::anyhow!("model.backend: {e}"))?;
    let adapter = (!cfg.model.adapter.is_empty()).then_some(cfg.model.adapter.as_str());
    let gpu = super::engine::gpu_context(backend, adapter)?;
    let mut thinker = OmniThinker::load(&dir)?;
    if cfg.model.quant == "q8_0" {
        thinker.text.quantize_q8_0();
    }
    let thinker: &'static OmniThinker = Box::leak(Box::new(thinker));
    let tokenizer = Tokenizer::load_optional(&dir)?.map(Arc::new);
    let extra_stop_ids = GenerationConfig::load(&dir)
        .ok()
        .and_then(|g| g.eos_token_id.map(|e| e.to_vec()))
        .unwrap_or_default();
    let input = match (&a.input_wav, cfg.mode.default) {
        (_, Mode::Text) => None,
        (Some(p), _) => Some(InputSpec::Wav {
            path: p.clone(),
            speed: 1.0,
            tail: Duration::from_secs(2),
        }),
        (None, _) => Some(InputSpec::Device(cfg.audio.input_device.clone())),
    };
    let output = match (&a.output_wav, cfg.mode.default) {
        (Some(_), _) => OutputSpec::Collect { rate: 48_000 },
        (None, Mode::Text) => OutputSpec::Null { rate: 48_000 },
        (None, _) => OutputSpec::Device(cfg.audio.output_device.clone()),
    };
    let socket = cfg.socket_path()?;
    let allowed = cfg.control.allowed_uids.clone();
    let pipeline = Arc::new(Pipeline::start(PipelineSetup {
        cfg,
        input,
        output,
        thinker,
        tokenizer,
        gpu,
        extra_stop_ids,
        ignore_eos: false,
        bus: None,
        model: dir.display().to_string(),
    })?);
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = Arc::new(Daemon {
        pipeline: pipeline.clone(),
        stop: stop.clone(),
    });
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let server = ControlServer::bind(&socket, &allowed, daemon)?;
    eprintln!(
        "omni serve: listening on {} ({})",
        server.path().display(),
        pipeline.status()
    );
    while !stop.load(Ordering::SeqCst) && !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server); // no new requests; the socket file is removed
    pipeline.shutdown();
    if let Some(p) = &a.output_wav {
        write_wav(p, &pipeline.played_audio(), 48_000)?;
    }
    eprintln!("omni serve: stopped");
    Ok(())
}

fn write_wav(path: &std::path::Path, samples: &[f32], rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}
