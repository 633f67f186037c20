//! CPU reference kernels against hand-computed cases, on odd sizes that exercise the SIMD
//! bodies and their scalar tails.

mod common;

use common::tol::KERNEL_ABS;
use qwen_omni::cpu::{self, attention::AttnShape};
use qwen_omni::tensor::{DType, MatRef, f32_to_bf16};

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "at {i}: {x} vs {y}");
    }
}

/// Values exactly representable in bf16 (small integers / 8), so every dtype holds them exactly.
fn exact_values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 8.0)
        .collect()
}

fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for &x in v {
        match dtype {
            DType::BF16 => out.extend_from_slice(&f32_to_bf16(x).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
            _ => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    out
}

fn naive_matmul(x: &[f32], w: &[f32], t: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; t * n];
    for i in 0..t {
        for j in 0..n {
            y[i * n + j] = (0..k)
                .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                .sum::<f64>() as f32;
        }
    }
    y
}

#[test]
fn matvec_and_matmul_match_naive_sums_for_every_dtype_and_odd_shape() {
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        for &(t, n, k) in &[
            (1, 1, 1),
            (1, 5, 17),
            (3, 7, 33),
            (5, 66, 47),
            (9, 131, 129),
            (70, 9, 16),
        ] {
            let w = exact_values(n * k, 1);
            let x = exact_values(t * k, 2);
            let bytes = encode(dtype, &w);
            let mat = MatRef::new(dtype, &bytes, n, k);
            let mut y = vec![0f32; t * n];
            cpu::matmul(&x, t, mat, &mut y);
            // Sums of products of multiples of 1/8: exact in f32 up to these sizes.
            close(&y, &naive_matmul(&x, &w, t, n, k), 0.0);
            if t == 1 {
                let mut y2 = vec![0f32; n];
                cpu::matvec(mat, &x, &mut y2);
                close(&y2, &y, 0.0);
            }
        }
    }
}

#[test]
fn rms_norm_matches_hand_computation() {
    // row [3, 4]: mean square 12.5, so y = x / sqrt(12.5 + eps) * w
    let mut x = vec![3.0f32, 4.0, 1.0, -1.0];
    cpu::rms_norm(&mut x, &[1.0, 2.0], 0.0);
    let r = 12.5f32.sqrt();
    close(&x, &[3.0 / r, 8.0 / r, 1.0, -2.0], KERNEL_ABS);
}

#[test]
fn rope_rotates_pairs_of_halves_by_position_times_frequency() {
    // head_dim 4: pairs (x0, x2) with freq 1, (x1, x3) with freq theta^(-1/2) = 0.01 (theta 1e4)
    let inv = cpu::rope::inv_freq(4, 10_000.0);
    close(&inv, &[1.0, 0.01], 1e-7);
    let mut x = vec![1.0f32, 1.0, 0.0, 0.0];
    cpu::rope(&mut x, 1, &inv, 3);
    close(
        &x,
        &[3f32.cos(), 0.03f32.cos(), 3f32.sin(), 0.03f32.sin()],
        KERNEL_ABS,
    );
    // position 0 is the identity
    let mut y = vec![0.5f32, -2.0, 3.0, 7.0];
    cpu::rope(&mut y, 1, &inv, 0);
    close(&y, &[0.5, -2.0, 3.0, 7.0], 0.0);
}

#[test]
fn attention_is_causal_and_groups_query_heads() {
    // 2 query heads sharing 1 kv head, head_dim 2, two cached positions.
    let s = AttnShape {
        heads: 2,
        kv_heads: 1,
        head_dim: 2,
    };
    let k = vec![1.0f32, 0.0, 0.0, 1.0];
    let v = vec![10.0f32, 0.0, 0.0, 20.0];
    // one query at position 1 (sees both), heads [1,0] and [0,1]
    let q = vec![1.0f32, 0.0, 0.0, 1.0];
    let mut out = vec![0f32; 4];
    cpu::attention(&q, &k, &v, s, 1, &mut out);
    let scale = 1.0 / 2f32.sqrt();
    let p = 1.0 / (1.0 + (-scale).exp()); // softmax([scale, 0])[0]
    close(
        &out,
        &[10.0 * p, 20.0 * (1.0 - p), 10.0 * (1.0 - p), 20.0 * p],
        KERNEL_ABS,
    );
    // the same query at position 0 sees only the first key
    let mut out0 = vec![0f32; 4];
    cpu::attention(&q, &k, &v, s, 0, &mut out0);
    close(&out0, &[10.0, 0.0, 10.0, 0.0], KERNEL_ABS);
}

#[test]
fn small_elementwise_kernels() {
    let mut g = vec![0.0f32, 1.0, -1.0];
    cpu::silu_mul(&mut g, &[2.0, 2.0, 2.0]);
    let s1 = 1.0 / (1.0 + (-1f32).exp());
    close(&g, &[0.0, 2.0 * s1, -2.0 * (1.0 - s1)], KERNEL_ABS);
    let mut p = vec![0.0f32, 2f32.ln()];
    cpu::softmax_in_place(&mut p);
    close(&p, &[1.0 / 3.0, 2.0 / 3.0], KERNEL_ABS);
    assert_eq!(
        cpu::argmax(&[1.0, 3.0, 3.0, f32::NAN, -1.0]),
        1,
        "first maximum wins"
    );
    let table = encode(DType::BF16, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let mut e = vec![0f32; 4];
    cpu::embedding_gather(MatRef::new(DType::BF16, &table, 3, 2), &[2, 0], &mut e);
    close(&e, &[5.0, 6.0, 1.0, 2.0], 0.0);
}

#[test]
fn bf16_rounding_is_round_to_nearest_even() {
    use qwen_omni::tensor::bf16_to_f32;
    // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0)
    assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 1.0 / 256.0)), 1.0);
    assert_eq!(
        bf16_to_f32(f32_to_bf16(1.0 + 3.0 / 256.0)),
        1.0 + 4.0 / 256.0
    );
}

#[test]
fn q8_0_matvec_and_matmul_match_dequantized_weights() {
    use qwen_omni::quant;
    for &(t, n, k) in &[
        (1usize, 1usize, 32usize),
        (1, 13, 96),
        (5, 7, 64),
        (9, 130, 160),
    ] {
        let w = exact_values(n * k, 5);
        let (qs, sc) =
            quant::quantize_matrix(n, k, |r, out| out.copy_from_slice(&w[r * k..(r + 1) * k]));
        let mat = MatRef::q8_0(&qs, &sc, n, k);
        // the dequantized matrix as f32, multiplied naively in f64
        let mut deq = vec![0f32; n * k];
        for r in 0..n {
            mat.row_to_f32(r, &mut deq[r * k..(r + 1) * k]);
        }
        let x = exact_values(t * k, 6);
        let mut y = vec![0f32; t * n];
        cpu::matmul(&x, t, mat, &mut y);
        // per-block scaling reorders the sum: f32 rounding only, relative 1e-6 of the row scale
        let want = naive_matmul(&x, &deq, t, n, k);
        for (a, b) in y.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "t{t} {n}x{k}: {a} vs {b}"
            );
        }
    }
}
