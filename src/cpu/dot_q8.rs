//! Dot-product tiles for Q8_0 weights (int8 values, one f16 scale per 32) against f32
//! activations: the int8 values are widened to f32 and the activations stay exact (int8 x f32,
//! not int8 x int8): the CPU engine is the oracle for the GPU kernels, which do the same, and
//! decode is bandwidth-bound, so quantising activations would buy speed only in prefill.

use crate::quant::BLOCK;

#[inline(always)]
fn scale_at(s: *const u8, b: usize) -> f32 {
    // SAFETY: callers pass rows with at least b + 1 scales.
    half::f16::from_bits(unsafe { s.add(2 * b).cast::<u16>().read_unaligned() }).to_f32()
}

/// out[r][t] = sum_i W[r][i] x[t][i] for Q8_0 rows (k a multiple of 32).
///
/// # Safety
/// `w[r]` points to k int8 values, `s[r]` to k / 32 f16 scales, `x[t]` to k f32 values.
pub unsafe fn q8_tile<const R: usize, const T: usize>(
    w: [*const u8; R],
    s: [*const u8; R],
    x: [*const f32; T],
    k: usize,
) -> [[f32; T]; R] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked; pointer contract forwarded.
            return unsafe { avx512::q8_tile::<R, T>(w, s, x, k) };
        }
    }
    let mut out = [[0f32; T]; R];
    for b in 0..k / BLOCK {
        for r in 0..R {
            let d = scale_at(s[r], b);
            for t in 0..T {
                let mut acc = 0f32;
                for i in b * BLOCK..(b + 1) * BLOCK {
                    // SAFETY: i < k.
                    unsafe { acc += (*w[r].add(i) as i8) as f32 * *x[t].add(i) };
                }
                out[r][t] += d * acc;
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
    unsafe fn widen16(p: *const u8) -> __m512 {
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn q8_tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        s: [*const u8; R],
        x: [*const f32; T],
        k: usize,
    ) -> [[f32; T]; R] {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        for b in 0..k / BLOCK {
            let i = b * BLOCK;
            let mut x0 = [_mm512_setzero_ps(); T];
            let mut x1 = [_mm512_setzero_ps(); T];
            for t in 0..T {
                // SAFETY: i + 32 <= k.
                unsafe {
                    x0[t] = _mm512_loadu_ps(x[t].add(i));
                    x1[t] = _mm512_loadu_ps(x[t].add(i + 16));
                }
            }
            for r in 0..R {
                let (q0, q1) = unsafe { (widen16(w[r].add(i)), widen16(w[r].add(i + 16))) };
                let d = _mm512_set1_ps(scale_at(s[r], b));
                for t in 0..T {
                    let blk = _mm512_fmadd_ps(q0, x0[t], _mm512_mul_ps(q1, x1[t]));
                    acc[r][t] = _mm512_fmadd_ps(blk, d, acc[r][t]);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
            }
        }
        out
    }
}
