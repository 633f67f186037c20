//! Dense Qwen3 text decoder (mirrors transformers' `Qwen3ForCausalLM`, model_type `qwen3`).
//! Weights are named `model.embed_tokens`, `model.layers.N.{self_attn,mlp,...}`, `model.norm`,
//! `lm_head` (absent when `tie_word_embeddings`).

pub mod gpu;
mod gpu_moe;
mod layer;

use std::path::Path;

use crate::cpu;
use crate::error::Result;
use crate::models::config::Qwen3Config;
use crate::nn::attention::AttentionConfig;
use crate::nn::{KvCache, Linear, RmsNorm};
use crate::tensor::MatRef;
use crate::weights::WeightStore;

pub use layer::{DecoderLayer, FeedForward};

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// (1, vocab) for the last token only (generation)
    Last,
    /// (t, vocab) for every token (tests, scoring)
    All,
}

pub struct Qwen3Model {
    pub config: Qwen3Config,
    pub attn: AttentionConfig,
    /// (vocab, hidden)
    pub embed_tokens: Linear,
    pub layers: Vec<DecoderLayer>,
    /// (hidden,)
    pub norm: RmsNorm,
    /// (vocab, hidden); the embedding table itself when tied
    pub lm_head: Linear,
}

/// Per-layer hidden states captured during a forward pass (for comparison with the reference).
#[derive(Default)]
pub struct Trace {
    /// [0] embeddings, [l] output of layer l (before the final norm): each (t, hidden)
    pub hidden: Vec<Vec<f32>>,
    /// (t, hidden) after the final norm
    pub final_norm: Vec<f32>,
    /// (t, experts) router logits of each MoE layer (empty for dense layers)
    pub router: Vec<Vec<f32>>,
}

impl Qwen3Model {
    /// Load `config.json` and the weights of a model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = Qwen3Config::load(dir)?;
        let store = WeightStore::open(dir)?;
        Self::from_store(config, &store)
    }

    pub fn from_store(config: Qwen3Config, store: &WeightStore) -> Result<Self> {
        let c = &config;
        let head_dim = c.head_dim();
        let attn = AttentionConfig {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim,
            rms_norm_eps: c.rms_norm_eps,
            inv_freq: cpu::rope::inv_freq(head_dim, c.rope_theta()),
        };
        let pre = &c.layout.decoder;
        let embed_tokens = Linear::load(
            store,
            &format!("{pre}embed_tokens.weight"),
            c.vocab_size,
            c.hidden_size,
        )?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            layers.push(DecoderLayer::load(
                store,
                &format!("{pre}layers.{i}"),
                i,
                c,
                &attn,
            )?);
        }
        let norm = RmsNorm::load(
            store,
            &format!("{pre}norm.weight"),
            c.hidden_size,
            c.rms_norm_eps,
        )?;
        let lm_head = if c.tie_word_embeddings {
            Linear {
                weight: embed_tokens.weight.clone(),
                q8: embed_tokens.q8.clone(),
            }
        } else {
            Linear::load(store, &c.layout.lm_head, c.vocab_size, c.hidden_size)?
        };
        store.advise_willneed();
        Ok(Qwen3Model {
            config,
            attn,
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    /// An empty cache holding up to `capacity` tokens.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(
            self.layers.len(),
            self.attn.kv_heads,
            self.attn.head_dim,
            capacity,
        )
    }

    /// Run `ids` at positions cache.len.. and return logits (see [`Logits`]).
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, which: Logits) -> Result<Vec<f32>> {
        self.forward_traced(ids, cache, which, None)
    }

    /// As `forward`, recording hidden states into `trace` when given.
    pub fn forward_traced(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        which: Logits,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>> {
        // Run the whole pass on a pool worker: each kernel's parallel split then costs a
        // work-steal, not a cross-thread wake-up of the caller (measured 16 us -> 4 us per
        // small matvec, 2026-11-27).
        rayon::scope(|_| self.forward_on_worker(ids, cache, which, trace))
    }

    fn forward_on_worker(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        which: Logits,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let x = self.embed(ids);
        self.forward_embedded(x, ids.len(), cache, which, trace)
    }

    /// The embedding rows (t, hidden) of `ids` (checked against the vocabulary first).
    pub fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let mut x = vec![0f32; ids.len() * self.config.hidden_size];
        cpu::embedding_gather(self.embed_mat(), ids, &mut x);
        x
    }

    /// As `forward_traced` from input embeddings x (t, hidden) instead of ids (the Omni
    /// thinker puts audio-encoder rows at its placeholder positions).
    pub fn forward_embeds(
        &self,
        x: Vec<f32>,
        cache: &mut KvCache,
        which: Logits,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>> {
        let t = x.len() / self.config.hidden_size;
        if t == 0 || x.len() != t * self.config.hidden_size {
            return Err(crate::Error::Invalid(
                "input embeddings are not whole rows of the hidden size".into(),
            ));
        }
        rayon::scope(|_| self.forward_embedded(x, t, cache, which, trace))
    }

    fn forward_embedded(
        &self,
        mut x: Vec<f32>,
        t: usize,
        cache: &mut KvCache,
        which: Logits,
        mut trace: Option<&mut Trace>,
    ) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        cache.check_room(t)?;
        if let Some(tr) = trace.as_deref_mut() {
            tr.hidden.push(x.clone());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let mut router = Vec::new();
            let want_router = trace.is_some().then_some(&mut router);
            layer.forward(&mut x, t, i, cache, &self.attn, want_router);
            if let Some(tr) = trace.as_deref_mut() {
                tr.hidden.push(x.clone());
                tr.router.push(router);
            }
        }
        cache.len += t;
        let rows = match which {
            Logits::All => &mut x[..],
            Logits::Last => &mut x[(t - 1) * h..],
        };
        self.norm.forward(rows);
        if let Some(tr) = trace {
            tr.final_norm = rows.to_vec();
        }
        Ok(self.lm_head.forward(rows, rows.len() / h))
    }

    fn embed_mat(&self) -> MatRef<'_> {
        self.embed_tokens.mat()
    }

    /// Quantise every projection and lm_head to Q8_0 in memory (norms and the embedding table,
    /// read one row per token, stay as stored). Returns how many matrices were quantised.
    pub fn quantize_q8_0(&mut self) -> usize {
        let mut n = 0;
        for l in &mut self.layers {
            let sa = &mut l.self_attn;
            let mut all = vec![
                &mut sa.q_proj,
                &mut sa.k_proj,
                &mut sa.v_proj,
                &mut sa.o_proj,
            ];
            all.extend(l.ffn.quantisable_mut());
            for lin in all {
                n += lin.quantize_q8_0() as usize;
            }
        }
        n + self.lm_head.quantize_q8_0() as usize
    }

    /// Weights in the layers' projection matrices one token uses (prefill does one
    /// multiply-add per such weight per token; MoE layers count the router and top_k experts).
    pub fn layer_matrix_params(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let sa = &l.self_attn;
                let mut m = vec![&sa.q_proj, &sa.k_proj, &sa.v_proj, &sa.o_proj];
                m.extend(l.ffn.active_matrices());
                m.iter()
                    .map(|w| w.out_features() * w.in_features())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Whether any weight is Q8_0.
    pub fn is_quantized(&self) -> bool {
        self.lm_head.q8.is_some() || self.layers.iter().any(|l| l.self_attn.q_proj.q8.is_some())
    }

    /// Reject an empty prompt or ids outside the vocabulary.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(crate::error::Error::Invalid(
                "empty prompt: nothing to run".into(),
            ));
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(crate::error::Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Weight bytes read to decode one token: every layer, the final norm and lm_head (one
    /// embedding row is negligible).
    pub fn bytes_per_decoded_token(&self) -> usize {
        self.layers
            .iter()
            .map(DecoderLayer::weight_bytes)
            .sum::<usize>()
            + self.lm_head.weight_bytes()
    }
}
