//! GPU buffers: f32 / u32 working buffers, and weight matrices packed two 16-bit values per
//! u32 (BF16 or F16), split by rows across several buffers when one would exceed the device's
//! storage-binding limit (128 MiB on lavapipe; a 151936 x 1024 BF16 embedding is 311 MB).

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::tensor::{DType, f32_to_bf16};

/// Bytes written per `write_buffer` call and between queue flushes while uploading weights:
/// bounds wgpu's staging memory, so host RSS stays near the mmap plus this.
const UPLOAD_CHUNK: usize = 64 << 20;
const FLUSH_EVERY: usize = 256 << 20;

/// A storage buffer of `len` 4-byte elements (f32 or u32).
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

impl GpuBuffer {
    pub fn zeros(ctx: &GpuContext, len: usize, label: &str) -> Result<Self> {
        let bytes = padded16(len * 4);
        check_size(ctx, bytes, label)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(GpuBuffer { buffer, len })
    }

    pub fn from_f32(ctx: &GpuContext, data: &[f32], label: &str) -> Result<Self> {
        Self::from_bytes(ctx, as_bytes(data), data.len(), label)
    }

    pub fn from_u32(ctx: &GpuContext, data: &[u32], label: &str) -> Result<Self> {
        Self::from_bytes(ctx, as_bytes(data), data.len(), label)
    }

    fn from_bytes(ctx: &GpuContext, bytes: &[u8], len: usize, label: &str) -> Result<Self> {
        let size = padded16(bytes.len());
        check_size(ctx, size, label)?;
        let padded;
        let contents = if size as usize != bytes.len() {
            let mut v = bytes.to_vec();
            v.resize(size as usize, 0);
            padded = v;
            &padded[..]
        } else {
            bytes
        };
        let buffer = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
            });
        Ok(GpuBuffer { buffer, len })
    }

    pub fn write_f32(&self, ctx: &GpuContext, offset: usize, data: &[f32]) {
        ctx.queue
            .write_buffer(&self.buffer, (offset * 4) as u64, as_bytes(data));
    }

    pub fn write_u32(&self, ctx: &GpuContext, offset: usize, data: &[u32]) {
        ctx.queue
            .write_buffer(&self.buffer, (offset * 4) as u64, as_bytes(data));
    }

    /// Copy `count` elements from `offset` back to the host (waits for the GPU).
    pub fn read_f32(&self, ctx: &GpuContext, offset: usize, count: usize) -> Result<Vec<f32>> {
        let bytes = read_back(ctx, &self.buffer, (offset * 4) as u64, (count * 4) as u64)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn read_u32(&self, ctx: &GpuContext, offset: usize, count: usize) -> Result<Vec<u32>> {
        let bytes = read_back(ctx, &self.buffer, (offset * 4) as u64, (count * 4) as u64)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub fn byte_len(&self) -> u64 {
        self.buffer.size()
    }
}

fn check_size(ctx: &GpuContext, bytes: u64, label: &str) -> Result<()> {
    if bytes > ctx.limits.max_buffer_size || bytes > ctx.max_binding() {
        return Err(Error::Gpu(format!(
            "buffer `{label}` needs {bytes} bytes; the device allows {} per binding",
            ctx.max_binding().min(ctx.limits.max_buffer_size)
        )));
    }
    Ok(())
}

/// Buffer sizes are rounded up to whole 16-byte words (at least one): kernels read f32 and
/// u32 arrays as vec4 and must never read past the allocation (shaders run unchecked).
pub fn padded16(bytes: usize) -> u64 {
    (bytes.max(1).div_ceil(16) * 16) as u64
}

pub(crate) fn as_bytes<T: Copy>(data: &[T]) -> &[u8] {
    // SAFETY: f32 / u32 slices, plain old data, reinterpreted as their bytes.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

/// Map a region of `src` for reading via a staging buffer.
pub fn read_back(ctx: &GpuContext, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
    let size = size.max(4);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
    ctx.queue.submit([enc.finish()]);
    map_read(ctx, &staging)
}

/// Map an already filled MAP_READ buffer and copy its bytes out.
pub fn map_read(ctx: &GpuContext, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    map_read_after(ctx, staging, None)
}

/// [`map_read`] waiting only for `submission` (None: everything submitted), so work queued
/// after it keeps the GPU busy while the host reads.
pub fn map_read_after(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    submission: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>> {
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout: None,
        })
        .map_err(|e| Error::Gpu(format!("device poll failed: {e}")))?;
    rx.recv()
        .map_err(|_| Error::Gpu("buffer map callback never ran".into()))?
        .map_err(|e| Error::Gpu(format!("buffer map failed: {e}")))?;
    let out = slice
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("mapped range: {e}")))?
        .to_vec();
    staging.unmap();
    Ok(out)
}

/// One row range of a weight matrix in its own buffer.
pub struct MatrixChunk {
    /// (rows, stride) u32: two 16-bit weights per word, or four int8 values (Q8_0)
    pub buffer: wgpu::Buffer,
    /// Q8_0: (rows, scale_stride) u32, two f16 block scales per word
    pub scales: Option<wgpu::Buffer>,
    pub row0: usize,
    pub rows: usize,
}

/// A (rows, cols) weight matrix on the GPU, 16-bit elements packed in pairs.
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// u32 words per row: cols / 2 rounded up (odd rows are zero-padded)
    pub stride: usize,
    /// F16 instead of BF16
    pub is_f16: bool,
    /// Q8_0: `stride` counts u32 words of four int8 values; scales sit in each chunk's
    /// `scales` buffer, `scale_stride` words (two f16) per row
    pub is_q8: bool,
    pub scale_stride: usize,
    pub chunks: Vec<MatrixChunk>,
    /// Q8_0 kernels keep this matrix's input in f32 instead of rounding it to int8 blocks (the
    /// MoE router: rounded activations flip near-tied expert choices)
    pub exact_input: bool,
}

impl GpuMatrix {
    /// Upload stored weights (BF16 or F16 as is; F32 rounded to BF16) in bounded pieces.
    pub fn upload(
        ctx: &Arc<GpuContext>,
        dtype: DType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        label: &str,
    ) -> Result<Self> {
        let row_bytes = cols.div_ceil(2) * 4;
        let max_rows =
            (ctx.max_binding().min(ctx.limits.max_buffer_size) as usize / row_bytes).max(1);
        Self::upload_chunked(ctx, dtype, bytes, rows, cols, max_rows, label)
    }

    /// As `upload`, with at most `max_rows` rows per buffer (tests force small chunks).
    pub fn upload_chunked(
        ctx: &Arc<GpuContext>,
        dtype: DType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        max_rows: usize,
        label: &str,
    ) -> Result<Self> {
        if !dtype.is_float() {
            return Err(Error::Gpu(format!(
                "`{label}`: {dtype} weights cannot be uploaded"
            )));
        }
        let stride = cols.div_ceil(2);
        let row_bytes = stride * 4;
        let max_rows = max_rows.max(1);
        let mut chunks = Vec::new();
        let mut since_flush = 0usize;
        let mut row0 = 0;
        while row0 < rows {
            let n = (rows - row0).min(max_rows);
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: padded16(n * row_bytes),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            write_rows(
                ctx,
                &buffer,
                0,
                dtype,
                bytes,
                cols,
                row0,
                n,
                &mut since_flush,
            )?;
            chunks.push(MatrixChunk {
                buffer,
                scales: None,
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
            is_f16: dtype == DType::F16,
            is_q8: false,
            scale_stride: 0,
            chunks,
        })
    }

    pub fn byte_len(&self) -> usize {
        self.rows * (self.stride + self.scale_stride) * 4
    }

    /// Upload Q8_0 weights: stacked parts of (int8 values (rows, cols), f16 scales
    /// (rows, cols / 32)) bytes, split by rows across bindings like 16-bit matrices.
    pub fn upload_q8(
        ctx: &Arc<GpuContext>,
        parts: &[(&[u8], &[u8], usize)],
        cols: usize,
        label: &str,
    ) -> Result<Self> {
        if !cols.is_multiple_of(crate::quant::BLOCK) {
            return Err(Error::Gpu(format!(
                "`{label}`: Q8_0 rows must be whole blocks"
            )));
        }
        let rows: usize = parts.iter().map(|p| p.2).sum();
        let nb = cols / crate::quant::BLOCK;
        let stride = cols / 4;
        let scale_stride = nb.div_ceil(2);
        let row_bytes = stride * 4;
        let max_rows =
            (ctx.max_binding().min(ctx.limits.max_buffer_size) as usize / row_bytes).max(1);
        // gather rows across parts as (values, scales) byte rows, one chunk at a time
        let row_of = |mut r: usize| -> (&[u8], &[u8]) {
            for &(qs, sc, n) in parts {
                if r < n {
                    return (
                        &qs[r * cols..(r + 1) * cols],
                        &sc[r * nb * 2..(r + 1) * nb * 2],
                    );
                }
                r -= n;
            }
            (&[], &[])
        };
        let mut chunks = Vec::new();
        let mut row0 = 0;
        let mut since_flush = 0usize;
        while row0 < rows {
            let n = (rows - row0).min(max_rows);
            let make = |size: usize, what: &str| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(what),
                    size: padded16(size),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let buffer = make(n * row_bytes, label);
            let scales = make(n * scale_stride * 4, "q8_scales");
            let rows_per_piece = (UPLOAD_CHUNK / row_bytes).max(1);
            let mut r = 0;
            while r < n {
                let m = (n - r).min(rows_per_piece);
                let mut vals = Vec::with_capacity(m * row_bytes);
                let mut scs = Vec::with_capacity(m * scale_stride * 4);
                for i in 0..m {
                    let (q, sc) = row_of(row0 + r + i);
                    vals.extend_from_slice(q);
                    scs.extend_from_slice(sc);
                    scs.resize(scs.len() + scale_stride * 4 - sc.len(), 0);
                }
                ctx.queue
                    .write_buffer(&buffer, (r * row_bytes) as u64, &vals);
                ctx.queue
                    .write_buffer(&scales, (r * scale_stride * 4) as u64, &scs);
                account_upload(ctx, &mut since_flush, vals.len())?;
                r += m;
            }
            chunks.push(MatrixChunk {
                buffer,
                scales: Some(scales),
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
            is_q8: true,
            scale_stride,
            chunks,
        })
    }

    /// Several matrices with the same column count and dtype stacked by rows into one (fused
    /// projections such as q/k/v or gate/up), each part uploaded straight from its own bytes.
    pub fn upload_stacked(
        ctx: &Arc<GpuContext>,
        parts: &[(DType, &[u8], usize)],
        cols: usize,
        label: &str,
    ) -> Result<Self> {
        let dtype = parts
            .first()
            .map(|p| p.0)
            .ok_or_else(|| Error::Gpu(format!("`{label}`: nothing to stack")))?;
        if parts.iter().any(|p| p.0 != dtype) {
            return Err(Error::Gpu(format!(
                "`{label}`: stacked matrices must share a dtype"
            )));
        }
        let rows: usize = parts.iter().map(|p| p.2).sum();
        let stride = cols.div_ceil(2);
        let row_bytes = stride * 4;
        if (rows * row_bytes) as u64 > ctx.max_binding().min(ctx.limits.max_buffer_size) {
            return Err(Error::Gpu(format!(
                "`{label}`: stacked matrix exceeds one binding"
            )));
        }
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded16(rows * row_bytes),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let (mut row, mut since_flush) = (0, 0);
        for &(dt, bytes, n) in parts {
            write_rows(ctx, &buffer, row, dt, bytes, cols, 0, n, &mut since_flush)?;
            row += n;
        }
        Ok(GpuMatrix {
            exact_input: false,
            rows,
            cols,
            stride,
            is_f16: dtype == DType::F16,
            is_q8: false,
            scale_stride: 0,
            chunks: vec![MatrixChunk {
                buffer,
                scales: None,
                row0: 0,
                rows,
            }],
        })
    }
}

/// Count `bytes` just queued for upload; past FLUSH_EVERY, submit and wait so wgpu's staging
/// memory is released (host memory stays bounded however large the model).
fn account_upload(ctx: &GpuContext, since_flush: &mut usize, bytes: usize) -> Result<()> {
    *since_flush += bytes;
    if *since_flush >= FLUSH_EVERY {
        ctx.queue.submit([]);
        ctx.wait()?;
        *since_flush = 0;
    }
    Ok(())
}

/// Upload rows src_r0..src_r0+n of a stored (.., cols) matrix into `buffer` from row `dst_row`
/// on, in pieces of at most UPLOAD_CHUNK bytes, flushing the queue every FLUSH_EVERY bytes so
/// wgpu's staging memory stays bounded.
#[allow(clippy::too_many_arguments)]
fn write_rows(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    dst_row: usize,
    dtype: DType,
    bytes: &[u8],
    cols: usize,
    src_r0: usize,
    n: usize,
    since_flush: &mut usize,
) -> Result<()> {
    let row_bytes = cols.div_ceil(2) * 4;
    let rows_per_piece = (UPLOAD_CHUNK / row_bytes).max(1);
    let mut r = 0;
    while r < n {
        let m = (n - r).min(rows_per_piece);
        let piece = pack_rows(dtype, bytes, cols, src_r0 + r, m);
        ctx.queue
            .write_buffer(buffer, ((dst_row + r) * row_bytes) as u64, &piece);
        account_upload(ctx, since_flush, piece.len())?;
        r += m;
    }
    Ok(())
}

/// Rows r0..r0+m of a stored matrix as packed little-endian u32 words.
fn pack_rows(dtype: DType, bytes: &[u8], cols: usize, r0: usize, m: usize) -> Vec<u8> {
    let es = dtype.size();
    let src = &bytes[r0 * cols * es..(r0 + m) * cols * es];
    match dtype {
        DType::BF16 | DType::F16 if cols.is_multiple_of(2) => src.to_vec(),
        DType::BF16 | DType::F16 => {
            let mut out = Vec::with_capacity(m * (cols + 1) * 2);
            for row in src.chunks_exact(cols * 2) {
                out.extend_from_slice(row);
                out.extend_from_slice(&[0, 0]);
            }
            out
        }
        _ => {
            let stride = cols.div_ceil(2) * 2;
            let mut out = Vec::with_capacity(m * stride * 2);
            for row in src.chunks_exact(cols * 4) {
                for c in row.chunks_exact(4) {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    out.extend_from_slice(&f32_to_bf16(v).to_le_bytes());
                }
                if cols % 2 == 1 {
                    out.extend_from_slice(&[0, 0]);
                }
            }
            out
        }
    }
}
