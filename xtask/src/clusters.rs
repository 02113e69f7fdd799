//! `cargo xtask testbins` and `cargo xtask clusters up|down`: the test harness's binaries and its
//! clusters, for a developer.
//!
//! `clusters up` starts the harness of `flotilla-tests` (one etcd, N kube-apiservers on loopback)
//! detached, in `~/.cache/flotilla/clusters/run/`, and records the processes in
//! `~/.cache/flotilla/clusters/state.json`; `clusters down` kills them (after checking that each PID
//! still runs the recorded program) and removes the directory, the state and the kubeconfig.

use anyhow::{bail, Context, Result};
use flotilla_tests::cluster::{self, bins, Harness, Lifetime, Options};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The state of running developer clusters.
#[derive(Serialize, Deserialize)]
struct State {
    dir: PathBuf,
    kubeconfig: PathBuf,
    contexts: Vec<Entry>,
    processes: Vec<Process>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    server: String,
}

#[derive(Serialize, Deserialize)]
struct Process {
    name: String,
    pid: u32,
    program: PathBuf,
    log: PathBuf,
}

/// `~/.cache/flotilla/clusters`.
fn home() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/flotilla/clusters"))
}

fn state_path() -> Result<PathBuf> {
    Ok(home()?.join("state.json"))
}

/// Builds (once) and prints the directory of kube-apiserver, etcd and kubectl (the apply
/// benchmark's peer), and kube-controller-manager when asked.
pub fn testbins(controller_manager: bool) -> Result<()> {
    let extra: &[&str] = if controller_manager {
        &["kubectl", "kube-controller-manager"]
    } else {
        &["kubectl"]
    };
    let bins = bins::ensure(extra)?;
    println!("{}", bins.dir.display());
    Ok(())
}

/// Starts `count` clusters and leaves them running.
pub fn up(count: usize, names: Vec<String>, kubeconfig: Option<PathBuf>) -> Result<()> {
    let state_path = state_path()?;
    if state_path.exists() {
        let state = read_state(&state_path)?;
        if state.processes.iter().any(running) {
            bail!(
                "clusters are already up (kubeconfig {}); run `cargo xtask clusters down` first",
                state.kubeconfig.display()
            );
        }
        eprintln!("removing the state of clusters that are no longer running");
        remove(&state, &state_path)?;
    }
    let dir = home()?.join("run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let kubeconfig = match kubeconfig {
        Some(path) if path.is_relative() => Some(std::env::current_dir()?.join(path)),
        other => other,
    };
    bins::ensure(&[])?;
    eprintln!("starting etcd and {count} kube-apiservers in {}", dir.display());
    let started = Instant::now();
    let harness = Harness::start_with(Options {
        clusters: count,
        names,
        dir: Some(dir),
        lifetime: Lifetime::Detached,
        kubeconfig,
        ..Options::default()
    })?;
    let detached = harness.detach();
    let state = State {
        dir: detached.dir,
        kubeconfig: detached.kubeconfig,
        contexts: detached
            .contexts
            .into_iter()
            .map(|(name, server)| Entry { name, server })
            .collect(),
        processes: detached
            .processes
            .into_iter()
            .map(|p| Process {
                name: p.name,
                pid: p.pid,
                program: p.program,
                log: p.log,
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&state)?;
    std::fs::write(&state_path, text).with_context(|| format!("writing {}", state_path.display()))?;
    eprintln!("ready in {:.1} s", started.elapsed().as_secs_f64());
    for c in &state.contexts {
        println!("context {}  {}", c.name, c.server);
    }
    println!("kubeconfig {}", state.kubeconfig.display());
    println!("logs {}", state.dir.join("logs").display());
    eprintln!(
        "try: kubectl --kubeconfig {} --context {} get namespaces; stop them with `cargo xtask clusters down`",
        state.kubeconfig.display(),
        state.contexts.first().map(|c| c.name.as_str()).unwrap_or("cluster-1")
    );
    Ok(())
}

/// Stops the clusters `up` started and removes their files.
pub fn down() -> Result<()> {
    let state_path = state_path()?;
    if !state_path.exists() {
        println!("no clusters are up");
        return Ok(());
    }
    let state = read_state(&state_path)?;
    // kube-apiservers first, etcd last.
    for p in state.processes.iter().rev().filter(|p| running(p)) {
        let status = Command::new("sh")
            .args(["-c", r#"kill -KILL -"$1" 2>/dev/null || kill -KILL "$1""#, "sh"])
            .arg(p.pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            eprintln!("could not kill {} (pid {})", p.name, p.pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.processes.iter().any(running) {
        if Instant::now() > deadline {
            bail!("the cluster processes are still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    remove(&state, &state_path)?;
    println!("stopped {} processes", state.processes.len());
    Ok(())
}

fn read_state(path: &Path) -> Result<State> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {} (remove it if stale)", path.display()))
}

/// Removes the harness directory, the kubeconfig (if the harness wrote it) and the state file.
fn remove(state: &State, state_path: &Path) -> Result<()> {
    if let Ok(text) = std::fs::read_to_string(&state.kubeconfig) {
        if text.starts_with(cluster::KUBECONFIG_MARKER) {
            std::fs::remove_file(&state.kubeconfig)
                .with_context(|| format!("removing {}", state.kubeconfig.display()))?;
        }
    }
    if state.dir.exists() {
        std::fs::remove_dir_all(&state.dir).with_context(|| format!("removing {}", state.dir.display()))?;
    }
    std::fs::remove_file(state_path).with_context(|| format!("removing {}", state_path.display()))
}

/// Whether `p.pid` is alive and still runs `p.program` (so a reused PID is never killed).
fn running(p: &Process) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", p.pid)) else {
        return false;
    };
    let zombie = std::fs::read_to_string(format!("/proc/{}/stat", p.pid))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()))
        .is_some_and(|state| state == 'Z' || state == 'X');
    // A rebuilt binary shows as "<path> (deleted)".
    !zombie && exe.to_string_lossy().starts_with(&*p.program.to_string_lossy())
}
