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

    /// The unscaled dot of one 32-weight block with its activations (x0, x1: the two halves).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block(p: *const u8, i: usize, x0: __m512, x1: __m512) -> __m512 {
        let (q0, q1) = unsafe { (widen16(p.add(i)), widen16(p.add(i + 16))) };
        _mm512_fmadd_ps(q0, x0, _mm512_mul_ps(q1, x1))
    }

    /// Up to 16 f16 scales of one row to f32 in one instruction (the `half` crate's software
    /// conversion per block was a large part of the tile's time).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn scales16(s: *const u8, b0: usize, n: usize, out: &mut [f32; 16]) {
        let mut tmp = [0u16; 16];
        for i in 0..n {
            tmp[i] = unsafe { s.add(2 * (b0 + i)).cast::<u16>().read_unaligned() };
        }
        let v = unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(tmp.as_ptr().cast())) };
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    }

    /// Four Q8_0 rows against one activation row: named accumulators, scales converted 16 at
    /// a time, each pair of activation loads shared by the four rows.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn q8_tile_4x1(
        w: [*const u8; 4],
        s: [*const u8; 4],
        x: *const f32,
        k: usize,
    ) -> [f32; 4] {
        let z = _mm512_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let nb = k / BLOCK;
        let mut sc = [[0f32; 16]; 4];
        let mut b = 0;
        // Rows are contiguous: prefetch the tile two ahead linearly, 128 bytes per block step
        // (the same cure as the BF16 tile: 1 KiB row streams are too short for the hardware
        // prefetcher; perf showed the widening loads stalled).
        let pf = w[0].wrapping_add(8 * k);
        unsafe {
            while b < nb {
                let n = (nb - b).min(16);
                for r in 0..4 {
                    scales16(s[r], b, n, &mut sc[r]);
                }
                for j in 0..n {
                    let i = (b + j) * BLOCK;
                    let p = pf.wrapping_add(4 * i);
                    _mm_prefetch::<_MM_HINT_T1>(p.cast());
                    _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64).cast());
                    let x0 = _mm512_loadu_ps(x.add(i));
                    let x1 = _mm512_loadu_ps(x.add(i + 16));
                    a0 = _mm512_fmadd_ps(block(w[0], i, x0, x1), _mm512_set1_ps(sc[0][j]), a0);
                    a1 = _mm512_fmadd_ps(block(w[1], i, x0, x1), _mm512_set1_ps(sc[1][j]), a1);
                    a2 = _mm512_fmadd_ps(block(w[2], i, x0, x1), _mm512_set1_ps(sc[2][j]), a2);
                    a3 = _mm512_fmadd_ps(block(w[3], i, x0, x1), _mm512_set1_ps(sc[3][j]), a3);
                }
                b += n;
            }
        }
        [
            _mm512_reduce_add_ps(a0),
            _mm512_reduce_add_ps(a1),
            _mm512_reduce_add_ps(a2),
            _mm512_reduce_add_ps(a3),
        ]
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn q8_tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        s: [*const u8; R],
        x: [*const f32; T],
        k: usize,
    ) -> [[f32; T]; R] {
        if R == 4 && T == 1 {
            let o =
                unsafe { q8_tile_4x1([w[0], w[1], w[2], w[3]], [s[0], s[1], s[2], s[3]], x[0], k) };
            let mut out = [[0f32; T]; R];
            for r in 0..4 {
                out[r][0] = o[r];
            }
            return out;
        }
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
