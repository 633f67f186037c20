//! Known model shapes (from the published config.json files; see
//! ../shared/reference/model-shapes.md), for synthetic checkpoints at true size.

use serde_json::{Value, json};

pub struct Preset {
    pub name: &'static str,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub tied: bool,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "qwen3-0.6b",
        hidden: 1024,
        layers: 28,
        heads: 16,
        kv_heads: 8,
        head_dim: 128,
        intermediate: 3072,
        vocab: 151936,
        tied: true,
    },
    Preset {
        name: "qwen3-1.7b",
        hidden: 2048,
        layers: 28,
        heads: 16,
        kv_heads: 8,
        head_dim: 128,
        intermediate: 6144,
        vocab: 151936,
        tied: true,
    },
    Preset {
        name: "qwen3-4b",
        hidden: 2560,
        layers: 36,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        intermediate: 9728,
        vocab: 151936,
        tied: true,
    },
    Preset {
        name: "qwen3-8b",
        hidden: 4096,
        layers: 36,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        intermediate: 12288,
        vocab: 151936,
        tied: false,
    },
    // Not a published model: a few-MB model with the real vocabulary, for tests and smoke runs.
    Preset {
        name: "qwen3-tiny",
        hidden: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
        intermediate: 128,
        vocab: 151936,
        tied: true,
    },
];

pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Preset {
    /// config.json as the published Qwen3 checkpoints write it.
    pub fn config_json(&self, dtype: &str) -> Value {
        json!({
            "architectures": ["Qwen3ForCausalLM"],
            "model_type": "qwen3",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate,
            "max_position_embeddings": 40960,
            "max_window_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "num_key_value_heads": self.kv_heads,
            "rms_norm_eps": 1e-6,
            "rope_scaling": null,
            "rope_theta": 1000000,
            "sliding_window": null,
            "tie_word_embeddings": self.tied,
            "torch_dtype": dtype,
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": self.vocab,
        })
    }

    /// generation_config.json as published for Qwen3.
    pub fn generation_config_json(&self) -> Value {
        json!({
            "bos_token_id": 151643,
            "do_sample": true,
            "eos_token_id": [151645, 151643],
            "pad_token_id": 151643,
            "temperature": 0.6,
            "top_k": 20,
            "top_p": 0.95,
        })
    }

    /// (name, shape) of every tensor, in checkpoint order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, q, kv, i) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        );
        let mut t = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab, h])];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            t.push((format!("{p}.input_layernorm.weight"), vec![h]));
            t.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            t.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            t.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            t.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            t.push((format!("{p}.self_attn.q_norm.weight"), vec![self.head_dim]));
            t.push((format!("{p}.self_attn.k_norm.weight"), vec![self.head_dim]));
            t.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            t.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            t.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            t.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        t.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tied {
            t.push(("lm_head.weight".to_string(), vec![self.vocab, h]));
        }
        t
    }
}

/// Mixture-of-experts shapes (`omni bench --synthetic`): the Qwen3-Omni-30B-A3B thinker's text
/// decoder and Qwen3-30B-A3B, from their published configs (../shared/reference).
pub fn moe_config_json(name: &str) -> Option<Value> {
    let (vocab, mrope) = match name.to_ascii_lowercase().as_str() {
        "qwen3-omni-30b-a3b" => (152064, true),
        "qwen3-30b-a3b" => (151936, false),
        // not a published model: the same layout at toy size, for smoke runs on any adapter
        "qwen3-moe-tiny" => {
            return Some(json!({
                "model_type": "qwen3_moe", "vocab_size": 1000, "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "num_experts": 8,
                "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": true,
            }));
        }
        _ => return None,
    };
    let mut c = json!({
        "model_type": "qwen3_moe",
        "vocab_size": vocab,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "max_position_embeddings": 65536,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": false,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 768,
        "norm_topk_prob": true,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    });
    if mrope {
        c["rope_scaling"] =
            json!({"mrope_section": [24, 20, 20], "interleaved": true, "rope_type": "default"});
    }
    Some(c)
}

/// The config of any preset by name, dense or MoE, for synthetic GPU models.
pub fn synthetic_config(name: &str) -> Option<crate::models::config::Qwen3Config> {
    let json = match find(name) {
        Some(p) => p.config_json("bfloat16"),
        None => moe_config_json(name)?,
    };
    crate::models::config::Qwen3Config::from_json(json, std::path::Path::new(name)).ok()
}

/// `omni synth --preset qwen3-omni-audio`: a Qwen3-Omni checkpoint whose audio encoder has the
/// real 30B-A3B shapes (0.65 B parameters) under a one-layer toy decoder of the real width, for
/// timing the encoder at true size (`omni bench --audio-secs`) without a 70 GB download.
pub const OMNI_AUDIO: &str = "qwen3-omni-audio";

pub fn omni_audio_config_json(dtype: &str) -> Value {
    json!({
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "model_type": "qwen3_omni_moe",
        "enable_audio_output": false,
        "im_start_token_id": 1000, "im_end_token_id": 1001, "system_token_id": 10,
        "user_token_id": 11, "assistant_token_id": 12, "dtype": dtype,
        "thinker_config": {
            "model_type": "qwen3_omni_moe_thinker",
            "audio_token_id": 1005, "audio_start_token_id": 1003, "audio_end_token_id": 1004,
            "tie_word_embeddings": false,
            "text_config": {
                "model_type": "qwen3_omni_moe_text", "vocab_size": 1024, "hidden_size": 2048,
                "intermediate_size": 768, "num_hidden_layers": 1, "num_attention_heads": 16,
                "num_key_value_heads": 2, "head_dim": 128, "max_position_embeddings": 65536,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "num_experts": 2,
                "num_experts_per_tok": 1, "moe_intermediate_size": 64, "norm_topk_prob": true,
                "rope_scaling": {"mrope_section": [24, 20, 20], "interleaved": true, "rope_type": "default"}
            },
            "audio_config": {
                "model_type": "qwen3_omni_moe_audio_encoder", "num_mel_bins": 128,
                "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
                "encoder_ffn_dim": 5120, "downsample_hidden_size": 480, "output_dim": 2048,
                "n_window": 50, "n_window_infer": 800, "activation_function": "gelu",
                "max_source_positions": 1500, "scale_embedding": false
            }
        }
    })
}

/// (name, shape) of every tensor of the `qwen3-omni-audio` checkpoint.
pub fn omni_audio_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |n: String, s: &[usize]| t.push((n, s.to_vec()));
    let (h, v, hd, q, kv) = (2048, 1024, 128, 16 * 128, 2 * 128);
    let p = "thinker.model.layers.0";
    add("thinker.model.embed_tokens.weight".into(), &[v, h]);
    add(format!("{p}.input_layernorm.weight"), &[h]);
    add(format!("{p}.self_attn.q_proj.weight"), &[q, h]);
    add(format!("{p}.self_attn.k_proj.weight"), &[kv, h]);
    add(format!("{p}.self_attn.v_proj.weight"), &[kv, h]);
    add(format!("{p}.self_attn.o_proj.weight"), &[h, q]);
    add(format!("{p}.self_attn.q_norm.weight"), &[hd]);
    add(format!("{p}.self_attn.k_norm.weight"), &[hd]);
    add(format!("{p}.post_attention_layernorm.weight"), &[h]);
    add(format!("{p}.mlp.gate.weight"), &[2, h]);
    for e in 0..2 {
        add(format!("{p}.mlp.experts.{e}.gate_proj.weight"), &[64, h]);
        add(format!("{p}.mlp.experts.{e}.up_proj.weight"), &[64, h]);
        add(format!("{p}.mlp.experts.{e}.down_proj.weight"), &[h, 64]);
    }
    add("thinker.model.norm.weight".into(), &[h]);
    add("thinker.lm_head.weight".into(), &[v, h]);
    let a = "thinker.audio_tower";
    let (d, c, ffn) = (1280, 480, 5120);
    add(format!("{a}.conv2d1.weight"), &[c, 1, 3, 3]);
    add(format!("{a}.conv2d1.bias"), &[c]);
    for k in ["conv2d2", "conv2d3"] {
        add(format!("{a}.{k}.weight"), &[c, c, 3, 3]);
        add(format!("{a}.{k}.bias"), &[c]);
    }
    add(format!("{a}.conv_out.weight"), &[d, c * 16]);
    for l in 0..32 {
        let p = format!("{a}.layers.{l}");
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(format!("{p}.self_attn.{n}.weight"), &[d, d]);
            add(format!("{p}.self_attn.{n}.bias"), &[d]);
        }
        for n in ["self_attn_layer_norm", "final_layer_norm"] {
            add(format!("{p}.{n}.weight"), &[d]);
            add(format!("{p}.{n}.bias"), &[d]);
        }
        add(format!("{p}.fc1.weight"), &[ffn, d]);
        add(format!("{p}.fc1.bias"), &[ffn]);
        add(format!("{p}.fc2.weight"), &[d, ffn]);
        add(format!("{p}.fc2.bias"), &[d]);
    }
    add(format!("{a}.ln_post.weight"), &[d]);
    add(format!("{a}.ln_post.bias"), &[d]);
    add(format!("{a}.proj1.weight"), &[d, d]);
    add(format!("{a}.proj1.bias"), &[d]);
    add(format!("{a}.proj2.weight"), &[h, d]);
    add(format!("{a}.proj2.bias"), &[h]);
    t
}
