//! The daemon's source: a branch of a Git repository, read from the object database (never a checkout).
//!
//! - [`Source::Local`]: a repository on this machine (or a directory inside its work tree, that subtree
//!   being the flotilla repository), read in place; the working tree may be dirty.
//! - [`Source::Remote`]: a URL (`file://`, `git://`) fetched with libgit2 into a bare cache repository.
//!   The branch is fetched with a forced refspec, so a force-push is followed (and rolls back when it
//!   points at an older commit); a branch deleted on the remote is an error, and the daemon keeps the
//!   last good commit.

use anyhow::{bail, Context, Result};
use render::Snapshot;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A branch to follow.
#[derive(Debug, Clone)]
pub enum Source {
    Local(Local),
    Remote(Remote),
    /// `--watch`: the working tree, committed or not (see [`super::worktree`]).
    WorkTree(super::worktree::WorkTree),
}

impl Source {
    /// `--source`: a URL with a scheme is fetched; anything else is a local path.
    pub fn parse(source: &str, branch: Option<String>, cache_dir: Option<PathBuf>) -> Result<Source> {
        match source.split_once("://") {
            None => Ok(Source::Local(Local::new(PathBuf::from(source), branch))),
            Some((scheme, _)) => match scheme {
                "file" | "git" => {
                    let cache = match cache_dir {
                        Some(c) => c,
                        None => default_cache(source)?,
                    };
                    Ok(Source::Remote(Remote {
                        url: source.to_string(),
                        branch: branch.unwrap_or_else(|| "main".to_string()),
                        cache,
                    }))
                }
                "http" | "https" | "ssh" => bail!(
                    "--source {source}: {scheme} remotes are not supported yet (file:// and git:// are); clone it and give the path"
                ),
                other => bail!("--source {source}: unknown scheme {other}"),
            },
        }
    }

    /// The commit the branch points at now (fetching first, for a remote).
    pub fn head(&self) -> Result<String> {
        match self {
            Source::Local(l) => l.head(),
            Source::Remote(r) => r.fetch(),
            Source::WorkTree(w) => w.head(),
        }
    }

    /// The repository as of `commit`.
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot> {
        match self {
            Source::Local(l) => l.snapshot(commit),
            Source::Remote(r) => crate::source::read_rev(&r.cache, commit),
            Source::WorkTree(w) => w.snapshot(commit),
        }
    }

    /// The committer time of `commit`, in seconds since the epoch (what endpoint map versions start from);
    /// `None` for a working tree, whose states are not commits.
    pub fn commit_time(&self, commit: &str) -> Result<Option<u64>> {
        match self {
            Source::Local(l) => crate::source::commit_time(&l.path, commit).map(Some),
            Source::Remote(r) => crate::source::commit_time(&r.cache, commit).map(Some),
            Source::WorkTree(_) => Ok(None),
        }
    }
}

/// `~/.cache/flotilla/sources/<sha256(url)[:16]>`.
fn default_cache(url: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("no cache directory: set HOME, XDG_CACHE_HOME or --cache-dir")?;
    let hash = Sha256::digest(url.as_bytes());
    Ok(base.join("flotilla").join("sources").join(hex::encode(&hash[..8])))
}

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

/// A remote branch fetched into a bare cache repository.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    /// The bare repository the branch is fetched into.
    pub cache: PathBuf,
}

impl Remote {
    fn open(&self) -> Result<git2::Repository> {
        if self.cache.join("HEAD").exists() {
            return git2::Repository::open_bare(&self.cache)
                .with_context(|| format!("opening the source cache {}", self.cache.display()));
        }
        std::fs::create_dir_all(&self.cache).with_context(|| format!("creating {}", self.cache.display()))?;
        git2::Repository::init_bare(&self.cache)
            .with_context(|| format!("creating the source cache {}", self.cache.display()))
    }

    /// Fetches the branch (forced: a force-push is followed) and returns the commit it points at.
    pub fn fetch(&self) -> Result<String> {
        let repo = self.open()?;
        let mut remote = repo
            .remote_anonymous(&self.url)
            .with_context(|| format!("remote {}", self.url))?;
        let wanted = format!("refs/heads/{}", self.branch);
        remote
            .connect(git2::Direction::Fetch)
            .with_context(|| format!("connecting to {}", self.url))?;
        let advertised = remote
            .list()
            .with_context(|| format!("listing the branches of {}", self.url))?
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid());
        let Some(oid) = advertised else {
            bail!(
                "branch `{}` does not exist on {} (deleted?); the last good commit stays applied",
                self.branch,
                self.url
            );
        };
        let local = format!("refs/flotilla/{}", self.branch);
        remote
            .fetch(&[format!("+{wanted}:{local}")], None, None)
            .with_context(|| format!("fetching {} from {}", self.branch, self.url))?;
        let got = repo
            .find_reference(&local)
            .and_then(|r| r.peel_to_commit())
            .with_context(|| format!("reading the fetched {}", self.branch))?
            .id();
        if got != oid {
            bail!("fetched {got} but {} advertised {oid} for {}", self.url, self.branch);
        }
        Ok(got.to_string())
    }
}
