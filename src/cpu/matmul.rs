//! `matvec` (decode: one activation row) and `matmul` (prefill: many rows) against stored
//! weight rows, `y = x @ w^T` with f32 accumulation, split over the rayon pool by weight rows.

use rayon::prelude::*;

use super::dot::{self, dot_tile, elem_size};
use super::dot_q8;
use crate::tensor::{DType, MatRef};

/// Weight rows per rayon task: large enough that task overhead (~µs) is noise against the
/// row reads, small enough that two threads balance (8+ tasks for every Qwen3 projection).
const ROWS_PER_TASK: usize = 64;

/// Tokens per cache block in `matmul`: 64 rows of up to 3072 f32 activations (768 KiB) stay in
/// a 1 MiB L2 while a 4-row weight tile streams across them.
const TOKENS_PER_BLOCK: usize = 64;

/// y (rows) = w (rows, cols) · x (cols).
pub fn matvec(w: MatRef, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), w.cols, "matvec: x length");
    assert_eq!(y.len(), w.rows, "matvec: y length");
    let mut xp = Vec::new();
    let x = kernel_layout(w, x, &mut xp);
    // Few long contiguous row ranges per thread: long linear streams keep the prefetchers
    // running (4 tasks per thread still balance a noisy shared machine).
    let per_task = w
        .rows
        .div_ceil(4 * rayon::current_num_threads())
        .max(ROWS_PER_TASK)
        .next_multiple_of(4);
    y.par_chunks_mut(per_task).enumerate().for_each(|(c, ys)| {
        let r0 = c * per_task;
        matvec_rows(w.slice_rows(r0, r0 + ys.len()), x, ys);
    });
}

/// x as the weight dtype's kernel wants it (pair layout for BF16 on AVX-512; see `dot`).
fn kernel_layout<'a>(w: MatRef, x: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    if w.dtype == DType::BF16 && dot::bf16_uses_pair_layout() {
        dot::to_pair_layout(x, w.cols, buf);
        buf
    } else {
        x
    }
}

/// Single-threaded matvec over a slice of rows.
fn matvec_rows(w: MatRef, x: &[f32], y: &mut [f32]) {
    if w.dtype == DType::Q8_0 {
        return q8_rows(w, x, 1, y.as_mut_ptr(), w.rows, 0);
    }
    match dot::dtype_code(w.dtype) {
        dot::BF16 => matvec_rows_dt::<{ dot::BF16 }>(w, x, y),
        dot::F16 => matvec_rows_dt::<{ dot::F16 }>(w, x, y),
        _ => matvec_rows_dt::<{ dot::F32 }>(w, x, y),
    }
}

fn matvec_rows_dt<const DT: u8>(w: MatRef, x: &[f32], y: &mut [f32]) {
    let k = w.cols;
    let stride = k * elem_size(DT);
    let base = w.bytes.as_ptr();
    let row = |r: usize| unsafe { base.add(r * stride) };
    let mut r = 0;
    // SAFETY: rows r..r+4 < w.rows, each `k` elements; x holds k values (asserted by caller).
    while r + 4 <= w.rows {
        let o = unsafe {
            dot_tile::<4, 1, DT>(
                [row(r), row(r + 1), row(r + 2), row(r + 3)],
                [x.as_ptr()],
                k,
            )
        };
        for i in 0..4 {
            y[r + i] = o[i][0];
        }
        r += 4;
    }
    while r < w.rows {
        y[r] = unsafe { dot_tile::<1, 1, DT>([row(r)], [x.as_ptr()], k) }[0][0];
        r += 1;
    }
}

/// Raw output pointer shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (row, column) cells; see `matmul`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// y (t, n) = x (t, k) @ w (n, k)^T.
pub fn matmul(x: &[f32], t: usize, w: MatRef, y: &mut [f32]) {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), t * k, "matmul: x shape");
    assert_eq!(y.len(), t * n, "matmul: y shape");
    if t == 1 {
        return matvec(w, x, y);
    }
    let mut xp = Vec::new();
    let x = kernel_layout(w, x, &mut xp);
    let out = OutPtr(y.as_mut_ptr());
    let tasks = n.div_ceil(ROWS_PER_TASK);
    (0..tasks).into_par_iter().for_each(|task| {
        let n0 = task * ROWS_PER_TASK;
        let n1 = (n0 + ROWS_PER_TASK).min(n);
        // Capture the whole Send wrapper, not its raw-pointer field.
        #[allow(clippy::redundant_locals)]
        let out = out;
        if w.dtype == DType::Q8_0 {
            return q8_rows(w.slice_rows(n0, n1), x, t, out.0, n, n0);
        }
        match dot::dtype_code(w.dtype) {
            dot::BF16 => matmul_cols::<{ dot::BF16 }>(x, t, w, n0, n1, out.0, n),
            dot::F16 => matmul_cols::<{ dot::F16 }>(x, t, w, n0, n1, out.0, n),
            _ => matmul_cols::<{ dot::F32 }>(x, t, w, n0, n1, out.0, n),
        }
    });
}

/// Output columns n0..n1 for every token, in token blocks that stay in L2.
fn matmul_cols<const DT: u8>(
    x: &[f32],
    t: usize,
    w: MatRef,
    n0: usize,
    n1: usize,
    y: *mut f32,
    n: usize,
) {
    let k = w.cols;
    let stride = k * elem_size(DT);
    let wrow = |r: usize| unsafe { w.bytes.as_ptr().add(r * stride) };
    let xrow = |i: usize| unsafe { x.as_ptr().add(i * k) };
    // SAFETY (all writes): each task owns columns n0..n1 of y; rows < t; y holds t * n.
    let put = |ti: usize, ni: usize, v: f32| unsafe { *y.add(ti * n + ni) = v };
    for tb in (0..t).step_by(TOKENS_PER_BLOCK) {
        let te = (tb + TOKENS_PER_BLOCK).min(t);
        let mut r = n0;
        while r < n1 {
            let rows = (n1 - r).min(4);
            let mut ti = tb;
            while ti < te {
                let toks = (te - ti).min(4);
                if rows == 4 && toks == 4 {
                    let o = unsafe {
                        dot_tile::<4, 4, DT>(
                            [wrow(r), wrow(r + 1), wrow(r + 2), wrow(r + 3)],
                            [xrow(ti), xrow(ti + 1), xrow(ti + 2), xrow(ti + 3)],
                            k,
                        )
                    };
                    for a in 0..4 {
                        for b in 0..4 {
                            put(ti + b, r + a, o[a][b]);
                        }
                    }
                } else {
                    for a in 0..rows {
                        for b in 0..toks {
                            let v =
                                unsafe { dot_tile::<1, 1, DT>([wrow(r + a)], [xrow(ti + b)], k) };
                            put(ti + b, r + a, v[0][0]);
                        }
                    }
                }
                ti += toks;
            }
            r += rows;
        }
    }
}

/// Q8_0 rows of `w` against t activation rows: y[ti * y_ld + col0 + r] = W[r] . x[ti].
/// Four rows at a time (each int8 load and widening serves four tokens in prefill).
/// `y` is written only at the cells named above (tasks of `matmul` own disjoint columns).
fn q8_rows(w: MatRef, x: &[f32], t: usize, y: *mut f32, y_ld: usize, col0: usize) {
    let put = |i: usize, v: f32| unsafe { *y.add(i) = v };
    let k = w.cols;
    let sb = k / crate::quant::BLOCK * 2;
    let q = |r: usize| unsafe { w.bytes.as_ptr().add(r * k) };
    let s = |r: usize| unsafe { w.scales.as_ptr().add(r * sb) };
    let xr = |i: usize| unsafe { x.as_ptr().add(i * k) };
    let mut r = 0;
    // SAFETY (all tiles): rows < w.rows, tokens < t, lengths checked by the callers.
    while r < w.rows {
        let rows = (w.rows - r).min(4);
        let mut ti = 0;
        while ti < t {
            if rows == 4 && ti + 4 <= t {
                // prefill: four tokens share each widened, scaled block
                let o = unsafe {
                    dot_q8::q8_tile::<4, 4>(
                        [q(r), q(r + 1), q(r + 2), q(r + 3)],
                        [s(r), s(r + 1), s(r + 2), s(r + 3)],
                        [xr(ti), xr(ti + 1), xr(ti + 2), xr(ti + 3)],
                        k,
                    )
                };
                for a in 0..4 {
                    for b in 0..4 {
                        put((ti + b) * y_ld + col0 + r + a, o[a][b]);
                    }
                }
                ti += 4;
            } else if rows == 4 {
                let o = unsafe {
                    dot_q8::q8_tile::<4, 1>(
                        [q(r), q(r + 1), q(r + 2), q(r + 3)],
                        [s(r), s(r + 1), s(r + 2), s(r + 3)],
                        [xr(ti)],
                        k,
                    )
                };
                for a in 0..4 {
                    put(ti * y_ld + col0 + r + a, o[a][0]);
                }
                ti += 1;
            } else {
                for a in 0..rows {
                    let o = unsafe { dot_q8::q8_tile::<1, 1>([q(r + a)], [s(r + a)], [xr(ti)], k) };
                    put(ti * y_ld + col0 + r + a, o[0][0]);
                }
                ti += 1;
            }
        }
        r += rows;
    }
}
