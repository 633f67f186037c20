//! `cargo bench --bench cpu_kernels`: CPU matvec / matmul throughput at Qwen3 shapes, against
//! the memory bandwidth and FMA rate they are bound by. Prints a table; asserts nothing.

use std::time::Instant;

use qwen_omni::cpu;
use qwen_omni::cpu::bandwidth::measure_read_bandwidth;
use qwen_omni::tensor::{DType, MatRef};

fn random_bf16(n: usize) -> Vec<u8> {
    let mut s = 0x1234_5678u32;
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let v = (s as f32 / u32::MAX as f32 - 0.5) * 0.05;
        out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
    }
    out
}

fn main() {
    let bw = measure_read_bandwidth(1 << 30, 5);
    println!(
        "read bandwidth: {:.1} GB/s, threads {}",
        bw / 1e9,
        rayon::current_num_threads()
    );
    println!("| kernel | shape (n x k) | tokens | time | GB/s | GFLOP/s |");
    println!("|---|---|---|---|---|---|");
    for &(n, k, t) in &[
        (151936usize, 1024usize, 1usize),
        (128, 1024, 1),
        (3072, 1024, 1),
        (1024, 3072, 1),
        (2048, 1024, 1),
        (3072, 1024, 128),
        (1024, 3072, 128),
    ] {
        let w = random_bf16(n * k);
        let mat = MatRef::new(DType::BF16, &w, n, k);
        let x: Vec<f32> = (0..t * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut y = vec![0f32; t * n];
        // Matrices smaller than the caches are cycled through several copies so the weights
        // come from memory, as in a real decode step.
        let copies = if n == 128 {
            1
        } else {
            ((256usize << 20) / w.len()).max(1)
        };
        let ws: Vec<Vec<u8>> = (0..copies).map(|_| w.clone()).collect();
        let reps = if n == 128 {
            20000
        } else if t == 1 {
            20 * copies
        } else {
            3
        };
        let t0 = Instant::now();
        for r in 0..reps {
            let m = MatRef::new(DType::BF16, &ws[r % copies], n, k);
            cpu::matmul(&x, t, m, &mut y);
        }
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        let _ = mat;
        println!(
            "| {} | {n} x {k} | {t} | {:.3} ms | {:.1} | {:.1} |",
            if t == 1 { "matvec_bf16" } else { "matmul_bf16" },
            dt * 1e3,
            w.len() as f64 / dt / 1e9,
            2.0 * (n * k * t) as f64 / dt / 1e9
        );
    }
}
