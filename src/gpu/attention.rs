//! The attention wrappers: split-K decode attention (shaders/attention/decode.wgsl, its
//! chunks merged in the same dispatch) and the flash-style prefill (prefill.wgsl, also the
//! audio encoder's windowed attention).

use crate::error::Result;
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, Op, QuantOut};

/// The QK-norm weights and RoPE table a fused decode attention applies itself.
struct FusedQk<'a> {
    q_norm: &'a GpuBuffer,
    k_norm: &'a GpuBuffer,
    rope: &'a GpuBuffer,
    eps: f32,
}

/// The o_proj an attention dispatch also runs (attn_oproj.wgsl): `res` += W x, and with `out`
/// the result also quantised for the next matvec.
pub struct FusedOProj<'a> {
    pub w: &'a GpuMatrix,
    pub res: &'a GpuBuffer,
    pub out: Option<QuantOut<'a>>,
}

/// Where [`Kernels::flash_attention`] finds its rows, in vec4s: query rows `q_ld` apart, key and
/// value rows `kv_ld` apart from `k_off` / `v_off`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnLayout {
    pub q_ld: u32,
    pub kv_ld: u32,
    pub k_off: u32,
    pub v_off: u32,
}

impl Kernels {
    /// Floats of the `part` scratch [`Kernels::attn_decode`] needs for a cache of `ctx_len`
    /// (counted in chunks of 64 rows, the smaller of its two chunk sizes).
    pub fn attn_decode_scratch(heads: usize, head_dim: usize, ctx_len: usize) -> usize {
        heads * ctx_len.div_ceil(64) * (head_dim + 2)
    }

    /// Decode attention of one query per head over cache rows 0..kv_len: one dispatch over
    /// chunks of 128 or 64 rows, whose last workgroup per head merges the chunks when there are
    /// several.
    /// `part` holds [`Kernels::attn_decode_scratch`] floats. With `qout`, the output also goes
    /// there quantised (gpu/matvec_q8.rs) for a chained o_proj.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode(
        &self,
        q: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        part: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        ctx_len: usize,
        qout: Option<&GpuBuffer>,
    ) -> Result<Vec<Op>> {
        self.attn_decode_impl(
            q, kc, vc, part, out, heads, kv_heads, head_dim, ctx_len, None, qout, None,
        )
    }

    /// [`Kernels::attn_decode`] straight from the raw q|k|v projection of the step's token:
    /// QK-norm, RoPE and the cache store of the new key and value happen inside (what
    /// `qk_norm_rope_kv` does as a separate dispatch). `qout` as for `attn_decode`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode_fused(
        &self,
        qkv: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        part: &GpuBuffer,
        out: &GpuBuffer,
        norms: (&GpuBuffer, &GpuBuffer, &GpuBuffer),
        eps: f32,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        ctx_len: usize,
        qout: Option<&GpuBuffer>,
        oproj: Option<FusedOProj>,
    ) -> Result<Vec<Op>> {
        let fused = FusedQk {
            q_norm: norms.0,
            k_norm: norms.1,
            rope: norms.2,
            eps,
        };
        self.attn_decode_impl(
            qkv,
            kc,
            vc,
            part,
            out,
            heads,
            kv_heads,
            head_dim,
            ctx_len,
            Some(fused),
            qout,
            oproj,
        )
    }

    /// Invocations per workgroup of the decode attention for `head_dim`: 512 over 128 cache
    /// rows where the head and the adapter allow (no chunk merge up to 128 rows), else 256 over
    /// 64.
    fn attn_decode_wg(&self, head_dim: usize) -> (u32, u32) {
        let lim = &self.ctx.limits;
        let wide = head_dim <= 128
            && lim.max_compute_invocations_per_workgroup >= 512
            && lim.max_compute_workgroup_size_x >= 512;
        if wide { (512, 128) } else { (256, 64) }
    }

    /// Whether o_proj `w` can run inside the decode attention's dispatch
    /// ([`Kernels::attn_decode_fused`] with a [`FusedOProj`]): Q8_0 in one chunk over the
    /// heads' quantised output, rows in blocks of 32, and a row's blocks in at most eight per
    /// invocation (K <= 4096 at head_dim <= 128); and the heads and o_proj's workgroups at most
    /// `Tuning::attn_oproj_wgs`.
    pub fn attn_oproj_fits(&self, w: &GpuMatrix, heads: usize, head_dim: usize) -> bool {
        let (wg, _) = self.attn_decode_wg(head_dim);
        let tpr = wg as usize / 32;
        heads + w.rows / 32 <= self.tuning.attn_oproj_wgs as usize
            && self.debug.attn_stop == 0
            && w.is_q8
            && w.chunks.len() == 1
            && head_dim.is_multiple_of(32)
            && w.cols == heads * head_dim
            && w.stride.is_multiple_of(4)
            && w.rows.is_multiple_of(32)
            && w.rows > 0
            && (w.cols / 32).div_ceil(tpr) <= 8
    }

    #[allow(clippy::too_many_arguments)]
    fn attn_decode_impl(
        &self,
        q: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        part: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        ctx_len: usize,
        fused: Option<FusedQk>,
        qout: Option<&GpuBuffer>,
        oproj: Option<FusedOProj>,
    ) -> Result<Vec<Op>> {
        if let Some(qo) = qout {
            // whole blocks of 32 per head, and room for every head's blocks
            let k = heads * head_dim;
            if !head_dim.is_multiple_of(32) || qo.len < super::quantised_len(k) {
                return Err(crate::Error::Gpu(format!(
                    "a quantised attention output needs head_dim a multiple of 32 (not \
                     {head_dim}) and a buffer of {} words",
                    super::quantised_len(k)
                )));
            }
        }
        let qout_const = ("QOUT", if qout.is_some() { 1.0 } else { 0.0 });
        let qout_buf = qout.map_or(&self.unused, |q| &q.buffer);
        // vec4 cache rows; the fused RoPE pairs halves
        if head_dim > 256 || head_dim == 0 || !head_dim.is_multiple_of(4) {
            return Err(crate::Error::Gpu(format!(
                "decode attention supports head_dim 4..=256 in steps of 4, not {head_dim}"
            )));
        }
        if part.len < Self::attn_decode_scratch(heads, head_dim, ctx_len) {
            return Err(crate::Error::Gpu(
                "decode attention scratch too small".into(),
            ));
        }
        let scale = (1.0 / (head_dim as f32).sqrt()).to_bits();
        let h = heads as u32;
        // decode.wgsl's WG and CHUNK: 128 rows per workgroup of 512 where the head and the
        // adapter allow (no chunk merge up to 128 rows), else 64 per 256
        let (wg, chunk) = self.attn_decode_wg(head_dim);
        let chunks = (ctx_len as u32).div_ceil(chunk);
        let pitch = ((heads + 2 * kv_heads) * head_dim) as u32;
        let eps = fused.as_ref().map_or(0, |f| f.eps.to_bits());
        let mut params = vec![
            h,
            kv_heads as u32,
            head_dim as u32,
            chunks,
            scale,
            pitch,
            eps,
        ];
        let (qn, kn, rope) = fused
            .as_ref()
            .map_or((q, q, q), |f| (f.q_norm, f.k_norm, f.rope));
        // per head, its chunks done (the last one merges them and zeroes the count)
        let done_chunks = GpuBuffer::zeros(&self.ctx, heads, "attn_done_chunks")?;
        let constants = [
            ("FUSED_QK", if fused.is_some() { 1.0 } else { 0.0 }),
            ("HD", head_dim as f64),
            ("WG", wg as f64),
            ("CHUNK", chunk as f64),
            qout_const,
            // a measurement knob (0 runs it all)
            ("STOP", self.debug.attn_stop as f64),
            (
                "NSPLIT",
                if self.tuning.attn_nsplit && head_dim.is_multiple_of(16) {
                    1.0
                } else {
                    0.0
                },
            ),
        ];
        let mut bufs = vec![
            &q.buffer,
            &kc.buffer,
            &vc.buffer,
            &part.buffer,
            &out.buffer,
            &qn.buffer,
            &kn.buffer,
            &rope.buffer,
            qout_buf,
            &done_chunks.buffer,
        ];
        let Some(o) = oproj else {
            params.extend([0; 3]);
            let split = self.op(
                "attn_decode",
                &constants,
                &params,
                true,
                &bufs,
                Box::new(move |d| [h, d.kv_len().div_ceil(chunk), 1]),
            )?;
            return Ok(vec![split]);
        };
        // the attention's workgroups, then o_proj's (attn_oproj.wgsl)
        if qout.is_none() || !self.attn_oproj_fits(o.w, heads, head_dim) {
            return Err(crate::Error::Gpu(format!(
                "a {}x{} o_proj cannot run inside the decode attention's dispatch",
                o.w.rows, o.w.cols
            )));
        }
        let (g, oq) = match o.out {
            // (any read-only buffer for the unused norm weight)
            None => (&qn.buffer, &self.unused),
            Some(QuantOut::Normed(q, g)) if q.len >= super::quantised_len(o.w.rows) => {
                (&g.buffer, &q.buffer)
            }
            Some(_) => {
                return Err(crate::Error::Gpu(
                    "o_proj inside the attention writes a normed quantised output only".into(),
                ));
            }
        };
        let scales = o.w.chunks[0]
            .scales
            .as_ref()
            .ok_or_else(|| crate::Error::Gpu("Q8_0 chunk without scales".into()))?;
        params.extend([
            o.w.rows as u32,
            (o.w.stride / 4) as u32,
            o.w.scale_stride as u32,
        ]);
        let mut consts = constants.to_vec();
        consts.push(("OKB", (o.w.cols / 32) as f64));
        consts.push(("OQOUT", if o.out.is_some() { 1.0 } else { 0.0 }));
        consts.push(("OMODE", self.debug.oproj_mode as f64));
        // [0] heads done, [1] o_proj workgroups past their wait
        let sync = GpuBuffer::zeros(&self.ctx, 2, "attn_oproj_sync")?;
        bufs.extend([
            &o.w.chunks[0].buffer,
            scales,
            &o.res.buffer,
            g,
            oq,
            &sync.buffer,
        ]);
        let o_wgs = (o.w.rows / 32) as u32;
        let mut op = self.op(
            "attn_oproj",
            &consts,
            &params,
            true,
            &bufs,
            Box::new(move |d| super::kernels::grid(h * d.kv_len().div_ceil(chunk) + o_wgs)),
        )?;
        op.detail = format!("{}x{}", o.w.rows, o.w.cols);
        Ok(vec![op])
    }

    /// Causal flash attention of the step's t queries over cache rows 0..pos0 + t.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_prefill(
        &self,
        q: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) -> Result<Op> {
        let v4 = (head_dim / 4) as u32;
        let layout = AttnLayout {
            q_ld: heads as u32 * v4,
            kv_ld: kv_heads as u32 * v4,
            k_off: 0,
            v_off: 0,
        };
        self.flash_attention(q, kc, vc, out, heads, kv_heads, head_dim, layout, 0)
    }

    /// The flash attention kernel (`attn_prefill.wgsl`): causal over the cache when `window`
    /// is 0, else bidirectional inside windows of `window` tokens (the AuT encoder).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn flash_attention(
        &self,
        q: &GpuBuffer,
        kc: &GpuBuffer,
        vc: &GpuBuffer,
        out: &GpuBuffer,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        layout: AttnLayout,
        window: u32,
    ) -> Result<Op> {
        if head_dim > 256 || head_dim == 0 || !head_dim.is_multiple_of(4) {
            return Err(crate::Error::Gpu(format!(
                "prefill attention supports head_dim 4..=256 in steps of 4, not {head_dim}"
            )));
        }
        let scale = (1.0 / (head_dim as f32).sqrt()).to_bits();
        let h = heads as u32;
        // a tile of key rows is 16 KB
        let bk = (4096 / head_dim).min(32);
        self.op(
            "attn_prefill",
            &[
                ("HD", head_dim as f64),
                ("BK", bk as f64),
                ("WINDOW", window as f64),
            ],
            &[
                h,
                kv_heads as u32,
                head_dim as u32,
                scale,
                layout.q_ld,
                layout.kv_ld,
                layout.k_off,
                layout.v_off,
            ],
            true,
            &[&q.buffer, &kc.buffer, &vc.buffer, &out.buffer],
            Box::new(move |d| [d.t.div_ceil(16), h, 1]),
        )
    }
}
