//! `omni generate`: stream a reply (text, or ids with --print-ids).

use std::io::Write;
use std::ops::ControlFlow;

use anyhow::{Context, Result, bail};

use super::load::{load_qwen3, stop_ids};
use crate::models::chat::{self, Message, Role};
use crate::models::generation::{StopRule, generate};
use crate::models::sampler::{Sampler, SamplingParams};
use crate::models::tokenizer::{TextStream, Tokenizer};

/// Everything `omni generate` takes (filled by main.rs from the command line).
#[derive(Debug, Clone, Default)]
pub struct GenerateArgs {
    pub model: String,
    pub prompt: Option<String>,
    pub prompt_ids: Option<String>,
    pub system: Option<String>,
    pub chat: bool,
    pub raw: bool,
    pub max_tokens: usize,
    pub ctx: usize,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub greedy: bool,
    pub print_ids: bool,
    pub ignore_eos: bool,
    pub stats: bool,
    pub backend: super::engine::Backend,
    pub adapter: Option<String>,
    pub quant: Option<String>,
}

pub fn run(a: &GenerateArgs) -> Result<()> {
    let dir = super::model_dir(&a.model)?;
    if a.chat && a.raw {
        bail!("--chat and --raw contradict each other");
    }
    let mut loaded = load_qwen3(&dir)?;
    super::load::apply_quant(&mut loaded, a.quant.as_deref())?;
    let params = sampling_params(a, &loaded.generation);
    let mut sampler = Sampler::new(params)?;
    let (prompt, tokenizer) = match (&a.prompt_ids, &a.prompt) {
        (Some(ids), None) => (parse_ids(ids)?, Tokenizer::load_optional(&dir)?),
        (None, Some(text)) => {
            let tok = Tokenizer::load(&dir)?;
            let use_chat = if a.raw {
                false
            } else {
                a.chat || is_instruct(&dir)
            };
            let text = if use_chat {
                chat_prompt(a.system.as_deref(), text)
            } else {
                text.clone()
            };
            (tok.encode(&text)?, Some(tok))
        }
        (Some(_), Some(_)) => bail!("give either --prompt or --prompt-ids, not both"),
        (None, None) => bail!("nothing to generate from: give --prompt TEXT or --prompt-ids 1,2,3"),
    };
    let stop = StopRule {
        max_new_tokens: a.max_tokens,
        stop_ids: if a.ignore_eos {
            Vec::new()
        } else {
            stop_ids(&loaded)
        },
    };
    let ctx_len = a.ctx.min(loaded.model.config.max_position_embeddings);
    loaded.model.check_ids(&prompt)?;
    if prompt.len() > ctx_len {
        return Err(crate::Error::ContextOverflow {
            needed: prompt.len(),
            context: ctx_len,
        }
        .into());
    }
    let mut printer = ReplyPrinter::new(tokenizer.as_ref(), a.print_ids)?;
    let gpu = super::engine::gpu_context(a.backend, a.adapter.as_deref())?;
    let mut engine = super::engine::open(&loaded.model, gpu.as_ref(), ctx_len)?;
    let stats = generate(engine.as_mut(), &prompt, &mut sampler, &stop, |id| {
        printer.token(id)
    })?;
    printer.finish()?;
    if stats.stopped_by_context {
        eprintln!(
            "warning: the context ({} tokens) is full; the reply was cut (raise --ctx)",
            ctx_len
        );
    }
    if a.stats {
        let n = stats.generated.len();
        eprintln!(
            "prompt {} tokens in {:.3} s ({:.1} tok/s); {} tokens in {:.3} s ({:.1} tok/s){}",
            stats.prompt_tokens,
            stats.prefill_time.as_secs_f64(),
            stats.prompt_tokens as f64 / stats.prefill_time.as_secs_f64(),
            n,
            stats.decode_time.as_secs_f64(),
            n as f64 / stats.decode_time.as_secs_f64().max(1e-9),
            if stats.stopped_by_eos {
                ", stopped at EOS"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub(crate) fn sampling_params(
    a: &GenerateArgs,
    g: &crate::models::config::GenerationConfig,
) -> SamplingParams {
    let mut p = SamplingParams::from_generation_config(g);
    if let Some(t) = a.temperature {
        p.temperature = t;
    }
    if let Some(k) = a.top_k {
        p.top_k = k;
    }
    if let Some(v) = a.top_p {
        p.top_p = v;
    }
    if let Some(v) = a.min_p {
        p.min_p = v;
    }
    if let Some(v) = a.repetition_penalty {
        p.repetition_penalty = v;
    }
    if let Some(s) = a.seed {
        p.seed = s;
    } else {
        p.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    }
    p.greedy = a.greedy || p.greedy;
    p
}

/// "1,2,3" or "1 2 3" -> ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>().with_context(|| {
                format!("--prompt-ids: `{t}` is not a token id (expected e.g. 1,2,3)")
            })
        })
        .collect()
}

/// A model ships a chat template (tokenizer_config.json `chat_template`, chat_template.jinja,
/// or chat_template.json as the Omni repositories do): it is an instruct model and prompts get
/// the chat format by default.
pub fn is_instruct(dir: &std::path::Path) -> bool {
    if dir.join("chat_template.jinja").is_file() || dir.join("chat_template.json").is_file() {
        return true;
    }
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v.get("chat_template").is_some())
}

fn chat_prompt(system: Option<&str>, user: &str) -> String {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(Message::new(Role::System, s));
    }
    msgs.push(Message::new(Role::User, user));
    chat::render(&msgs, true)
}

/// Prints a reply to stdout as it is generated: text through the streaming detokeniser, or
/// space-separated ids with --print-ids.
pub(crate) struct ReplyPrinter<'t> {
    stream: Option<TextStream<'t>>,
    out: std::io::StdoutLock<'static>,
    printed: usize,
}

impl<'t> ReplyPrinter<'t> {
    pub(crate) fn new(tokenizer: Option<&'t Tokenizer>, print_ids: bool) -> Result<Self> {
        let stream = match (tokenizer, print_ids) {
            (Some(t), false) => Some(TextStream::new(t)),
            (None, false) => bail!(
                "no tokenizer (tokenizer.json, or vocab.json + merges.txt) to print text with: add --print-ids"
            ),
            _ => None,
        };
        Ok(ReplyPrinter {
            stream,
            out: std::io::stdout().lock(),
            printed: 0,
        })
    }

    /// Print one generated id (the generation loop's callback).
    pub(crate) fn token(&mut self, id: u32) -> crate::Result<ControlFlow<()>> {
        match self.stream.as_mut() {
            Some(s) => write!(self.out, "{}", s.push(id)?),
            None => {
                let sep = if self.printed == 0 { "" } else { " " };
                self.printed += 1;
                write!(self.out, "{sep}{id}")
            }
        }
        .and_then(|_| self.out.flush())
        .map_err(|e| crate::Error::io("stdout", e))?;
        Ok(ControlFlow::Continue(()))
    }

    /// The rest of the text and the final newline.
    pub(crate) fn finish(mut self) -> Result<()> {
        if let Some(s) = self.stream.as_mut() {
            write!(self.out, "{}", s.finish()?).context("writing to stdout")?;
        }
        writeln!(self.out).context("writing to stdout")
    }
}

#[cfg(test)]
mod tests {
    use super::is_instruct;

    /// Each place a checkpoint keeps its chat template makes it an instruct model.
    #[test]
    fn a_chat_template_anywhere_means_instruct() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(!is_instruct(dir));
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"eos_token": "x"}"#).unwrap();
        assert!(!is_instruct(dir));
        std::fs::write(
            dir.join("chat_template.json"),
            r#"{"chat_template": "{{ x }}"}"#,
        )
        .unwrap();
        assert!(is_instruct(dir));
        std::fs::remove_file(dir.join("chat_template.json")).unwrap();
        std::fs::write(dir.join("chat_template.jinja"), "{{ x }}").unwrap();
        assert!(is_instruct(dir));
        std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"chat_template": "t"}"#,
        )
        .unwrap();
        assert!(is_instruct(dir));
    }
}
