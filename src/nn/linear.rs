//! A bias-free linear layer whose weight (out_features, in_features) stays in the mmap.

use crate::cpu;
use crate::error::Result;
use crate::tensor::MatRef;
use crate::weights::{TensorView, WeightStore};

pub struct Linear {
    /// (out_features, in_features), BF16 / F16 / F32, a view into the checkpoint
    pub weight: TensorView,
}

impl Linear {
    /// Load `name` and check it is (out_features, in_features).
    pub fn load(
        store: &WeightStore,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        Ok(Linear {
            weight: store.get_float(name, &[out_features, in_features])?,
        })
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }

    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }

    pub fn mat(&self) -> MatRef<'_> {
        MatRef::new(
            self.weight.dtype,
            self.weight.bytes(),
            self.out_features(),
            self.in_features(),
        )
    }

    /// y (t, out) = x (t, in) @ Wᵀ
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut y = vec![0f32; t * self.out_features()];
        cpu::matmul(x, t, self.mat(), &mut y);
        y
    }

    /// Bytes read per full pass over the weight.
    pub fn weight_bytes(&self) -> usize {
        self.weight.byte_len()
    }
}
