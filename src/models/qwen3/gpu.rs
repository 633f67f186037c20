//! The Qwen3 decoder on the GPU engine: weights uploaded once, KV cache preallocated on the
//! device, and each step recorded from op lists built at load. A decode step reads nothing
//! back but the sampled id; its input id is written by the previous step's argmax.

use std::sync::Arc;

mod assemble;
mod chain;
mod synthetic;

use super::gpu_moe::{GpuMoe, MoeActs};
use super::layer::FeedForward;
use super::{Logits, Qwen3Model};
use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::{
    FusedOProj, GpuBuffer, GpuContext, GpuMatrix, Kernels, MatFlags, Op, Q8Input, QuantOut,
    StepDims,
};
use crate::models::sampler::SamplingParams;
use crate::nn::Linear;
use crate::tensor::DType;

/// Sizes fixed at load.
#[derive(Debug, Clone, Copy)]
pub struct GpuModelOptions {
    /// KV-cache capacity in tokens
    pub ctx: usize,
    /// most tokens per prefill step (longer prompts run in several steps)
    pub max_prefill: usize,
    /// keep a (max_prefill, vocab) buffer so a step can return every position's logits
    pub all_logits: bool,
}

impl Default for GpuModelOptions {
    fn default() -> Self {
        GpuModelOptions {
            ctx: 4096,
            max_prefill: 256,
            all_logits: false,
        }
    }
}

/// Matrices applied to the same input whose outputs sit side by side (q|k|v, gate|up):
/// stacked into one matrix when that fits one binding, else (offset, part) pieces.
pub(super) struct Stacked {
    pub(super) parts: Vec<(usize, GpuMatrix)>,
}

impl Stacked {
    pub(super) fn upload(ctx: &Arc<GpuContext>, lins: &[&Linear], label: &str) -> Result<Self> {
        let cols = lins[0].in_features();
        let total: usize = lins.iter().map(|l| l.weight_bytes()).sum();
        let fits = (total as u64) <= ctx.max_binding().min(ctx.limits.max_buffer_size);
        if fits && lins.iter().all(|l| l.q8.is_some()) {
            let parts: Vec<(&[u8], &[u8], usize)> = lins
                .iter()
                .filter_map(|l| {
                    l.q8.as_ref()
                        .map(|q| (q.qs.as_slice(), q.scales.as_slice(), l.out_features()))
                })
                .collect();
            return Ok(Stacked {
                parts: vec![(0, GpuMatrix::upload_q8(ctx, &parts, cols, label)?)],
            });
        }
        let dt = lins[0].weight.dtype;
        if fits && dt != DType::F32 && lins.iter().all(|l| l.q8.is_none() && l.weight.dtype == dt) {
            let parts: Vec<(DType, &[u8], usize)> = lins
                .iter()
                .map(|l| (dt, l.weight.bytes(), l.out_features()))
                .collect();
            return Ok(Stacked {
                parts: vec![(0, GpuMatrix::upload_stacked(ctx, &parts, cols, label)?)],
            });
        }
        let mut off = 0;
        let mut out = Vec::new();
        for l in lins {
            out.push((off, upload(ctx, l)?));
            off += l.out_features();
        }
        Ok(Stacked { parts: out })
    }

    fn byte_len(&self) -> usize {
        self.parts.iter().map(|p| p.1.byte_len()).sum()
    }
}

impl GpuLayer {
    /// Weight bytes one decoded token reads in this layer.
    fn decoded_bytes(&self) -> usize {
        self.qkv_proj.byte_len()
            + self.o_proj.byte_len()
            + match &self.ffn {
                GpuFfn::Dense {
                    gate_up_proj,
                    down_proj,
                } => gate_up_proj.byte_len() + down_proj.byte_len(),
                GpuFfn::Moe(m) => m.active_bytes(),
            }
    }
}

/// "1.2 GB" / "340.0 MB" / "12 kB".
fn size_text(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} kB", n / 1e3)
    }
}

/// What a model needs on the device, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct MemoryEstimate {
    pub weights: usize,
    pub kv_cache: usize,
    pub activations: usize,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        (self.weights + self.kv_cache + self.activations) as u64
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weights {}, KV cache {}, activations {}",
            size_text(self.weights),
            size_text(self.kv_cache),
            size_text(self.activations)
        )
    }
}

/// Everything uploaded for a model, before the step programs are built.
struct GpuWeights {
    layers: Vec<GpuLayer>,
    embed: GpuMatrix,
    lm_head: Option<GpuMatrix>,
    norm: GpuBuffer,
    /// bytes a decoded token reads
    weight_bytes: usize,
    lm_head_bytes: usize,
}

/// A layer's feed-forward block on the device.
enum GpuFfn {
    Dense {
        /// gate | up: (2 * intermediate, hidden)
        gate_up_proj: Stacked,
        down_proj: GpuMatrix,
    },
    Moe(GpuMoe),
}

struct GpuLayer {
    /// q | k | v projections: ((heads + 2 kv_heads) * head_dim, hidden)
    qkv_proj: Stacked,
    o_proj: GpuMatrix,
    ffn: GpuFfn,
    input_layernorm: GpuBuffer,
    post_attention_layernorm: GpuBuffer,
    q_norm: GpuBuffer,
    k_norm: GpuBuffer,
    /// (ctx, kv_heads, head_dim) f32
    k_cache: GpuBuffer,
    /// (ctx, kv_heads, head_dim) f32
    v_cache: GpuBuffer,
}

impl GpuLayer {
    /// The dense feed-forward's stacked gate | up and down matrices (None in a MoE layer).
    fn dense_ffn(&self) -> Option<(&Stacked, &GpuMatrix)> {
        match &self.ffn {
            GpuFfn::Dense {
                gate_up_proj,
                down_proj,
            } => Some((gate_up_proj, down_proj)),
            GpuFfn::Moe(_) => None,
        }
    }
}

/// Activation buffers, sized for `max_prefill` tokens.
struct Acts {
    ids: GpuBuffer,    // (max_t) u32
    x: GpuBuffer,      // (max_t, hidden) residual stream
    h: GpuBuffer,      // (max_t, hidden) normed
    qkv: GpuBuffer,    // (max_t, (heads + 2 kv_heads) * hd)
    q: GpuBuffer,      // (max_t, heads * hd) normed, rotated
    attn: GpuBuffer,   // (max_t, heads * hd)
    gu: GpuBuffer,     // (max_t, 2 * intermediate): gate | up
    part_v: GpuBuffer, // argmax partials
    part_i: GpuBuffer,
    last_raw: GpuBuffer, // (hidden)
    last: GpuBuffer,
    logits: GpuBuffer,             // (vocab)
    logits_all: Option<GpuBuffer>, // (max_t, vocab)
    scores: GpuBuffer,             // decode attention's per-chunk partials
    out_id: GpuBuffer,             // (1) u32
}

pub struct Qwen3Gpu {
    pub ctx: Arc<GpuContext>,
    kernels: Kernels,
    pub hidden: usize,
    pub vocab: usize,
    pub opts: GpuModelOptions,
    /// tokens in the KV cache
    pub len: usize,
    weight_bytes: usize,
    lm_head_bytes: usize,
    acts: Acts,
    decode_ops: Vec<Op>,
    /// decode's Q8_0 matvecs hand their outputs on quantised (gpu/matvec_q8.rs)
    q8_chained: bool,
    /// ... from the attention on (its output quantised for o_proj)
    q8_chained_attention: bool,
    /// ... each layer's o_proj .. next qkv as one phased dispatch
    q8_phased: bool,
    prefill_ops: Vec<Op>,
    prefill_all_ops: Vec<Op>,
    /// how many ops at the start of each program gather the embedding rows
    embedding_ops: usize,
    argmax_ops: Vec<Op>,
    sample_op: Op,
    /// how the next step chooses its id: None = argmax, else sampling with a draw u
    sampling: Option<(SamplingParams, f32)>,
    /// settings for device sampling in generation (`TextModel::sample_on_device`)
    pub device_sampling: Option<SamplingParams>,
    /// two (1) u32 MAP_READ buffers, used in turn: each step copies its chosen id into one in
    /// its own command buffer, so reading it back costs one map, not a second submission,
    /// and the next step can be queued before this one's id is read (run-ahead)
    id_staging: [wgpu::Buffer; 2],
    /// steps whose ids were not read yet, oldest first: (staging slot, submission)
    pending: std::collections::VecDeque<(usize, wgpu::SubmissionIndex)>,
    next_slot: usize,
    // kept alive for the bind groups
    _layers: Vec<GpuLayer>,
    _embed: GpuMatrix,
    _lm_head: Option<GpuMatrix>,
    _norm: GpuBuffer,
    _rope: GpuBuffer,
    _moe_acts: Option<MoeActs>,
}

/// (positions, 2, half): cos then sin per position, from the CPU kernel's own math.
pub fn rope_table(inv_freq: &[f32], positions: usize) -> Vec<f32> {
    let half = inv_freq.len();
    let mut t = vec![0f32; positions * 2 * half];
    for p in 0..positions {
        for (i, &f) in inv_freq.iter().enumerate() {
            let (c, s) = cpu::rope::cos_sin(p, f);
            t[p * 2 * half + i] = c;
            t[p * 2 * half + half + i] = s;
        }
    }
    t
}

/// A linear layer's weight on the GPU: Q8_0 as it is, 16-bit as it is, F32 rounded to BF16.
fn upload(ctx: &Arc<GpuContext>, l: &Linear) -> Result<GpuMatrix> {
    let v = &l.weight;
    match &l.q8 {
        Some(q) => GpuMatrix::upload_q8(
            ctx,
            &[(q.qs.as_slice(), q.scales.as_slice(), l.out_features())],
            l.in_features(),
            &v.name,
        ),
        None => GpuMatrix::upload(ctx, v.dtype, v.bytes(), v.shape[0], v.shape[1], &v.name),
    }
}

/// The embedding table for the gather kernel, which reads 16-bit rows: a Q8_0 table is
/// expanded to BF16 at upload (one row per token is read, so its size costs no speed).
fn upload_embedding(ctx: &Arc<GpuContext>, e: &Linear) -> Result<GpuMatrix> {
    if e.q8.is_none() {
        return upload(ctx, e);
    }
    let (rows, cols) = (e.out_features(), e.in_features());
    let m = e.mat();
    let mut bytes = Vec::with_capacity(rows * cols * 2);
    let mut row = vec![0f32; cols];
    for r in 0..rows {
        m.row_to_f32(r, &mut row);
        bytes.extend(
            row.iter()
                .flat_map(|&x| crate::tensor::f32_to_bf16(x).to_le_bytes()),
        );
    }
    GpuMatrix::upload(ctx, DType::BF16, &bytes, rows, cols, "embed_tokens")
}

fn buf(ctx: &GpuContext, len: usize, label: &str) -> Result<GpuBuffer> {
    // a multiple of 4 elements so vec4 views of the buffer cover it
    GpuBuffer::zeros(ctx, len.next_multiple_of(4), label)
}

impl Qwen3Gpu {
    /// Upload a loaded model's weights and build its step programs.
    pub fn new(ctx: &Arc<GpuContext>, m: &Qwen3Model, opts: GpuModelOptions) -> Result<Self> {
        Self::new_tuned(ctx, m, opts, crate::gpu::Tuning::for_adapter(&ctx.info))
    }

    /// As `new` with the kernels' shape choices given (tests pin the exact Q8_0 path).
    pub fn new_tuned(
        ctx: &Arc<GpuContext>,
        m: &Qwen3Model,
        opts: GpuModelOptions,
        tuning: crate::gpu::Tuning,
    ) -> Result<Self> {
        let need = Self::memory_estimate(m, &opts);
        if let Some(budget) = ctx.memory_budget
            && need.total() > budget
        {
            return Err(Error::Gpu(format!(
                "not enough GPU memory for this model: it needs about {} ({}), {} are available (memory budget)",
                size_text(need.total() as usize),
                need,
                size_text(budget as usize)
            )));
        }
        // the device's own out-of-memory errors while uploading become one clear error
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let built = Self::upload_and_build(ctx, m, opts, tuning);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "out of GPU memory while loading the model: it needs about {} ({}); the device could not provide it ({e})",
                size_text(need.total() as usize),
                need
            )));
        }
        built
    }

    fn upload_and_build(
        ctx: &Arc<GpuContext>,
        m: &Qwen3Model,
        opts: GpuModelOptions,
        tuning: crate::gpu::Tuning,
    ) -> Result<Self> {
        let c = &m.config;
        let a = &m.attn;
        let (hd, kvh, cap) = (a.head_dim, a.kv_heads, opts.ctx);
        let mut layers = Vec::with_capacity(m.layers.len());
        let mut weight_bytes = 0;
        for l in &m.layers {
            let sa = &l.self_attn;
            let layer = GpuLayer {
                qkv_proj: Stacked::upload(ctx, &[&sa.q_proj, &sa.k_proj, &sa.v_proj], "qkv_proj")?,
                o_proj: upload(ctx, &sa.o_proj)?,
                ffn: match &l.ffn {
                    FeedForward::Dense(mlp) => GpuFfn::Dense {
                        gate_up_proj: Stacked::upload(
                            ctx,
                            &[&mlp.gate_proj, &mlp.up_proj],
                            "gate_up_proj",
                        )?,
                        down_proj: upload(ctx, &mlp.down_proj)?,
                    },
                    FeedForward::Moe(moe) => GpuFfn::Moe(GpuMoe::upload(ctx, moe)?),
                },
                input_layernorm: GpuBuffer::from_f32(
                    ctx,
                    &l.input_layernorm.weight,
                    "input_layernorm",
                )?,
                post_attention_layernorm: GpuBuffer::from_f32(
                    ctx,
                    &l.post_attention_layernorm.weight,
                    "post_attention_layernorm",
                )?,
                q_norm: GpuBuffer::from_f32(ctx, &sa.q_norm.weight, "q_norm")?,
                k_norm: GpuBuffer::from_f32(ctx, &sa.k_norm.weight, "k_norm")?,
                k_cache: buf(ctx, cap * kvh * hd, "k_cache")?,
                v_cache: buf(ctx, cap * kvh * hd, "v_cache")?,
            };
            weight_bytes += layer.decoded_bytes();
            layers.push(layer);
        }
        let embed = upload_embedding(ctx, &m.embed_tokens)?;
        // a tied head shares the table unless either side is Q8_0 (then the head has its own)
        let shared = c.tie_word_embeddings && m.lm_head.q8.is_none() && m.embed_tokens.q8.is_none();
        let lm_head = if shared {
            None
        } else {
            Some(upload(ctx, &m.lm_head)?)
        };
        let lm_head_bytes = lm_head.as_ref().unwrap_or(&embed).byte_len();
        weight_bytes += lm_head_bytes;
        let norm = GpuBuffer::from_f32(ctx, &m.norm.weight, "norm")?;
        let weights = GpuWeights {
            layers,
            embed,
            lm_head,
            norm,
            weight_bytes,
            lm_head_bytes,
        };
        Self::assemble(ctx, c, a, weights, opts, tuning)
    }

    /// GPU memory `m` needs with `opts`: weights as uploaded, the KV cache, activations.
    pub fn memory_estimate(m: &Qwen3Model, opts: &GpuModelOptions) -> MemoryEstimate {
        let c = &m.config;
        let a = &m.attn;
        let mut weights = m.embed_tokens.weight_bytes() + m.lm_head.weight_bytes();
        for l in &m.layers {
            let sa = &l.self_attn;
            weights += [&sa.q_proj, &sa.k_proj, &sa.v_proj, &sa.o_proj]
                .iter()
                .map(|w| w.weight_bytes())
                .sum::<usize>()
                + l.ffn
                    .matrices()
                    .iter()
                    .map(|w| w.weight_bytes())
                    .sum::<usize>();
        }
        let kv_cache = c.num_hidden_layers * 2 * opts.ctx * a.kv_heads * a.head_dim * 4;
        let t = opts.max_prefill.max(1);
        let width = 4 * c.hidden_size
            + (a.heads + 2 * a.kv_heads) * a.head_dim
            + 2 * a.heads * a.head_dim
            + 2 * c
                .intermediate_size
                .max(c.moe_intermediate_size * c.num_experts_per_tok.max(1))
            + if opts.all_logits { c.vocab_size } else { 0 };
        MemoryEstimate {
            weights,
            kv_cache,
            activations: (t * width + 2 * c.vocab_size) * 4,
        }
    }

    /// Forget the cache (a new conversation).
    pub fn reset(&mut self) {
        self.len = 0;
        self.pending.clear();
    }

    /// Keep the first `len` cached tokens (a new prompt sharing a prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.pending.clear();
    }

    /// Undo the last `steps` decode steps run ahead whose ids will not be used: their cache
    /// rows are forgotten (and overwritten by the next step) and their ids never read.
    pub fn forget_ahead(&mut self, steps: usize) {
        self.len -= steps.min(self.len);
        for _ in 0..steps {
            self.pending.pop_back();
        }
    }

    /// Submit `ops` for one step with the copy of its chosen id into the next staging slot.
    /// (`skip_embedding`: the step's input rows are already in `x`.)
    fn submit_choosing(
        &mut self,
        prefill: bool,
        skip_embedding: bool,
        dims: StepDims,
    ) -> Result<()> {
        let slot = self.next_slot;
        // at most two ids wait to be read: a third step reuses the oldest slot, whose id
        // nobody asked for (steps run for their logits)
        self.pending.retain(|(s, _)| *s != slot);
        let program = if prefill {
            &self.prefill_ops
        } else {
            &self.decode_ops
        };
        let program = &program[if skip_embedding {
            self.embedding_ops
        } else {
            0
        }..];
        let (src, dst) = (&self.acts.out_id.buffer, &self.id_staging[slot]);
        let index = self
            .kernels
            .run_then(program.iter().chain(self.choice_ops()), dims, |e| {
                e.copy_buffer_to_buffer(src, 0, dst, 0, 4)
            })?;
        self.pending.push_back((slot, index));
        self.next_slot = 1 - slot;
        Ok(())
    }

    fn check(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt: nothing to run".into()));
        }
        if self.len + ids.len() > self.opts.ctx {
            return Err(Error::ContextOverflow {
                needed: self.len + ids.len(),
                context: self.opts.ctx,
            });
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.vocab
            )));
        }
        Ok(())
    }

    /// Run `ids` (any length; split into prefill steps) and leave the greedy next id on the
    /// device. `which` says what logits to read back: None reads nothing.
    pub fn prefill(&mut self, ids: &[u32], which: Option<Logits>) -> Result<Vec<f32>> {
        self.check(ids)?;
        if which == Some(Logits::All) && self.acts.logits_all.is_none() {
            return Err(Error::Gpu("model was loaded without all_logits".into()));
        }
        let mut out = Vec::new();
        let chunks = ids.len().div_ceil(self.opts.max_prefill);
        for (i, chunk) in ids.chunks(self.opts.max_prefill).enumerate() {
            self.acts.ids.write_u32(&self.ctx, 0, chunk);
            let dims = StepDims {
                t: chunk.len() as u32,
                pos0: self.len as u32,
            };
            if which == Some(Logits::All) {
                self.kernels.run(&self.prefill_all_ops, dims)?;
            } else if i + 1 < chunks {
                self.kernels.run(&self.prefill_ops, dims)?;
            } else {
                self.submit_choosing(true, false, dims)?;
            }
            self.len += chunk.len();
            if which == Some(Logits::All) {
                let all = self
                    .acts
                    .logits_all
                    .as_ref()
                    .ok_or_else(|| Error::Gpu("no logits_all buffer".into()))?;
                out.extend(all.read_f32(&self.ctx, 0, chunk.len() * self.vocab)?);
            }
        }
        if which == Some(Logits::Last) {
            out = self.acts.logits.read_f32(&self.ctx, 0, self.vocab)?;
        }
        Ok(out)
    }

    /// Like [`Qwen3Gpu::prefill`] from input embeddings `x` (t, hidden) instead of ids (the Omni
    /// thinker's audio rows). `which` may be None or `Logits::Last`.
    pub fn prefill_embeds(&mut self, x: &[f32], which: Option<Logits>) -> Result<Vec<f32>> {
        let h = self.hidden;
        let t = x.len() / h.max(1);
        if t == 0 || x.len() != t * h {
            return Err(Error::Invalid(
                "input embeddings are not whole rows of the hidden size".into(),
            ));
        }
        if which == Some(Logits::All) {
            return Err(Error::Invalid(
                "prefill from embeddings returns the last logits only".into(),
            ));
        }
        if self.len + t > self.opts.ctx {
            return Err(Error::ContextOverflow {
                needed: self.len + t,
                context: self.opts.ctx,
            });
        }
        let step = self.opts.max_prefill;
        let chunks = t.div_ceil(step);
        for (i, rows) in x.chunks(step * h).enumerate() {
            self.acts.x.write_f32(&self.ctx, 0, rows);
            let dims = StepDims {
                t: (rows.len() / h) as u32,
                pos0: self.len as u32,
            };
            if i + 1 < chunks {
                self.kernels
                    .run(&self.prefill_ops[self.embedding_ops..], dims)?;
            } else {
                self.submit_choosing(true, true, dims)?;
            }
            self.len += rows.len() / h;
        }
        if which == Some(Logits::Last) {
            return self.acts.logits.read_f32(&self.ctx, 0, self.vocab);
        }
        Ok(Vec::new())
    }

    /// How the following steps choose the next id: argmax (None), or sampling with the draw
    /// `u` in [0, 1) (set before every step; repetition penalty is not applied on the device).
    pub fn set_sampling(&mut self, sampling: Option<(SamplingParams, f32)>) {
        if let Some((p, u)) = &sampling {
            self.sample_op
                .write_params(&self.ctx, &Kernels::sample_params(self.vocab, p, *u));
        }
        self.sampling = sampling;
    }

    /// The ops that end a step: the sampler or argmax.
    fn choice_ops(&self) -> impl Iterator<Item = &Op> {
        let sample = self.sampling.is_some();
        self.argmax_ops
            .iter()
            .filter(move |_| !sample)
            .chain(std::iter::once(&self.sample_op).filter(move |_| sample))
    }

    /// The id chosen by the oldest step not read yet (reads 4 bytes back, waiting for that
    /// step only: a step queued after it keeps running).
    pub fn last_id(&mut self) -> Result<u32> {
        let (slot, index) = self
            .pending
            .pop_front()
            .ok_or_else(|| Error::Gpu("no step with an unread id".into()))?;
        let bytes =
            crate::gpu::buffers::map_read_after(&self.ctx, &self.id_staging[slot], Some(index))?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Feed `id` (None: the id the previous step chose, already on the device) and run one
    /// decode step; returns the logits when `read_logits`, else nothing.
    pub fn decode(&mut self, id: Option<u32>, read_logits: bool) -> Result<Vec<f32>> {
        if let Some(id) = id {
            self.check(&[id])?;
            self.acts.ids.write_u32(&self.ctx, 0, &[id]);
        } else if self.len + 1 > self.opts.ctx {
            return Err(Error::ContextOverflow {
                needed: self.len + 1,
                context: self.opts.ctx,
            });
        }
        let dims = StepDims {
            t: 1,
            pos0: self.len as u32,
        };
        self.submit_choosing(false, false, dims)?;
        self.len += 1;
        if read_logits {
            self.acts.logits.read_f32(&self.ctx, 0, self.vocab)
        } else {
            Ok(Vec::new())
        }
    }

    /// One profiled decode step: GPU time per kernel name.
    pub fn profile_decode(&mut self) -> Result<Vec<crate::gpu::KernelTiming>> {
        let mut prof =
            crate::gpu::profiler::Profiler::new(&self.ctx, self.decode_op_count() as u32)?;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.kernels.encode(
            &mut enc,
            self.decode_ops.iter().chain(self.choice_ops()),
            StepDims {
                t: 1,
                pos0: self.len as u32,
            },
            Some(&mut prof),
        );
        self.ctx.queue.submit([enc.finish()]);
        self.len += 1;
        prof.finish(&self.ctx)
    }

    /// Whether decode chains its Q8_0 matvecs (each quantises its output for the next).
    pub fn q8_chained(&self) -> bool {
        self.q8_chained
    }

    /// Whether that chain starts at the attention (head_dim a multiple of 32).
    pub fn q8_chained_attention(&self) -> bool {
        self.q8_chained_attention
    }

    /// Whether each layer's o_proj, gate_up, down and next qkv run as one phased dispatch.
    pub fn q8_phased(&self) -> bool {
        self.q8_phased
    }

    /// GPU time by kernel of one prefill step of `t` tokens (ids 0..t, which time the same as
    /// any), after what is cached.
    pub fn profile_prefill(&mut self, t: usize) -> Result<Vec<crate::gpu::KernelTiming>> {
        let t = t.clamp(1, self.opts.max_prefill);
        let ids: Vec<u32> = (0..t as u32).map(|i| i % self.vocab as u32).collect();
        self.check(&ids)?;
        self.acts.ids.write_u32(&self.ctx, 0, &ids);
        let mut prof =
            crate::gpu::profiler::Profiler::new(&self.ctx, self.prefill_ops.len() as u32)?;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.kernels.encode(
            &mut enc,
            self.prefill_ops.iter(),
            StepDims {
                t: t as u32,
                pos0: self.len as u32,
            },
            Some(&mut prof),
        );
        self.ctx.queue.submit([enc.finish()]);
        self.len += t;
        prof.finish(&self.ctx)
    }

    /// Mean host time to record a step and to submit it, since the last call.
    pub fn take_host_step_time(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        self.kernels.take_host_step_time()
    }

    /// How many of the decode step's dispatches have a detail (the profiler's label beside the
    /// shader name: a matrix shape, " (quantised in)") containing `part` (tests check which
    /// links ran).
    pub fn decode_ops_with(&self, part: &str) -> usize {
        self.decode_ops
            .iter()
            .filter(|op| op.detail.contains(part))
            .count()
    }

    /// How many of the decode step's dispatches read weights ahead into the L2 cache
    /// (gpu/prefetch.rs): recorded without a barrier, they run beside the op before them.
    pub fn decode_prefetch_count(&self) -> usize {
        self.decode_ops
            .iter()
            .filter(|op| op.name == "l2_prefetch")
            .count()
    }

    /// Dispatches in one decode step.
    pub fn decode_op_count(&self) -> usize {
        self.decode_ops.len() + self.choice_ops().count()
    }

    /// Weight bytes read per decoded token (every matrix once, lm_head included).
    pub fn bytes_per_decoded_token(&self) -> usize {
        self.weight_bytes
    }

    pub fn lm_head_bytes(&self) -> usize {
        self.lm_head_bytes
    }
}
