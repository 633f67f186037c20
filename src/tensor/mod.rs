//! Minimal tensor vocabulary: element types and shapes. No math lives here.

use std::fmt;

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    U8,
    I8,
    /// Blocks of 32 int8 values with an f16 scale each (crate::quant); in memory the int8
    /// bytes, with the scales beside them (MatRef::scales)
    Q8_0,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Q8_0 => 1,
        }
    }

    /// The safetensors spelling ("BF16", "F32", ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::Q8_0 => "Q8_0",
        }
    }

    /// Parse a user-facing dtype name (`bf16`, `f16`, `f32`).
    pub fn parse_float(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Some(DType::BF16),
            "f16" | "float16" => Some(DType::F16),
            "f32" | "float32" => Some(DType::F32),
            "q8_0" => Some(DType::Q8_0),
            _ => None,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Convert bf16 bits to f32: bf16 is the top half of an f32.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Convert f32 to bf16 bits with round-to-nearest-even (as torch does); NaN stays NaN.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// A borrowed row-major matrix of stored weights: `rows` rows of `cols` elements each,
/// little-endian `dtype` values. The bytes may come straight from an mmap (any alignment).
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub dtype: DType,
    pub bytes: &'a [u8],
    /// Q8_0 only: (rows, cols / 32) f16 scales, little-endian
    pub scales: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> MatRef<'a> {
    /// Panics if the byte length disagrees with the shape: callers build it from checked views.
    pub fn new(dtype: DType, bytes: &'a [u8], rows: usize, cols: usize) -> Self {
        assert_eq!(
            bytes.len(),
            rows * cols * dtype.size(),
            "MatRef size mismatch"
        );
        assert!(
            dtype.is_float(),
            "MatRef::new holds float weights; Q8_0 uses MatRef::q8_0"
        );
        MatRef {
            dtype,
            bytes,
            scales: &[],
            rows,
            cols,
        }
    }

    /// A Q8_0 matrix: int8 values (rows, cols) and f16 scales (rows, cols / 32).
    pub fn q8_0(qs: &'a [u8], scales: &'a [u8], rows: usize, cols: usize) -> Self {
        assert!(
            cols.is_multiple_of(crate::quant::BLOCK),
            "Q8_0 rows are whole blocks"
        );
        assert_eq!(qs.len(), rows * cols, "MatRef::q8_0 values size");
        assert_eq!(
            scales.len(),
            rows * cols / crate::quant::BLOCK * 2,
            "MatRef::q8_0 scales size"
        );
        MatRef {
            dtype: DType::Q8_0,
            bytes: qs,
            scales,
            rows,
            cols,
        }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self, r: usize) -> &'a [u8] {
        let w = self.cols * self.dtype.size();
        &self.bytes[r * w..(r + 1) * w]
    }

    /// Scale bytes of one Q8_0 row.
    pub fn row_scales(&self, r: usize) -> &'a [u8] {
        let w = self.cols / crate::quant::BLOCK * 2;
        &self.scales[r * w..(r + 1) * w]
    }

    /// Rows `r0..r1` as a matrix.
    pub fn slice_rows(&self, r0: usize, r1: usize) -> MatRef<'a> {
        let w = self.cols * self.dtype.size();
        let sw = if self.dtype == DType::Q8_0 {
            self.cols / crate::quant::BLOCK * 2
        } else {
            0
        };
        MatRef {
            dtype: self.dtype,
            bytes: &self.bytes[r0 * w..r1 * w],
            scales: &self.scales[r0 * sw..r1 * sw],
            rows: r1 - r0,
            cols: self.cols,
        }
    }

    /// Decode one row into f32.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        if self.dtype == DType::Q8_0 {
            let qs = self.row_bytes(r);
            // SAFETY: u8 and i8 share a layout.
            let qs = unsafe { std::slice::from_raw_parts(qs.as_ptr().cast::<i8>(), qs.len()) };
            let sc: Vec<u16> = self
                .row_scales(r)
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            crate::quant::dequantize_row(qs, &sc, out);
        } else {
            decode_to_f32(self.dtype, self.row_bytes(r), out);
        }
    }
}

/// Decode little-endian float bytes of `dtype` into `out` (lengths must agree).
pub fn decode_to_f32(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        _ => panic!("decode_to_f32 on non-float dtype {dtype}"),
    }
}
