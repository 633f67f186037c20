//! RMSNorm with its weight decoded to f32 once at load (it is tiny).

use crate::cpu;
use crate::error::Result;
use crate::weights::WeightStore;

pub struct RmsNorm {
    /// (dim,) f32
    pub weight: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(store: &WeightStore, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let weight = store.get_float(name, &[dim])?.to_f32_vec()?;
        Ok(RmsNorm {
            weight,
            eps: eps as f32,
        })
    }

    /// Normalise every `dim`-sized row of x in place.
    pub fn forward(&self, x: &mut [f32]) {
        cpu::rms_norm(x, &self.weight, self.eps);
    }
}
