//! # agent: `flotilla-agent`, the node agent of cross-cluster routing
//!
//! flotilla routes a connection to a multi-cluster service's VIP inside the kernel (SPEC §7). This
//! crate is the node half: it loads the BPF program compiled from `ebpf/bpf/flotilla.bpf.c`
//! (embedded by the `ebpf` crate's `bpf-object` feature), attaches its four `cgroup/*4` hooks to a
//! cgroup v2 directory, and keeps the program's maps equal to the newest good *endpoint map config*
//! it is given. It is a separate crate so that `reconciler` (the `flotilla` binary) never links
//! `aya` nor needs clang to build; `ebpf` stays pure and owns the document and the map layout.
//!
//! ## Main types
//! - [`datapath::Datapath`]: the loaded object, its pinned maps and links; writes one generation and
//!   flips to it ([`datapath::Datapath::apply`]).
//! - [`agent::Agent`]: accepts or refuses documents ([`agent::Agent::offer`]) and keeps the
//!   [`status::Status`].
//! - [`run`]: the binary's loop — watch the config file, offer every new content, publish status.
//!
//! ## Contract
//! - A document is applied whole or not at all: programs read one generation word once per call,
//!   so a connection sees the old table or the new one, never a mix.
//! - A refused document (bad JSON, hash, `apiVersion`, `kind`, another cluster, a version not newer
//!   than the applied one, more than the datapath holds) changes nothing in the kernel; it is
//!   counted and reported, and the last good document keeps routing.
//! - The agent's process is not on the data path: maps and links are pinned under the pin
//!   directory, so routing goes on while the agent is stopped, restarted or upgraded, and exiting
//!   detaches nothing (`flotilla-agent detach` does, on purpose).

pub mod agent;
mod batch;
pub mod configmap;
pub mod datapath;
pub mod status;
pub mod system;
pub mod watch;

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Where documents come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file (JSON), watched: `--config`.
    File(PathBuf),
    /// A ConfigMap key, watched through the API server: `--configmap` / `--kubeconfig`.
    ConfigMap(configmap::ConfigMapSource),
}

/// What `flotilla-agent` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub source: Source,
    /// The cgroup v2 directory to attach to; `None`: `/sys/fs/cgroup` or the cgroup v2 mount.
    pub cgroup: Option<PathBuf>,
    pub pin_dir: PathBuf,
    /// Refuse documents for another cluster.
    pub cluster: Option<String>,
    pub status_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// Re-read the config file this often even without a file event (and refresh the counters).
    pub poll: Duration,
}

/// Opens the datapath and applies the config file's documents until the process is stopped.
pub fn run(opts: &RunOptions) -> Result<()> {
    let cgroup = system::resolve_cgroup(opts.cgroup.as_deref())?;
    system::ensure_bpffs(&opts.pin_dir)?;
    let datapath = datapath::Datapath::open(&opts.pin_dir, &cgroup).with_context(|| {
        if system::is_root() {
            "setting up the datapath".to_string()
        } else {
            "setting up the datapath (the agent needs root, or CAP_BPF and CAP_NET_ADMIN)".to_string()
        }
    })?;
    let base = status::Status {
        cgroup: cgroup.display().to_string(),
        pin_dir: opts.pin_dir.display().to_string(),
        config: match &opts.source {
            Source::File(path) => path.display().to_string(),
            Source::ConfigMap(cm) => cm.describe(),
        },
        object: datapath::object_tag(),
        ..status::Status::default()
    };
    let mut agent = agent::Agent::new(datapath, opts.cluster.clone(), base)?;
    let links = agent.status().links;
    tracing::info!(
        cgroup = %cgroup.display(),
        pin_dir = %opts.pin_dir.display(),
        links = ?links,
        applied = ?agent.status().applied.as_ref().map(|a| a.version),
        "datapath ready"
    );
    let shared: status::Shared = Arc::new(Mutex::new(agent.status().clone()));
    if let Some(addr) = opts.listen {
        let bound = status::serve(addr, shared.clone())?;
        tracing::info!(address = %bound, "serving /status, /metrics and /healthz");
    }
    let mut input = match &opts.source {
        Source::File(path) => Input::File(path.clone(), watch::Watch::new(path)?, false),
        Source::ConfigMap(cm) => Input::ConfigMap(configmap::spawn(cm.clone())?),
    };
    loop {
        if let Some(bytes) = input.next(opts.poll)? {
            agent.offer(&bytes);
        }
        agent.refresh_stats();
        *shared.lock().unwrap_or_else(PoisonError::into_inner) = agent.status().clone();
        if let Some(path) = &opts.status_file {
            if let Err(e) = status::write_file(agent.status(), path) {
                tracing::warn!(error = %format!("{e:#}"), "writing the status file");
            }
        }
    }
}

/// The running source of documents.
enum Input {
    /// The file is read at once, then after every change or poll (`bool`: read once already).
    File(PathBuf, watch::Watch, bool),
    ConfigMap(std::sync::mpsc::Receiver<Vec<u8>>),
}

impl Input {
    /// The next content to offer, if any, waiting at most about `poll`.
    fn next(&mut self, poll: Duration) -> Result<Option<Vec<u8>>> {
        match self {
            Input::File(path, events, started) => {
                if *started {
                    events.wait(poll);
                }
                *started = true;
                match std::fs::read(&*path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "config not readable yet");
                        Ok(None)
                    }
                }
            }
            Input::ConfigMap(contents) => match contents.recv_timeout(poll) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the ConfigMap watch stopped")
                }
            },
        }
    }
}
