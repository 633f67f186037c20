//! One safetensors file, memory-mapped, with its parsed header.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use crate::error::{Error, Result};
use crate::tensor::DType;

/// A tensor inside a mapped file: name, dtype, shape and a byte range of the mapping.
#[derive(Clone)]
pub struct TensorView {
    pub name: String,
    pub file: Arc<PathBuf>,
    pub dtype: DType,
    pub shape: Vec<usize>,
    mmap: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for TensorView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorView")
            .field("name", &self.name)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish()
    }
}

impl TensorView {
    /// Ask the kernel to start reading this tensor's pages now (asynchronous readahead), so a
    /// pass over it later finds them in memory instead of faulting them in page by page.
    pub fn advise_willneed(&self) {
        const PAGE: usize = 4096;
        let start = self.start / PAGE * PAGE;
        let _ = self
            .mmap
            .advise_range(memmap2::Advice::WillNeed, start, self.end - start);
    }

    /// The raw little-endian bytes, borrowed from the mapping.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap[self.start..self.end]
    }

    pub fn numel(&self) -> usize {
        crate::tensor::numel(&self.shape)
    }

    pub fn byte_len(&self) -> usize {
        self.end - self.start
    }

    /// Decode to a new f32 vector (for small tensors such as norms, and for tests).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let b = self.bytes();
        let out = match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| crate::tensor::bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            other => return Err(self.dtype_error(other, "F32, F16 or BF16")),
        };
        Ok(out)
    }

    /// Check the shape, naming the tensor and its file on mismatch.
    pub fn expect_shape(&self, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::TensorShape {
                name: self.name.clone(),
                file: self.file.as_ref().clone(),
                expected: expected.to_vec(),
                found: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// Check that the dtype is a float type the engine computes with.
    pub fn expect_float(&self) -> Result<()> {
        if self.dtype.is_float() {
            Ok(())
        } else {
            Err(self.dtype_error(self.dtype, "F32, F16 or BF16"))
        }
    }

    fn dtype_error(&self, dtype: DType, expected: &str) -> Error {
        Error::TensorDtype {
            name: self.name.clone(),
            file: self.file.as_ref().clone(),
            dtype: dtype.to_string(),
            expected: expected.to_string(),
        }
    }
}

/// A mapped safetensors file and the tensors its header lists.
pub struct SafetensorsFile {
    pub path: Arc<PathBuf>,
    mmap: Arc<Mmap>,
    tensors: HashMap<String, TensorView>,
}

impl SafetensorsFile {
    /// Map and validate a file. A truncated file or corrupt header is an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only; the usual mmap caveat applies (another process
        // truncating the file underneath us), as in every mmap-based model loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mmap = Arc::new(mmap);
        let path = Arc::new(path.to_path_buf());
        let parsed = SafeTensors::deserialize(&mmap).map_err(|e| Error::Safetensors {
            path: path.as_ref().clone(),
            msg: describe_error(&e, mmap.len()),
        })?;
        let base = mmap.as_ptr() as usize;
        let mut tensors = HashMap::new();
        for (name, view) in parsed.tensors() {
            let dtype = map_dtype(view.dtype()).ok_or_else(|| Error::TensorDtype {
                name: name.clone(),
                file: path.as_ref().clone(),
                dtype: format!("{:?}", view.dtype()),
                expected: "F32, F16, BF16, I64, I32, U8 or I8".into(),
            })?;
            let start = view.data().as_ptr() as usize - base;
            let end = start + view.data().len();
            let tv = TensorView {
                name: name.clone(),
                file: path.clone(),
                dtype,
                shape: view.shape().to_vec(),
                mmap: mmap.clone(),
                start,
                end,
            };
            tensors.insert(name, tv);
        }
        drop(parsed);
        Ok(SafetensorsFile {
            path,
            mmap,
            tensors,
        })
    }

    pub fn get(&self, name: &str) -> Option<&TensorView> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorView> {
        self.tensors.values()
    }

    /// Ask the kernel to read the file ahead (the first token then does not wait on disk).
    pub fn advise_willneed(&self) {
        let _ = self.mmap.advise(memmap2::Advice::WillNeed);
    }

    /// Size of the mapped file in bytes.
    pub fn len(&self) -> usize {
        self.mmap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mmap.is_empty()
    }

    /// Fault every page of the mapping in (read from disk or page cache), both cores at once,
    /// calling `progress` with the bytes done after each 64 MiB. The pages stay file-backed:
    /// this adds no anonymous memory.
    pub fn prefault(&self, progress: &mut dyn FnMut(u64)) {
        use rayon::prelude::*;
        const CHUNK: usize = 64 << 20;
        const PAGE: usize = 4096;
        self.advise_willneed();
        for chunk in self.mmap.chunks(CHUNK) {
            let sum: u64 = chunk
                .par_chunks(1 << 20)
                .map(|c| c.iter().step_by(PAGE).map(|&b| b as u64).sum::<u64>())
                .sum();
            std::hint::black_box(sum);
            progress(chunk.len() as u64);
        }
    }
}

fn map_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        _ => return None,
    })
}

fn describe_error(e: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => format!("file is {file_len} bytes, too short for a header"),
        E::InvalidHeaderLength => {
            format!("header length points past the end of the file ({file_len} bytes): truncated?")
        }
        E::MetadataIncompleteBuffer => format!(
            "tensor data does not match the file size ({file_len} bytes): truncated or padded file"
        ),
        E::InvalidHeaderDeserialization(err) => format!("corrupt JSON header: {err}"),
        E::InvalidHeader(err) => format!("header is not UTF-8: {err}"),
        other => format!("{other}"),
    }
}
