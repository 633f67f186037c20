//! Memory read bandwidth, measured the way decode reads weights: every thread streams its own
//! part of a buffer much larger than the caches and sums it.

use rayon::prelude::*;
use std::time::Instant;

/// Best-of-`passes` read bandwidth in bytes per second over a `bytes`-sized buffer.
pub fn measure_read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let n = bytes / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut best = f64::MAX;
    let mut sink = 0f32;
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0f32; 16];
                for w in c.chunks_exact(16) {
                    for i in 0..16 {
                        acc[i] += w[i];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        sink += s;
    }
    std::hint::black_box(sink);
    (n * 4) as f64 / best
}
