//! # reconciler: everything of flotilla that touches the outside world
//!
//! The `flotilla` binary (`src/main.rs`) is glue over this library: it parses the command line and
//! calls [`commands`]. The library reads repositories ([`source`]: a working tree, or a commit
//! straight from the Git object database), calls the pure `render` crate followed by the routing
//! step ([`routing`]: cross-cluster routing through the `flotilla-ebpf` crate, which adds the
//! generated east-west Services), and prints ([`print`], [`diff`], [`endpoints`]). Clusters
//! ([`cluster`]), the daemon and the HTTP server live here too: `render` stays pure.
//!
//! Key decision: repository reading is the only place where paths, symlinks and sizes are judged;
//! `render` receives bytes. Exit codes everywhere: 0 success / no difference, 1 findings (error
//! diagnostics, differences), 2 usage or internal failure.
//!
//! ```no_run
//! let snapshot = reconciler::source::read(std::path::Path::new("examples-repo"), None)?;
//! let out = reconciler::routing::render_snapshot(&snapshot, &render::RenderOptions::default());
//! println!("{} clusters", out.clusters.len());
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod cluster;
pub mod commands;
pub mod daemon;
pub mod diff;
pub mod drift;
pub mod endpoints;
pub mod print;
pub mod routing;
pub mod source;

use clap::ValueEnum;
use std::path::PathBuf;

/// Output format of diagnostics-only commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Output format of `render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Yaml,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RepoArgs {
    /// The repository: a directory (its working tree), or with --rev a directory inside a Git repository.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Read this commit from the Git object database instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
}

/// The async runtime of the cluster commands: two workers (the machine class has two cores).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
