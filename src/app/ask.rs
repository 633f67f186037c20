//! `omni ask`: a spoken and/or written question to a Qwen3-Omni model, answered in text
//! (streamed) or ids. The user turn holds the audio first, then the text; a system turn is
//! sent only with --system.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::generate::{GenerateArgs, ReplyPrinter, parse_ids, sampling_params};
use crate::models::audio_encoder::wav::load_wav_16k_mono;
use crate::models::config::GenerationConfig;
use crate::models::generation::{StopRule, generate};
use crate::models::omni::OmniThinker;
use crate::models::sampler::Sampler;
use crate::models::tokenizer::Tokenizer;

#[derive(Debug, Clone, Default)]
pub struct AskArgs {
    pub wav: Option<PathBuf>,
    pub generation: GenerateArgs,
}

pub fn run(a: &AskArgs) -> Result<()> {
    let g = &a.generation;
    if g.chat || g.raw {
        bail!("--chat / --raw do not apply to ask: it always uses the Omni chat format");
    }
    if a.wav.is_none() && g.prompt.is_none() && g.prompt_ids.is_none() {
        bail!("nothing to ask: give --wav FILE and/or --prompt TEXT (or --prompt-ids)");
    }
    let dir = super::model_dir(&g.model)?;
    // read the audio before loading the model: a bad file fails fast
    let samples = match &a.wav {
        Some(p) => Some(load_wav_16k_mono(p)?),
        None => None,
    };
    let gpu = super::engine::gpu_context(g.backend, g.adapter.as_deref())?;
    let mut thinker = OmniThinker::load(&dir)?;
    if let Some(q) = g.quant.as_deref() {
        if !q.eq_ignore_ascii_case("q8_0") {
            bail!("--quant `{q}`: the only quantisation is q8_0");
        }
        thinker.text.quantize_q8_0();
    }
    let generation = GenerationConfig::load(&dir)?;
    let tokenizer = Tokenizer::load_optional(&dir)?;
    let encode = |text: &str, what: &str| -> Result<Vec<u32>> {
        let t = tokenizer.as_ref().with_context(|| {
            format!(
                "{what} needs the model's tokenizer (tokenizer.json, or vocab.json + merges.txt; \
                 or use --prompt-ids)"
            )
        })?;
        Ok(t.encode(text)?)
    };
    let text = match (&g.prompt_ids, &g.prompt) {
        (Some(ids), None) => parse_ids(ids)?,
        (None, Some(p)) => encode(p, "--prompt")?,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => bail!("give either --prompt or --prompt-ids, not both"),
    };
    let mut prompt = match &g.system {
        Some(s) => thinker.tokens.system_turn(&encode(s, "--system")?),
        None => Vec::new(),
    };
    // the audio encoder runs where the decoder runs
    let ctx_len = g.ctx.min(thinker.text.config.max_position_embeddings);
    let (mut session, encoder) =
        crate::models::omni::engine::open(&thinker, gpu.as_ref(), ctx_len)?;
    let audio = match &samples {
        Some(s) => {
            let m = crate::models::omni::log_mel_checked(s)?;
            let what = a
                .wav
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string());
            Some(
                encoder
                    .encode(&m)
                    .with_context(|| format!("encoding {what}"))?,
            )
        }
        None => None,
    };
    let h = thinker.text.config.hidden_size;
    let n_audio = audio.as_ref().map(|r| r.len() / h);
    prompt.extend(thinker.tokens.user_turn(n_audio, &text));
    if prompt.len() > ctx_len {
        return Err(crate::Error::ContextOverflow {
            needed: prompt.len(),
            context: ctx_len,
        }
        .into());
    }
    let mut stop_ids = vec![thinker.tokens.im_end];
    if let Some(e) = &generation.eos_token_id {
        stop_ids.extend(e.to_vec());
    }
    let stop = StopRule {
        max_new_tokens: g.max_tokens,
        stop_ids: if g.ignore_eos { Vec::new() } else { stop_ids },
    };
    let mut sampler = Sampler::new(sampling_params(g, &generation))?;
    if let Some(rows) = audio {
        session.attach_audio(rows);
    }
    let mut printer = ReplyPrinter::new(tokenizer.as_ref(), g.print_ids)?;
    let stats = generate(session.model(), &prompt, &mut sampler, &stop, |id| {
        printer.token(id)
    })?;
    printer.finish()?;
    if stats.stopped_by_context {
        eprintln!(
            "warning: the context ({ctx_len} tokens) is full; the reply was cut (raise --ctx)"
        );
    }
    if g.stats {
        eprintln!(
            "prompt {} tokens ({} audio) in {:.3} s; {} tokens in {:.3} s",
            stats.prompt_tokens,
            n_audio.unwrap_or(0),
            stats.prefill_time.as_secs_f64(),
            stats.generated.len(),
            stats.decode_time.as_secs_f64()
        );
    }
    Ok(())
}
