//! A bias-free linear layer. Its weight (out_features, in_features) stays in the mmap: BF16 /
//! F16 / F32, or the int8 values and f16 scales of a Q8_0 checkpoint (crate::quant). A float
//! weight can also be quantised to Q8_0 in memory at load (`--quant q8_0`).

use std::sync::Arc;

use crate::cpu;
use crate::error::{Error, Result};
use crate::quant::BLOCK;
use crate::tensor::{DType, MatRef};
use crate::weights::{TensorView, WeightStore};

/// Bytes that live in the checkpoint mapping or were made at load.
#[derive(Clone)]
pub enum Bytes {
    Mapped(TensorView),
    Owned(Arc<Vec<u8>>),
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(v) => v.bytes(),
            Bytes::Owned(v) => v,
        }
    }
}

/// A Q8_0 weight: (rows, cols) int8 values and (rows, cols / 32) f16 scales.
#[derive(Clone)]
pub struct Q8Weight {
    pub qs: Bytes,
    pub scales: Bytes,
}

#[derive(Clone)]
pub struct Linear {
    /// (out_features, in_features) as stored: a float tensor, or the I8 values of a Q8_0 one
    pub weight: TensorView,
    /// the Q8_0 form, when the checkpoint is quantised or the weight was quantised at load
    pub q8: Option<Q8Weight>,
}

/// Name of the scale tensor of a Q8_0 weight (see crate::quant).
pub fn scale_name(weight: &str) -> String {
    format!("{weight}_scale")
}

impl Linear {
    /// Load `name` and check it is (out_features, in_features).
    pub fn load(
        store: &WeightStore,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self> {
        let t = store.get(name)?;
        if t.dtype != DType::I8 {
            return Ok(Self::dense(
                store.get_float(name, &[out_features, in_features])?,
            ));
        }
        t.expect_shape(&[out_features, in_features])?;
        let sname = scale_name(name);
        let scales = store.get(&sname).map_err(|_| Error::MissingTensor {
            name: format!("{sname} (the Q8_0 scales of `{name}`)"),
            dir: store.dir.clone(),
        })?;
        if !in_features.is_multiple_of(BLOCK) || scales.dtype != DType::F16 {
            return Err(Error::TensorDtype {
                name: sname,
                file: scales.file.as_ref().clone(),
                dtype: scales.dtype.to_string(),
                expected: format!("F16 scales of a Q8_0 weight with rows a multiple of {BLOCK}"),
            });
        }
        scales.expect_shape(&[out_features, in_features / BLOCK])?;
        Ok(Linear {
            weight: t.clone(),
            q8: Some(Q8Weight {
                qs: Bytes::Mapped(t.clone()),
                scales: Bytes::Mapped(scales.clone()),
            }),
        })
    }

    pub fn dense(weight: TensorView) -> Self {
        Linear { weight, q8: None }
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }

    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }

    pub fn mat(&self) -> MatRef<'_> {
        match &self.q8 {
            Some(q) => MatRef::q8_0(
                q.qs.as_slice(),
                q.scales.as_slice(),
                self.out_features(),
                self.in_features(),
            ),
            None => MatRef::new(
                self.weight.dtype,
                self.weight.bytes(),
                self.out_features(),
                self.in_features(),
            ),
        }
    }

    /// Quantise a float weight to Q8_0 in memory. Rows that are not whole blocks stay as
    /// they are (returns false).
    pub fn quantize_q8_0(&mut self) -> bool {
        if self.q8.is_some()
            || !self.in_features().is_multiple_of(BLOCK)
            || !self.weight.dtype.is_float()
        {
            return self.q8.is_some();
        }
        let dense = MatRef::new(
            self.weight.dtype,
            self.weight.bytes(),
            self.out_features(),
            self.in_features(),
        );
        let (qs, sc) =
            crate::quant::quantize_matrix(self.out_features(), self.in_features(), |r, out| {
                dense.row_to_f32(r, out)
            });
        self.q8 = Some(Q8Weight {
            qs: Bytes::Owned(Arc::new(qs)),
            scales: Bytes::Owned(Arc::new(sc)),
        });
        true
    }

    /// y (t, out) = x (t, in) @ Wᵀ
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let mut y = vec![0f32; t * self.out_features()];
        cpu::matmul(x, t, self.mat(), &mut y);
        y
    }

    /// Bytes read per full pass over the weight.
    pub fn weight_bytes(&self) -> usize {
        match &self.q8 {
            Some(q) => q.qs.as_slice().len() + q.scales.as_slice().len(),
            None => self.weight.byte_len(),
        }
    }
}
