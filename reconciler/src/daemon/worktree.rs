//! `flotilla reconcile --watch`: the working tree as the source, for local development. Every change
//! to a file under the directory (seen by `notify`, debounced) renders the tree again, committed or
//! not; polling every `--interval` stays as a safety net for changes the watcher misses.
//!
//! A working tree has no commit, so its state is named by its content: `worktree-` and the first 16
//! hex digits of the sha256 over every file's path and bytes. That name is what the clusters' ApplySet
//! parents record as the last applied commit, and an unchanged tree (a save without changes, a `git
//! commit` that only touches `.git/`) renders nothing new.

use anyhow::{Context as _, Result};
use render::Snapshot;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long file events are gathered before the tree is read (an editor's save, a `git checkout`,
/// often touch many files).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// A working tree to render.
#[derive(Debug, Clone)]
pub struct WorkTree {
    pub path: PathBuf,
    /// The last tree read, by its name: [`WorkTree::snapshot`] of that name returns exactly what was
    /// named, even if the files changed since.
    last: Arc<Mutex<Option<(String, Snapshot)>>>,
}

impl WorkTree {
    pub fn new(path: PathBuf) -> WorkTree {
        WorkTree {
            path,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// Reads the tree and returns its name.
    pub fn head(&self) -> Result<String> {
        let mut snapshot = crate::source::read(&self.path, None)
            .with_context(|| format!("reading the working tree {}", self.path.display()))?;
        let name = name_of(&snapshot);
        snapshot.revision = Some(name.clone());
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((name.clone(), snapshot));
        Ok(name)
    }

    /// The tree named `name` (the one [`WorkTree::head`] read), or the tree as it is now.
    pub fn snapshot(&self, name: &str) -> Result<Snapshot> {
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.as_ref() {
            Some((n, s)) if n == name => Ok(s.clone()),
            _ => {
                drop(last);
                self.head()?;
                let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                last.as_ref()
                    .map(|(_, s)| s.clone())
                    .context("the working tree could not be read")
            }
        }
    }
}

/// `worktree-<16 hex digits>` of the files' paths and contents (the reader sorts them by path).
pub fn name_of(snapshot: &Snapshot) -> String {
    let mut h = Sha256::new();
    for f in &snapshot.files {
        h.update((f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update((f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
    }
    format!("worktree-{}", &hex::encode(h.finalize())[..16])
}

/// Whether a file event matters: anything outside `.git/` (Git's own bookkeeping changes no file of
/// the tree).
fn relevant(root: &Path, event: &notify::Event) -> bool {
    event.paths.iter().any(|p| {
        let rel = p.strip_prefix(root).unwrap_or(p);
        !rel.components().any(|c| c.as_os_str() == ".git")
    })
}

/// Watches `root` recursively and calls `wake` for every relevant change. The watcher stops when the
/// returned value is dropped.
pub fn watch(root: &Path, wake: Arc<tokio::sync::Notify>) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let root_owned = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let r = root_owned.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(event) if relevant(&r, &event) => wake.notify_one(),
        Ok(_) => {}
        Err(e) => tracing::warn!("watching the working tree: {e}"),
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&root_owned, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", root_owned.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use render::SourceFile;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        Snapshot::new(
            files
                .iter()
                .map(|(p, b)| SourceFile {
                    path: (*p).to_string(),
                    bytes: b.as_bytes().to_vec(),
                })
                .collect(),
            Vec::new(),
            None,
        )
    }

    #[test]
    fn the_name_follows_paths_and_contents_only() {
        let a = name_of(&snap(&[("a.yaml", "x: 1"), ("b.yaml", "y: 2")]));
        assert!(a.starts_with("worktree-") && a.len() == "worktree-".len() + 16, "{a}");
        assert_eq!(a, name_of(&snap(&[("b.yaml", "y: 2"), ("a.yaml", "x: 1")])));
        assert_ne!(a, name_of(&snap(&[("a.yaml", "x: 2"), ("b.yaml", "y: 2")])));
        assert_ne!(a, name_of(&snap(&[("a.yaml", "x: 1"), ("c.yaml", "y: 2")])));
        // Boundaries count: moving bytes between a path and its content is another tree.
        assert_ne!(name_of(&snap(&[("ab", "c")])), name_of(&snap(&[("a", "bc")])));
    }

    #[test]
    fn git_bookkeeping_is_not_a_change() {
        let root = Path::new("/repo");
        let ev = |p: &str| notify::Event::new(notify::EventKind::Any).add_path(PathBuf::from(p));
        assert!(!relevant(root, &ev("/repo/.git/index")));
        assert!(!relevant(root, &ev("/repo/.git/refs/heads/main")));
        assert!(relevant(root, &ev("/repo/apps/web.yaml")));
    }
}
