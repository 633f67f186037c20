//! Dot-product tiles between stored weight rows (BF16 / F16 / F32 bytes) and f32 activations,
//! accumulated in f32. `R` weight rows times `T` activation rows per call, so one weight load
//! feeds `T` FMAs and one activation load feeds `R` (the matmul micro-kernel is R=4, T=4;
//! matvec uses R=4, T=1). AVX-512 where the CPU has it, portable scalar code elsewhere.

use crate::tensor::DType;

/// Weight element codes (const generic parameter; `DType` itself cannot be one).
pub const BF16: u8 = 0;
pub const F16: u8 = 1;
pub const F32: u8 = 2;

pub fn dtype_code(d: DType) -> u8 {
    match d {
        DType::BF16 => BF16,
        DType::F16 => F16,
        DType::F32 => F32,
        other => panic!("no dot kernel for {other}"),
    }
}

pub const fn elem_size(dt: u8) -> usize {
    if dt == F32 { 4 } else { 2 }
}

#[inline(always)]
fn scalar_at<const DT: u8>(p: *const u8, i: usize) -> f32 {
    // SAFETY: callers pass pointers to rows of at least `i + 1` elements.
    unsafe {
        match DT {
            BF16 => f32::from_bits((p.add(2 * i).cast::<u16>().read_unaligned() as u32) << 16),
            F16 => half::f16::from_bits(p.add(2 * i).cast::<u16>().read_unaligned()).to_f32(),
            _ => p.add(4 * i).cast::<f32>().read_unaligned(),
        }
    }
}

/// out[r][t] = sum_i w[r][i] * x[t][i] for i < k.
///
/// # Safety
/// Every `w[r]` points to `k` elements of type `DT`, every `x[t]` to `k` f32 values.
#[inline]
pub unsafe fn dot_tile<const R: usize, const T: usize, const DT: u8>(
    w: [*const u8; R],
    x: [*const f32; T],
    k: usize,
) -> [[f32; T]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked above; pointer contract forwarded.
            return unsafe { avx512::dot_tile::<R, T, DT>(w, x, k) };
        }
    }
    unsafe { dot_tile_scalar::<R, T, DT>(w, x, k, 0) }
}

/// Scalar tile over elements `from..k`, added to nothing (the SIMD path adds its own part).
///
/// # Safety
/// As for [`dot_tile`].
#[inline]
unsafe fn dot_tile_scalar<const R: usize, const T: usize, const DT: u8>(
    w: [*const u8; R],
    x: [*const f32; T],
    k: usize,
    from: usize,
) -> [[f32; T]; R] {
    let mut out = [[0f32; T]; R];
    for i in from..k {
        for r in 0..R {
            let wv = scalar_at::<DT>(w[r], i);
            for t in 0..T {
                // SAFETY: i < k, x rows hold k values.
                out[r][t] += wv * unsafe { *x[t].add(i) };
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<const DT: u8>(p: *const u8, i: usize) -> __m512 {
        unsafe {
            match DT {
                BF16 => {
                    let h = _mm256_loadu_si256(p.add(2 * i).cast());
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                }
                F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.add(2 * i).cast())),
                _ => _mm512_loadu_ps(p.add(4 * i).cast()),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_tile<const R: usize, const T: usize, const DT: u8>(
        w: [*const u8; R],
        x: [*const f32; T],
        k: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let k16 = k / 16 * 16;
        let mut i = 0;
        while i < k16 {
            let mut xv = [_mm512_setzero_ps(); T];
            for t in 0..T {
                // SAFETY: i + 16 <= k.
                xv[t] = unsafe { _mm512_loadu_ps(x[t].add(i)) };
            }
            for r in 0..R {
                let wv = unsafe { load16::<DT>(w[r], i) };
                for t in 0..T {
                    acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
                }
            }
            i += 16;
        }
        let mut out = unsafe { dot_tile_scalar::<R, T, DT>(w, x, k, k16) };
        for r in 0..R {
            for t in 0..T {
                out[r][t] += _mm512_reduce_add_ps(acc[r][t]);
            }
        }
        out
    }
}

/// Plain dot of one stored row and one f32 vector.
pub fn dot(dtype: DType, w: &[u8], x: &[f32]) -> f32 {
    let k = x.len();
    assert_eq!(w.len(), k * dtype.size());
    // SAFETY: lengths checked above.
    unsafe {
        match dtype_code(dtype) {
            BF16 => dot_tile::<1, 1, BF16>([w.as_ptr()], [x.as_ptr()], k)[0][0],
            F16 => dot_tile::<1, 1, F16>([w.as_ptr()], [x.as_ptr()], k)[0][0],
            _ => dot_tile::<1, 1, F32>([w.as_ptr()], [x.as_ptr()], k)[0][0],
        }
    }
}
