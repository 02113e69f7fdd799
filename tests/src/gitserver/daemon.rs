//! `git daemon` on a loopback port, for `git://` sources.

use crate::cluster::process::{free_port, lost_port_race, Lifetime, Supervisor};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// `git daemon` serving (and accepting pushes to) every repository under a root. Stopped when dropped.
pub struct GitDaemon {
    port: u16,
    // Dropped after the supervisor (fields drop in order): the logs stay until the process is gone.
    supervisor: Supervisor,
    _dir: tempfile::TempDir,
}

impl GitDaemon {
    pub fn start(root: &Path) -> Result<GitDaemon> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-git-daemon-")
            .tempdir()
            .context("creating git daemon's directory")?;
        let supervisor = Supervisor::new(dir.path(), Lifetime::Tied)?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let args = [
                "daemon".to_string(),
                "--reuseaddr".into(),
                "--listen=127.0.0.1".into(),
                format!("--port={port}"),
                format!("--base-path={}", root.display()),
                "--export-all".into(),
                "--enable=receive-pack".into(),
                "--informative-errors".into(),
                root.display().to_string(),
            ];
            supervisor.spawn("git-daemon", Path::new("git"), &args)?;
            match super::wait_listening(port, Duration::from_secs(10), || supervisor.check_running("git-daemon")) {
                Ok(()) => {
                    return Ok(GitDaemon {
                        port,
                        supervisor,
                        _dir: dir,
                    })
                }
                Err(e) if lost_port_race(&supervisor.log_path("git-daemon")) => last = Some(e),
                Err(e) => return Err(e.context("starting git daemon")),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("git daemon did not start"))
            .context("starting git daemon"))
    }

    /// `git://127.0.0.1:PORT/<repo>` (`repo` relative to the root).
    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// Its log.
    pub fn log(&self) -> std::path::PathBuf {
        self.supervisor.log_path("git-daemon")
    }
}
