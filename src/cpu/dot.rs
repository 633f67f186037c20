//! Dot-product tiles between stored weight rows (BF16 / F16 / F32 bytes) and f32 activations,
//! accumulated in f32. `R` weight rows times `T` activation rows per call, so one weight load
//! feeds `T` FMAs and one activation load feeds `R` (the matmul micro-kernel is R=4, T=4;
//! matvec uses R=4, T=1). AVX-512 where the CPU has it, portable scalar code elsewhere.
//!
//! BF16 on AVX-512 reads 32 weights as 16 u32 lanes and splits them with one shift (even
//! elements) and one mask (odd elements) instead of widening shuffles, which halved the
//! instructions per weight and doubled matvec speed (measured 2026-11-27). The activations must
//! then be in "pair layout": each full 32-element block as its 16 even then 16 odd values
//! ([`to_pair_layout`]); the tail past the last full block stays in place.

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

/// Where the next group of R rows starts, assuming equally spaced rows (matvec tiles are);
/// only used as a prefetch hint, so a wrong guess costs nothing but the hint.
#[allow(dead_code)]
fn next_tile<const R: usize>(w: &[*const u8; R]) -> *const u8 {
    let stride = (w[R - 1] as usize).wrapping_sub(w[0] as usize) / (R - 1).max(1);
    w[R - 1].wrapping_add(stride * (1 + R))
}

/// Whether BF16 kernels expect activations in pair layout on this CPU.
pub fn bf16_uses_pair_layout() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rearrange each `k`-long row of `x` into pair layout (see the module docs).
pub fn to_pair_layout(x: &[f32], k: usize, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(x);
    for (src, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(k)) {
        for (sb, db) in src.chunks_exact(32).zip(dst.chunks_exact_mut(32)) {
            for j in 0..16 {
                db[j] = sb[2 * j];
                db[16 + j] = sb[2 * j + 1];
            }
        }
    }
}

/// out[r][t] = sum_i w[r][i] * x[t][i] for i < k.
///
/// # Safety
/// Every `w[r]` points to `k` elements of type `DT`, every `x[t]` to `k` f32 values; for BF16
/// when [`bf16_uses_pair_layout`], the x rows are in pair layout.
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
        // The two hot shapes get hand-written bodies with named accumulators: the generic
        // array form below made LLVM spill accumulators to the stack (measured 2026-11-27).
        if DT == BF16 {
            return unsafe { bf16_pairs::dot_tile::<R, T>(w, x, k) };
        }
        let k16 = k / 16 * 16;
        let mut out = unsafe { dot_tile_scalar::<R, T, DT>(w, x, k, k16) };
        if R == 4 && T == 4 {
            let o =
                unsafe { tile_4x4::<DT>([w[0], w[1], w[2], w[3]], [x[0], x[1], x[2], x[3]], k16) };
            for r in 0..4 {
                for t in 0..4 {
                    out[r][t] += o[r * 4 + t];
                }
            }
            return out;
        }
        if R == 4 && T == 1 {
            let o = unsafe { tile_4x1::<DT>([w[0], w[1], w[2], w[3]], x[0], k16, next_tile(&w)) };
            for r in 0..4 {
                out[r][0] += o[r];
            }
            return out;
        }
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut i = 0;
        while i < k16 {
            for r in 0..R {
                let wv = unsafe { load16::<DT>(w[r], i) };
                for t in 0..T {
                    let xv = unsafe { _mm512_loadu_ps(x[t].add(i)) };
                    acc[r][t] = _mm512_fmadd_ps(wv, xv, acc[r][t]);
                }
            }
            i += 16;
        }
        for r in 0..R {
            for t in 0..T {
                out[r][t] += _mm512_reduce_add_ps(acc[r][t]);
            }
        }
        out
    }

    /// 4 weight rows x 1 activation row over k16 (a multiple of 16) elements; `pf` is the
    /// next tile, prefetched linearly (see `bf16_pairs::tile_4x1`).
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_4x1<const DT: u8>(
        w: [*const u8; 4],
        x: *const f32,
        k16: usize,
        pf: *const u8,
    ) -> [f32; 4] {
        let es = elem_size(DT);
        let z = _mm512_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let mut i = 0;
        unsafe {
            while i < k16 {
                // 4 rows x 16 x es bytes per step: es lines of 64 bytes
                let p = pf.wrapping_add(4 * es * i);
                for l in 0..es {
                    _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64 * l).cast());
                }
                let x0 = _mm512_loadu_ps(x.add(i));
                a0 = _mm512_fmadd_ps(load16::<DT>(w[0], i), x0, a0);
                a1 = _mm512_fmadd_ps(load16::<DT>(w[1], i), x0, a1);
                a2 = _mm512_fmadd_ps(load16::<DT>(w[2], i), x0, a2);
                a3 = _mm512_fmadd_ps(load16::<DT>(w[3], i), x0, a3);
                i += 16;
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
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n16 = a.len() / 16 * 16;
        let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        unsafe {
            while i + 32 <= n16 {
                s0 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
                s1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i + 16)),
                    _mm512_loadu_ps(b.as_ptr().add(i + 16)),
                    s1,
                );
                i += 32;
            }
            if i < n16 {
                s0 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
            }
        }
        let tail: f32 = a[n16..].iter().zip(&b[n16..]).map(|(x, y)| x * y).sum();
        _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) + tail
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n16 = x.len() / 16 * 16;
        let av = _mm512_set1_ps(alpha);
        let mut i = 0;
        unsafe {
            while i < n16 {
                let yp = y.as_mut_ptr().add(i);
                _mm512_storeu_ps(
                    yp,
                    _mm512_fmadd_ps(av, _mm512_loadu_ps(x.as_ptr().add(i)), _mm512_loadu_ps(yp)),
                );
                i += 16;
            }
        }
        for (a, b) in y[n16..].iter_mut().zip(&x[n16..]) {
            *a += alpha * b;
        }
    }

    /// 4 weight rows x 4 activation rows: 16 accumulators, each weight load and conversion
    /// feeds four FMAs. Result index r * 4 + t.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_4x4<const DT: u8>(
        w: [*const u8; 4],
        x: [*const f32; 4],
        k16: usize,
    ) -> [f32; 16] {
        let z = _mm512_setzero_ps();
        let (mut c00, mut c01, mut c02, mut c03) = (z, z, z, z);
        let (mut c10, mut c11, mut c12, mut c13) = (z, z, z, z);
        let (mut c20, mut c21, mut c22, mut c23) = (z, z, z, z);
        let (mut c30, mut c31, mut c32, mut c33) = (z, z, z, z);
        let mut i = 0;
        unsafe {
            while i < k16 {
                let x0 = _mm512_loadu_ps(x[0].add(i));
                let x1 = _mm512_loadu_ps(x[1].add(i));
                let x2 = _mm512_loadu_ps(x[2].add(i));
                let x3 = _mm512_loadu_ps(x[3].add(i));
                let w0 = load16::<DT>(w[0], i);
                c00 = _mm512_fmadd_ps(w0, x0, c00);
                c01 = _mm512_fmadd_ps(w0, x1, c01);
                c02 = _mm512_fmadd_ps(w0, x2, c02);
                c03 = _mm512_fmadd_ps(w0, x3, c03);
                let w1 = load16::<DT>(w[1], i);
                c10 = _mm512_fmadd_ps(w1, x0, c10);
                c11 = _mm512_fmadd_ps(w1, x1, c11);
                c12 = _mm512_fmadd_ps(w1, x2, c12);
                c13 = _mm512_fmadd_ps(w1, x3, c13);
                let w2 = load16::<DT>(w[2], i);
                c20 = _mm512_fmadd_ps(w2, x0, c20);
                c21 = _mm512_fmadd_ps(w2, x1, c21);
                c22 = _mm512_fmadd_ps(w2, x2, c22);
                c23 = _mm512_fmadd_ps(w2, x3, c23);
                let w3 = load16::<DT>(w[3], i);
                c30 = _mm512_fmadd_ps(w3, x0, c30);
                c31 = _mm512_fmadd_ps(w3, x1, c31);
                c32 = _mm512_fmadd_ps(w3, x2, c32);
                c33 = _mm512_fmadd_ps(w3, x3, c33);
                i += 16;
            }
        }
        let r = |v| _mm512_reduce_add_ps(v);
        [
            r(c00),
            r(c01),
            r(c02),
            r(c03),
            r(c10),
            r(c11),
            r(c12),
            r(c13),
            r(c20),
            r(c21),
            r(c22),
            r(c23),
            r(c30),
            r(c31),
            r(c32),
            r(c33),
        ]
    }
}

#[cfg(target_arch = "x86_64")]
mod bf16_pairs {
    use super::*;
    use std::arch::x86_64::*;

    /// 32 BF16 weights as (even, odd) f32 vectors.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_pairs(p: *const u8, i: usize) -> (__m512, __m512) {
        let v = unsafe { _mm512_loadu_si512(p.add(2 * i).cast()) };
        let even = _mm512_slli_epi32::<16>(v);
        let odd = _mm512_and_si512(v, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
        (_mm512_castsi512_ps(even), _mm512_castsi512_ps(odd))
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_tile<const R: usize, const T: usize>(
        w: [*const u8; R],
        x: [*const f32; T],
        k: usize,
    ) -> [[f32; T]; R] {
        let k32 = k / 32 * 32;
        let mut out = unsafe { dot_tile_scalar::<R, T, BF16>(w, x, k, k32) };
        if R == 4 && T == 4 {
            let o = unsafe { tile_4x4([w[0], w[1], w[2], w[3]], [x[0], x[1], x[2], x[3]], k32) };
            for r in 0..4 {
                for t in 0..4 {
                    out[r][t] += o[r * 4 + t];
                }
            }
        } else if R == 4 && T == 1 {
            let o = unsafe { tile_4x1([w[0], w[1], w[2], w[3]], x[0], k32, next_tile(&w)) };
            for r in 0..4 {
                out[r][0] += o[r];
            }
        } else {
            for r in 0..R {
                for t in 0..T {
                    let mut acc = _mm512_setzero_ps();
                    let mut i = 0;
                    while i < k32 {
                        let (e, o) = unsafe { load_pairs(w[r], i) };
                        let (xe, xo) = unsafe {
                            (
                                _mm512_loadu_ps(x[t].add(i)),
                                _mm512_loadu_ps(x[t].add(i + 16)),
                            )
                        };
                        acc = _mm512_fmadd_ps(e, xe, acc);
                        acc = _mm512_fmadd_ps(o, xo, acc);
                        i += 32;
                    }
                    out[r][t] += _mm512_reduce_add_ps(acc);
                }
            }
        }
        out
    }

    /// `pf`: start of the next 4-row tile, prefetched linearly while this one computes.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_4x1(w: [*const u8; 4], x: *const f32, k32: usize, pf: *const u8) -> [f32; 4] {
        let z = _mm512_setzero_ps();
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let (mut b0, mut b1, mut b2, mut b3) = (z, z, z, z);
        let mut i = 0;
        unsafe {
            while i < k32 {
                // This step reads 4 x 64 bytes; prefetch the next tile's bytes at the same pace.
                let p = pf.wrapping_add(8 * i);
                _mm_prefetch::<_MM_HINT_T1>(p.cast());
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64).cast());
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(128).cast());
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(192).cast());
                let xe = _mm512_loadu_ps(x.add(i));
                let xo = _mm512_loadu_ps(x.add(i + 16));
                let (e, o) = load_pairs(w[0], i);
                a0 = _mm512_fmadd_ps(e, xe, a0);
                b0 = _mm512_fmadd_ps(o, xo, b0);
                let (e, o) = load_pairs(w[1], i);
                a1 = _mm512_fmadd_ps(e, xe, a1);
                b1 = _mm512_fmadd_ps(o, xo, b1);
                let (e, o) = load_pairs(w[2], i);
                a2 = _mm512_fmadd_ps(e, xe, a2);
                b2 = _mm512_fmadd_ps(o, xo, b2);
                let (e, o) = load_pairs(w[3], i);
                a3 = _mm512_fmadd_ps(e, xe, a3);
                b3 = _mm512_fmadd_ps(o, xo, b3);
                i += 32;
            }
        }
        [
            _mm512_reduce_add_ps(_mm512_add_ps(a0, b0)),
            _mm512_reduce_add_ps(_mm512_add_ps(a1, b1)),
            _mm512_reduce_add_ps(_mm512_add_ps(a2, b2)),
            _mm512_reduce_add_ps(_mm512_add_ps(a3, b3)),
        ]
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile_4x4(w: [*const u8; 4], x: [*const f32; 4], k32: usize) -> [f32; 16] {
        let z = _mm512_setzero_ps();
        let (mut c00, mut c01, mut c02, mut c03) = (z, z, z, z);
        let (mut c10, mut c11, mut c12, mut c13) = (z, z, z, z);
        let (mut c20, mut c21, mut c22, mut c23) = (z, z, z, z);
        let (mut c30, mut c31, mut c32, mut c33) = (z, z, z, z);
        let mut i = 0;
        unsafe {
            while i < k32 {
                let (e0, e1, e2, e3) = (
                    _mm512_loadu_ps(x[0].add(i)),
                    _mm512_loadu_ps(x[1].add(i)),
                    _mm512_loadu_ps(x[2].add(i)),
                    _mm512_loadu_ps(x[3].add(i)),
                );
                let (o0, o1, o2, o3) = (
                    _mm512_loadu_ps(x[0].add(i + 16)),
                    _mm512_loadu_ps(x[1].add(i + 16)),
                    _mm512_loadu_ps(x[2].add(i + 16)),
                    _mm512_loadu_ps(x[3].add(i + 16)),
                );
                let (we, wo) = load_pairs(w[0], i);
                c00 = _mm512_fmadd_ps(wo, o0, _mm512_fmadd_ps(we, e0, c00));
                c01 = _mm512_fmadd_ps(wo, o1, _mm512_fmadd_ps(we, e1, c01));
                c02 = _mm512_fmadd_ps(wo, o2, _mm512_fmadd_ps(we, e2, c02));
                c03 = _mm512_fmadd_ps(wo, o3, _mm512_fmadd_ps(we, e3, c03));
                let (we, wo) = load_pairs(w[1], i);
                c10 = _mm512_fmadd_ps(wo, o0, _mm512_fmadd_ps(we, e0, c10));
                c11 = _mm512_fmadd_ps(wo, o1, _mm512_fmadd_ps(we, e1, c11));
                c12 = _mm512_fmadd_ps(wo, o2, _mm512_fmadd_ps(we, e2, c12));
                c13 = _mm512_fmadd_ps(wo, o3, _mm512_fmadd_ps(we, e3, c13));
                let (we, wo) = load_pairs(w[2], i);
                c20 = _mm512_fmadd_ps(wo, o0, _mm512_fmadd_ps(we, e0, c20));
                c21 = _mm512_fmadd_ps(wo, o1, _mm512_fmadd_ps(we, e1, c21));
                c22 = _mm512_fmadd_ps(wo, o2, _mm512_fmadd_ps(we, e2, c22));
                c23 = _mm512_fmadd_ps(wo, o3, _mm512_fmadd_ps(we, e3, c23));
                let (we, wo) = load_pairs(w[3], i);
                c30 = _mm512_fmadd_ps(wo, o0, _mm512_fmadd_ps(we, e0, c30));
                c31 = _mm512_fmadd_ps(wo, o1, _mm512_fmadd_ps(we, e1, c31));
                c32 = _mm512_fmadd_ps(wo, o2, _mm512_fmadd_ps(we, e2, c32));
                c33 = _mm512_fmadd_ps(wo, o3, _mm512_fmadd_ps(we, e3, c33));
                i += 32;
            }
        }
        let r = |v| _mm512_reduce_add_ps(v);
        [
            r(c00),
            r(c01),
            r(c02),
            r(c03),
            r(c10),
            r(c11),
            r(c12),
            r(c13),
            r(c20),
            r(c21),
            r(c22),
            r(c23),
            r(c30),
            r(c31),
            r(c32),
            r(c33),
        ]
    }
}

/// f32 · f32 dot product (attention scores). AVX-512 when present: the portable build only
/// auto-vectorises to 128-bit SSE, which left attention at a quarter of its speed.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked; equal lengths.
            return unsafe { avx512::dot_f32(a, b) };
        }
    }
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// y += alpha * x (attention's weighted sum of values).
pub fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked; equal lengths.
            return unsafe { avx512::axpy_f32(alpha, x, y) };
        }
    }
    for (a, b) in y.iter_mut().zip(x) {
        *a += alpha * b;
    }
}

/// Plain dot of one stored row and one f32 vector.
pub fn dot(dtype: DType, w: &[u8], x: &[f32]) -> f32 {
    let k = x.len();
    assert_eq!(w.len(), k * dtype.size());
    let mut xp = Vec::new();
    let x = if dtype == DType::BF16 && bf16_uses_pair_layout() {
        to_pair_layout(x, k, &mut xp);
        &xp[..]
    } else {
        x
    };
    // SAFETY: lengths checked above; BF16 x is in the layout its kernel expects.
    unsafe {
        match dtype_code(dtype) {
            BF16 => dot_tile::<1, 1, BF16>([w.as_ptr()], [x.as_ptr()], k)[0][0],
            F16 => dot_tile::<1, 1, F16>([w.as_ptr()], [x.as_ptr()], k)[0][0],
            _ => dot_tile::<1, 1, F32>([w.as_ptr()], [x.as_ptr()], k)[0][0],
        }
    }
}
