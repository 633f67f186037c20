//! The mixture-of-experts kernels' wrappers: the expert matvec (decode), the grouping of
//! slots by expert (prefill), the routing (`moe_route`, and for decode `moe_router` with the
//! router in the same dispatch, sharing route_core.wgsl) and the weighted sum of the slots.

use crate::error::Result;
use crate::gpu::kernels::{GroupsFn, grid, grid256, matvec_params};
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, MatFlags, Op};

/// What a Q8_0 MoE matvec ([`Kernels::matvec_moe`]) adds into the residual itself, as
/// [`Kernels::moe_sum`] would: each token's slots weighted by `weights` (t * k), into
/// `residual` (t, rows per expert), for steps of up to `max_t` tokens.
pub struct MoeSum<'a> {
    pub weights: &'a GpuBuffer,
    pub residual: &'a GpuBuffer,
    pub max_t: usize,
}

/// Most hidden values moe_router.wgsl holds in workgroup memory.
const MAX_HIDDEN: usize = 4096;
/// Its workgroup memory: x * g (16 KB), logits (4 KB), partial sums (1 KB), chosen (256 B), a
/// flag.
const SHARED_BYTES: u32 = 16384 + 4096 + 1024 + 256 + 4;

impl Kernels {
    /// One op that norms each token's x (RMSNorm with weight `g`, `eps`), multiplies it with
    /// the 16-bit `router` into `logits` (t, experts) and routes as [`Kernels::moe_route`]
    /// does, in each token's last workgroup, writing the slots' expert ids and weights. None
    /// where this adapter or matrix does not fit the kernel (one binding of 16-bit weights,
    /// hidden a multiple of 8 up to 4096, at most 1024 experts, 1..=64 choices, subgroups,
    /// 21.5 KB of workgroup memory): the caller keeps the router matvec and `moe_route`.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_router(
        &self,
        router: &GpuMatrix,
        logits: &GpuBuffer,
        x: &GpuBuffer,
        g: &GpuBuffer,
        eps: f32,
        k: usize,
        renorm: bool,
        ids: &GpuBuffer,
        weights: &GpuBuffer,
    ) -> Result<Option<Op>> {
        let (experts, hidden) = (router.rows, router.cols);
        let lim = &self.ctx.limits;
        let fits = !router.is_q8
            && router.chunks.len() == 1
            && hidden.is_multiple_of(8)
            && hidden <= MAX_HIDDEN
            && router.stride.is_multiple_of(4)
            && experts <= 1024
            && k > 0
            && k <= experts.min(64)
            && self.ctx.has_subgroups()
            && lim.max_compute_workgroup_storage_size >= SHARED_BYTES;
        if !fits {
            return Ok(None);
        }
        let info = &self.ctx.info;
        // invocations per workgroup (`Tuning::router_wg`; 256: eight subgroups of 32, a
        // router row each, 16 workgroups for 128 experts), within the adapter's limits and in
        // whole subgroups (the reductions count WG / subgroup size of them)
        let sg = info.subgroup_max_size.max(1);
        let wg = self
            .tuning
            .router_wg
            .min(lim.max_compute_invocations_per_workgroup)
            .min(lim.max_compute_workgroup_size_x);
        let wg = (wg - wg % sg).max(sg);
        // rows per workgroup: one per subgroup, counted with the largest subgroup size the
        // driver may pick (smaller subgroups make more rows per workgroup, never fewer)
        let rows_per_wg = (wg / sg).max(1) as usize;
        let blocks = experts.div_ceil(rows_per_wg) as u32;
        let max_t = logits.len / experts.max(1);
        if max_t == 0 || blocks > 65535 {
            return Ok(None);
        }
        // finished workgroups per token (the last resets its count)
        let done = GpuBuffer::zeros(&self.ctx, max_t, "moe_router_done")?;
        let sgc = self.ctx.fixed_subgroup_size().unwrap_or(0);
        let e_const = if self.tuning.route_fixed_e {
            experts
        } else {
            0
        };
        let mut op = self.op_at(
            "moe_router",
            &[
                ("RENORM", if renorm { 1.0 } else { 0.0 }),
                ("E", e_const as f64),
                ("WG", wg as f64),
                ("IS_F16", if router.is_f16 { 1.0 } else { 0.0 }),
                ("HID", hidden as f64),
                ("SGC", sgc as f64),
                ("PRE", if self.tuning.router_pre { 1.0 } else { 0.0 }),
                ("STOP", self.debug.router_stop as f64),
            ],
            &[
                experts as u32,
                k as u32,
                router.stride as u32,
                eps.to_bits(),
            ],
            false,
            &[
                (1, &logits.buffer),
                (2, &ids.buffer),
                (3, &weights.buffer),
                (4, &x.buffer),
                (5, &g.buffer),
                (6, &router.chunks[0].buffer),
                (7, &done.buffer),
            ],
            Box::new(move |d| [blocks, d.t, 1]),
        )?;
        op.detail = format!("{experts}x{hidden}");
        Ok(Some(op))
    }

    /// Mixture-of-experts matvec for the step's t tokens and k choices each (t * k slots):
    /// slot s multiplies the matrix of expert `route[s]` (rows `rows_per_expert` of the stacked
    /// `w`) with x row `s / x_div` (at x_off + (s / x_div) * x_stride) and writes
    /// y[y_off + s * rows_per_expert ..]. `norm` folds an RMSNorm of that x row in.
    #[allow(clippy::too_many_arguments)]
    pub fn matvec_moe(
        &self,
        w: &GpuMatrix,
        rows_per_expert: usize,
        x: &GpuBuffer,
        x_off: usize,
        x_stride: usize,
        x_div: usize,
        y: &GpuBuffer,
        route: &GpuBuffer,
        k: usize,
        f: MatFlags,
        norm: Option<(&GpuBuffer, f32)>,
        sum: Option<MoeSum>,
    ) -> Result<Vec<Op>> {
        let up = f.swiglu_up_off.unwrap_or(0);
        if sum.is_some() && !w.is_q8 {
            return Err(crate::Error::Gpu(
                "only the Q8_0 MoE matvec adds its slots into the residual itself".into(),
            ));
        }
        let aligned = [x_off, x_stride, up].iter().all(|v| v.is_multiple_of(4));
        if !self.ctx.has_subgroups() || !aligned || !w.cols.is_multiple_of(8) {
            return Err(crate::Error::Gpu(
                "the MoE matvec needs subgroups, rows a multiple of 8 long and 4-aligned inputs"
                    .into(),
            ));
        }
        if w.chunks
            .iter()
            .any(|c| c.row0 % rows_per_expert != 0 || c.rows % rows_per_expert != 0)
        {
            return Err(crate::Error::Gpu(
                "MoE weight chunks must hold whole experts".into(),
            ));
        }
        let rows = if w.is_q8 {
            self.tuning.q8_moe_rows
        } else {
            self.tuning.matvec_rows
        };
        let (mut consts, rows_per_wg) = self.subgroup_matvec_constants(
            w,
            f,
            rows,
            norm.is_some(),
            rows_per_expert as u32,
            k as u32,
            1,
        );
        consts.push(("MOE", 1.0));
        let eps = norm.map_or(0, |n| n.1.to_bits());
        let g = norm.map_or(&x.buffer, |n| &n.0.buffer);
        let wg = (rows_per_expert as u32).div_ceil(rows_per_wg);
        // MOE_SUM: finished slots per token and row block, shared by the chunks' dispatches
        // (a token's last slot may sit in any chunk)
        let sum_done = match &sum {
            Some(s) => Some(GpuBuffer::zeros(
                &self.ctx,
                s.max_t * wg as usize,
                "moe_sum_done",
            )?),
            None => None,
        };
        if sum.is_some() {
            consts.extend([("MOE_SUM", 1.0), ("KS", k as f64)]);
        }
        let (route_w, res, done) = match (&sum, &sum_done) {
            (Some(s), Some(d)) => (&s.weights.buffer, &s.residual.buffer, &d.buffer),
            // unused: a read-only binding takes x, the writable ones the shared dummy
            _ => (&x.buffer, &self.unused, &self.unused),
        };
        let k = k as u32;
        w.chunks
            .iter()
            .map(|c| {
                let mut params = matvec_params(rows_per_expert, w, x_off, 0, c.row0, up, eps);
                let groups: GroupsFn = Box::new(move |d| {
                    let [gx, gy, _] = grid(wg);
                    [gx, gy, d.t * k]
                });
                if w.is_q8 {
                    let scales = c
                        .scales
                        .as_ref()
                        .ok_or_else(|| crate::Error::Gpu("Q8_0 chunk without scales".into()))?;
                    params.extend([
                        w.scale_stride as u32,
                        c.rows as u32,
                        x_div as u32,
                        x_stride as u32,
                        0, // qlen: no QOUT
                        wg,
                    ]);
                    self.op(
                        "matvec_q8",
                        &consts,
                        &params,
                        false,
                        // QOUT's buffer unused
                        &[
                            &c.buffer,
                            &x.buffer,
                            &y.buffer,
                            g,
                            scales,
                            &route.buffer,
                            &self.unused,
                            route_w,
                            res,
                            done,
                        ],
                        groups,
                    )
                } else {
                    params.extend([c.rows as u32, x_div as u32, x_stride as u32, 0]);
                    self.op(
                        "matvec_sg",
                        &consts,
                        &params,
                        false,
                        &[&c.buffer, &x.buffer, &y.buffer, g, &route.buffer],
                        groups,
                    )
                }
            })
            .collect()
    }

    /// Group the step's slots by expert (counting sort of `ids`) into `groups`:
    /// E + 1 offsets, then the slot ids in expert order.
    pub fn moe_group(
        &self,
        ids: &GpuBuffer,
        experts: usize,
        k: usize,
        groups: &GpuBuffer,
    ) -> Result<Op> {
        if experts > 1024 {
            return Err(crate::Error::Gpu(
                "MoE grouping supports up to 1024 experts".into(),
            ));
        }
        self.op(
            "moe_group",
            &[],
            &[experts as u32, k as u32],
            true,
            &[&ids.buffer, &groups.buffer],
            Box::new(|_| [1, 1, 1]),
        )
    }

    /// Routing of the step's t tokens: softmax over `experts` router logits (t, experts),
    /// the top `k`, renormalised when `renorm`; expert ids and weights per slot.
    pub fn moe_route(
        &self,
        logits: &GpuBuffer,
        experts: usize,
        k: usize,
        renorm: bool,
        ids: &GpuBuffer,
        weights: &GpuBuffer,
    ) -> Result<Op> {
        if experts > 1024 || k == 0 || k > experts.min(64) {
            return Err(crate::Error::Gpu(format!(
                "MoE routing supports up to 1024 experts and 1..=64 choices (got {experts}, {k})"
            )));
        }
        self.op(
            "moe_route",
            &[
                ("RENORM", if renorm { 1.0 } else { 0.0 }),
                (
                    "E",
                    if self.tuning.route_fixed_e {
                        experts as f64
                    } else {
                        0.0
                    },
                ),
            ],
            &[experts as u32, k as u32],
            false,
            &[&logits.buffer, &ids.buffer, &weights.buffer],
            Box::new(|d| [d.t, 1, 1]),
        )
    }

    /// x (t, hidden) += the weighted sum of each token's k expert outputs y (t * k, hidden).
    pub fn moe_sum(
        &self,
        y: &GpuBuffer,
        weights: &GpuBuffer,
        x: &GpuBuffer,
        hidden: usize,
        k: usize,
    ) -> Result<Op> {
        let h = hidden as u32;
        self.op(
            "moe_sum",
            &[("K", k as f64)],
            &[h, k as u32],
            true,
            &[&y.buffer, &weights.buffer, &x.buffer],
            Box::new(move |d| grid256(d.t * h)),
        )
    }
}
