//! Resolve `--model`: a directory, or a Hugging Face repo id looked up in the local HF cache
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`). Never the network.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Turn a `--model` argument into a model directory.
pub fn resolve_model_path(arg: &str) -> Result<PathBuf> {
    let direct = PathBuf::from(arg);
    if direct.is_dir() {
        return Ok(direct);
    }
    if direct.exists() {
        return Err(Error::ModelDir {
            path: direct,
            msg: "is not a directory (pass the folder holding config.json)".into(),
        });
    }
    let Some((org, name)) = parse_repo_id(arg) else {
        return Err(Error::ModelDir {
            path: direct,
            msg: "no such directory".into(),
        });
    };
    let cache = hub_cache_dir();
    let repo_dir = cache.join(format!("models--{org}--{name}"));
    find_snapshot(&repo_dir).ok_or_else(|| Error::ModelDir {
        path: direct,
        msg: format!(
            "no such directory, and no snapshot of {org}/{name} in the Hugging Face cache at {} \
             (set HF_HUB_CACHE or HF_HOME; nothing is downloaded)",
            repo_dir.display()
        ),
    })
}

/// `Org/Name` with no further slashes and no leading `.` or `/`.
fn parse_repo_id(arg: &str) -> Option<(&str, &str)> {
    let (org, name) = arg.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(org) && ok(name)).then_some((org, name))
}

fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// The snapshot `refs/main` points at, else the most recently modified snapshot.
fn find_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let p = snapshots.join(rev.trim());
        if p.is_dir() {
            return Some(p);
        }
    }
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&snapshots).ok()?.flatten() {
        let p = entry.path();
        if !p.is_dir() {
            continue;
        }
        let t = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            best = Some((t, p));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_org_slash_name_only() {
        assert_eq!(parse_repo_id("Qwen/Qwen3-8B"), Some(("Qwen", "Qwen3-8B")));
        assert_eq!(parse_repo_id("a/b/c"), None);
        assert_eq!(parse_repo_id("../x"), None);
        assert_eq!(parse_repo_id("/abs"), None);
    }
}
