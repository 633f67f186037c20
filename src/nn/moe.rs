//! Mixture-of-experts feed-forward block (`Qwen3MoeSparseMoeBlock`, the Omni thinker's MoE):
//! a router picks `top_k` of `experts` SwiGLU MLPs per token by softmax over all router logits
//! (f32), optionally renormalises the chosen weights to sum to one (`norm_topk_prob`), and adds
//! the weighted expert outputs. Tokens are grouped by expert so that each expert's weights are
//! read once per forward pass, whatever the number of tokens.

use crate::error::Result;
use crate::nn::{Linear, Mlp};
use crate::weights::WeightStore;

pub struct Moe {
    /// the router, (experts, hidden), no bias
    pub gate: Linear,
    pub experts: Vec<Mlp>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

/// The experts one token goes to, with their weights.
pub type Route = Vec<(usize, f32)>;

impl Moe {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
        experts: usize,
        top_k: usize,
        norm_topk_prob: bool,
    ) -> Result<Self> {
        let gate = Linear::load(store, &format!("{prefix}.gate.weight"), experts, hidden)?;
        let experts = (0..experts)
            .map(|e| {
                Mlp::load(
                    store,
                    &format!("{prefix}.experts.{e}"),
                    hidden,
                    intermediate,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Moe {
            gate,
            experts,
            top_k,
            norm_topk_prob,
        })
    }

    /// Router logits (t, experts) for x (t, hidden).
    pub fn router_logits(&self, x: &[f32], t: usize) -> Vec<f32> {
        self.gate.forward(x, t)
    }

    /// The route of each token from its router logits: softmax over every expert, the `top_k`
    /// largest (the lower index first on ties), renormalised when `norm_topk_prob`.
    pub fn routes(&self, logits: &[f32]) -> Vec<Route> {
        let e = self.experts.len();
        logits
            .chunks(e)
            .map(|l| route(l, self.top_k, self.norm_topk_prob))
            .collect()
    }

    /// x (t, hidden) -> (t, hidden).
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let routes = self.routes(&self.router_logits(x, t));
        self.forward_routed(x, t, &routes)
    }

    /// The experts' weighted sum for given routes: each expert runs once on the rows of the
    /// tokens routed to it.
    pub fn forward_routed(&self, x: &[f32], t: usize, routes: &[Route]) -> Vec<f32> {
        let h = x.len() / t.max(1);
        let mut y = vec![0f32; t * h];
        for (e, expert) in self.experts.iter().enumerate() {
            let picked: Vec<(usize, f32)> = routes
                .iter()
                .enumerate()
                .filter_map(|(tok, r)| r.iter().find(|(i, _)| *i == e).map(|&(_, w)| (tok, w)))
                .collect();
            if picked.is_empty() {
                continue;
            }
            let mut rows = Vec::with_capacity(picked.len() * h);
            for &(tok, _) in &picked {
                rows.extend_from_slice(&x[tok * h..(tok + 1) * h]);
            }
            let out = expert.forward(&rows, picked.len());
            for (j, &(tok, w)) in picked.iter().enumerate() {
                let dst = &mut y[tok * h..(tok + 1) * h];
                for (d, s) in dst.iter_mut().zip(&out[j * h..(j + 1) * h]) {
                    *d += w * s;
                }
            }
        }
        y
    }

    pub fn weight_bytes(&self) -> usize {
        self.gate.weight_bytes() + self.experts.iter().map(Mlp::weight_bytes).sum::<usize>()
    }

    /// Bytes one token reads: the router and `top_k` experts.
    pub fn active_weight_bytes(&self) -> usize {
        self.gate.weight_bytes() + self.top_k * self.experts.first().map_or(0, Mlp::weight_bytes)
    }
}

/// Softmax over `logits` (f32, max-subtracted), the `k` largest probabilities in descending
/// order, renormalised to sum to one when `renorm`.
pub fn route(logits: &[f32], k: usize, renorm: bool) -> Route {
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let p: Vec<f32> = logits.iter().map(|&l| (l - mx).exp()).collect();
    let sum: f32 = p.iter().sum();
    let mut order: Vec<usize> = (0..p.len()).collect();
    // stable sort: equal probabilities keep the lower expert index first
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut r: Route = order[..k.min(p.len())]
        .iter()
        .map(|&i| (i, p[i] / sum))
        .collect();
    if renorm {
        let s: f32 = r.iter().map(|(_, w)| w).sum();
        for (_, w) in &mut r {
            *w /= s;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn route_picks_the_largest_and_renormalises() {
        let r = route(&[0.0, 2.0, 1.0, 2.0], 2, true);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((r[0].1 - 0.5).abs() < 1e-6 && (r[1].1 - 0.5).abs() < 1e-6);
        let r = route(&[0.0, 0.0], 1, false);
        assert_eq!(r, vec![(0, 0.5)]);
    }
}
