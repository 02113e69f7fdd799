//! Locating, and once per machine building, the harness's kube-apiserver and etcd (and, on request,
//! kube-controller-manager and the benchmarks' kubectl, see [`kubectl`]).
//!
//! The binaries are built by `tests/testbins/build.sh` from the Go module `tests/testbins/` into
//! `~/.cache/flotilla/testbin/<key>/`, where `<key>` is the first 16 hex digits of the SHA-256 of
//! `tests/testbins/go.sum` (so a version bump never reuses stale binaries). This module computes the
//! same key, so finding cached binaries needs neither Go nor a shell; only a missing build runs the
//! script, which `cargo xtask testbins` runs too.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Environment variable naming a directory with prebuilt `kube-apiserver` and `etcd` (and `kubectl`
/// for [`kubectl`]); when set, the cache and the Go build are bypassed.
pub const BIN_DIR_ENV: &str = "FLOTILLA_TESTBIN_DIR";

/// Environment variable moving the cache root (default `~/.cache/flotilla/testbin`); the build
/// script reads it too.
pub const CACHE_ENV: &str = "FLOTILLA_TESTBIN_CACHE";

/// The binaries the harness runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The directory holding them.
    pub dir: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kubectl` of the same kubernetes module; built only on request ([`kubectl`], `ensure(&["kubectl"])`),
    /// so the file may be missing.
    pub kubectl: PathBuf,
}

impl Binaries {
    fn in_dir(dir: &Path) -> Self {
        Binaries {
            dir: dir.to_path_buf(),
            kube_apiserver: dir.join("kube-apiserver"),
            etcd: dir.join("etcd"),
            kubectl: dir.join("kubectl"),
        }
    }

    fn all_present(&self) -> bool {
        self.kube_apiserver.is_file() && self.etcd.is_file()
    }
}

/// `tests/testbins/`, the Go module and its build script.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testbins")
}

/// The cache key: the first 16 hex digits of the SHA-256 of `tests/testbins/go.sum`.
pub fn cache_key() -> Result<String> {
    let go_sum = module_dir().join("go.sum");
    let bytes = std::fs::read(&go_sum).with_context(|| format!("reading {}", go_sum.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// The cache directory of the current `go.sum` (it may not exist yet).
pub fn cache_dir() -> Result<PathBuf> {
    let root = match std::env::var_os(CACHE_ENV) {
        Some(root) => PathBuf::from(root),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set (the testbin cache lives in ~/.cache)")?;
            PathBuf::from(home).join(".cache/flotilla/testbin")
        }
    };
    Ok(root.join(cache_key()?))
}

/// The binaries if they are already there (`FLOTILLA_TESTBIN_DIR` or the cache), without building.
pub fn locate() -> Result<Option<Binaries>> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let bins = Binaries::in_dir(Path::new(&dir));
        if !bins.all_present() {
            bail!(
                "{BIN_DIR_ENV}={} holds no kube-apiserver and etcd (unset it to build them into the cache)",
                bins.dir.display()
            );
        }
        return Ok(Some(bins));
    }
    let bins = Binaries::in_dir(&cache_dir()?);
    Ok(bins.all_present().then_some(bins))
}

/// The binaries, built first if the cache lacks them (about 5 minutes once per machine; Go's progress
/// goes to this process's stderr). `extra` names further commands of the module to build, such as
/// `kube-controller-manager` or `kubectl`. Fails with the script's explanation if Go is missing.
pub fn ensure(extra: &[&str]) -> Result<Binaries> {
    // Already there (extras included): no shell, no Go. A broken FLOTILLA_TESTBIN_DIR is an error
    // for the harness's own binaries; extras are then built into the cache as before.
    let found = match locate() {
        Ok(found) => found,
        Err(e) if extra.is_empty() => return Err(e),
        Err(_) => None,
    };
    if let Some(bins) = found {
        if extra.iter().all(|b| bins.dir.join(b).is_file()) {
            return Ok(bins);
        }
    }
    let expected = cache_dir()?;
    let script = module_dir().join("build.sh");
    let out = Command::new("sh")
        .arg(&script)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    match out.status.code() {
        Some(0) => {}
        Some(3) => bail!(
            "the Go toolchain (`go`, 1.25 or newer) is not on PATH, so kube-apiserver and etcd cannot be built \
             into {}; install Go, or set FLOTILLA_SKIP_CLUSTER=1 to skip the cluster tests on purpose",
            expected.display()
        ),
        _ => bail!(
            "{} failed ({}): see its output above; the binaries go to {}",
            script.display(),
            out.status,
            expected.display()
        ),
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let printed = Path::new(printed.lines().last().unwrap_or_default().trim());
    if printed != expected {
        bail!(
            "{} built into {} but the harness expects {} (cache keys disagree)",
            script.display(),
            printed.display(),
            expected.display()
        );
    }
    let bins = Binaries::in_dir(&expected);
    let missing: Vec<&str> = extra.iter().copied().filter(|b| !bins.dir.join(b).is_file()).collect();
    if !bins.all_present() || !missing.is_empty() {
        bail!(
            "{} succeeded but {} lacks the binaries{}",
            script.display(),
            expected.display(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" ({})", missing.join(", "))
            }
        );
    }
    Ok(bins)
}

/// `kubectl` built from the same `k8s.io/kubernetes` module as the harness's kube-apiserver
/// (`tests/testbins/cmd/kubectl`), for side-by-side benchmarks (`cargo xtask bench-apply`); the
/// cluster tests never run it. Taken from `FLOTILLA_TESTBIN_DIR` when that holds one, else from
/// the cache, built first if missing (a few minutes once per machine; less when kube-apiserver was
/// built before, since most packages are shared).
pub fn kubectl() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let path = Path::new(&dir).join("kubectl");
        if path.is_file() {
            return Ok(path);
        }
    }
    Ok(ensure(&["kubectl"])?.kubectl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_matches_the_build_script() {
        let out = Command::new("sh")
            .arg(module_dir().join("build.sh"))
            .arg("--print-dir")
            .env_remove(CACHE_ENV)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(out.stdout).unwrap();
        let key = cache_key().unwrap();
        assert_eq!(key.len(), 16);
        assert!(
            printed.trim().ends_with(&format!("/.cache/flotilla/testbin/{key}")),
            "{printed}"
        );
    }
}
