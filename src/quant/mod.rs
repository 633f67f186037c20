//! The Q8_0 format, one source of truth: blocks of 32 weights along a row, each stored as 32
//! int8 values and one f16 scale (ggml's Q8_0 numerics: d = max|x| / 127, q = round(x / d)).
//!
//! On disk (safetensors, see docs/kernels.md): a quantized matrix `W.weight` of (rows, cols)
//! is stored as `W.weight` with dtype I8 and shape (rows, cols), plus `W.weight_scale` with
//! dtype F16 and shape (rows, cols / 32); config.json carries
//! `"quantization_config": {"quant_method": "omni_q8_0", "block_size": 32}`.
//! On the GPU the int8 bytes are read four per u32 and the f16 scales two per u32, so the file
//! bytes upload as they are.

/// Weights per block.
pub const BLOCK: usize = 32;

/// Bytes a quantized matrix of `n` weights takes (int8 values plus one f16 per block): the
/// 34 / 32 bytes per weight of Q8_0.
pub fn q8_0_bytes(n: usize) -> usize {
    n + 2 * n.div_ceil(BLOCK)
}

/// Quantize one row (length a multiple of 32) into `qs` (int8) and `scales` (f16 bits).
pub fn quantize_row(x: &[f32], qs: &mut [i8], scales: &mut [u16]) {
    assert!(
        x.len().is_multiple_of(BLOCK),
        "Q8_0 rows are whole blocks of {BLOCK}"
    );
    assert_eq!(qs.len(), x.len());
    assert_eq!(scales.len(), x.len() / BLOCK);
    for ((xb, qb), s) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = round_away(v * id).clamp(-127, 127) as i8;
        }
        *s = half::f16::from_f32(d).to_bits();
    }
}

/// `x.round() as i32` (half away from zero, as ggml's roundf) for |x| < 2^31, in operations
/// that vectorise on any x86-64 (f32::round is a libm call per value there, which made the
/// converter CPU-bound): truncate, then step away from zero when the exact remainder is at
/// least one half.
#[inline(always)]
pub fn round_away(x: f32) -> i32 {
    let t = x as i32;
    let frac = x - t as f32; // exact: t is x's integer part
    t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32
}

/// Decode one row back to f32 (the f16 scale as stored, times each int8 value).
pub fn dequantize_row(qs: &[i8], scales: &[u16], out: &mut [f32]) {
    assert_eq!(qs.len(), out.len());
    for ((qb, ob), &s) in qs
        .chunks_exact(BLOCK)
        .zip(out.chunks_exact_mut(BLOCK))
        .zip(scales)
    {
        let d = half::f16::from_bits(s).to_f32();
        for (o, &q) in ob.iter_mut().zip(qb) {
            *o = d * q as f32;
        }
    }
}

/// Quantize a (rows, cols) matrix given as f32 rows; returns (int8 bytes, f16 scale bytes),
/// rows in parallel.
pub fn quantize_matrix(
    rows: usize,
    cols: usize,
    row: impl Fn(usize, &mut [f32]) + Sync,
) -> (Vec<u8>, Vec<u8>) {
    use rayon::prelude::*;
    let nb = cols / BLOCK;
    let mut qs = vec![0u8; rows * cols];
    let mut sc = vec![0u8; rows * nb * 2];
    qs.par_chunks_mut(cols)
        .zip(sc.par_chunks_mut(nb * 2))
        .enumerate()
        .for_each_init(
            || (vec![0f32; cols], vec![0u16; nb]),
            |(x, scales), (r, (q, s))| {
                row(r, x);
                // SAFETY: i8 and u8 have the same layout.
                let qi =
                    unsafe { std::slice::from_raw_parts_mut(q.as_mut_ptr().cast::<i8>(), q.len()) };
                quantize_row(x, qi, scales);
                for (dst, v) in s.chunks_exact_mut(2).zip(scales.iter()) {
                    dst.copy_from_slice(&v.to_le_bytes());
                }
            },
        );
    (qs, sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step_of_each_block() {
        let mut rng = crate::models::sampler::Rng::new(3);
        let x: Vec<f32> = (0..32 * 40)
            .map(|i| (rng.next_f32() - 0.5) * (1.0 + (i / 32) as f32))
            .collect();
        let mut qs = vec![0i8; x.len()];
        let mut sc = vec![0u16; x.len() / 32];
        quantize_row(&x, &mut qs, &mut sc);
        let mut y = vec![0f32; x.len()];
        dequantize_row(&qs, &sc, &mut y);
        for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            // rounding to the grid costs at most d / 2 with d = amax / 127; the f16 scale adds
            // a relative 2^-11 to every value (at most amax * 2^-11)
            let bound = amax / 127.0 / 2.0 + amax * 2f32.powi(-11) + 1e-7;
            for (a, c) in xb.iter().zip(yb) {
                assert!(
                    (a - c).abs() <= bound,
                    "block {b}: {a} vs {c} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn round_away_is_rounding_half_away_from_zero() {
        let mut rng = crate::models::sampler::Rng::new(5);
        let mut xs: Vec<f32> = (0..100_000)
            .map(|_| (rng.next_f32() - 0.5) * 300.0)
            .collect();
        for k in -130..130 {
            let h = k as f32 + 0.5;
            xs.extend([
                h,
                -h,
                h.next_down(),
                h.next_up(),
                k as f32,
                0.49999997,
                -0.49999997,
            ]);
        }
        for x in xs {
            assert_eq!(round_away(x), x.round() as i32, "{x}");
        }
    }

    #[test]
    fn zero_block_and_extremes() {
        let mut x = vec![0f32; 64];
        x[40] = -3.0;
        x[41] = 3.0;
        let mut qs = vec![0i8; 64];
        let mut sc = vec![0u16; 2];
        quantize_row(&x, &mut qs, &mut sc);
        assert_eq!(sc[0], 0);
        assert!(qs[..32].iter().all(|&q| q == 0));
        assert_eq!((qs[40], qs[41]), (-127, 127));
        assert_eq!(q8_0_bytes(64), 68);
    }
}
