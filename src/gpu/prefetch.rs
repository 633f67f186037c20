//! L2 prefetch of a weight matrix (shaders/matmul/l2_prefetch.wgsl): a dispatch recorded right
//! after the op before that matrix's matvec, with no barrier between them, so the matrix's
//! first bytes stream into the L2 cache while a latency-bound op (the decode attention, a small
//! matvec) leaves the memory bandwidth idle.

use crate::error::{Error, Result};
use crate::gpu::buffers::MatrixChunk;
use crate::gpu::{GpuBuffer, GpuMatrix, Kernels, Op};

/// vec4 loads per invocation and invocations per workgroup of l2_prefetch.wgsl
const PER: u32 = 8;
const WG: u32 = 256;

impl Kernels {
    /// Dispatches that read the first `percent` % of `w`'s rows (values and block scales) into
    /// the L2 cache; none for 0. Only a Q8_0 matrix's layout is known here.
    pub fn l2_prefetch(&self, w: &GpuMatrix, percent: u32) -> Result<Vec<Op>> {
        if percent == 0 {
            return Ok(Vec::new());
        }
        if !w.is_q8 {
            return Err(Error::Gpu(
                "L2 prefetch is written for Q8_0 matrices".into(),
            ));
        }
        let want = (w.rows * percent.min(100) as usize).div_ceil(100);
        let mut ops = Vec::new();
        for c in &w.chunks {
            let rows = want.saturating_sub(c.row0).min(c.rows);
            if rows == 0 {
                break;
            }
            let detail = format!("{}x{} {percent}%", w.rows, w.cols);
            ops.push(self.l2_prefetch_rows(w, c, 0, rows, detail)?);
        }
        Ok(ops)
    }

    /// A dispatch that reads the last `percent` % of a one-chunk Q8_0 `w`'s rows into the L2
    /// cache (none for 0 or a chunked matrix): the rows of o_proj whose workgroups start only
    /// after the attention when o_proj runs inside the attention's dispatch.
    pub fn l2_prefetch_tail(&self, w: &GpuMatrix, percent: u32) -> Result<Vec<Op>> {
        let [c] = &w.chunks[..] else {
            return Ok(Vec::new());
        };
        if percent == 0 || !w.is_q8 || !w.stride.is_multiple_of(4) {
            return Ok(Vec::new());
        }
        let want = (w.rows * percent.min(100) as usize).div_ceil(100);
        // whole vec4 of scales: the first row a multiple of 4
        let first = (w.rows - want.min(w.rows)) / 4 * 4;
        let detail = format!("{}x{} last {percent}%", w.rows, w.cols);
        Ok(vec![self.l2_prefetch_rows(
            w,
            c,
            first,
            w.rows - first,
            detail,
        )?])
    }

    /// The dispatch reading `rows` rows of chunk `c` of `w` from row `first` (whole vec4 only:
    /// a partial last one is left to the matvec).
    fn l2_prefetch_rows(
        &self,
        w: &GpuMatrix,
        c: &MatrixChunk,
        first: usize,
        rows: usize,
        detail: String,
    ) -> Result<Op> {
        let scales = c
            .scales
            .as_ref()
            .ok_or_else(|| Error::Gpu("a Q8_0 matrix chunk without scales".into()))?;
        let vec4s = |n: usize, stride: usize| (n * stride / 4) as u32;
        let (n_w, n_s) = (vec4s(rows, w.stride), vec4s(rows, w.scale_stride));
        let (w_off, s_off) = (vec4s(first, w.stride), vec4s(first, w.scale_stride));
        // the sink is this op's own, so no other dispatch's use of it orders this one
        let sink = GpuBuffer::zeros(&self.ctx, 4, "l2_prefetch_sink")?;
        let groups = (n_w + n_s).div_ceil(WG * PER);
        let mut op = self.op(
            "l2_prefetch",
            &[("WG", WG as f64), ("PER", PER as f64)],
            // a magic value no fold of real weights is expected to hit (and a hit only writes
            // the sink)
            &[n_w, n_s, 0x9e37_79b9, w_off, s_off],
            false,
            &[&c.buffer, scales, &sink.buffer],
            Box::new(move |_| super::kernels::grid(groups)),
        )?;
        op.detail = detail;
        Ok(op)
    }
}
