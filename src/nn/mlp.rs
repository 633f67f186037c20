//! SwiGLU MLP (`Qwen3MLP`): down_proj(silu(gate_proj(x)) * up_proj(x)).

use crate::cpu;
use crate::error::Result;
use crate::nn::Linear;
use crate::weights::WeightStore;

pub struct Mlp {
    /// (intermediate, hidden)
    pub gate_proj: Linear,
    /// (intermediate, hidden)
    pub up_proj: Linear,
    /// (hidden, intermediate)
    pub down_proj: Linear,
}

impl Mlp {
    pub fn load(
        store: &WeightStore,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
    ) -> Result<Self> {
        Ok(Mlp {
            gate_proj: Linear::load(
                store,
                &format!("{prefix}.gate_proj.weight"),
                intermediate,
                hidden,
            )?,
            up_proj: Linear::load(
                store,
                &format!("{prefix}.up_proj.weight"),
                intermediate,
                hidden,
            )?,
            down_proj: Linear::load(
                store,
                &format!("{prefix}.down_proj.weight"),
                hidden,
                intermediate,
            )?,
        })
    }

    /// x (t, hidden) -> (t, hidden)
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut gate = self.gate_proj.forward(x, t);
        let up = self.up_proj.forward(x, t);
        cpu::silu_mul(&mut gate, &up);
        self.down_proj.forward(&gate, t)
    }

    pub fn weight_bytes(&self) -> usize {
        self.gate_proj.weight_bytes() + self.up_proj.weight_bytes() + self.down_proj.weight_bytes()
    }
}
