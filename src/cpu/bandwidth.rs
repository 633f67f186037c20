//! Memory read bandwidth, measured the way decode reads weights: every thread streams its own
//! part of a buffer much larger than the caches and sums it.

use rayon::prelude::*;
use std::time::Instant;

/// Read bandwidth in bytes per second over a `bytes`-sized buffer: (min, median, max) over
/// `passes` passes. On a shared VM single passes range over almost 2x, so the median is the
/// figure to compare against.
pub fn measure_read_bandwidth_stats(bytes: usize, passes: usize) -> (f64, f64, f64) {
    let n = bytes / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut rates: Vec<f64> = (0..passes.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(sum_parallel(&buf));
            (n * 4) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[0], rates[rates.len() / 2], rates[rates.len() - 1])
}

fn sum_parallel(buf: &[f32]) -> f32 {
    buf.par_chunks(1 << 16)
        .map(|c| {
            let mut acc = [0f32; 16];
            for w in c.chunks_exact(16) {
                for i in 0..16 {
                    acc[i] += w[i];
                }
            }
            acc.iter().sum::<f32>()
        })
        .sum()
}

/// Best-of-`passes` read bandwidth in bytes per second over a `bytes`-sized buffer.
pub fn measure_read_bandwidth(bytes: usize, passes: usize) -> f64 {
    measure_read_bandwidth_stats(bytes, passes).2
}
