//! Weight matrices filled with pseudo-random values on the device (`fill_random.wgsl`), so
//! that full-size models can be benchmarked without writing or uploading their weights.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::buffers::{MatrixChunk, padded16};
use crate::gpu::{GpuContext, GpuMatrix, Kernels, StepDims};

/// What a fill writes into each u32 word.
#[derive(Clone, Copy)]
enum Fill {
    /// two BF16 values uniform in [-a, a]
    Bf16(f32),
    /// four random int8 values
    Bytes,
    /// two f16 copies of a scale
    Scale(f32),
}

fn fill(k: &Kernels, buffer: &wgpu::Buffer, words: usize, what: Fill, seed: u32) -> Result<()> {
    let (mode, a) = match what {
        Fill::Bf16(a) => (0.0, a),
        Fill::Bytes => (1.0, 0.0),
        Fill::Scale(s) => (2.0, s),
    };
    let op = k.fill_random(buffer, words, mode, seed, a)?;
    k.run([&op], StepDims { t: 1, pos0: 0 })
}

impl GpuMatrix {
    /// A (rows, cols) matrix of random weights with standard deviation about `std`: BF16, or
    /// Q8_0 (int8 values uniform over [-128, 127], every block scale the same) when `q8`.
    /// `max_rows` caps the rows per buffer (None: as many as one binding holds).
    #[allow(clippy::too_many_arguments)]
    pub fn random(
        ctx: &Arc<GpuContext>,
        rows: usize,
        cols: usize,
        q8: bool,
        std: f32,
        max_rows: Option<usize>,
        seed: u32,
        label: &str,
    ) -> Result<Self> {
        if q8 && !cols.is_multiple_of(crate::quant::BLOCK) {
            return Err(Error::Gpu(format!(
                "`{label}`: Q8_0 rows must be a multiple of 32 long"
            )));
        }
        let k = Kernels::new(ctx);
        let stride = if q8 { cols / 4 } else { cols.div_ceil(2) };
        let scale_stride = if q8 { (cols / 32).div_ceil(2) } else { 0 };
        let row_bytes = stride * 4;
        let limit = ctx.max_binding().min(ctx.limits.max_buffer_size) as usize / row_bytes;
        let per = max_rows.unwrap_or(limit).min(limit).max(1);
        let a = std * 3f32.sqrt(); // uniform on [-a, a] has standard deviation a / sqrt(3)
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = (rows - row0).min(per);
            let make = |bytes: usize, what: &str| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(what),
                    size: padded16(bytes),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let buffer = make(n * row_bytes, label);
            let seed = seed.wrapping_add(row0 as u32);
            let scales = if q8 {
                fill(&k, &buffer, n * stride, Fill::Bytes, seed)?;
                let s = make(n * scale_stride * 4, "q8_scales");
                fill(&k, &s, n * scale_stride, Fill::Scale(a / 127.0), seed)?;
                Some(s)
            } else {
                fill(&k, &buffer, n * stride, Fill::Bf16(a), seed)?;
                None
            };
            chunks.push(MatrixChunk {
                buffer,
                scales,
                row0,
                rows: n,
            });
            row0 += n;
        }
        Ok(GpuMatrix {
            exact_input: false,
            rows,
            cols,
            stride,
            is_f16: false,
            is_q8: q8,
            scale_stride,
            chunks,
        })
    }
}
