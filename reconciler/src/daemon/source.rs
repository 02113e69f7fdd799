//! The daemon's source: a branch of a local Git repository, read from the object database (never a
//! checkout, so the working tree may be dirty or anywhere).

use anyhow::{Context, Result};
use render::Snapshot;
use std::path::PathBuf;

/// A local repository path and the branch to follow.
#[derive(Debug, Clone)]
pub struct Local {
    pub path: PathBuf,
    pub branch: Option<String>,
}

impl Local {
    pub fn new(path: PathBuf, branch: Option<String>) -> Local {
        Local { path, branch }
    }

    /// The commit the branch (or HEAD) points at now.
    pub fn head(&self) -> Result<String> {
        let repo = git2::Repository::discover(&self.path)
            .with_context(|| format!("{} is not inside a Git repository", self.path.display()))?;
        let reference = match &self.branch {
            Some(b) => repo
                .find_reference(&format!("refs/heads/{b}"))
                .with_context(|| format!("branch `{b}` does not exist in {}", self.path.display()))?,
            None => repo.head().context("reading HEAD")?,
        };
        let commit = reference
            .peel_to_commit()
            .context("the branch does not point at a commit")?;
        Ok(commit.id().to_string())
    }

    /// The repository as of `commit` (the subtree when `path` is a directory inside the work tree).
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot> {
        crate::source::read_rev(&self.path, commit)
    }
}
