//! `omni`: command-line parsing and dispatch only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qwen_omni::app;

#[derive(Parser)]
#[command(
    name = "omni",
    version,
    about = "Qwen Omni models on a local engine",
    propagate_version = true
)]
struct Cli {
    /// Worker threads for the CPU engine (default: all cores)
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Log filter, e.g. `info` or `qwen_omni=debug` (also RUST_LOG)
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a reply to a prompt, streamed to stdout
    Generate(GenerateCli),
    /// Ask a Qwen3-Omni model a spoken (--wav) and/or written (--prompt) question
    Ask(AskCli),
    /// Print the token ids of a text, space separated
    Tokenize {
        /// Model directory or Hugging Face repo id (local cache only)
        #[arg(long)]
        model: String,
        /// The text to tokenize
        text: String,
    },
    /// Describe a model: architecture, parameters, dtypes, memory per component
    Info {
        #[arg(long)]
        model: String,
        /// Context length for the KV-cache estimate
        #[arg(long, default_value_t = 4096)]
        ctx: usize,
    },
    /// Write a model directory with random weights at a known model's real shapes
    Synth {
        /// qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b or qwen3-tiny
        #[arg(long)]
        preset: String,
        #[arg(long)]
        out: PathBuf,
        /// bf16, f16 or f32
        #[arg(long, default_value = "bf16")]
        dtype: String,
        /// tokenizer.json (or a directory holding it) to copy in
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time the speech front end of a Qwen3-Omni model (log-mel and audio encoder) on synthetic
    /// clips of the given lengths
    BenchAudio {
        #[arg(long)]
        model: String,
        /// Clip lengths in seconds, e.g. 5,30
        #[arg(long, value_delimiter = ',', default_value = "5,30")]
        secs: Vec<f32>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[command(flatten)]
        engine: EngineCli,
    },
    /// Measure the daemon's latency from the end of speech to the first reply token, by stage
    /// (GPU): log-mel, audio encoder, prefill, first decode
    BenchLatency {
        /// Omni model directory: its audio encoder (omni synth --preset qwen3-omni-audio makes
        /// one of the real shape), and its decoder unless --synthetic
        #[arg(long)]
        model: String,
        /// The thinker's decoder as random weights of this shape made in GPU memory, e.g.
        /// qwen3-omni-30b-a3b
        #[arg(long)]
        synthetic: Option<String>,
        /// q8_0
        #[arg(long)]
        quant: Option<String>,
        /// Length of the spoken question in seconds
        #[arg(long, default_value_t = 5.0)]
        secs: f32,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Pick the GPU whose adapter name contains this text
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Time a decode step's weight reads alone (no math) at a model's Q8_0 sizes, one dispatch
    /// per matrix and as one persistent dispatch: the floor our kernels are held against (GPU)
    BenchStream {
        /// A dense model shape, e.g. qwen3-8b
        #[arg(long, default_value = "qwen3-8b")]
        synthetic: String,
        /// Bytes of the buffer the reads cycle through (capped by one binding; far above any cache)
        #[arg(long, default_value_t = 2 << 30)]
        buffer_bytes: u64,
        /// Steps per timed submission
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Timed submissions (the best counts)
        #[arg(long, default_value_t = 3)]
        passes: usize,
        /// Only these ways of reading: MODE:INVOCATIONS:LOADS:GROUPS[:EXTRA],... with MODE
        /// chain, persist, ahead, layer or layerahead; GROUPS a count or NNk (one workgroup per
        /// NN KiB); EXTRA rBYTES[s][x][m][b][:KB] (the matvec's row pattern) or hWORDS (a vector
        /// handed over at each persistent wait). docs/kernels.md
        #[arg(long)]
        variants: Option<String>,
        /// Only the reads of one kind (qkv, attention, o_proj, gate_up, down, lm_head): a chain
        /// of every layer's copy
        #[arg(long)]
        only: Option<String>,
        /// Pick the GPU whose adapter name contains this text
        #[arg(long)]
        adapter: Option<String>,
        /// After the run, what the Vulkan driver compiled for the probe's pipelines whose
        /// shader name contains this (as `omni bench --shader-stats`); with --icache, for
        /// every code size of the probe, whatever the filter
        #[arg(long, value_name = "FILTER")]
        shader_stats: Option<String>,
        /// Instead: what a kernel's code costs when a weight stream has pushed it out of the
        /// caches (straight-line kernels of several sizes, cold and warm)
        #[arg(long)]
        icache: bool,
    },
    /// Measure load time, prefill and decode speed, memory and bandwidth use
    Bench {
        /// Model directory or Hugging Face repo id (local cache only)
        #[arg(
            long,
            required_unless_present = "synthetic",
            conflicts_with = "synthetic"
        )]
        model: Option<String>,
        /// Random weights of a known shape made in GPU memory, no files (GPU backend):
        /// qwen3-0.6b ... qwen3-8b, qwen3-30b-a3b, qwen3-omni-30b-a3b (the thinker's decoder)
        #[arg(long)]
        synthetic: Option<String>,
        /// Prompt tokens for the prefill measurement
        #[arg(long, default_value_t = 512)]
        prompt_len: usize,
        /// Tokens decoded for the decode measurement
        #[arg(long, default_value_t = 128)]
        gen_len: usize,
        /// Buffer size for the memory-bandwidth measurement
        #[arg(long, default_value_t = 2048)]
        bandwidth_mib: usize,
        /// Repeat prefill + decode and report the median
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Tokens of the prefill step profiled by kernel (GPU; at most --prompt-len)
        #[arg(long, default_value_t = 64)]
        profile_prefill: usize,
        /// The GPU's f32 FMA peak in TFLOP/s (known cards are built in)
        #[arg(long)]
        peak_tflops: Option<f64>,
        /// After the run, what the Vulkan driver compiled for each pipeline whose shader name
        /// contains this (registers, spills, ...: drivers with VK_KHR_pipeline_executable_properties)
        #[arg(long, value_name = "FILTER")]
        shader_stats: Option<String>,
        #[command(flatten)]
        engine: EngineCli,
    },
    /// List GPU adapters with their limits and features (--audio: sound devices)
    Devices {
        /// List capture and playback devices instead (names for audio.input_device /
        /// audio.output_device)
        #[arg(long)]
        audio: bool,
    },
    /// Run the voice assistant daemon: microphone -> VAD -> Omni thinker, controlled over a
    /// Unix socket (omni ctl)
    Serve(app::serve::ServeArgs),
    /// Send a request to the daemon: status, ask, reset, history, shutdown, ...
    Ctl {
        /// The request (docs/protocol.md)
        cmd: String,
        /// ask: the question as text
        #[arg(long)]
        text: Option<String>,
        /// ask: the question as a WAV file
        #[arg(long)]
        wav: Option<PathBuf>,
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Also print the daemon's events (text deltas, timings) until the reply arrives
        #[arg(long)]
        events: bool,
    },
    /// Compare Q8_0 with the original weights: per matrix kind and on the model's output
    QuantReport {
        #[arg(long)]
        model: String,
        /// Prompt ids for the output comparison (default: random ids)
        #[arg(long)]
        prompt_ids: Option<String>,
        /// Length of the random prompt
        #[arg(long, default_value_t = 64)]
        tokens: usize,
    },
    /// Write a Q8_0 copy of a BF16 / F16 / F32 model directory
    Quantize {
        #[arg(long)]
        model: String,
        #[arg(long)]
        out: PathBuf,
        /// Keep tensors whose name contains this in their original dtype (repeatable)
        #[arg(long = "keep-bf16")]
        keep_bf16: Vec<String>,
    },
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct GenerateCli {
    /// Model directory or Hugging Face repo id (local cache only)
    #[arg(long)]
    model: String,
    /// Prompt text
    #[arg(long, conflicts_with = "prompt_ids")]
    prompt: Option<String>,
    /// Raw prompt ids, e.g. 1,2,3 (no template, no tokenizer needed)
    #[arg(long)]
    prompt_ids: Option<String>,
    /// System prompt (chat format)
    #[arg(long)]
    system: Option<String>,
    /// Apply the chat template (default for models that ship one)
    #[arg(long)]
    chat: bool,
    /// Send the prompt as is, without the chat template
    #[arg(long, conflicts_with = "chat")]
    raw: bool,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Context length (KV-cache capacity) in tokens
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repetition_penalty: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Always pick the most likely token
    #[arg(long)]
    greedy: bool,
    /// Print generated ids (space separated) instead of text
    #[arg(long)]
    print_ids: bool,
    /// Do not stop at the model's EOS ids
    #[arg(long)]
    ignore_eos: bool,
    /// Print prefill and decode speed to stderr
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    engine: EngineCli,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct AskCli {
    /// The spoken question: a WAV file (any rate and channel count; converted to 16 kHz mono)
    #[arg(long)]
    wav: Option<PathBuf>,
    #[command(flatten)]
    g: GenerateCli,
}

#[derive(clap::Args, Clone)]
struct EngineCli {
    /// auto (a hardware GPU if present, else CPU), gpu (any adapter, software included) or cpu
    #[arg(long, default_value = "auto")]
    backend: app::engine::Backend,
    /// Pick the GPU whose adapter name contains this (see `omni devices`)
    #[arg(long)]
    adapter: Option<String>,
    /// Quantise the weights at load: q8_0 (CPU engine for now)
    #[arg(long)]
    quant: Option<String>,
}

fn main() -> ExitCode {
    // A file-size limit (`ulimit -f`) would otherwise kill the process mid-file (SIGXFSZ);
    // ignored, the write fails with EFBIG like a full disk, and the error is reported and the
    // partial output removed.
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = Cli::parse();
    // the daemon sets its logging up from its config (log.level, log.file)
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging(&cli.log);
    }
    if let Some(n) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: --threads {n}: {e}");
        return ExitCode::FAILURE;
    }
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Generate(g) => app::generate::run(&generate_args(g)),
        Command::Ask(a) => app::ask::run(&app::ask::AskArgs {
            wav: a.wav,
            generation: generate_args(a.g),
        }),
        Command::Tokenize { model, text } => app::tokenize::run(&model, &text),

        Command::Info { model, ctx } => app::info::run(&model, ctx),
        Command::Synth {
            preset,
            out,
            dtype,
            tokenizer,
            seed,
        } => app::synth::run(&preset, &out, &dtype, tokenizer.as_deref(), seed),
        Command::Bench {
            model,
            synthetic,
            prompt_len,
            gen_len,
            bandwidth_mib,
            repeats,
            profile_prefill,
            peak_tflops,
            shader_stats,
            engine,
        } => app::bench::run(&app::bench::BenchArgs {
            model: model.unwrap_or_default(),
            synthetic,
            prompt_len,
            gen_len,
            bandwidth_mib,
            repeats,
            backend: engine.backend,
            adapter: engine.adapter,
            quant: engine.quant,
            peak_tflops,
            profile_prefill,
            shader_stats,
        }),
        Command::Devices { audio } => app::devices::run(audio),
        Command::Serve(a) => app::serve::run(&a),
        Command::Ctl {
            cmd,
            text,
            wav,
            socket,
            events,
        } => app::ctl::run(&app::ctl::CtlArgs {
            socket,
            cmd,
            text,
            wav,
            events,
        }),
        Command::BenchLatency {
            model,
            synthetic,
            quant,
            secs,
            repeats,
            adapter,
        } => app::bench_latency::run(&app::bench_latency::BenchLatencyArgs {
            model,
            synthetic,
            quant,
            secs,
            repeats,
            adapter,
        }),
        Command::BenchStream {
            synthetic,
            buffer_bytes,
            steps,
            passes,
            variants,
            only,
            adapter,
            shader_stats,
            icache,
        } => app::bench_stream::run(&app::bench_stream::BenchStreamArgs {
            synthetic,
            buffer_bytes,
            steps,
            passes,
            variants,
            only,
            adapter,
            shader_stats,
            icache,
        }),
        Command::BenchAudio {
            model,
            secs,
            repeats,
            engine,
        } => app::bench_audio::run(&app::bench_audio::BenchAudioArgs {
            model,
            secs,
            repeats,
            backend: engine.backend,
            adapter: engine.adapter,
        }),
        Command::QuantReport {
            model,
            prompt_ids,
            tokens,
        } => app::quant_report::run(&app::quant_report::ReportArgs {
            model,
            prompt_ids,
            tokens,
        }),
        Command::Quantize {
            model,
            out,
            keep_bf16,
        } => app::quantize::run(&model, &out, &keep_bf16),
    }
}

fn generate_args(g: GenerateCli) -> app::generate::GenerateArgs {
    app::generate::GenerateArgs {
        model: g.model,
        prompt: g.prompt,
        prompt_ids: g.prompt_ids,
        system: g.system,
        chat: g.chat,
        raw: g.raw,
        max_tokens: g.max_tokens,
        ctx: g.ctx,
        temperature: g.temperature,
        top_k: g.top_k,
        top_p: g.top_p,
        min_p: g.min_p,
        repetition_penalty: g.repetition_penalty,
        seed: g.seed,
        greedy: g.greedy,
        print_ids: g.print_ids,
        ignore_eos: g.ignore_eos,
        stats: g.stats,
        backend: g.engine.backend,
        adapter: g.engine.adapter,
        quant: g.engine.quant,
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
