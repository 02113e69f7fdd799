//! Reading a repository into a [`render::Snapshot`]: a working tree, or a commit via `git2`.
//!
//! Both readers apply the same rules: `flotilla.yaml` first (its include/exclude globs and size
//! limit decide what else is read), hidden paths skipped, symlinks never followed out of the
//! repository, oversized files refused with a diagnostic instead of being read.

use anyhow::{bail, Context, Result};
use render::diagnostic::{code, Diagnostic};
use render::snapshot::CONFIG_FILE;
use render::{Pos, RepoConfig, Snapshot, SourceFile};
use std::path::{Component, Path, PathBuf};

fn unreadable(path: &str, msg: String) -> Diagnostic {
    Diagnostic::error(code::UNREADABLE, path, Pos { line: 1, column: 0 }, msg)
}

/// The diagnostic for a file over `maxFileSize`, which is then not read.
fn oversized(rel: &str, size: u64, config: &RepoConfig) -> Option<Diagnostic> {
    (size > config.max_file_size()).then(|| {
        unreadable(
            rel,
            format!(
                "file is {size} bytes, over the limit of {} bytes (maxFileSize in {CONFIG_FILE}); not read",
                config.max_file_size()
            ),
        )
    })
}

fn config_from(bytes: Option<&[u8]>) -> RepoConfig {
    bytes.map(|b| RepoConfig::parse(b).0).unwrap_or_default()
}

/// Reads the working tree at `root`.
pub fn read_worktree(root: &Path) -> Result<Snapshot> {
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot open repository directory {}", root.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let config_path = root.join(CONFIG_FILE);
    let config_bytes = match std::fs::symlink_metadata(&config_path) {
        Ok(m) if m.is_file() => {
            Some(std::fs::read(&config_path).with_context(|| format!("reading {}", config_path.display()))?)
        }
        _ => None,
    };
    let config = config_from(config_bytes.as_deref());
    let mut files = Vec::new();
    let mut diags = Vec::new();
    walk(&root, &root, &config, &mut files, &mut diags)?;
    Ok(Snapshot::new(files, diags, None))
}

fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn walk(
    root: &Path,
    dir: &Path,
    config: &RepoConfig,
    files: &mut Vec<SourceFile>,
    diags: &mut Vec<Diagnostic>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        let rel = rel_path(root, &path);
        let meta = std::fs::symlink_metadata(&path).with_context(|| format!("inspecting {}", path.display()))?;
        if meta.is_dir() {
            walk(root, &path, config, files, diags)?;
            continue;
        }
        if !config.wants(&rel) {
            continue;
        }
        let target = if meta.file_type().is_symlink() {
            match path.canonicalize() {
                Ok(t) if t.starts_with(root) && t.is_file() => t,
                Ok(t) if t.starts_with(root) => continue, // a link to a directory inside: not followed
                Ok(t) => {
                    diags.push(unreadable(
                        &rel,
                        format!("symlink points outside the repository (to {}); not read", t.display()),
                    ));
                    continue;
                }
                Err(err) => {
                    diags.push(unreadable(&rel, format!("broken symlink: {err}")));
                    continue;
                }
            }
        } else if meta.is_file() {
            path.clone()
        } else {
            continue;
        };
        let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        if let Some(d) = oversized(&rel, size, config) {
            diags.push(d);
            continue;
        }
        match std::fs::read(&target) {
            Ok(bytes) => files.push(SourceFile { path: rel, bytes }),
            Err(err) => diags.push(unreadable(&rel, format!("cannot read file: {err}"))),
        }
    }
    Ok(())
}

/// Normalises `a/b/../c` lexically; `None` when it climbs above the root.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Reads commit `rev` of the Git repository containing `dir`. When `dir` is a subdirectory of the
/// repository's work tree, that subtree is the flotilla repository (e.g. `examples-repo/`).
pub fn read_rev(dir: &Path, rev: &str) -> Result<Snapshot> {
    let repo =
        git2::Repository::discover(dir).with_context(|| format!("{} is not inside a Git repository", dir.display()))?;
    let object = repo
        .revparse_single(rev)
        .with_context(|| format!("unknown revision `{rev}`"))?;
    let commit = object
        .peel_to_commit()
        .with_context(|| format!("`{rev}` is not a commit"))?;
    let mut tree = commit.tree().context("reading the commit's tree")?;
    if let Some(workdir) = repo.workdir() {
        let workdir = workdir.canonicalize().context("resolving the work tree")?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        if let Ok(prefix) = dir.strip_prefix(&workdir) {
            if !prefix.as_os_str().is_empty() {
                let entry = tree
                    .get_path(prefix)
                    .with_context(|| format!("{} does not exist in {rev}", prefix.display()))?;
                tree = entry
                    .to_object(&repo)
                    .and_then(|o| o.peel_to_tree())
                    .with_context(|| format!("{} is not a directory in {rev}", prefix.display()))?;
            }
        }
    }
    snapshot_of_tree(&repo, &tree, Some(commit.id().to_string()))
}

/// The committer time (seconds since the epoch) of commit `rev` of the Git repository containing
/// `dir`; the version of the endpoint map configs built from that commit derives from it.
pub fn commit_time(dir: &Path, rev: &str) -> Result<u64> {
    let repo =
        git2::Repository::discover(dir).with_context(|| format!("{} is not inside a Git repository", dir.display()))?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .with_context(|| format!("`{rev}` is not a commit"))?;
    // A commit dated before 1970 has no meaningful version: 0.
    Ok(u64::try_from(commit.time().seconds()).unwrap_or(0))
}

/// Reads every wanted blob of a tree (used by the daemon too).
pub fn snapshot_of_tree(repo: &git2::Repository, tree: &git2::Tree<'_>, revision: Option<String>) -> Result<Snapshot> {
    let config_bytes = tree
        .get_name(CONFIG_FILE)
        .and_then(|e| e.to_object(repo).ok())
        .and_then(|o| o.into_blob().ok())
        .map(|b| b.content().to_vec());
    let config = config_from(config_bytes.as_deref());
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let mut walk_err = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
        let name = entry.name().unwrap_or("");
        if name.starts_with('.') {
            return git2::TreeWalkResult::Skip;
        }
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let rel = format!("{parent}{name}");
        if !config.wants(&rel) {
            return git2::TreeWalkResult::Ok;
        }
        let blob_of = |id: git2::Oid| repo.find_blob(id);
        let mut blob = match blob_of(entry.id()) {
            Ok(b) => b,
            Err(e) => {
                walk_err = Some(anyhow::anyhow!("reading {rel}: {e}"));
                return git2::TreeWalkResult::Abort;
            }
        };
        if entry.filemode() == 0o120000 {
            // A symlink: resolve its target inside the tree, never outside.
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            let joined = Path::new(parent).join(&target);
            let Some(norm) = normalise(&joined).filter(|_| !Path::new(&target).is_absolute()) else {
                diags.push(unreadable(
                    &rel,
                    format!("symlink points outside the repository (to {target}); not read"),
                ));
                return git2::TreeWalkResult::Ok;
            };
            match tree.get_path(&norm).ok().and_then(|e| blob_of(e.id()).ok()) {
                Some(b) => blob = b,
                None => {
                    diags.push(unreadable(
                        &rel,
                        format!("symlink target {target} is not a file in the commit"),
                    ));
                    return git2::TreeWalkResult::Ok;
                }
            }
        }
        if let Some(d) = oversized(&rel, blob.size() as u64, &config) {
            diags.push(d);
            return git2::TreeWalkResult::Ok;
        }
        files.push(SourceFile {
            path: rel,
            bytes: blob.content().to_vec(),
        });
        git2::TreeWalkResult::Ok
    })
    .context("walking the commit's tree")?;
    if let Some(e) = walk_err {
        return Err(e);
    }
    Ok(Snapshot::new(files, diags, revision))
}

/// Reads `--repo DIR [--rev REV]`.
pub fn read(dir: &Path, rev: Option<&str>) -> Result<Snapshot> {
    match rev {
        Some(r) => read_rev(dir, r),
        None => read_worktree(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_refuses_escapes() {
        assert_eq!(normalise(Path::new("a/../b")), Some(PathBuf::from("b")));
        assert_eq!(normalise(Path::new("a/../../b")), None);
    }
}
