//! `config.json` and `generation_config.json`, parsed into structs whose fields carry the
//! files' own key names. Values the engine does not implement are rejected at load.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A token id or a list of them (`eos_token_id` is either in published configs).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// transformers v5 writes `rope_parameters`; v4 wrote `rope_theta` / `rope_scaling`.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    pub rope_theta: Option<f64>,
    pub rope_type: Option<String>,
}

/// Text decoder hyperparameters (`model_type` `qwen3`), as in config.json.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Explicit in Qwen3 configs and not always hidden_size / heads.
    pub head_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub rope_parameters: Option<RopeParameters>,
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    pub torch_dtype: Option<String>,
    pub dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    /// Present in our Q8_0 checkpoints: {"quant_method": "omni_q8_0", "block_size": 32}.
    pub quantization_config: Option<serde_json::Value>,
    /// Mixture of experts (`qwen3_moe`, the Omni thinker): experts per MoE layer (0: dense).
    /// transformers 5 writes `num_local_experts`, published configs `num_experts`.
    #[serde(default, alias = "num_local_experts")]
    pub num_experts: usize,
    #[serde(default)]
    pub num_experts_per_tok: usize,
    #[serde(default)]
    pub moe_intermediate_size: usize,
    #[serde(default)]
    pub norm_topk_prob: bool,
    /// every `decoder_sparse_step`-th layer is MoE (1: all)
    #[serde(default = "one")]
    pub decoder_sparse_step: usize,
    /// layers that stay dense in a MoE model
    #[serde(default)]
    pub mlp_only_layers: Vec<usize>,
    /// Shared experts (Qwen2-MoE style) are not implemented; Qwen3 and the Omni thinker have 0.
    #[serde(default)]
    pub shared_expert_intermediate_size: usize,
    /// Where the decoder's tensors live in the checkpoint (set by the loader, not the file).
    #[serde(skip)]
    pub layout: TensorLayout,
}

/// Tensor name prefixes of a text decoder inside its checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorLayout {
    /// prefix of `embed_tokens`, `layers.N...`, `norm` (with the trailing dot)
    pub decoder: String,
    /// the LM head weight
    pub lm_head: String,
}

impl Default for TensorLayout {
    fn default() -> Self {
        TensorLayout {
            decoder: "model.".into(),
            lm_head: "lm_head.weight".into(),
        }
    }
}

/// The same decoder inside a Qwen3-Omni checkpoint (`thinker.model.*`, `thinker.lm_head`).
pub fn thinker_layout() -> TensorLayout {
    TensorLayout {
        decoder: "thinker.model.".into(),
        lm_head: "thinker.lm_head.weight".into(),
    }
}

fn one() -> usize {
    1
}

/// The `quant_method` our Q8_0 checkpoints carry.
pub const Q8_0_METHOD: &str = "omni_q8_0";

fn default_act() -> String {
    "silu".into()
}

impl Qwen3Config {
    /// Read and validate `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = read_required(&path, dir)?;
        let probe: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            msg: format!("not valid JSON: {e}"),
        })?;
        Self::from_json(probe, &path)
    }

    /// The text decoder described by a parsed config.json: `qwen3`, `qwen3_moe`, or the
    /// thinker of a `qwen3_omni_moe` checkpoint (`thinker_config.text_config`).
    pub fn from_json(probe: serde_json::Value, path: &Path) -> Result<Self> {
        let err = |msg: String| Error::Config {
            path: path.to_path_buf(),
            msg,
        };
        let model_type = probe.get("model_type").and_then(|v| v.as_str());
        let (text, layout, tied) = match model_type {
            Some("qwen3" | "qwen3_moe") => (probe.clone(), TensorLayout::default(), None),
            Some("qwen3_omni_moe") => {
                let thinker = probe
                    .get("thinker_config")
                    .ok_or_else(|| err("no `thinker_config` in a qwen3_omni_moe config".into()))?;
                let text = thinker.get("text_config").ok_or_else(|| {
                    err("no `thinker_config.text_config` in a qwen3_omni_moe config".into())
                })?;
                let tied = thinker.get("tie_word_embeddings").and_then(|v| v.as_bool());
                (text.clone(), thinker_layout(), tied)
            }
            Some(other) => {
                return Err(err(format!(
                    "unknown model_type `{other}` (supported: qwen3, qwen3_moe, qwen3_omni_moe)"
                )));
            }
            None => return Err(err("no `model_type` key".into())),
        };
        let where_ = if layout == TensorLayout::default() {
            ""
        } else {
            "thinker_config.text_config: "
        };
        let mut cfg: Qwen3Config =
            serde_json::from_value(text).map_err(|e| err(format!("{where_}{e}")))?;
        cfg.layout = layout;
        if let Some(t) = tied {
            cfg.tie_word_embeddings = t;
        }
        cfg.validate()
            .map_err(|msg| err(format!("{where_}{msg}")))?;
        Ok(cfg)
    }

    /// Whether layer `i` is a mixture of experts (transformers' rule for Qwen3-MoE).
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.num_experts > 0
            && !self.mlp_only_layers.contains(&i)
            && (i + 1).is_multiple_of(self.decoder_sparse_step)
    }

    /// The interleaved M-RoPE sections (t, h, w) of the Omni thinker, if any.
    pub fn mrope_section(&self) -> Option<Vec<usize>> {
        let s = self
            .rope_scaling
            .as_ref()?
            .get("mrope_section")?
            .as_array()?;
        s.iter().map(|v| v.as_u64().map(|x| x as usize)).collect()
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }

    /// The checkpoint's declared dtype (`dtype` in v5 configs, `torch_dtype` before).
    pub fn is_q8_0(&self) -> bool {
        self.quantization_config.is_some()
    }

    pub fn declared_dtype(&self) -> Option<&str> {
        self.dtype.as_deref().or(self.torch_dtype.as_deref())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("`{key}` must be positive"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "`num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        let hd = self.head_dim();
        if hd == 0 || !hd.is_multiple_of(2) {
            return Err(format!(
                "`head_dim` ({hd}) must be positive and even for RoPE"
            ));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "`hidden_act` `{}` is not supported (only silu)",
                self.hidden_act
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(format!(
                "`rms_norm_eps` {} is out of range",
                self.rms_norm_eps
            ));
        }
        let theta = self.rope_theta();
        if !(theta.is_finite() && theta > 1.0) {
            return Err(format!("`rope_theta` {theta} is out of range"));
        }
        if let Some(rt) = self
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.as_deref())
            && rt != "default"
        {
            return Err(format!("rope_type `{rt}` is not supported (only default)"));
        }
        if let Some(rs) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            // M-RoPE (the Omni thinker) is plain RoPE per axis; long-context scaling is not
            // implemented
            let kind = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(|v| v.as_str());
            let Some(section) = self.mrope_section() else {
                return Err(
                    "`rope_scaling` is not supported (long-context scaling is not implemented)"
                        .into(),
                );
            };
            if kind.is_some_and(|k| k != "default") {
                return Err(format!(
                    "`rope_scaling` type `{}` is not supported (only default)",
                    kind.unwrap_or("?")
                ));
            }
            if section.iter().sum::<usize>() != hd / 2 {
                return Err(format!(
                    "`rope_scaling.mrope_section` {section:?} must sum to head_dim / 2 = {}",
                    hd / 2
                ));
            }
        }
        if self.num_experts > 0 {
            if self.num_experts_per_tok == 0 || self.num_experts_per_tok > self.num_experts {
                return Err(format!(
                    "`num_experts_per_tok` ({}) must be in 1..={} (`num_experts`)",
                    self.num_experts_per_tok, self.num_experts
                ));
            }
            if self.moe_intermediate_size == 0 {
                return Err("`moe_intermediate_size` must be positive".into());
            }
            if self.decoder_sparse_step == 0 {
                return Err("`decoder_sparse_step` must be positive".into());
            }
            if self.shared_expert_intermediate_size > 0 {
                return Err(
                    "shared experts (`shared_expert_intermediate_size` > 0) are not supported"
                        .into(),
                );
            }
        }
        if self.attention_bias {
            return Err(
                "`attention_bias` true is not supported (Qwen3 checkpoints have none)".into(),
            );
        }
        if self.use_sliding_window {
            return Err("`use_sliding_window` true is not supported".into());
        }
        if let Some(q) = &self.quantization_config {
            let method = q
                .get("quant_method")
                .and_then(|m| m.as_str())
                .unwrap_or("?");
            let block = q.get("block_size").and_then(|b| b.as_u64());
            if method != Q8_0_METHOD || block != Some(crate::quant::BLOCK as u64) {
                return Err(format!(
                    "`quantization_config` {q} is not supported (only {{\"quant_method\": \"{Q8_0_METHOD}\", \"block_size\": 32}})"
                ));
            }
        }
        if let Some(d) = self.declared_dtype()
            && !matches!(d, "bfloat16" | "float16" | "float32")
        {
            return Err(format!(
                "dtype `{d}` is not supported (bfloat16, float16, float32)"
            ));
        }
        Ok(())
    }
}

/// Decoding defaults from `generation_config.json`; every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
}

impl GenerationConfig {
    /// Read `dir/generation_config.json`; absent means defaults.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Config {
            path,
            msg: format!("{e}"),
        })
    }
}

fn read_required(path: &PathBuf, dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            msg: "no such directory".into(),
        });
    }
    if !path.is_file() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            msg: "no config.json (is this a Hugging Face model directory?)".into(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}
