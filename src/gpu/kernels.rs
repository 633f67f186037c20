//! Kernel wrappers. Each builds an [`Op`]: a compiled pipeline, a bind group made once (the
//! buffers are static) and a rule for its dispatch size given the step's token count and
//! cache length. Model code builds lists of ops and hands them to [`Kernels::run`]; it never
//! touches encoders or bind groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::util::DeviceExt;

use crate::error::Result;
use crate::gpu::profiler::Profiler;
use crate::gpu::tuning::DebugKnobs;
use crate::gpu::{GpuBuffer, GpuContext, GpuMatrix, Tuning};

/// Dynamic sizes of one step, mirrored by the `Step` uniform of the shaders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDims {
    pub t: u32,
    pub pos0: u32,
}

impl StepDims {
    pub fn kv_len(&self) -> u32 {
        self.pos0 + self.t
    }
}

pub(crate) type GroupsFn = Box<dyn Fn(StepDims) -> [u32; 3] + Send + Sync>;

/// Fusions a matrix product can take on.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatFlags {
    /// add into the output (the residual stream) instead of overwriting it
    pub accumulate: bool,
    /// the input is silu(x[gate]) * x[up] with the up half at this offset (columns for matmul)
    pub swiglu_up_off: Option<usize>,
}

/// One dispatch, ready to record.
pub struct Op {
    pub name: &'static str,
    /// what the profiler tells this op's calls apart by beside the name (a matrix's shape)
    pub detail: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    groups: GroupsFn,
    /// the op's own uniform parameters (rewritten per step by ops such as the sampler)
    params: wgpu::Buffer,
}

impl Op {
    /// Replace the op's parameters (same layout as at creation); takes effect at the next submit.
    pub fn write_params(&self, ctx: &GpuContext, params: &[u32]) {
        let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
        ctx.queue.write_buffer(&self.params, 0, &bytes);
    }
}

/// Split a workgroup count over x and y (each at most 65535), as the shaders expect
/// (linear id = wg.x + wg.y * num_workgroups.x).
pub(crate) fn grid(n: u32) -> [u32; 3] {
    let x = n.clamp(1, 65535);
    [x, n.div_ceil(x).max(1), 1]
}

/// The first eight words of the matvec shaders' Params (matvec*.wgsl): rows, k, stride,
/// x_off, y_off, row0, up_off, eps bits; each caller appends its own.
pub(crate) fn matvec_params(
    rows: usize,
    w: &GpuMatrix,
    x_off: usize,
    y_off: usize,
    row0: usize,
    up: usize,
    eps: u32,
) -> Vec<u32> {
    [rows, w.cols, w.stride, x_off, y_off, row0, up]
        .iter()
        .map(|&v| v as u32)
        .chain([eps])
        .collect()
}

/// Workgroups of 256 for `items` invocations.
pub(crate) fn grid256(items: u32) -> [u32; 3] {
    grid(items.div_ceil(256))
}

/// Scratch for split-K matmuls ([`Kernels::split_k`]): partial tiles of steps of `tokens`
/// tokens, `floats` long.
struct SplitK {
    buffer: wgpu::Buffer,
    floats: usize,
    tokens: u32,
}

pub struct Kernels {
    pub ctx: Arc<GpuContext>,
    /// the `Step` uniform shared by every op
    step: wgpu::Buffer,
    /// bound where a shader declares a storage buffer an op does not use (the split-K scratch)
    pub(crate) unused: wgpu::Buffer,
    split: Option<SplitK>,
    pub tuning: Tuning,
    /// host time spent recording and submitting steps, and how many (for `omni bench`: a
    /// decode step whose recording outlasts its GPU time is bound by the CPU, not the GPU;
    /// a submit that waits for the queue says the GPU is the bound)
    host_ns: AtomicU64,
    host_submit_ns: AtomicU64,
    host_steps: AtomicU64,
    /// measurement-only knobs (never set outside a bench)
    pub(crate) debug: DebugKnobs,
}

impl Kernels {
    pub fn new(ctx: &Arc<GpuContext>) -> Self {
        let step = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let unused = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Kernels {
            ctx: ctx.clone(),
            step,
            unused,
            split: None,
            tuning: Tuning::for_adapter(&ctx.info),
            host_ns: AtomicU64::new(0),
            host_submit_ns: AtomicU64::new(0),
            host_steps: AtomicU64::new(0),
            debug: DebugKnobs::from_env(),
        }
    }

    pub(crate) fn op(
        &self,
        name: &'static str,
        constants: &[(&str, f64)],
        params: &[u32],
        uses_step: bool,
        buffers: &[&wgpu::Buffer],
        groups: GroupsFn,
    ) -> Result<Op> {
        // buffers bind in order after the uniforms
        let first = if uses_step { 2 } else { 1 };
        let at: Vec<(u32, &wgpu::Buffer)> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (first + i as u32, *b))
            .collect();
        self.op_at(name, constants, params, uses_step, &at, groups)
    }

    /// As `op`, with each buffer's binding number given (shaders whose parts leave gaps).
    pub(crate) fn op_at(
        &self,
        name: &'static str,
        constants: &[(&str, f64)],
        params: &[u32],
        uses_step: bool,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: GroupsFn,
    ) -> Result<Op> {
        let pipeline = if self.debug.nop(name) {
            let mut c = constants.to_vec();
            c.push(("NOP", 1.0));
            self.ctx.pipelines.get(&self.ctx.device, name, &c)?
        } else {
            self.ctx.pipelines.get(&self.ctx.device, name, constants)?
        };
        let mut padded = params.to_vec();
        while !padded.len().is_multiple_of(4) {
            padded.push(0);
        }
        let bytes: Vec<u8> = padded.iter().flat_map(|v| v.to_le_bytes()).collect();
        let params_buf = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params_buf.as_entire_binding(),
        }];
        if uses_step {
            entries.push(wgpu::BindGroupEntry {
                binding: 1,
                resource: self.step.as_entire_binding(),
            });
        }
        for (binding, b) in buffers {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        Ok(Op {
            detail: String::new(),
            name,
            pipeline,
            bind_group,
            groups,
            params: params_buf,
        })
    }

    fn f16(m: &GpuMatrix) -> [(&'static str, f64); 1] {
        [("IS_F16", if m.is_f16 { 1.0 } else { 0.0 })]
    }

    fn mat_constants(w: &GpuMatrix, f: MatFlags) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let mut c = vec![
            ("ACCUMULATE", b(f.accumulate)),
            ("SWIGLU", b(f.swiglu_up_off.is_some())),
        ];
        if !w.is_q8 {
            c.push(("IS_F16", b(w.is_f16)));
        }
        c
    }

    /// The tiled matmul's constants: `vec` for 16-byte loads along K, register double
    /// buffering for 16-bit weights only (H200, session 4: 16-bit prefill +2% and the audio
    /// encoder +6% with it, Q8_0 prefill -6 to -11%).
    fn matmul_constants(w: &GpuMatrix, f: MatFlags, vec: bool) -> Vec<(&'static str, f64)> {
        let mut c = Self::mat_constants(w, f);
        c.push(("VEC", if vec { 1.0 } else { 0.0 }));
        c.push(("AHEAD", if w.is_q8 { 0.0 } else { 1.0 }));
        c
    }

    /// Let this instance's matmuls split K across workgroups when their tiles alone would
    /// leave most of the GPU idle. The slices are chosen for steps of `tokens` tokens (the
    /// audio encoder's stages; a thinker's largest prefill step); shorter steps use the same
    /// slices. `scratch` holds the partial tiles (a split is capped to fit it).
    pub fn split_k(&mut self, scratch: &GpuBuffer, tokens: usize) {
        self.split = Some(SplitK {
            buffer: scratch.buffer.clone(),
            floats: scratch.len,
            tokens: tokens as u32,
        });
    }

    /// K slices for a matmul of `tiles` output tiles over `rows` weight rows and K = `k`:
    /// none when the tiles already fill a large GPU about one and a half times
    /// (`Tuning::split_max_tiles`), else enough for about two workgroups per compute unit
    /// (264 on an H200), each slice at least 4 k-steps, the partials within the scratch; 1
    /// without a scratch.
    fn k_slices(&self, tiles: u32, rows: usize, k: usize) -> u32 {
        let Some(sp) = &self.split else { return 1 };
        if tiles >= self.tuning.split_max_tiles {
            return 1;
        }
        let want = 264u32.div_ceil(tiles.max(1));
        let by_k = (k / 64).max(1) as u32;
        let by_scratch = (sp.floats / (sp.tokens as usize * rows).max(1)).max(1) as u32;
        want.min(by_k).min(by_scratch).clamp(1, 32)
    }

    /// y[y_off..] (+)= W x[x_off..] (one row of activations), one op per weight chunk.
    pub fn matvec(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_off: usize,
        y: &GpuBuffer,
        y_off: usize,
        f: MatFlags,
    ) -> Result<Vec<Op>> {
        self.matvec_impl(w, x, x_off, y, y_off, f, None)
    }

    /// The pipeline constants of `matvec_sg` / `matvec_q8` with `rows` rows per subgroup, and
    /// the rows per workgroup: ROWS per subgroup of the smallest size the adapter may pick (a
    /// larger subgroup loops over its share, never leaving rows uncovered).
    /// `columns`: workgroups per row range (the slots of a MoE matvec, else 1).
    /// `multiple`: rows per workgroup are raised to a multiple of it where the row groups allow
    /// (the quantised output's blocks; the caller checks).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn subgroup_matvec_constants(
        &self,
        w: &GpuMatrix,
        f: MatFlags,
        rows: u32,
        rms_norm: bool,
        matrix_rows: u32,
        columns: u32,
        multiple: u32,
    ) -> (Vec<(&'static str, f64)>, u32) {
        let wg = if w.is_q8 {
            self.tuning.q8_wg
        } else {
            self.tuning.matvec_wg
        };
        self.subgroup_matvec_shape(w, f, wg, rows, rms_norm, matrix_rows, columns, multiple, 1)
    }

    /// [`Kernels::subgroup_matvec_constants`] with `wg` invocations per workgroup, and (Q8_0
    /// chain links) up to `split` subgroups sharing each row group (matvec_q8.wgsl's KSPLIT:
    /// only where the subgroup size is fixed and leaves `split` subgroups per workgroup, else
    /// whole rows per subgroup).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn subgroup_matvec_shape(
        &self,
        w: &GpuMatrix,
        f: MatFlags,
        wg: u32,
        rows: u32,
        rms_norm: bool,
        matrix_rows: u32,
        columns: u32,
        multiple: u32,
        split: u32,
    ) -> (Vec<(&'static str, f64)>, u32) {
        // the subgroup size as a pipeline constant (SGC), where the adapter has only one
        let sgc = self
            .ctx
            .fixed_subgroup_size()
            .filter(|&sg| w.is_q8 && self.tuning.q8_fixed_sg && sg > 0);
        let split = match sgc {
            Some(sg) if wg / sg >= split => split.max(1),
            _ => 1,
        };
        let base = (wg / self.ctx.info.subgroup_min_size.max(1) / split).max(1) * rows;
        let mut groups = if w.is_q8 { self.tuning.q8_groups } else { 1 };
        while groups > 1 && matrix_rows.div_ceil(base * groups) * columns < self.tuning.q8_min_wgs {
            groups -= 1;
        }
        let cap = if w.is_q8 { 4 } else { 1 };
        while !(base * groups).is_multiple_of(multiple.max(1)) && groups < cap {
            groups += 1;
        }
        let rows_per_wg = base * groups;
        let mut c = Self::mat_constants(w, f);
        c.extend([
            ("RMS_NORM", if rms_norm { 1.0 } else { 0.0 }),
            ("ROWS", rows as f64),
            ("RPW", rows_per_wg as f64),
            ("WG", wg as f64),
        ]);
        if w.is_q8 {
            c.push(("DOT", if self.q8_dot(w) { 1.0 } else { 0.0 }));
            if let Some(sg) = sgc {
                c.push(("SGC", sg as f64));
            }
            if self.tuning.q8_fixed_k {
                c.push(("KC", w.cols as f64));
            }
            if split > 1 {
                c.push(("KSPLIT", split as f64));
                c.push(("KPN", (rows_per_wg * split) as f64));
            }
            // FULL: every lane's trips inside the row, known at pipeline creation
            let full = sgc.is_some_and(|sg| {
                self.tuning.q8_fixed_k
                    && self.tuning.q8_full_trips
                    && (w.cols / 32).is_multiple_of((sg * split) as usize)
            });
            if full {
                c.push(("FULL", 1.0));
            }
        }
        (c, rows_per_wg)
    }

    /// Whether the Q8_0 matvec of `w` takes int8 activations: asked for, rows short enough for
    /// the workgroup's copy, subgroups of at least 4 (a block is quantised by 4 neighbours).
    pub(crate) fn q8_dot(&self, w: &GpuMatrix) -> bool {
        self.tuning.q8_dot
            && w.is_q8
            && !w.exact_input
            && w.cols <= 12288
            && self.ctx.info.subgroup_min_size >= 4
    }

    /// Whether [`Kernels::matvec_normed`] is available (subgroups, rows a multiple of 8).
    pub fn fuses_norm(&self, w: &GpuMatrix) -> bool {
        if w.is_q8 {
            return self.ctx.has_subgroups();
        }
        self.ctx.has_subgroups() && w.cols.is_multiple_of(8)
    }

    /// y[y_off..] = W rms_norm(x) with the norm's weight `g` folded in (one op, no normed copy
    /// of x). Needs [`Kernels::fuses_norm`].
    pub fn matvec_normed(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        g: &GpuBuffer,
        eps: f32,
        y: &GpuBuffer,
        y_off: usize,
    ) -> Result<Vec<Op>> {
        self.matvec_impl(w, x, 0, y, y_off, MatFlags::default(), Some((g, eps)))
    }

    #[allow(clippy::too_many_arguments)]
    fn matvec_impl(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_off: usize,
        y: &GpuBuffer,
        y_off: usize,
        f: MatFlags,
        norm: Option<(&GpuBuffer, f32)>,
    ) -> Result<Vec<Op>> {
        let up = f.swiglu_up_off.unwrap_or(0);
        if w.is_q8 {
            return self.matvec_q8(w, x, x_off, y, y_off, f, norm);
        }
        let vec4 = w.cols.is_multiple_of(8) && x_off.is_multiple_of(4) && up.is_multiple_of(4);
        let sg = vec4 && self.ctx.has_subgroups();
        if norm.is_some() && !sg {
            return Err(crate::Error::Gpu(
                "fused RMSNorm needs subgroups and rows a multiple of 8".into(),
            ));
        }
        let name = if sg {
            "matvec_sg"
        } else if vec4 {
            "matvec_vec4"
        } else {
            "matvec"
        };
        let (consts, rows_per_wg) = if sg {
            self.subgroup_matvec_constants(
                w,
                f,
                self.tuning.matvec_rows,
                norm.is_some(),
                w.rows as u32,
                1,
                1,
            )
        } else {
            (Self::mat_constants(w, f), 8)
        };
        let eps = norm.map_or(0, |n| n.1.to_bits());
        w.chunks
            .iter()
            .map(|c| {
                let mut params = matvec_params(c.rows, w, x_off, y_off, c.row0, up, eps);
                params.extend([0; 4]);
                let wg = (c.rows as u32).div_ceil(rows_per_wg);
                let mut bufs = vec![&c.buffer, &x.buffer, &y.buffer];
                if sg {
                    // the norm weight (unused without RMS_NORM) and the MOE route (unused)
                    bufs.push(norm.map_or(&x.buffer, |n| &n.0.buffer));
                    bufs.push(&x.buffer);
                }
                self.op(
                    name,
                    &consts,
                    &params,
                    false,
                    &bufs,
                    Box::new(move |_| grid(wg)),
                )
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn matvec_q8(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_off: usize,
        y: &GpuBuffer,
        y_off: usize,
        f: MatFlags,
        norm: Option<(&GpuBuffer, f32)>,
    ) -> Result<Vec<Op>> {
        let input = super::matvec_q8::Q8Input::F32 { x, x_off, norm };
        self.matvec_q8_linked(w, input, y, y_off, f, None)
    }

    /// Fill `words` u32 of `buffer` (fill_random.wgsl; MODE 0 BF16 pairs in [-a, a], 1 random
    /// bytes, 2 f16 pairs of a).
    pub fn fill_random(
        &self,
        buffer: &wgpu::Buffer,
        words: usize,
        mode: f64,
        seed: u32,
        a: f32,
    ) -> Result<Op> {
        let n = words as u32;
        self.op(
            "fill_random",
            &[("MODE", mode)],
            &[n, seed, a.to_bits()],
            false,
            &[buffer],
            Box::new(move |_| grid256(n)),
        )
    }

    /// Mixture-of-experts prefill: Y[s] = W_{route[s]} X[s / x_div] for every slot s of the
    /// step, computed per expert over the slots `groups` lists for it (see moe_group), so each
    /// expert's weights are read once per step. `w` stacks the experts' matrices, one binding.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_grouped(
        &self,
        w: &GpuMatrix,
        rows_per_expert: usize,
        experts: usize,
        x: &GpuBuffer,
        x_ld: usize,
        x_div: usize,
        y: &GpuBuffer,
        groups: &GpuBuffer,
        max_tokens: usize,
        f: MatFlags,
        skip_up_to: u32,
    ) -> Result<Op> {
        let [c] = &w.chunks[..] else {
            return Err(crate::Error::Gpu(
                "grouped expert matmul needs all experts in one binding".into(),
            ));
        };
        let up = f.swiglu_up_off.unwrap_or(0) as u32;
        let vec = w.cols.is_multiple_of(16) && x_ld.is_multiple_of(4) && up.is_multiple_of(4);
        let mut consts = Self::matmul_constants(w, f, vec);
        consts.push(("GATHER", 1.0));
        // tokens per tile: 32 for Q8_0 experts (a 500-token prompt gives each ~31 slots)
        let tile_t = if w.is_q8 && vec {
            self.tuning.gather_tile
        } else {
            64
        };
        consts.push(("TY", (tile_t / 4) as f64));
        let params = [
            rows_per_expert as u32,
            w.cols as u32,
            w.stride as u32,
            x_ld as u32,
            rows_per_expert as u32,
            0,
            up,
            0,
            w.scale_stride as u32,
            x_div as u32,
            experts as u32,
        ];
        let nx = (rows_per_expert as u32).div_ceil(128);
        // an expert receives at most one slot per token
        let nt = (max_tokens as u32).div_ceil(tile_t);
        let e = experts as u32;
        self.tiled_matmul_op(
            w,
            c,
            &consts,
            &params,
            x,
            y,
            (&groups.buffer, &self.unused),
            // steps of at most `skip_up_to` tokens go to the grouped matvec instead
            Box::new(move |d| {
                if d.t <= skip_up_to {
                    [0, 0, 0]
                } else {
                    [nx, d.t.div_ceil(tile_t).min(nt), e]
                }
            }),
        )
    }

    /// Whether [`Kernels::matvec_grouped`] can run the experts of `w` (all in one binding).
    pub fn has_matvec_grouped(&self, w: &GpuMatrix) -> bool {
        self.fits_matvec_q8_grouped(w) && w.chunks.len() == 1
    }

    /// Whether matvec_q8_grouped.wgsl takes `w`: Q8_0 with int8 activations, rows whose four
    /// slots fit the workgroup's copy.
    fn fits_matvec_q8_grouped(&self, w: &GpuMatrix) -> bool {
        self.q8_dot(w) && w.cols <= 4096
    }

    /// One matvec_q8_grouped dispatch over chunk `c` of `w`: `consts` beyond the shape, the
    /// shader's Params with `rows` first (rows per expert, or the chunk's), workgroup z for
    /// each of `experts`, dispatched for steps of at most `max_t` tokens.
    #[allow(clippy::too_many_arguments)]
    fn matvec_q8_grouped_op(
        &self,
        c: &crate::gpu::buffers::MatrixChunk,
        consts: &[(&'static str, f64)],
        params: &[u32; 11],
        x: &GpuBuffer,
        y: &GpuBuffer,
        groups: &GpuBuffer,
        experts: u32,
        max_t: u32,
    ) -> Result<Op> {
        let scales = c
            .scales
            .as_ref()
            .ok_or_else(|| crate::Error::Gpu("Q8_0 chunk without scales".into()))?;
        let rows = self.tuning.q8_rows.min(4);
        let rpw = (self.tuning.q8_wg / self.ctx.info.subgroup_min_size.max(1)).max(1) * rows;
        let mut all = consts.to_vec();
        all.extend([
            ("ROWS", rows as f64),
            ("RPW", rpw as f64),
            ("WG", self.tuning.q8_wg as f64),
        ]);
        let nx = params[0].div_ceil(rpw);
        self.op_at(
            "matvec_q8_grouped",
            &all,
            params,
            true,
            &[
                (2, &c.buffer),
                (3, &x.buffer),
                (4, &y.buffer),
                (5, scales),
                (6, &groups.buffer),
            ],
            Box::new(move |d| {
                if d.t <= max_t {
                    [nx, 1, experts]
                } else {
                    [0, 0, 0]
                }
            }),
        )
    }

    /// Mixture-of-experts prefill for steps of at most `max_t` tokens (larger steps dispatch
    /// nothing: the grouped matmul takes them): workgroup z is an expert, which reads its
    /// weights once for the slots `groups` lists for it (matvec_q8_grouped.wgsl). Slot s takes
    /// x row s / x_div (at x_off + row * x_stride) and writes y[s * rows_per_expert ..].
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_grouped(
        &self,
        w: &GpuMatrix,
        rows_per_expert: usize,
        experts: usize,
        x: &GpuBuffer,
        x_off: usize,
        x_stride: usize,
        x_div: usize,
        y: &GpuBuffer,
        groups: &GpuBuffer,
        max_t: u32,
        f: MatFlags,
    ) -> Result<Op> {
        let [c] = &w.chunks[..] else {
            return Err(crate::Error::Gpu(
                "grouped expert matvec needs all experts in one binding".into(),
            ));
        };
        if !self.has_matvec_grouped(w) {
            return Err(crate::Error::Gpu(
                "grouped expert matvec needs Q8_0 rows <= 4096".into(),
            ));
        }
        let params = [
            rows_per_expert as u32,
            w.cols as u32,
            w.stride as u32,
            x_off as u32,
            f.swiglu_up_off.unwrap_or(0) as u32,
            w.scale_stride as u32,
            x_div as u32,
            x_stride as u32,
            experts as u32,
            rows_per_expert as u32,
            0,
        ];
        let swiglu = if f.swiglu_up_off.is_some() { 1.0 } else { 0.0 };
        self.matvec_q8_grouped_op(
            c,
            &[("SWIGLU", swiglu)],
            &params,
            x,
            y,
            groups,
            experts as u32,
            max_t,
        )
    }

    /// A prefill linear layer: y[t, y_off..] (+)= x[t] W^T for the step's tokens. Steps of at
    /// most `tuning.small_t` tokens on a Q8_0 matrix run as matvecs over the tokens
    /// (matvec_q8_grouped.wgsl, DENSE: the weights read once per four tokens, on as many
    /// workgroups as rows allow); longer steps as tiled matmuls, which for a few tokens would
    /// occupy a few workgroups only.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_prefill(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_ld: usize,
        y: &GpuBuffer,
        y_ld: usize,
        y_off: usize,
        f: MatFlags,
    ) -> Result<Vec<Op>> {
        let small = self.tuning.small_t;
        let few = small > 0
            && f.swiglu_up_off.is_none()
            && x_ld.is_multiple_of(4)
            && self.fits_matvec_q8_grouped(w);
        if !few {
            return self.matmul_above(w, x, x_ld, y, y_ld, y_off, f, 0);
        }
        let consts = [
            ("DENSE", 1.0),
            ("ACCUMULATE", if f.accumulate { 1.0 } else { 0.0 }),
        ];
        let mut ops = Vec::new();
        for c in &w.chunks {
            let params = [
                c.rows as u32,
                w.cols as u32,
                w.stride as u32,
                0,
                0,
                w.scale_stride as u32,
                1,
                x_ld as u32,
                1,
                y_ld as u32,
                (y_off + c.row0) as u32,
            ];
            // the groups binding is unused with DENSE
            ops.push(self.matvec_q8_grouped_op(c, &consts, &params, x, y, x, 1, small)?);
        }
        ops.extend(self.matmul_above(w, x, x_ld, y, y_ld, y_off, f, small)?);
        Ok(ops)
    }

    /// Y[:, y_off..] (+)= X (t, x_ld) Wᵀ for the step's t tokens, one op per weight chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_ld: usize,
        y: &GpuBuffer,
        y_ld: usize,
        y_off: usize,
        f: MatFlags,
    ) -> Result<Vec<Op>> {
        self.matmul_above(w, x, x_ld, y, y_ld, y_off, f, 0)
    }

    /// [`Kernels::matmul`] for steps of more than `skip_up_to` tokens (shorter ones dispatch
    /// nothing: [`Kernels::linear_prefill`] gives them to a matvec).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_above(
        &self,
        w: &GpuMatrix,
        x: &GpuBuffer,
        x_ld: usize,
        y: &GpuBuffer,
        y_ld: usize,
        y_off: usize,
        f: MatFlags,
        skip_up_to: u32,
    ) -> Result<Vec<Op>> {
        let up = f.swiglu_up_off.unwrap_or(0) as u32;
        let vec = w.cols.is_multiple_of(16) && x_ld.is_multiple_of(4) && up.is_multiple_of(4);
        let mut ops = Vec::new();
        for c in &w.chunks {
            let params = [
                c.rows as u32,
                w.cols as u32,
                w.stride as u32,
                x_ld as u32,
                y_ld as u32,
                c.row0 as u32,
                up,
                y_off as u32,
                w.scale_stride as u32,
            ];
            let nx = (c.rows as u32).div_ceil(128);
            let slices = match &self.split {
                Some(sp) => self.k_slices(nx * sp.tokens.div_ceil(64), c.rows, w.cols),
                None => 1,
            };
            let mut consts = Self::matmul_constants(w, f, vec);
            consts.push(("SPLIT", slices as f64));
            let scratch = match (&self.split, slices > 1) {
                (Some(sp), true) => &sp.buffer,
                _ => &self.unused,
            };
            // the GATHER groups are unused here: x stands in
            ops.push(self.tiled_matmul_op(
                w,
                c,
                &consts,
                &params,
                x,
                y,
                (&x.buffer, scratch),
                Box::new(move |d| {
                    if d.t <= skip_up_to {
                        [0, 0, 0]
                    } else {
                        [nx, d.t.div_ceil(64), slices]
                    }
                }),
            )?);
            if slices > 1 {
                let n = c.rows as u32;
                ops.push(self.op(
                    "matmul_reduce",
                    &[
                        ("SPLIT", slices as f64),
                        ("ACCUMULATE", if f.accumulate { 1.0 } else { 0.0 }),
                    ],
                    &[n, y_ld as u32, y_off as u32, c.row0 as u32],
                    true,
                    &[scratch, &y.buffer],
                    Box::new(move |d| {
                        if d.t <= skip_up_to {
                            [0, 0, 0]
                        } else {
                            grid256(d.t * n)
                        }
                    }),
                )?);
            }
        }
        Ok(ops)
    }

    /// One tiled-matmul op (matmul_body.wgsl behind the weight format's part) over chunk `c`
    /// of `w`: weights, x, y, the Q8_0 scales, and `extra` = (the GATHER slot list, the
    /// split-K scratch), with stand-ins where the op uses neither.
    #[allow(clippy::too_many_arguments)]
    fn tiled_matmul_op(
        &self,
        w: &GpuMatrix,
        c: &crate::gpu::buffers::MatrixChunk,
        consts: &[(&'static str, f64)],
        params: &[u32],
        x: &GpuBuffer,
        y: &GpuBuffer,
        extra: (&wgpu::Buffer, &wgpu::Buffer),
        groups: GroupsFn,
    ) -> Result<Op> {
        let mut bufs = vec![
            (2, &c.buffer),
            (3, &x.buffer),
            (4, &y.buffer),
            (6, extra.0),
            (7, extra.1),
        ];
        if let Some(sc) = &c.scales {
            bufs.push((5, sc));
        }
        let name = if w.is_q8 { "matmul_q8" } else { "matmul" };
        self.op_at(name, consts, params, true, &bufs, groups)
    }

    /// From the fused q/k/v projection (t, (heads + 2 kv_heads) * head_dim): QK-norm and RoPE
    /// into `q`, and this step's k / v rows into the caches at their positions.
    #[allow(clippy::too_many_arguments)]
    pub fn qk_norm_rope_kv(
        &self,
        qkv: &GpuBuffer,
        q: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        q_norm: &GpuBuffer,
        k_norm: &GpuBuffer,
        rope: &GpuBuffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        eps: f32,
    ) -> Result<Op> {
        let slots = (heads + 2 * kv_heads) as u32;
        let params = [
            heads as u32,
            kv_heads as u32,
            head_dim as u32,
            slots * head_dim as u32,
            eps.to_bits(),
        ];
        self.op(
            "qk_norm_rope_kv",
            &[],
            &params,
            true,
            &[
                &qkv.buffer,
                &q.buffer,
                &kc.buffer,
                &vc.buffer,
                &q_norm.buffer,
                &k_norm.buffer,
                &rope.buffer,
            ],
            Box::new(move |d| grid(slots * d.t)),
        )
    }

    /// dst = rms_norm(src) * weight over rows of `dim`; `rows_per_token` rows per token, or
    /// exactly `fixed_rows` rows when non-zero.
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm(
        &self,
        src: &GpuBuffer,
        dst: &GpuBuffer,
        weight: &GpuBuffer,
        dim: usize,
        rows_per_token: usize,
        fixed_rows: usize,
        eps: f32,
    ) -> Result<Op> {
        let params = [
            dim as u32,
            rows_per_token as u32,
            eps.to_bits(),
            fixed_rows as u32,
        ];
        let rpt = rows_per_token as u32;
        let fixed = fixed_rows as u32;
        self.op(
            "rms_norm",
            &[],
            &params,
            true,
            &[&src.buffer, &dst.buffer, &weight.buffer],
            Box::new(move |d| grid(if fixed > 0 { fixed } else { rpt * d.t })),
        )
    }

    /// RoPE in place on x (t, heads, 2 * half), cos/sin from `table` (positions, 2, half).
    pub fn rope(&self, x: &GpuBuffer, table: &GpuBuffer, heads: usize, half: usize) -> Result<Op> {
        let per_token = (heads * half) as u32;
        self.op(
            "rope",
            &[],
            &[heads as u32, half as u32],
            true,
            &[&x.buffer, &table.buffer],
            Box::new(move |d| grid256(per_token * d.t)),
        )
    }

    pub fn silu_mul(&self, gate: &GpuBuffer, up: &GpuBuffer, width: usize) -> Result<Op> {
        let w = width as u32;
        self.op(
            "silu_mul",
            &[],
            &[w],
            true,
            &[&gate.buffer, &up.buffer],
            Box::new(move |d| grid256(w * d.t)),
        )
    }

    pub fn add(&self, x: &GpuBuffer, y: &GpuBuffer, width: usize) -> Result<Op> {
        let w = width as u32;
        self.op(
            "add",
            &[],
            &[w],
            true,
            &[&x.buffer, &y.buffer],
            Box::new(move |d| grid256(w * d.t)),
        )
    }

    /// dst[dst_off + dst_pos_stride * pos0 + i] = src[src_off + i] over the step's rows of
    /// `width` (or the last `last_rows` rows when non-zero).
    #[allow(clippy::too_many_arguments)]
    pub fn copy(
        &self,
        src: &GpuBuffer,
        src_off: usize,
        dst: &GpuBuffer,
        dst_off: usize,
        width: usize,
        dst_pos_stride: usize,
        last_rows: usize,
    ) -> Result<Op> {
        let w = width as u32;
        let rows = last_rows as u32;
        let params = [
            w,
            src_off as u32,
            dst_off as u32,
            dst_pos_stride as u32,
            rows,
        ];
        self.op(
            "copy",
            &[],
            &params,
            true,
            &[&src.buffer, &dst.buffer],
            Box::new(move |d| grid256(w * if rows > 0 { rows } else { d.t })),
        )
    }

    /// out (t, dim) = table rows of ids (t), one op per table chunk.
    pub fn embedding(
        &self,
        table: &GpuMatrix,
        ids: &GpuBuffer,
        out: &GpuBuffer,
    ) -> Result<Vec<Op>> {
        let stride = table.stride as u32;
        table
            .chunks
            .iter()
            .map(|c| {
                let params = [c.rows as u32, c.row0 as u32, table.cols as u32, stride];
                self.op(
                    "embedding",
                    &Self::f16(table),
                    &params,
                    true,
                    &[&c.buffer, &ids.buffer, &out.buffer],
                    Box::new(move |d| grid256(stride * d.t)),
                )
            })
            .collect()
    }

    /// out[0] = next_ids[0] = a token sampled from `logits[..n]` (temperature, top-k, top-p,
    /// min-p, then the draw `u`); parameters from [`Kernels::sample_params`], rewritten per step
    /// with [`Op::write_params`].
    pub fn sample(
        &self,
        logits: &GpuBuffer,
        n: usize,
        out: &GpuBuffer,
        next_ids: &GpuBuffer,
    ) -> Result<Op> {
        let params =
            Self::sample_params(n, &crate::models::sampler::SamplingParams::default(), 0.0);
        self.op(
            "sample",
            &[],
            &params,
            false,
            &[&logits.buffer, &out.buffer, &next_ids.buffer],
            Box::new(|_| [1, 1, 1]),
        )
    }

    /// The sampler's uniform for `n` logits, sampling settings and draw `u` in [0, 1).
    pub fn sample_params(n: usize, s: &crate::models::sampler::SamplingParams, u: f32) -> [u32; 8] {
        let inv_t = if s.temperature > 0.0 {
            1.0 / s.temperature
        } else {
            1.0
        };
        [
            n as u32,
            s.top_k as u32,
            inv_t.to_bits(),
            s.top_p.to_bits(),
            s.min_p.to_bits(),
            u.to_bits(),
            0,
            0,
        ]
    }

    /// Workgroups of the first argmax stage for `n` logits (size of the partial buffers).
    pub fn argmax_parts(n: usize) -> usize {
        n.div_ceil(4096)
    }

    /// out[0] = next_ids[0] = argmax(logits[..n]), in two stages through `part_v` / `part_i`
    /// (each `argmax_parts(n)` long).
    pub fn argmax(
        &self,
        logits: &GpuBuffer,
        n: usize,
        part_v: &GpuBuffer,
        part_i: &GpuBuffer,
        out: &GpuBuffer,
        next_ids: &GpuBuffer,
    ) -> Result<Vec<Op>> {
        let parts = Self::argmax_parts(n) as u32;
        Ok(vec![
            self.op(
                "argmax_partial",
                &[],
                &[n as u32],
                false,
                &[&logits.buffer, &part_v.buffer, &part_i.buffer],
                Box::new(move |_| [parts, 1, 1]),
            )?,
            self.op(
                "argmax",
                &[],
                &[parts],
                false,
                &[
                    &part_v.buffer,
                    &part_i.buffer,
                    &out.buffer,
                    &next_ids.buffer,
                ],
                Box::new(|_| [1, 1, 1]),
            )?,
        ])
    }

    /// Record `ops` for one step into `enc` (one compute pass, or one pass per op with
    /// timestamps when profiling).
    pub fn encode<'a>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        ops: impl IntoIterator<Item = &'a Op>,
        dims: StepDims,
        profiler: Option<&mut Profiler>,
    ) {
        let step = [dims.t, dims.pos0, dims.kv_len(), 0];
        let bytes: Vec<u8> = step.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.ctx.queue.write_buffer(&self.step, 0, &bytes);
        match profiler {
            None => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes: None,
                });
                for op in ops
                    .into_iter()
                    .filter(|op| !self.debug.skips(op.name, &op.detail))
                {
                    Self::dispatch(&mut pass, op, dims);
                }
            }
            Some(prof) => {
                for op in ops {
                    let tw = prof.next(op.name, &op.detail);
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(op.name),
                        timestamp_writes: tw,
                    });
                    Self::dispatch(&mut pass, op, dims);
                }
            }
        }
    }

    fn dispatch(pass: &mut wgpu::ComputePass<'_>, op: &Op, dims: StepDims) {
        let [x, y, z] = (op.groups)(dims);
        if x == 0 || y == 0 || z == 0 {
            return;
        }
        pass.set_pipeline(&op.pipeline);
        pass.set_bind_group(0, &op.bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }

    /// Record and submit one step.
    pub fn run<'a>(&self, ops: impl IntoIterator<Item = &'a Op>, dims: StepDims) -> Result<()> {
        self.run_then(ops, dims, |_| {}).map(|_| ())
    }

    /// Record one step, then `after` (e.g. a copy of the chosen id into a mapped buffer) in the
    /// same command buffer, and submit.
    pub fn run_then<'a>(
        &self,
        ops: impl IntoIterator<Item = &'a Op>,
        dims: StepDims,
        after: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<wgpu::SubmissionIndex> {
        let t = std::time::Instant::now();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut enc, ops, dims, None);
        after(&mut enc);
        let commands = enc.finish();
        let recorded = t.elapsed();
        let index = self.ctx.queue.submit([commands]);
        let total = t.elapsed();
        self.host_ns
            .fetch_add(recorded.as_nanos() as u64, Ordering::Relaxed);
        self.host_submit_ns
            .fetch_add((total - recorded).as_nanos() as u64, Ordering::Relaxed);
        self.host_steps.fetch_add(1, Ordering::Relaxed);
        Ok(index)
    }

    /// Mean host time to record one step and to submit it, since the last call (None if no
    /// step ran).
    pub fn take_host_step_time(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        let ns = self.host_ns.swap(0, Ordering::Relaxed);
        let sub = self.host_submit_ns.swap(0, Ordering::Relaxed);
        let n = self.host_steps.swap(0, Ordering::Relaxed);
        (n > 0).then(|| {
            (
                std::time::Duration::from_nanos(ns / n),
                std::time::Duration::from_nanos(sub / n),
            )
        })
    }
}
