//! # flotilla-tests: cross-crate and end-to-end tests
//!
//! Tests here exercise several crates together on real inputs: the example repository read by the
//! real reader (`reconciler::source`) from the working tree or from a real Git commit, rendered by
//! `render`. The helpers below are shared by the test binaries in `tests/`.
//!
//! [`cluster`] is the real-cluster harness (see `../shared/TESTING.md` and `docs/testing.md`): one
//! etcd and N kube-apiservers on loopback, built once per machine from the Go module proxy, with
//! certificates, RBAC and a kubeconfig, shared by the tests of a test binary and cleaned up when it
//! exits. `cargo xtask clusters up` uses it to leave clusters running for a developer. [`routing`] writes
//! test repositories with an exported Service (the daemon's routing tests and the agent's end-to-end test).
//!
//! [`gitserver`] starts real Git servers on loopback for the push workflow: `git http-backend` behind
//! an HTTPS server that wants a token, `sshd`, and `git daemon`.

pub mod cluster;
pub mod daemon;
pub mod gitserver;
pub mod routing;

use std::path::{Path, PathBuf};

/// The repository's `examples-repo/`.
pub fn examples_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo")
}

/// Copies a directory tree (files only), for tests that modify a repository.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Runs `git` in `dir` with a fixed identity; panics with git's stderr on failure (test helper).
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// [`git`] with extra environment variables (e.g. `GIT_SSL_CAINFO`, which wins over `-c http.sslCAInfo`).
pub fn git_env(dir: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "flotilla-tests")
        .env("GIT_AUTHOR_EMAIL", "tests@flotilla.invalid")
        .env("GIT_COMMITTER_NAME", "flotilla-tests")
        .env("GIT_COMMITTER_EMAIL", "tests@flotilla.invalid")
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => panic!("git {args:?} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("git {args:?} could not run (is git installed?): {e}"),
    }
}
