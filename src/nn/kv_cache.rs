//! Per-layer key/value cache, grown as tokens arrive up to a fixed capacity.

use crate::error::{Error, Result};

pub struct KvCache {
    /// per layer: (len, kv_heads, head_dim) f32
    pub k: Vec<Vec<f32>>,
    /// per layer: (len, kv_heads, head_dim) f32
    pub v: Vec<Vec<f32>>,
    /// kv_heads * head_dim
    pub row: usize,
    /// tokens held
    pub len: usize,
    /// most tokens it may hold (the context length)
    pub capacity: usize,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            row: kv_heads * head_dim,
            len: 0,
            capacity,
        }
    }

    /// Fail before any compute if `extra` more tokens would not fit.
    pub fn check_room(&self, extra: usize) -> Result<()> {
        if self.len + extra > self.capacity {
            return Err(Error::ContextOverflow {
                needed: self.len + extra,
                context: self.capacity,
            });
        }
        Ok(())
    }

    /// Append t rows of k and v for one layer (the caller advances `len` once per forward).
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.k[layer].extend_from_slice(k);
        self.v[layer].extend_from_slice(v);
    }

    /// Drop everything after the first `len` tokens (a new prompt that shares a prefix).
    pub fn truncate(&mut self, len: usize) {
        let keep = len.min(self.len);
        for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
            k.truncate(keep * self.row);
            v.truncate(keep * self.row);
        }
        self.len = keep;
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Bytes the cache would use at full capacity.
    pub fn bytes_at_capacity(&self) -> usize {
        2 * self.k.len() * self.capacity * self.row * 4
    }
}
