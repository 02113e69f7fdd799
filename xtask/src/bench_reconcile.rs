//! `cargo xtask bench-drift` and `cargo xtask bench-reconcile`: the `flotilla reconcile` daemon (the
//! release binary, as a user runs it) against real local kube-apiservers of the test harness.
//!
//! - drift: out-of-band edits of managed ConfigMaps (field manager `bench-editor`), each timed from
//!   just before the edit is sent until a watch of the benchmark's own sees the value Git holds again;
//!   one edit at a time (the latency of one drift) and all at once (a burst);
//! - memory: the daemon's resident set while it holds N objects on each of C clusters: after the first
//!   sync, while idle with every watch open, after a burst of drift, and after a commit that changes
//!   a tenth of the objects (`VmRSS` sampled every 200 ms, `VmHWM` as the peak).

use anyhow::{anyhow, bail, Context, Result};
use flotilla_tests::cluster::Harness;
use flotilla_tests::git;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS_PREFIX: &str = "bench";
const OBJECTS_PER_NAMESPACE: usize = 500;

/// The daemon as a child process; killed when dropped.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(flotilla: &Path, repo: &Path, kubeconfig: &Path, log: &Path) -> Result<Daemon> {
        Daemon::start_with(
            flotilla,
            &repo.to_string_lossy(),
            kubeconfig,
            log,
            &["--interval", "500ms"],
        )
    }

    pub(crate) fn start_with(
        flotilla: &Path,
        source: &str,
        kubeconfig: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Result<Daemon> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(flotilla)
            .args([
                "--log-format",
                "json",
                "reconcile",
                "--source",
                source,
                "--branch",
                "main",
            ])
            .args(extra)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", flotilla.display()))?;
        Ok(Daemon {
            child,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the daemon exited ({status}); its log: {}", self.log.display());
        }
        Ok(())
    }

    /// Log lines whose message starts with `prefix`.
    fn count_log(&self, prefix: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .count()
    }
}

/// `(VmRSS, VmHWM)` of a process, KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples VmRSS every 200 ms in the background; `max` since the last `reset`.
struct Sampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (Arc::clone(&max), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(rss(pid).0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler { max, stop }
    }

    fn take(&self) -> u64 {
        self.max.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

pub(crate) fn namespace(i: usize) -> String {
    format!("{NS_PREFIX}-{:02}", i / OBJECTS_PER_NAMESPACE)
}

/// One object of the synthetic repository: mostly ConfigMaps, then Secrets, Services, ServiceAccounts,
/// Deployments, with realistic sizes. `generation` changes the data of every tenth ConfigMap.
fn object(i: usize, generation: u32) -> String {
    let ns = namespace(i);
    let payload = |len: usize| -> String {
        (0..len)
            .map(|j| char::from(b'a' + ((i * 7 + j * 13) % 26) as u8))
            .collect()
    };
    match i % 20 {
        0..=11 => {
            let version = if i.is_multiple_of(10) { generation } else { 0 };
            let mut data = String::new();
            for k in 0..6 {
                let _ = writeln!(data, "    key{k}: {}", payload(96));
            }
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: {ns}\n  labels: {{app: app-{}}}\ndata:\n    k: v{version}\n{data}",
                i % 50
            )
        }
        12..=14 => format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: secret-{i}, namespace: {ns}}}\ntype: Opaque\ndata: {{token: {}}}\n",
            "c2VjcmV0".repeat(8)
        ),
        15 | 16 => format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {ns}}}\nspec:\n  selector: {{app: app-{i}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
        ),
        17 | 18 => format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa-{i}, namespace: {ns}}}\n"),
        _ => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: deploy-{i}, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/app-{i}:1.0\n        ports: [{{containerPort: 8080}}]\n        env: [{{name: MODE, value: production}}]\n        resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}\n"
        ),
    }
}

/// Writes the repository (inventory `clusters`, `objects` templates placed on every cluster) and
/// commits it; returns the commit.
pub(crate) fn write_repo(dir: &Path, clusters: &[String], objects: usize, generation: u32) -> Result<String> {
    let mut inventory = String::new();
    for c in clusters {
        let _ = write!(
            inventory,
            "---\napiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {c}}}\n"
        );
    }
    std::fs::write(dir.join("clusters.yaml"), inventory)?;
    let names = clusters.join(", ");
    let namespaces = objects.div_ceil(OBJECTS_PER_NAMESPACE).max(1);
    let mut policies = format!(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: ClusterPropagationPolicy\nmetadata: {{name: namespaces}}\nspec:\n  resourceSelectors: [{{apiVersion: v1, kind: Namespace}}]\n  placement: {{clusterAffinity: {{clusterNames: [{names}]}}}}\n"
    );
    let mut nsdocs = String::new();
    for n in 0..namespaces {
        let ns = namespace(n * OBJECTS_PER_NAMESPACE);
        let _ = write!(
            nsdocs,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        );
        let _ = write!(
            policies,
            "---\napiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {{name: everything, namespace: {ns}}}\nspec:\n  resourceSelectors:\n  - {{apiVersion: v1, kind: ConfigMap}}\n  - {{apiVersion: v1, kind: Secret}}\n  - {{apiVersion: v1, kind: Service}}\n  - {{apiVersion: v1, kind: ServiceAccount}}\n  - {{apiVersion: apps/v1, kind: Deployment}}\n  placement: {{clusterAffinity: {{clusterNames: [{names}]}}}}\n"
        );
    }
    std::fs::write(dir.join("namespaces.yaml"), nsdocs)?;
    std::fs::write(dir.join("policies.yaml"), policies)?;
    let apps = dir.join("apps");
    std::fs::create_dir_all(&apps)?;
    for chunk in 0..objects.div_ceil(100) {
        let docs: Vec<String> = (chunk * 100..((chunk + 1) * 100).min(objects))
            .map(|i| object(i, generation))
            .collect();
        std::fs::write(apps.join(format!("apps-{chunk:03}.yaml")), docs.join("---\n"))?;
    }
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q", "-b", "main"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", &format!("generation {generation}")]);
    Ok(git(dir, &["rev-parse", "HEAD"]))
}

/// Waits until every cluster's ApplySet parent records `commit`.
pub(crate) async fn wait_synced(
    clients: &[kube::Client],
    commit: &str,
    daemon: &mut Daemon,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    for client in clients {
        let parents: Api<ConfigMap> = Api::namespaced(client.clone(), "flotilla-system");
        loop {
            daemon.check_running()?;
            let recorded = parents
                .get_opt("flotilla-applyset")
                .await
                .ok()
                .flatten()
                .and_then(|p| p.metadata.annotations)
                .and_then(|a| a.get("flotilla.dev/last-applied-commit").cloned());
            if recorded.as_deref() == Some(commit) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "commit {commit} not applied within {limit:?}; see {}",
                    daemon.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// ConfigMap values as the benchmark's own watch sees them: (name, value of `k`, when seen).
type Seen = tokio::sync::mpsc::UnboundedReceiver<(String, String, Instant)>;

/// Starts a watch of the ConfigMaps of `api` and returns once its initial list is done (so no edit made
/// afterwards can be missed).
async fn watch_configmaps(api: Api<ConfigMap>) -> Result<Seen> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        let mut ready = Some(ready_tx);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                    let name = cm.metadata.name.clone().unwrap_or_default();
                    let value = cm.data.and_then(|d| d.get("k").cloned()).unwrap_or_default();
                    if tx.send((name, value, Instant::now())).is_err() {
                        break;
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .map_err(|_| anyhow!("the benchmark's watch did not list within 60 s"))?
        .map_err(|_| anyhow!("the benchmark's watch ended"))?;
    Ok(rx)
}

fn edit() -> PatchParams {
    PatchParams {
        field_manager: Some("bench-editor".into()),
        ..PatchParams::default()
    }
}

/// What one burst of edits measured, per object.
struct Burst {
    /// From just before the edits were sent until the watch saw Git's value again.
    since_sent: Vec<Duration>,
    /// From the watch seeing the edit until it saw Git's value again (the daemon's part).
    since_seen: Vec<Duration>,
    /// Until every edit request had returned.
    sent: Duration,
}

/// Edits `names` at once and waits until the watch has seen each edit and then Git's value
/// `healthy` again.
async fn burst(api: &Api<ConfigMap>, seen: &mut Seen, names: &[String], healthy: &str, tag: &str) -> Result<Burst> {
    let t0 = Instant::now();
    let edits = names.iter().map(|n| {
        let api = api.clone();
        let body = json!({"data": {"k": format!("{tag}-{n}")}});
        async move { api.patch(n, &edit(), &Patch::Merge(&body)).await }
    });
    for r in futures::future::join_all(edits).await {
        r.context("editing a managed ConfigMap")?;
    }
    let sent = t0.elapsed();
    let mut edited: HashMap<&str, Option<Instant>> = names.iter().map(|n| (n.as_str(), None)).collect();
    let mut healed: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while healed.len() < names.len() {
        let (name, value, at) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "{} of {} edits not healed within 60 s",
                    names.len() - healed.len(),
                    names.len()
                )
            })?
            .ok_or_else(|| anyhow!("the benchmark's watch ended"))?;
        let Some(e) = edited.get_mut(name.as_str()) else {
            continue;
        };
        if value == format!("{tag}-{name}") {
            *e = Some(at);
        } else if let (Some(edit_seen), true) = (*e, value == healthy) {
            healed.entry(name).or_insert((at - t0, at - edit_seen));
        }
    }
    Ok(Burst {
        since_sent: healed.values().map(|v| v.0).collect(),
        since_seen: healed.values().map(|v| v.1).collect(),
        sent,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn summary(label: &str, mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{label:<34} n={:<4} p50 {:>9}  p99 {:>9}  max {:>9}",
        v.len(),
        ms(percentile(&v, 50.0)),
        ms(percentile(&v, 99.0)),
        ms(v.last().copied().unwrap_or_default())
    )
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn check_binary(flotilla: &Path) -> Result<()> {
    if !flotilla.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p reconciler` (or pass --flotilla PATH)",
            flotilla.display()
        );
    }
    Ok(())
}

pub struct DriftOptions {
    pub flotilla: PathBuf,
    pub edits: usize,
    pub objects: usize,
}

/// `bench-drift`: one cluster, `objects` managed objects, `edits` edits one at a time and at once.
pub fn drift(opts: &DriftOptions) -> Result<()> {
    check_binary(&opts.flotilla)?;
    println!("bench-drift: {}", crate::bench::machine());
    let harness = Harness::start(1).context("starting a local kube-apiserver")?;
    let work = tempfile_dir()?;
    let repo = work.join("repo");
    std::fs::create_dir_all(&repo)?;
    let commit = write_repo(&repo, &["cluster-1".to_string()], opts.objects, 1)?;
    let mut daemon = Daemon::start(&opts.flotilla, &repo, harness.kubeconfig(), &work.join("daemon.log"))?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = harness.client(0)?;
        wait_synced(
            std::slice::from_ref(&client),
            &commit,
            &mut daemon,
            Duration::from_secs(300),
        )
        .await?;
        let ns = namespace(0);
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let mut seen = watch_configmaps(api.clone()).await?;
        // ConfigMaps of the first namespace whose value is not bumped by generations.
        let names: Vec<String> = (0..opts.objects.min(OBJECTS_PER_NAMESPACE))
            .filter(|i| i % 20 <= 11 && !i.is_multiple_of(10))
            .map(|i| format!("cm-{i}"))
            .collect();
        if names.len() < opts.edits {
            bail!(
                "{} ConfigMaps to edit, {} edits asked: raise --objects",
                names.len(),
                opts.edits
            );
        }
        // Warm-up: the daemon's watches are open once an edit is healed.
        for n in names.iter().take(3) {
            burst(&api, &mut seen, std::slice::from_ref(n), "v0", "warmup").await?;
        }
        let mut one = Vec::new();
        for (i, n) in names.iter().take(opts.edits).enumerate() {
            let tag = format!("seq{i}");
            one.extend(
                burst(&api, &mut seen, std::slice::from_ref(n), "v0", &tag)
                    .await?
                    .since_sent,
            );
        }
        let all = burst(&api, &mut seen, &names[..opts.edits], "v0", "burst").await?;
        println!(
            "  {} objects managed, ConfigMaps edited in namespace {ns}",
            opts.objects
        );
        println!("  {}", summary("one edit at a time: edit sent -> healed", one));
        println!(
            "  {} edits at once (every edit request returned after {}):",
            opts.edits,
            ms(all.sent)
        );
        println!("  {}", summary("  burst sent -> each healed", all.since_sent));
        println!("  {}", summary("  each edit seen -> healed", all.since_seen));
        Ok::<(), anyhow::Error>(())
    })?;
    daemon.check_running()?;
    // The daemon logs a correction after the server's answer, which the watch above may beat.
    let expected = 3 + 2 * opts.edits;
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.count_log("drift healed") < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "  daemon log: {} drift corrections ({expected} edits)",
        daemon.count_log("drift healed")
    );
    Ok(())
}

pub struct MemoryOptions {
    pub flotilla: PathBuf,
    pub objects: usize,
    pub clusters: usize,
}

/// `bench-reconcile`: `clusters` clusters, `objects` templates on each; the daemon's memory.
pub fn memory(opts: &MemoryOptions) -> Result<()> {
    check_binary(&opts.flotilla)?;
    println!("bench-reconcile: {}", crate::bench::machine());
    let harness = Harness::start(opts.clusters).context("starting local kube-apiservers")?;
    let names: Vec<String> = harness.clusters().iter().map(|c| c.name().to_string()).collect();
    let work = tempfile_dir()?;
    let repo = work.join("repo");
    std::fs::create_dir_all(&repo)?;
    let first = write_repo(&repo, &names, opts.objects, 1)?;
    let rt = runtime()?;
    let clients = rt.block_on(async { harness.clients() })?;
    let started = Instant::now();
    let mut daemon = Daemon::start(&opts.flotilla, &repo, harness.kubeconfig(), &work.join("daemon.log"))?;
    let sampler = Sampler::start(daemon.pid());
    let total = opts.objects * opts.clusters;
    rt.block_on(async {
        wait_synced(&clients, &first, &mut daemon, Duration::from_secs(3600)).await?;
        println!(
            "  first sync: {} objects on {} clusters ({} in all) in {:.1} s; RSS peak {}",
            opts.objects,
            opts.clusters,
            total,
            started.elapsed().as_secs_f64(),
            mib(sampler.take())
        );
        // Idle with every watch open (their initial lists done).
        tokio::time::sleep(Duration::from_secs(10)).await;
        sampler.take();
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("  idle, watching everything:        RSS {}", mib(sampler.take()));
        // A burst of drift on every cluster.
        let ns = namespace(0);
        let targets: Vec<String> = (0..opts.objects.min(OBJECTS_PER_NAMESPACE))
            .filter(|i| i % 20 <= 11 && !i.is_multiple_of(10))
            .take(100)
            .map(|i| format!("cm-{i}"))
            .collect();
        for client in &clients {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let mut seen = watch_configmaps(api.clone()).await?;
            burst(&api, &mut seen, &targets, "v0", "memdrift").await?;
        }
        println!(
            "  after {} drift corrections:        RSS peak {}",
            targets.len() * clients.len(),
            mib(sampler.take())
        );
        Ok::<(), anyhow::Error>(())
    })?;
    let t = Instant::now();
    let second = write_repo(&repo, &names, opts.objects, 2)?;
    rt.block_on(wait_synced(&clients, &second, &mut daemon, Duration::from_secs(3600)))?;
    println!(
        "  second commit (every 10th ConfigMap changed) synced in {:.1} s; RSS peak {}",
        t.elapsed().as_secs_f64(),
        mib(sampler.take())
    );
    let (now, hwm) = rss(daemon.pid());
    println!("  RSS now {}, peak over the whole run (VmHWM) {}", mib(now), mib(hwm));
    daemon.check_running()?;
    println!(
        "  daemon log: {} sync failures, {} drift corrections",
        daemon.count_log("sync failed"),
        daemon.count_log("drift healed")
    );
    Ok(())
}

/// A scratch directory under `target/` (kept: the daemon's log is there).
pub(crate) fn tempfile_dir() -> Result<PathBuf> {
    let dir = crate::workspace_root()
        .join("target")
        .join("bench-reconcile")
        .join(format!("{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
