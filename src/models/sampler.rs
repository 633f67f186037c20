//! Token selection: greedy, or sampling with repetition penalty, temperature, top-k, top-p and
//! min-p applied in that order (the order of transformers' logits processors), seeded.

use crate::cpu;
use crate::error::{Error, Result};

/// Sampling settings. `temperature == 0` or `greedy` picks the arg-max.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub greedy: bool,
    pub temperature: f32,
    /// 0 disables
    pub top_k: usize,
    /// 1.0 disables
    pub top_p: f32,
    /// 0.0 disables
    pub min_p: f32,
    /// 1.0 disables
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            greedy: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Defaults from generation_config.json (`do_sample: false` means greedy).
    pub fn from_generation_config(g: &crate::models::config::GenerationConfig) -> Self {
        let d = SamplingParams::default();
        SamplingParams {
            greedy: g.do_sample == Some(false),
            temperature: g.temperature.unwrap_or(d.temperature),
            top_k: g.top_k.unwrap_or(d.top_k),
            top_p: g.top_p.unwrap_or(d.top_p),
            min_p: g.min_p.unwrap_or(d.min_p),
            repetition_penalty: g.repetition_penalty.unwrap_or(d.repetition_penalty),
            seed: d.seed,
        }
    }

    /// Reject values that have no meaning, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Sampling(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature {} must be a finite number >= 0",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} must be in (0, 1]", self.top_p));
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return bad(format!("min-p {} must be in [0, 1]", self.min_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition penalty {} must be a finite number > 0",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.greedy || self.temperature == 0.0
    }
}

/// SplitMix64: tiny, seedable, good enough statistical quality for sampling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Sampler { params, rng })
    }

    /// A uniform draw in [0, 1) from this sampler's seeded stream (for device sampling).
    pub fn next_uniform(&mut self) -> f32 {
        self.rng.next_f32()
    }

    /// Choose the next id from `logits` (modified in place); `history` is every id so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, history, p.repetition_penalty);
        }
        if p.is_greedy() {
            return cpu::argmax(logits) as u32;
        }
        let candidates = filter_candidates(logits, p);
        let r = self.rng.next_f32();
        pick(&candidates, r)
    }
}

/// transformers' rule: a seen token's logit is divided by the penalty if positive, multiplied
/// if negative.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = history.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// (id, probability) of the tokens that survive temperature, top-k, top-p and min-p,
/// probabilities renormalised, sorted by descending probability.
pub fn filter_candidates(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f32)> {
    let mut c: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_nan())
        .map(|(i, &l)| (i as u32, l / p.temperature))
        .collect();
    let desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if p.top_k > 0 && p.top_k < c.len() {
        c.select_nth_unstable_by(p.top_k - 1, desc);
        let kth = c[p.top_k - 1].1;
        // transformers keeps every token tied with the k-th value.
        c.retain(|x| x.1 >= kth);
    }
    c.sort_unstable_by(desc);
    // softmax over the survivors
    let max = c.first().map_or(0.0, |x| x.1);
    let mut sum = 0f32;
    for x in c.iter_mut() {
        x.1 = (x.1 - max).exp();
        sum += x.1;
    }
    for x in c.iter_mut() {
        x.1 /= sum;
    }
    if p.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut acc = 0f32;
        let mut keep = c.len();
        for (i, x) in c.iter().enumerate() {
            acc += x.1;
            if acc >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        c.truncate(keep.max(1));
    }
    if p.min_p > 0.0 {
        let floor = c.first().map_or(0.0, |x| x.1) * p.min_p;
        c.retain(|x| x.1 >= floor);
    }
    let total: f32 = c.iter().map(|x| x.1).sum();
    for x in c.iter_mut() {
        x.1 /= total;
    }
    c
}

/// The GPU sampler's algorithm on the CPU (its twin; `shaders/elementwise/sample.wgsl`), with
/// p_i = exp((l_i - max) / T). Fast path (0 < top_k <= [`DEVICE_TOPK_MAX`], at most
/// [`DEVICE_CANDIDATES`] survivors): top-k keeps the logits >= the k-th largest (ties kept);
/// over those, top-p is the largest t with mass(p >= t) >= top_p * mass and min-p is t =
/// min_p. General path: thresholds for top-k (largest t with count(p >= t) >= k, ties kept),
/// top-p (as above, over the top-k survivors) and min-p over all p. Then the token where the
/// cumulative mass of the survivors in index order passes u * total. It keeps the same tokens
/// as [`filter_candidates`] except for ties at a boundary.
pub fn device_sample(logits: &[f32], s: &SamplingParams, u: f32) -> u32 {
    let (p, tau) = device_threshold(logits, s);
    let total: f32 = p.iter().filter(|&&q| q >= tau).sum();
    let goal = u * total;
    let mut acc = 0f32;
    let mut last = None;
    for (i, &q) in p.iter().enumerate() {
        if q >= tau {
            last = Some(i);
            acc += q;
            if acc > goal {
                return i as u32;
            }
        }
    }
    last.unwrap_or(0) as u32
}

/// Most top-k the device sampler's fast path takes, and most survivors (ties included) it
/// holds; beyond them it takes its general path.
pub const DEVICE_TOPK_MAX: usize = 64;
pub const DEVICE_CANDIDATES: usize = 256;

/// The device sampler's order-preserving key of a logit (NaN below everything).
fn order_key(l: f32) -> u32 {
    if l.is_nan() {
        return 0;
    }
    let b = l.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The unnormalised probabilities exp((l - max) / T) and the survival threshold of
/// [`device_sample`] (tokens with p >= it survive; the fast path marks the tokens outside the
/// top-k with p = -1).
pub fn device_threshold(logits: &[f32], s: &SamplingParams) -> (Vec<f32>, f32) {
    let n = logits.len();
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = if s.temperature > 0.0 {
        1.0 / s.temperature
    } else {
        1.0
    };
    // largest bit pattern t in [0, 1] with pred(t) true, by binary search as the shader does
    let search = |pred: &dyn Fn(f32) -> bool| -> f32 {
        let (mut lo, mut hi) = (0u32, 0x3f80_0001u32);
        for _ in 0..31 {
            let mid = lo + (hi - lo) / 2;
            if pred(f32::from_bits(mid)) {
                lo = mid
            } else {
                hi = mid
            }
        }
        f32::from_bits(lo)
    };
    if s.top_k > 0 && s.top_k <= DEVICE_TOPK_MAX && s.top_k < n {
        let mut keys: Vec<u32> = logits.iter().map(|&l| order_key(l)).collect();
        keys.select_nth_unstable_by(s.top_k - 1, |a, b| b.cmp(a));
        let kth = keys[s.top_k - 1];
        let kept = logits.iter().filter(|&&l| order_key(l) >= kth).count();
        if kept <= DEVICE_CANDIDATES {
            let p: Vec<f32> = logits
                .iter()
                .map(|&l| {
                    if order_key(l) >= kth {
                        ((l - mx) * inv_t).exp()
                    } else {
                        -1.0
                    }
                })
                .collect();
            let tp = if s.top_p < 1.0 {
                let goal = s.top_p * p.iter().filter(|&&q| q >= 0.0).sum::<f32>();
                search(&|t| p.iter().filter(|&&q| q >= t).sum::<f32>() >= goal)
            } else {
                0.0
            };
            return (p, tp.max(s.min_p));
        }
    }
    let p: Vec<f32> = logits.iter().map(|&l| ((l - mx) * inv_t).exp()).collect();
    let tk = if s.top_k > 0 && s.top_k < n {
        search(&|t| p.iter().filter(|&&q| q >= t).count() >= s.top_k)
    } else {
        0.0
    };
    let tp = if s.top_p < 1.0 {
        let goal = s.top_p * p.iter().filter(|&&q| q >= tk).sum::<f32>();
        search(&|t| p.iter().filter(|&&q| q >= t.max(tk)).sum::<f32>() >= goal)
    } else {
        0.0
    };
    let tau = tk.max(tp).max(s.min_p);
    (p, tau)
}

/// Inverse-CDF pick with r in [0, 1).
fn pick(c: &[(u32, f32)], r: f32) -> u32 {
    let mut acc = 0f32;
    for &(id, prob) in c {
        acc += prob;
        if r < acc {
            return id;
        }
    }
    c.last().map_or(0, |x| x.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams::default()
    }

    #[test]
    fn top_k_keeps_k_largest() {
        let p = SamplingParams {
            top_k: 2,
            ..params()
        };
        let c = filter_candidates(&[0.0, 3.0, 1.0, 2.0], &p);
        let ids: Vec<u32> = c.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![1, 3]);
        assert!((c.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_smallest_prefix_reaching_mass() {
        // probs: softmax([ln 0.5, ln 0.3, ln 0.2]) = [0.5, 0.3, 0.2]
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let p = SamplingParams {
            top_p: 0.7,
            ..params()
        };
        let ids: Vec<u32> = filter_candidates(&l, &p).iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![0, 1]);
        let p = SamplingParams {
            top_p: 0.4,
            ..params()
        };
        assert_eq!(filter_candidates(&l, &p).len(), 1);
    }

    #[test]
    fn min_p_drops_tokens_below_fraction_of_best() {
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let p = SamplingParams {
            min_p: 0.5,
            ..params()
        };
        let ids: Vec<u32> = filter_candidates(&l, &p).iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![0, 1]);
    }

    #[test]
    fn temperature_sharpens_distribution() {
        let l = [1.0f32, 0.0];
        let hot = filter_candidates(
            &l,
            &SamplingParams {
                temperature: 2.0,
                ..params()
            },
        );
        let cold = filter_candidates(
            &l,
            &SamplingParams {
                temperature: 0.5,
                ..params()
            },
        );
        assert!(cold[0].1 > hot[0].1);
        assert!((cold[0].1 - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn repetition_penalty_follows_sign_rule() {
        let mut l = [2.0f32, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn same_seed_same_samples_and_frequencies_match_probabilities() {
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, ..params() }).unwrap();
            (0..20_000)
                .map(|_| s.sample(&mut l.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let f0 = a.iter().filter(|&&x| x == 0).count() as f32 / a.len() as f32;
        // 20k draws: standard error sqrt(0.25/20000) = 0.0035; 5 sigma bound
        assert!((f0 - 0.5).abs() < 0.018, "frequency {f0}");
    }

    #[test]
    fn device_sampler_keeps_the_same_tokens_as_the_sorting_sampler() {
        let mut rng = Rng::new(5);
        let logits: Vec<f32> = (0..2000).map(|_| rng.next_f32() * 12.0).collect();
        for p in [
            SamplingParams {
                temperature: 0.7,
                top_k: 20,
                top_p: 0.9,
                ..params()
            },
            SamplingParams {
                temperature: 1.3,
                top_p: 0.5,
                ..params()
            },
            SamplingParams {
                top_k: 5,
                min_p: 0.1,
                ..params()
            },
            SamplingParams {
                temperature: 0.4,
                ..params()
            },
        ] {
            let mut want: Vec<u32> = filter_candidates(&logits, &p).iter().map(|c| c.0).collect();
            want.sort_unstable();
            let (q, tau) = device_threshold(&logits, &p);
            let got: Vec<u32> = (0..q.len() as u32)
                .filter(|&i| q[i as usize] >= tau)
                .collect();
            assert_eq!(got, want, "{p:?}");
            // every draw lands on a kept token, and u = 0 picks the first of them
            for i in 0..200 {
                assert!(want.contains(&device_sample(&logits, &p, i as f32 / 200.0)));
            }
            assert_eq!(device_sample(&logits, &p, 0.0), want[0]);
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        for p in [
            SamplingParams {
                temperature: -1.0,
                ..params()
            },
            SamplingParams {
                top_p: 0.0,
                ..params()
            },
            SamplingParams {
                top_p: 1.5,
                ..params()
            },
            SamplingParams {
                min_p: -0.1,
                ..params()
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..params()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..params()
            },
        ] {
            assert!(Sampler::new(p).is_err());
        }
    }
}
