//! Streaming safetensors writer: the header is written first from the tensor list, then the
//! data in order, so multi-GB files never sit in memory. The file appears under its final
//! name only after `finish` (no half-written file that looks valid).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tensor::{DType, numel};

/// Name, dtype and shape of one tensor to write.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: &[usize]) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    pub fn byte_len(&self) -> usize {
        numel(&self.shape) * self.dtype.size()
    }
}

pub struct SafetensorsWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    expected: usize,
    written: usize,
}

impl SafetensorsWriter {
    /// Start a file holding `specs` in this order.
    pub fn create(path: &Path, specs: &[TensorSpec]) -> Result<Self> {
        let header = header_json(specs);
        let mut header = header.into_bytes();
        // Pad with spaces to 8 bytes so data starts aligned, as the reference writer does.
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let tmp_path = path.with_extension("safetensors.partial");
        let file = File::create(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        let mut out = BufWriter::with_capacity(8 << 20, file);
        let io = |e| Error::io(&tmp_path, e);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        Ok(SafetensorsWriter {
            out,
            tmp_path: tmp_path.clone(),
            final_path: path.to_path_buf(),
            expected: specs.iter().map(TensorSpec::byte_len).sum(),
            written: 0,
        })
    }

    /// Append raw little-endian tensor bytes (tensors in spec order, back to back).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if self.written + bytes.len() > self.expected {
            return Err(Error::Invalid(format!(
                "{}: more data than the header declares",
                self.final_path.display()
            )));
        }
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.tmp_path, e))?;
        self.written += bytes.len();
        Ok(())
    }

    /// Flush, check the size and move the file to its final name.
    pub fn finish(self) -> Result<()> {
        if self.written != self.expected {
            let _ = std::fs::remove_file(&self.tmp_path);
            return Err(Error::Invalid(format!(
                "{}: wrote {} of {} data bytes",
                self.final_path.display(),
                self.written,
                self.expected
            )));
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp_path, e))?;
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| Error::io(&self.final_path, e))
    }
}

fn header_json(specs: &[TensorSpec]) -> String {
    let mut map = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    map.insert("__metadata__".into(), meta.into());
    let mut offset = 0usize;
    for s in specs {
        let end = offset + s.byte_len();
        map.insert(
            s.name.clone(),
            serde_json::json!({
                "dtype": s.dtype.safetensors_name(),
                "shape": s.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    serde_json::Value::Object(map).to_string()
}

/// Group tensors into shards of at most `max_bytes` (a larger tensor gets a shard of its own),
/// keeping their order.
pub fn split_shards(specs: &[TensorSpec], max_bytes: usize) -> Vec<Vec<TensorSpec>> {
    let mut shards: Vec<Vec<TensorSpec>> = vec![Vec::new()];
    let mut size = 0;
    for s in specs {
        if size > 0 && size + s.byte_len() > max_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += s.byte_len();
        if let Some(v) = shards.last_mut() {
            v.push(s.clone())
        }
    }
    shards
}
