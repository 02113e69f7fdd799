//! Peer tools for side-by-side numbers, built from the Go module proxy into a per-user cache.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The Go module path of kustomize's command.
const KUSTOMIZE_MODULE: &str = "sigs.k8s.io/kustomize/kustomize/v5";

/// `~/.cache/flotilla/testbin/peers`, shared with the test harness's cache.
pub fn peers_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/flotilla/testbin/peers"))
}

/// Runs `go` with module mode forced and no workspace, outside any module; returns stdout.
fn go_output(args: &[&str]) -> Result<String> {
    let out = Command::new("go")
        .args(args)
        .env("GOWORK", "off")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .context("running `go` (is the Go toolchain on PATH?)")?;
    if !out.status.success() {
        bail!(
            "`go {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("`go` printed non-UTF-8")
}

/// Parses `1.26.8`, `go1.26.8` or `1.26` into comparable numbers.
fn parse_go_version(v: &str) -> Vec<u64> {
    v.trim()
        .trim_start_matches("go")
        .split(['.', '-', 'r'])
        .map_while(|p| p.parse().ok())
        .collect()
}

/// Parses `v5.8.2` into comparable numbers (pre-releases are skipped by the caller).
fn parse_semver(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect()
}

/// The newest v5 release of kustomize the module proxy has whose `go` directive the local toolchain
/// satisfies (the newest releases may need a Go newer than the machine's, and we never download a
/// toolchain: `GOTOOLCHAIN=local`).
fn latest_buildable_kustomize_version() -> Result<String> {
    let local = parse_go_version(go_output(&["env", "GOVERSION"])?.trim());
    let listed = go_output(&["list", "-m", "-versions", KUSTOMIZE_MODULE])?;
    let mut versions: Vec<&str> = listed.split_whitespace().skip(1).filter(|v| !v.contains('-')).collect();
    versions.sort_by_key(|v| std::cmp::Reverse(parse_semver(v)));
    for version in versions {
        let module = format!("{KUSTOMIZE_MODULE}@{version}");
        // `go list -m -json` fetches only the go.mod (`go mod download` refuses modules that need a
        // newer Go).
        let listed = go_output(&["list", "-m", "-json", &module])?;
        let info: serde_json::Value =
            serde_json::from_str(&listed).with_context(|| format!("parsing `go list -m -json {module}`"))?;
        let Some(path) = info.get("GoMod").and_then(|p| p.as_str()) else {
            bail!("`go list -m -json {module}` gave no GoMod");
        };
        let gomod = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let needs = gomod
            .lines()
            .find_map(|l| l.strip_prefix("go "))
            .map(parse_go_version)
            .unwrap_or_default();
        if needs <= local {
            return Ok(version.to_string());
        }
        eprintln!(
            "kustomize {version} needs go {} (local toolchain is older), trying the previous release",
            needs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
        );
    }
    bail!("no release of {KUSTOMIZE_MODULE} builds with the local Go toolchain")
}

/// Builds kustomize into the peers cache unless it is there already; returns its path.
/// `version` pins a release (e.g. `v5.8.3`); `None` means the newest the proxy has.
pub fn ensure_kustomize(version: Option<&str>) -> Result<PathBuf> {
    let dir = peers_dir()?;
    let bin = dir.join("kustomize");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let version = match version {
        Some(v) => v.to_string(),
        None => latest_buildable_kustomize_version()?,
    };
    eprintln!(
        "building kustomize {version} from the Go module proxy into {} (a few minutes, once)",
        dir.display()
    );
    let status = Command::new("go")
        .args(["install", "-trimpath"])
        .arg(format!("{KUSTOMIZE_MODULE}@{version}"))
        .env("GOBIN", &dir)
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .current_dir(std::env::temp_dir())
        .status()
        .context("running `go install` (is the Go toolchain on PATH?)")?;
    if !status.success() {
        bail!("`go install {KUSTOMIZE_MODULE}@{version}` failed ({status})");
    }
    if !bin.is_file() {
        bail!("`go install` succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// `kustomize version` as the binary reports it (the module version it was built from).
pub fn kustomize_version(bin: &std::path::Path) -> Result<String> {
    let out = Command::new(bin)
        .arg("version")
        .output()
        .with_context(|| format!("running {} version", bin.display()))?;
    if !out.status.success() {
        bail!("{} version failed ({})", bin.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
