//! Real local Kubernetes clusters for tests: one etcd and N kube-apiservers on loopback.
//!
//! flotilla's cluster tests talk to real kube-apiservers (no mocks, see `../shared/TESTING.md`):
//! server-side apply, field managers, conflicts, defaulting, watches and RBAC are the server's own.
//! A [`Harness`] starts
//!
//! - one **etcd** (`--unsafe-no-fsync`, data in the harness directory, free loopback ports), shared
//!   by all clusters;
//! - N **kube-apiservers**, cluster *i* with `--etcd-prefix=/cluster-i` (so the clusters share
//!   nothing but the etcd process), its own `--secure-port` on 127.0.0.1, service range
//!   a /20 of 10.96.0.0/11 per cluster, 4,094 Services each (virtual, nothing is ever sent there), RBAC, client-certificate authentication
//!   ([`pki`]), the `ServiceAccount` admission plugin off and the garbage collector off (there is no
//!   kube-controller-manager: namespaces stay `Terminating` when deleted, ownerReferences are not
//!   followed, and deletes never wait for GC finalizers), and no endpoint reconciler (Endpoints may
//!   not hold 127.0.0.1);
//!
//! waits until every `/readyz` answers and the `default` namespace exists, and writes a kubeconfig
//! with one context per cluster (`cluster-1`..`cluster-N` unless named otherwise), authenticating as
//! `flotilla-admin` in `system:masters`.
//!
//! The binaries come from [`bins`]: built once per machine from the Go module proxy (about 5 minutes
//! cold) into a cache keyed by `tests/testbins/go.sum`.
//!
//! # Use in tests
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! // One harness per test binary, started by the first test that asks, shared by all its tests.
//! let Some(harness) = flotilla_tests::cluster::shared(2)? else { return Ok(()) }; // skipped on purpose
//! let client = harness.client(0)?; // cluster-1; a new client for this test's runtime
//! let ns = flotilla_tests::cluster::create_namespace(&client, "my-test").await?;
//! # let _ = ns; Ok(()) }
//! ```
//!
//! A harness is started once per test binary (its tests run on threads of one process) and each
//! test works in namespaces of its own ([`create_namespace`]); never reuse a namespace name, since a
//! deleted namespace stays `Terminating`. Clients are made per test ([`Cluster::client`]) because a
//! `kube::Client` belongs to the tokio runtime that made it, and every `#[tokio::test]` has its own.
//!
//! Cluster tests fail when Go or the binaries are missing; `FLOTILLA_SKIP_CLUSTER=1` skips them
//! on purpose ([`shared`] then returns `None` after saying so). CI never sets it.
//!
//! # Killing a cluster
//!
//! [`Harness::stop_apiserver`] kills one cluster's kube-apiserver (`SIGKILL`) and
//! [`Harness::start_apiserver`] brings it back on the same port with the same etcd prefix and
//! certificates, so clients and the kubeconfig stay valid. Tests that do this start a [`Harness`] of
//! their own: the [`shared`] one refuses.
//!
//! # Cleanup and logs
//!
//! Every process is killed when the harness is dropped, when a test panics and when the test
//! binary exits or dies (see `process.rs` for the watchdog). The harness directory holds `etcd/`,
//! `pki/`, `kubeconfig` and `logs/<process>.log`; the logs stay after the process exits (a shared
//! harness prints their path into each test's output, which libtest shows when the test fails) and
//! directories older than three days are removed by later harnesses. A [`Harness`] dropped while
//! panicking keeps its logs and prints their path; dropped normally, it removes its directory.

pub mod bins;
mod kubeconfig;
pub mod pki;
pub mod process;
mod start;

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

pub use kubeconfig::MARKER as KUBECONFIG_MARKER;
pub use process::{DetachedProc, Lifetime};

/// Set to `1` to skip cluster tests on purpose (they print why and pass).
pub const SKIP_ENV: &str = "FLOTILLA_SKIP_CLUSTER";

/// How to start a [`Harness`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of kube-apiservers (0 starts etcd only).
    pub clusters: usize,
    /// Cluster and context names; empty means `cluster-1`..`cluster-N`.
    pub names: Vec<String>,
    /// The harness directory (created if missing); `None` means a fresh temporary directory,
    /// removed when the harness is dropped.
    pub dir: Option<PathBuf>,
    /// Whether the processes die with this process ([`Lifetime::Tied`], tests) or may outlive it
    /// ([`Lifetime::Detached`], `cargo xtask clusters up`; see [`Harness::detach`]).
    pub lifetime: Lifetime,
    /// A second place to write the kubeconfig to (it is always written to `<dir>/kubeconfig`).
    /// An existing file there is replaced only if the harness wrote it.
    pub kubeconfig: Option<PathBuf>,
    /// How long to wait for all clusters to become ready.
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clusters: 1,
            names: Vec::new(),
            dir: None,
            lifetime: Lifetime::Tied,
            kubeconfig: None,
            ready_timeout: Duration::from_secs(180),
        }
    }
}

impl Options {
    /// Defaults with `n` clusters.
    pub fn clusters(n: usize) -> Self {
        Options {
            clusters: n,
            ..Options::default()
        }
    }
}

/// One member cluster of a harness.
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    port: u16,
    etcd_prefix: String,
    service_cidr: String,
    config: kube::Config,
}

impl Cluster {
    /// The cluster (and kubeconfig context) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kube-apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The kube-apiserver's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where this cluster's objects live in the shared etcd (`/cluster-i`).
    pub fn etcd_prefix(&self) -> &str {
        &self.etcd_prefix
    }

    /// Its `--service-cluster-ip-range`.
    pub fn service_cidr(&self) -> &str {
        &self.service_cidr
    }

    /// The admin's `kube::Config` for this cluster (as loaded from the harness kubeconfig).
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// A new admin client, bound to the current tokio runtime (call it inside the test).
    pub fn client(&self) -> Result<kube::Client> {
        if tokio::runtime::Handle::try_current().is_err() {
            bail!("a kube::Client needs a tokio runtime: call Cluster::client inside an async test");
        }
        kube::Client::try_from(self.config.clone()).with_context(|| format!("making a client for {}", self.name))
    }
}

/// Running clusters: see the module documentation.
pub struct Harness {
    dir: PathBuf,
    temporary: bool,
    kubeconfig: PathBuf,
    kubeconfig_doc: Value,
    etcd_port: u16,
    clusters: Vec<Cluster>,
    pki: pki::Pki,
    supervisor: Option<process::Supervisor>,
    ready_timeout: Duration,
    /// Started by [`shared`]: its clusters may not be stopped (other tests use them).
    shared: bool,
}

/// Clusters left running by [`Harness::detach`].
#[derive(Debug, Clone)]
pub struct Detached {
    /// The harness directory (etcd data, keys, logs, kubeconfig).
    pub dir: PathBuf,
    /// The kubeconfig (`<dir>/kubeconfig`, or the one asked for in [`Options::kubeconfig`]).
    pub kubeconfig: PathBuf,
    /// `(context name, server URL)` per cluster.
    pub contexts: Vec<(String, String)>,
    /// The processes, to be killed by whoever stops the clusters.
    pub processes: Vec<DetachedProc>,
}

impl Harness {
    /// Starts `n` clusters with default [`Options`] (the binaries are built first if needed).
    pub fn start(n: usize) -> Result<Harness> {
        Harness::start_with(Options::clusters(n))
    }

    /// Starts clusters as `options` say. Blocks (also inside an async test, on a thread of its own)
    /// until every cluster is ready or the timeout passes.
    pub fn start_with(options: Options) -> Result<Harness> {
        start::start(options)
    }

    /// The clusters, in order (`cluster-1` first).
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Result<&Cluster> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("the harness has no cluster {name}"))
    }

    /// A new admin client of the `index`-th cluster (0 is `cluster-1`), bound to the current runtime.
    pub fn client(&self, index: usize) -> Result<kube::Client> {
        self.cluster_at(index)?.client()
    }

    /// New admin clients of all clusters, in order.
    pub fn clients(&self) -> Result<Vec<kube::Client>> {
        self.clusters.iter().map(Cluster::client).collect()
    }

    /// A `kube::Config` for cluster `name` authenticating as `user` in `groups` (a client
    /// certificate from the harness CA), for tests of restricted identities.
    pub async fn config_as(&self, name: &str, user: &str, groups: &[&str]) -> Result<kube::Config> {
        let cluster = self.cluster(name)?;
        let identity = self.pki.client(user, groups)?;
        let server = cluster.server();
        let doc = kubeconfig::document(
            &[kubeconfig::Entry { name, server: &server }],
            &self.pki.ca_pem(),
            user,
            &identity,
        );
        kubeconfig::config(&doc, name).await
    }

    /// The kubeconfig (one context per cluster, current context the first).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig document (for writing variants of it).
    pub fn kubeconfig_document(&self) -> &Value {
        &self.kubeconfig_doc
    }

    /// The harness directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the processes' logs (`<name>.log`).
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The etcd client URL (`http://127.0.0.1:<port>`).
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    /// Kills the kube-apiserver of the `index`-th cluster (0 is `cluster-1`) with `SIGKILL` and waits
    /// until it has exited: its clients' connections break and new ones are refused, as when a
    /// control plane dies. etcd and the other clusters keep running. [`Harness::start_apiserver`]
    /// brings it back. Not allowed on the [`shared`] harness (other tests use its clusters): a test
    /// that stops clusters starts a [`Harness`] of its own.
    pub fn stop_apiserver(&self, index: usize) -> Result<()> {
        if self.shared {
            bail!("the shared harness's clusters may not be stopped: start a Harness of your own");
        }
        let cluster = self.cluster_at(index)?;
        self.running()?
            .stop(&cluster.name)
            .with_context(|| format!("stopping the kube-apiserver of {}", cluster.name))?;
        Ok(())
    }

    /// Starts the kube-apiserver of the `index`-th cluster again after [`Harness::stop_apiserver`]:
    /// same binary and flags, so the same port, etcd prefix (its objects are all still there),
    /// certificates and keys; the kubeconfig, [`Cluster::config`] and clients made before stay valid.
    /// Blocks until its `/readyz` answers `ok` (also inside an async test, on a thread of its own).
    /// The restarted process dies with the test binary like the first one (see the watchdog).
    pub fn start_apiserver(&self, index: usize) -> Result<()> {
        let cluster = self.cluster_at(index)?;
        let supervisor = self.running()?;
        supervisor
            .restart(&cluster.name)
            .with_context(|| format!("restarting the kube-apiserver of {}", cluster.name))?;
        start::wait_restarted(supervisor, cluster, self.ready_timeout)
    }

    fn cluster_at(&self, index: usize) -> Result<&Cluster> {
        self.clusters
            .get(index)
            .ok_or_else(|| anyhow!("the harness has {} clusters, not {}", self.clusters.len(), index + 1))
    }

    fn running(&self) -> Result<&process::Supervisor> {
        self.supervisor
            .as_ref()
            .ok_or_else(|| anyhow!("the harness is detached: its processes are no longer its own"))
    }

    /// The PIDs of the harness's processes, by name (`etcd`, then the clusters).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.supervisor.as_ref().map(|s| s.pids()).unwrap_or_default()
    }

    /// Leaves the clusters running beyond this process (for [`Lifetime::Detached`] harnesses;
    /// a tied harness's watchdog would still kill them when this process exits).
    pub fn detach(mut self) -> Detached {
        let processes = self.supervisor.take().map(|s| s.detach()).unwrap_or_default();
        Detached {
            dir: self.dir.clone(),
            kubeconfig: self.kubeconfig.clone(),
            contexts: self.clusters.iter().map(|c| (c.name.clone(), c.server())).collect(),
            processes,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let Some(supervisor) = self.supervisor.take() else {
            return; // detached
        };
        supervisor.shutdown();
        if !self.temporary {
            return;
        }
        if std::thread::panicking() {
            for sub in ["etcd", "pki", "kubeconfig"] {
                let _ =
                    std::fs::remove_dir_all(self.dir.join(sub)).or_else(|_| std::fs::remove_file(self.dir.join(sub)));
            }
            eprintln!(
                "cluster harness: logs of etcd and the kube-apiservers kept in {}",
                self.logs_dir().display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether `FLOTILLA_SKIP_CLUSTER=1` asks to skip cluster tests.
pub fn skip_requested() -> bool {
    std::env::var(SKIP_ENV).is_ok_and(|v| v == "1")
}

type Slot = OnceLock<Result<Harness, String>>;

/// The harness with `n` clusters shared by every test of this test binary: started by the first
/// caller (the others wait), never dropped (the watchdog ends it with the process).
///
/// Returns `Ok(None)` when `FLOTILLA_SKIP_CLUSTER=1` (after printing that the test is skipped), and
/// an error, the same for every caller, when the harness cannot start; Go or the binaries missing
/// is such an error.
pub fn shared(n: usize) -> Result<Option<&'static Harness>> {
    if skip_requested() {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            // Straight to stderr: libtest hides what passing tests print.
            let _ = writeln!(
                std::io::stderr(),
                "cluster tests skipped on purpose: {SKIP_ENV}=1 (they need real kube-apiservers; CI never skips them)"
            );
        });
        return Ok(None);
    }
    static SHARED: Mutex<BTreeMap<usize, &'static Slot>> = Mutex::new(BTreeMap::new());
    let slot: &'static Slot = {
        let mut map = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(n).or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    let started = slot.get_or_init(|| {
        Harness::start(n)
            .map(|mut h| {
                h.shared = true;
                h
            })
            .map_err(|e| format!("{e:?}"))
    });
    match started {
        Ok(harness) => {
            // Captured by libtest and shown only if this test fails.
            println!(
                "cluster harness: kubeconfig {}, logs in {}",
                harness.kubeconfig().display(),
                harness.logs_dir().display()
            );
            Ok(Some(harness))
        }
        Err(e) => Err(anyhow!("the shared cluster harness ({n} clusters) did not start: {e}")),
    }
}

/// A name unique within this process and across runs: `<prefix>-<pid>-<counter>` (hex pid),
/// shortened to 63 characters.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{:x}-{n}", std::process::id());
    let keep = 63usize.saturating_sub(suffix.len());
    let prefix: String = prefix.chars().take(keep).collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// Creates a fresh namespace named after `prefix` ([`unique_name`]) and returns its name.
pub async fn create_namespace(client: &kube::Client, prefix: &str) -> Result<String> {
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}
