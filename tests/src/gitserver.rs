//! Real Git servers on loopback, for the push workflow's end-to-end tests (SPEC §8: "a real Git
//! server for the push workflow").
//!
//! - [`https::HttpsServer`]: Git's own `git http-backend` (CGI) behind a small HTTPS server of ours
//!   (hyper + rustls, a certificate from a CA generated per server by the harness's [`pki`](crate::cluster::pki)).
//!   It answers every request without the right basic-auth user and token with `401` and counts
//!   them, so a test can tell that a wrong token really reached the server.
//! - [`ssh::Sshd`]: OpenSSH's `sshd` on a loopback port with a test configuration, a fresh host key
//!   and one authorized client key; Git runs `git-upload-pack`/`git-receive-pack` through it as on any
//!   Git host. Needs `sshd` and `ssh-keygen` (Debian: `openssh-server`, `openssh-client`); as root it
//!   also needs the privilege-separation directory `/run/sshd`, which it creates. Without them the
//!   tests fail and say so, unless [`ssh::SKIP_ENV`] (`FLOTILLA_SKIP_SSHD=1`) is set.
//! - [`daemon::GitDaemon`]: `git daemon` serving `git://` (push enabled).
//!
//! Each server serves the bare repositories under its root directory and is stopped when dropped;
//! the processes (sshd, git daemon) are children of the harness's [`Supervisor`](crate::cluster::process::Supervisor),
//! so they also die with the test binary. Every server listens on 127.0.0.1 only.

pub mod daemon;
pub mod https;
pub mod ssh;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Creates the bare repository `root/name` (branch `main`, deletion of the current branch allowed)
/// and returns its path.
pub fn bare_repo(root: &Path, name: &str) -> Result<PathBuf> {
    let path = root.join(name);
    std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    for args in [
        &["init", "-q", "--bare", "-b", "main"][..],
        &["config", "receive.denyDeleteCurrent", "ignore"],
        // Pushes over HTTP are refused unless enabled (the server authenticates every request).
        &["config", "http.receivepack", "true"],
    ] {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&path)
            .output()
            .context("running git (is it installed?)")?;
        anyhow::ensure!(
            out.status.success(),
            "git {args:?} in {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(path)
}

/// Waits until something accepts connections on `127.0.0.1:port` (or `check` fails).
fn wait_listening(port: u16, timeout: std::time::Duration, mut check: impl FnMut() -> Result<()>) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        check()?;
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
