//! Decode MoE routing with the router in the same dispatch (shaders/elementwise/moe_router.wgsl,
//! routing shared with moe_route through route_core.wgsl).

use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, Op};

/// Most hidden values moe_router.wgsl holds in workgroup memory.
const MAX_HIDDEN: usize = 4096;
/// Its workgroup memory: x * g (16 KB), logits (4 KB), partial sums (1 KB), chosen (256 B), a
/// flag.
const SHARED_BYTES: u32 = 16384 + 4096 + 1024 + 256 + 4;
/// Invocations per workgroup: eight subgroups of 32, a router row each (16 workgroups for
/// 128 experts)
const WG: u32 = 256;

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
        // rows per workgroup: one per subgroup, counted with the largest subgroup size the
        // driver may pick (smaller subgroups make more rows per workgroup, never fewer)
        let rows_per_wg = (WG / info.subgroup_max_size.max(1)).max(1) as usize;
        let blocks = experts.div_ceil(rows_per_wg) as u32;
        let max_t = logits.len / experts.max(1);
        if max_t == 0 || blocks > 65535 {
            return Ok(None);
        }
        // finished workgroups per token (the last resets its count)
        let done = GpuBuffer::zeros(&self.ctx, max_t, "moe_router_done")?;
        let sgc = if info.subgroup_min_size == info.subgroup_max_size {
            info.subgroup_min_size
        } else {
            0
        };
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
                ("WG", WG as f64),
                ("IS_F16", if router.is_f16 { 1.0 } else { 0.0 }),
                ("HID", hidden as f64),
                ("SGC", sgc as f64),
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
}
