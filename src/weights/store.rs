//! A model's weights across one or many safetensors files, addressed by tensor name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::weights::{SafetensorsFile, TensorView};

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";

/// All tensors of a checkpoint directory.
pub struct WeightStore {
    pub dir: PathBuf,
    files: Vec<SafetensorsFile>,
    /// tensor name -> index into `files`
    by_name: HashMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl WeightStore {
    /// Open `model.safetensors.index.json` if present, else `model.safetensors`, else every
    /// `*.safetensors` file of the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let paths: Vec<PathBuf> = if index_path.is_file() {
            shard_paths(dir, &index_path)?
        } else if dir.join(SINGLE_FILE).is_file() {
            vec![dir.join(SINGLE_FILE)]
        } else {
            let mut found = list_safetensors(dir)?;
            if found.is_empty() {
                return Err(Error::ModelDir {
                    path: dir.to_path_buf(),
                    msg: format!("no {SINGLE_FILE}, {INDEX_FILE} or other *.safetensors file"),
                });
            }
            found.sort();
            found
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut by_name = HashMap::new();
        for p in paths {
            let f = SafetensorsFile::open(&p)?;
            for name in f.names() {
                by_name.insert(name.to_string(), files.len());
            }
            files.push(f);
        }
        if index_path.is_file() {
            check_index_complete(dir, &index_path, &by_name)?;
        }
        Ok(WeightStore {
            dir: dir.to_path_buf(),
            files,
            by_name,
        })
    }

    /// A tensor by name, or an error naming it and the model directory.
    pub fn get(&self, name: &str) -> Result<&TensorView> {
        self.by_name
            .get(name)
            .and_then(|&i| self.files[i].get(name))
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                dir: self.dir.clone(),
            })
    }

    /// A float tensor with the given shape.
    pub fn get_float(&self, name: &str, shape: &[usize]) -> Result<TensorView> {
        let t = self.get(name)?;
        t.expect_float()?;
        t.expect_shape(shape)?;
        Ok(t.clone())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorView> {
        self.files.iter().flat_map(|f| f.tensors())
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Bytes of tensor data over all files.
    pub fn total_bytes(&self) -> usize {
        self.tensors().map(|t| t.byte_len()).sum()
    }

    /// Bytes of all files (headers included).
    pub fn file_bytes(&self) -> usize {
        self.files.iter().map(SafetensorsFile::len).sum()
    }

    /// Fault all files in; see [`SafetensorsFile::prefault`].
    pub fn prefault(&self, progress: &mut dyn FnMut(u64)) {
        for f in &self.files {
            f.prefault(progress);
        }
    }

    pub fn advise_willneed(&self) {
        for f in &self.files {
            f.advise_willneed();
        }
    }
}

fn shard_paths(dir: &Path, index_path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let index: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: index_path.to_path_buf(),
        msg: format!("not a valid shard index: {e}"),
    })?;
    let mut shards: Vec<&String> = index.weight_map.values().collect();
    shards.sort();
    shards.dedup();
    let mut paths = Vec::with_capacity(shards.len());
    for s in shards {
        if s.contains('/') || s.contains('\\') || s.starts_with("..") {
            return Err(Error::Config {
                path: index_path.to_path_buf(),
                msg: format!("shard name `{s}` must be a plain file name"),
            });
        }
        let p = dir.join(s);
        if !p.is_file() {
            return Err(Error::ModelDir {
                path: dir.to_path_buf(),
                msg: format!("shard `{s}` listed in {INDEX_FILE} is missing"),
            });
        }
        paths.push(p);
    }
    Ok(paths)
}

fn check_index_complete(
    dir: &Path,
    index_path: &Path,
    by_name: &HashMap<String, usize>,
) -> Result<()> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let index: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: index_path.to_path_buf(),
        msg: format!("not a valid shard index: {e}"),
    })?;
    let mut missing: Vec<(&String, &String)> = index
        .weight_map
        .iter()
        .filter(|(name, _)| !by_name.contains_key(*name))
        .collect();
    missing.sort();
    if let Some((name, shard)) = missing.first() {
        return Err(Error::ModelDir {
            path: dir.to_path_buf(),
            msg: format!(
                "tensor `{name}` is listed in {INDEX_FILE} under `{shard}` but that shard does not hold it ({} missing)",
                missing.len()
            ),
        });
    }
    Ok(())
}

fn list_safetensors(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "safetensors") {
            out.push(p);
        }
    }
    Ok(out)
}
