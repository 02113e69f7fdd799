//! `flotilla reconcile`: the daemon. It follows a Git branch, applies each new commit to every cluster
//! (atomically per commit: a commit with errors is applied nowhere), and keeps the clusters on it by
//! watching every managed object and correcting drift.
//!
//! Shape: one loop ([`Daemon::run`]) polls the source and renders each new commit once; one actor per
//! member cluster ([`member`]) applies the newest rendered target it was given, retries with backoff
//! when that fails (without holding the other clusters back), and owns that cluster's watchers and
//! drift state. Actors are fed through a `watch` channel, so a cluster that is slow or unreachable
//! simply skips to the newest commit when it recovers. Everything the daemon does is published twice:
//! as [`Event`]s (logged, and observable by tests and later by the HTTP server) and as the [`Status`]
//! snapshot.
//!
//! Restart safety: the last applied commit of every cluster lives in its ApplySet parent, and the
//! first thing a (re)started daemon does is apply the branch head, which is a no-op where it already
//! landed and records what drift detection compares against. No local state.

mod http;
pub mod member;
pub mod metrics;
pub mod publish;
pub mod source;
pub mod webhook;
pub mod worktree;

use crate::cluster::apply::{display, key_of, ApplyOptions, Desired, Key};
use crate::cluster::applyset;
use crate::cluster::fleet;
use crate::cluster::{client_for, read_kubeconfig, Member};
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// What to do about drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    /// Re-apply flotilla's fields at once (default).
    Heal,
    /// Only report it (events, log, status); the next commit re-applies.
    Report,
}

/// The daemon's configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// A local Git repository (or a directory inside one: that subtree is the flotilla repository), or a
    /// `file://`, `git://`, `http(s)://` or `ssh://` URL.
    pub source: String,
    /// Credentials and trust for a remote source (token, CA, ssh key, known_hosts).
    pub git: source::GitAuth,
    /// The branch to follow (default: whatever HEAD points at; `main` for a URL).
    pub branch: Option<String>,
    /// Where a URL is fetched to (default `~/.cache/flotilla/sources/<hash of the URL>`).
    pub cache_dir: Option<PathBuf>,
    /// Polling interval (each wait is jittered by up to ±10%).
    pub interval: Duration,
    pub kubeconfig: Option<PathBuf>,
    pub drift: DriftMode,
    /// The ApplySet parent name.
    pub applyset: String,
    /// Prune members that left the desired set (default on for the daemon).
    pub prune: bool,
    pub allow_mass_prune: bool,
    /// Serve `/hooks/git`, `/status`, `/metrics`, `/healthz`, `/readyz` here.
    pub listen: Option<std::net::SocketAddr>,
    /// The webhook secret (file content, trimmed); without it every webhook is refused.
    pub webhook_secret: Option<PathBuf>,
    /// How long a cluster may not answer before it counts as tainted
    /// `cluster.karmada.io/unreachable:NoSchedule` and placements that can fall back leave it
    /// (`None`: never).
    pub failover_grace: Option<Duration>,
    /// Render the working tree of `source` (a local directory) on every file change instead of following
    /// a branch's commits (local development).
    pub watch: bool,
}

impl Options {
    pub fn new(source: impl Into<String>) -> Options {
        Options {
            source: source.into(),
            git: source::GitAuth::default(),
            branch: None,
            cache_dir: None,
            interval: Duration::from_secs(60),
            kubeconfig: None,
            drift: DriftMode::Heal,
            applyset: applyset::PARENT_NAME.to_string(),
            prune: true,
            allow_mass_prune: false,
            listen: None,
            webhook_secret: None,
            failover_grace: Some(Duration::from_secs(60)),
            watch: false,
        }
    }
}

/// How a drift was dealt with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum DriftAction {
    /// Corrected; `millis` from the watch event to the server's answer to the correction.
    Healed {
        millis: f64,
    },
    Reported,
    HealFailed {
        error: String,
    },
}

/// Something the daemon did or saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum Event {
    /// A new commit on the branch had error diagnostics: applied nowhere; the last good one stays.
    Refused { commit: String, diagnostics: Vec<String> },
    /// A cluster holds `commit` now (`failed` objects aside).
    Synced {
        cluster: String,
        commit: String,
        created: usize,
        configured: usize,
        unchanged: usize,
        pruned: usize,
        conflicts: usize,
        failed: usize,
    },
    /// A cluster could not be brought to `commit`; retried after `retry_millis`.
    SyncFailed {
        cluster: String,
        commit: String,
        error: String,
        retry_millis: u64,
        /// The objects that failed (the first 20).
        failures: Vec<ObjectFailure>,
    },
    /// Someone else changed fields flotilla manages (`fields`, now held by `by`), or deleted the object.
    Drift {
        cluster: String,
        object: String,
        fields: Vec<String>,
        by: Vec<String>,
        #[serde(flatten)]
        action: DriftAction,
    },
    /// The source could not be read (the last good commit stays applied).
    SourceError { error: String },
    /// A cluster did not answer for the grace period: counted as tainted
    /// `cluster.karmada.io/unreachable:NoSchedule`, the commit rendered again without it where
    /// placements can fall back.
    Tainted { cluster: String, unreachable_seconds: f64 },
    /// A tainted cluster answers again: the commit is rendered with it again.
    Untainted { cluster: String },
    /// Objects leaving `cluster` for other clusters stay on it until those hold them (make before
    /// break): `objects` held, waiting for `waiting`.
    Held {
        cluster: String,
        objects: Vec<String>,
        waiting: Vec<String>,
    },
    /// The clusters `cluster` waited for hold its moved objects: they are removed from it now.
    Released { cluster: String, objects: Vec<String> },
    /// A cluster's endpoint map config was written to its ConfigMap `flotilla-system/endpoint-map`.
    EndpointMapPublished {
        cluster: String,
        commit: String,
        version: u64,
        hash: String,
        frontends: usize,
        backends: usize,
    },
    /// A cluster's endpoint map config could not be published; retried after `retry_millis` (0: with the
    /// next commit).
    EndpointMapFailed {
        cluster: String,
        error: String,
        retry_millis: u64,
    },
}

/// A cluster's sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncState {
    #[default]
    Pending,
    Syncing,
    /// Holds the commit, every object applied.
    Synced,
    /// Holds the commit but some objects failed (listed in `failures`); retried.
    Degraded,
    /// Could not be synced (unreachable, refused by the prune guard, ...); retried.
    Failed,
}

/// One object that failed on a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectFailure {
    pub object: String,
    pub message: String,
}

/// One cluster as the daemon sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The last commit applied to it.
    pub commit: Option<String>,
    pub state: SyncState,
    /// Objects drifted and not corrected (report mode): object -> fields.
    pub drifted: BTreeMap<String, Vec<String>>,
    /// Drift corrections since start.
    pub drift_corrections: u64,
    pub last_error: Option<String>,
    pub failures: Vec<ObjectFailure>,
    /// Unix seconds of the last sync without failures.
    pub last_synced: Option<f64>,
    /// Unix seconds since when it does not answer (unset once it does).
    #[serde(default)]
    pub unreachable_since: Option<f64>,
    /// Counted as tainted `cluster.karmada.io/unreachable:NoSchedule` (failover).
    #[serde(default)]
    pub tainted: bool,
    /// Objects that left this cluster's placement, kept until the clusters they moved to hold them.
    #[serde(default)]
    pub held: Vec<String>,
}

/// A refused commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub commit: String,
    pub diagnostics: Vec<String>,
}

/// The daemon's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The branch head last read.
    pub head: Option<String>,
    /// The last commit applied (rendered without errors and handed to the clusters).
    pub desired: Option<String>,
    /// The newest refused commit, until a good one follows.
    pub refused: Option<Refusal>,
    pub clusters: BTreeMap<String, ClusterStatus>,
    pub source_error: Option<String>,
    /// The endpoint map config published in each cluster (only where routing publishes one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_maps: BTreeMap<String, publish::EndpointMapStatus>,
}

/// What the daemon's parts share: the status and the event channel.
#[derive(Clone)]
pub struct Shared {
    status: Arc<Mutex<Status>>,
    metrics: Arc<Mutex<metrics::Metrics>>,
    events: broadcast::Sender<Event>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            status: Arc::new(Mutex::new(Status::default())),
            metrics: Arc::new(Mutex::new(metrics::Metrics::default())),
            events: broadcast::channel(4096).0,
        }
    }

    pub(crate) fn snapshot(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn metric(&self, f: impl FnOnce(&mut metrics::Metrics)) {
        let mut m = self.metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut m);
    }

    pub(crate) fn metrics_text(&self) -> String {
        let status = self.snapshot();
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .render(&status)
    }

    /// Logs the event and hands it to every subscriber.
    pub(crate) fn emit(&self, e: Event) {
        log(&e);
        let _ = self.events.send(e);
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s);
    }

    pub(crate) fn cluster(&self, name: &str, f: impl FnOnce(&mut ClusterStatus)) {
        self.update(|s| f(s.clusters.entry(name.to_string()).or_default()));
    }
}

fn log(e: &Event) {
    match e {
        Event::Refused { commit, diagnostics } => {
            tracing::error!(commit = %commit, errors = diagnostics.len(), "commit refused: it has errors; the last good commit stays applied");
            for d in diagnostics {
                tracing::error!(commit = %commit, "{d}");
            }
        }
        Event::Synced {
            cluster,
            commit,
            created,
            configured,
            unchanged,
            pruned,
            conflicts,
            failed,
        } => {
            tracing::info!(cluster = %cluster, commit = %commit, created, configured, unchanged, pruned, conflicts, failed, "synced");
        }
        Event::SyncFailed {
            cluster,
            commit,
            error,
            retry_millis,
            failures,
        } => {
            tracing::warn!(cluster = %cluster, commit = %commit, retry_millis, "sync failed: {error}");
            for f in failures {
                tracing::warn!(cluster = %cluster, object = %f.object, "failed: {}", f.message);
            }
        }
        Event::Drift {
            cluster,
            object,
            fields,
            by,
            action,
        } => {
            let fields = fields.join(",");
            let by = by.join(",");
            match action {
                DriftAction::Healed { millis } => {
                    tracing::info!(cluster = %cluster, object = %object, fields = %fields, by = %by, millis, "drift healed")
                }
                DriftAction::Reported => {
                    tracing::warn!(cluster = %cluster, object = %object, fields = %fields, by = %by, "drift (report mode: not corrected)")
                }
                DriftAction::HealFailed { error } => {
                    tracing::warn!(cluster = %cluster, object = %object, fields = %fields, by = %by, "drift not corrected: {error}")
                }
            }
        }
        Event::SourceError { error } => tracing::warn!("source: {error}"),
        Event::Tainted {
            cluster,
            unreachable_seconds,
        } => tracing::warn!(
            cluster = %cluster,
            unreachable_seconds,
            "failover: unreachable for the grace period; tainted cluster.karmada.io/unreachable:NoSchedule, placements that can fall back move to healthy clusters"
        ),
        Event::Untainted { cluster } => {
            tracing::info!(cluster = %cluster, "failover: answers again; placements move back")
        }
        Event::Held {
            cluster,
            objects,
            waiting,
        } => tracing::info!(
            cluster = %cluster,
            objects = objects.len(),
            waiting = %waiting.join(","),
            "moving objects stay here until their new clusters hold them"
        ),
        Event::Released { cluster, objects } => {
            tracing::info!(cluster = %cluster, objects = objects.len(), "moved objects released (removed here)")
        }
        Event::EndpointMapPublished { .. } | Event::EndpointMapFailed { .. } => publish::log(e),
    }
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `d` scaled by a factor in [0.9, 1.1), from the clock's low bits (spreads many daemons polling one
/// Git server).
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let f = 0.9 + f64::from(nanos % 1000) / 5000.0;
    d.mul_f64(f)
}

/// The daemon. Cheap to clone handles onto its status and events.
pub struct Daemon {
    shared: Shared,
    /// The address the HTTP server listens on, once it does.
    bound: Mutex<Option<std::net::SocketAddr>>,
    /// The endpoint map publisher's input.
    routing: publish::Sender,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new()
    }
}

impl Daemon {
    pub fn new() -> Daemon {
        Daemon {
            shared: Shared::new(),
            bound: Mutex::new(None),
            routing: tokio::sync::watch::channel(None).0,
        }
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// A snapshot of the status.
    pub fn status(&self) -> Status {
        self.shared.snapshot()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics(&self) -> String {
        self.shared.metrics_text()
    }

    /// Where the HTTP server listens (with `--listen ...:0`, the port the system chose).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        *self.bound.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs until `shutdown` completes. Errors only for what no retry can fix (an unreadable kubeconfig).
    pub async fn run(&self, opts: Options, shutdown: impl Future<Output = ()>) -> Result<()> {
        let kubeconfig = read_kubeconfig(opts.kubeconfig.as_deref())?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let server = match opts.listen {
            Some(addr) => {
                let secret = match &opts.webhook_secret {
                    Some(p) => webhook::read_secret(p)?,
                    None => Vec::new(),
                };
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                let local = listener.local_addr().context("the listening address")?;
                *self.bound.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(local);
                tracing::info!(%local, "serving /hooks/git, /status, /metrics, /healthz, /readyz");
                let app = http::router(http::Http {
                    shared: self.shared.clone(),
                    secret: Arc::new(secret),
                    wake: Arc::clone(&wake),
                });
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!("HTTP server: {e}");
                    }
                }))
            }
            None => None,
        };
        let (src, _watcher) = if opts.watch {
            if opts.source.contains("://") {
                anyhow::bail!(
                    "--watch needs a local directory as --source, not {}",
                    source::redact(&opts.source)
                );
            }
            let path = PathBuf::from(&opts.source);
            let watcher = worktree::watch(&path, Arc::clone(&wake))?;
            (source::Source::WorkTree(worktree::WorkTree::new(path)), Some(watcher))
        } else {
            let src = source::Source::parse(&opts.source, opts.branch.clone(), opts.cache_dir.clone(), &opts.git)?;
            (src, None)
        };
        let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let mut fleet = Fleet::new(reports_tx);
        let publisher = publish::spawn(&self.routing, kubeconfig.clone(), src.clone(), self.shared.clone());
        let mut backoff = Duration::ZERO;
        let mut last: Option<String> = None;
        let mut poll_at = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            let now = tokio::time::Instant::now();
            if now >= poll_at {
                let head = {
                    let src = src.clone();
                    tokio::task::spawn_blocking(move || src.head()).await
                };
                let failed = !matches!(head, Ok(Ok(_)));
                match head {
                    Ok(Ok(commit)) => {
                        self.shared.update(|s| {
                            s.head = Some(commit.clone());
                            s.source_error = None;
                        });
                        if last.as_deref() != Some(commit.as_str()) {
                            last = Some(commit.clone());
                            self.commit(&opts, &kubeconfig, &src, &commit, &mut fleet).await;
                        }
                    }
                    Ok(Err(e)) => {
                        let error = format!("{e:#}");
                        self.shared.update(|s| s.source_error = Some(error.clone()));
                        self.shared.emit(Event::SourceError { error });
                    }
                    Err(e) => self.shared.emit(Event::SourceError { error: e.to_string() }),
                }
                // A source that fails is retried sooner, with backoff (1 s doubling, at most the interval).
                let wait = if failed {
                    backoff = (backoff * 2).max(Duration::from_secs(1)).min(opts.interval);
                    backoff
                } else {
                    backoff = Duration::ZERO;
                    jitter(opts.interval)
                };
                poll_at = tokio::time::Instant::now() + wait;
            }
            let taint_at = fleet.next_taint(opts.failover_grace);
            tokio::select! {
                () = tokio::time::sleep_until(poll_at) => {}
                () = wake.notified() => {
                    if opts.watch {
                        // Let a burst of file events settle before the tree is read.
                        tokio::time::sleep(worktree::DEBOUNCE).await;
                    }
                    poll_at = tokio::time::Instant::now();
                }
                Some(r) = reports.recv() => {
                    if self.report(r, &mut fleet) {
                        self.rerender(&opts, &kubeconfig, &src, &mut fleet).await;
                    }
                }
                () = tokio::time::sleep_until(taint_at.unwrap_or(poll_at)), if taint_at.is_some() => {
                    if self.taint_due(opts.failover_grace, &mut fleet) {
                        self.rerender(&opts, &kubeconfig, &src, &mut fleet).await;
                    }
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!(
            "shutting down: in-flight applies get {:?} to finish",
            member::STOP_GRACE
        );
        let publishing = tokio::spawn(publisher.stop()); // alongside the members' stops
        let stops = std::mem::take(&mut fleet.members)
            .into_values()
            .map(member::Handle::stop);
        futures::future::join_all(stops).await;
        let _ = publishing.await;
        if let Some(server) = server {
            server.abort();
        }
        Ok(())
    }

    /// Handles one actor report; true when the taints changed (the commit must be rendered again).
    fn report(&self, r: member::Report, fleet: &mut Fleet) -> bool {
        match r {
            member::Report::Unreachable { cluster } => {
                if !fleet.unreachable_since.contains_key(&cluster) {
                    fleet
                        .unreachable_since
                        .insert(cluster.clone(), tokio::time::Instant::now());
                    let since = unix_now();
                    self.shared.cluster(&cluster, |s| s.unreachable_since = Some(since));
                }
                false
            }
            member::Report::Reachable { cluster } => self.reachable(&cluster, fleet),
            member::Report::Synced {
                cluster,
                generation,
                failed,
            } => {
                let changed = self.reachable(&cluster, fleet);
                if generation == fleet.generation {
                    self.release(&cluster, &failed, fleet);
                }
                changed
            }
        }
    }

    fn reachable(&self, cluster: &str, fleet: &mut Fleet) -> bool {
        if fleet.unreachable_since.remove(cluster).is_some() {
            self.shared.cluster(cluster, |s| s.unreachable_since = None);
        }
        if fleet.tainted.remove(cluster) {
            self.shared.cluster(cluster, |s| s.tainted = false);
            self.shared.emit(Event::Untainted {
                cluster: cluster.to_string(),
            });
            return true;
        }
        false
    }

    /// Taints the clusters unreachable for the grace period; true when any was.
    fn taint_due(&self, grace: Option<Duration>, fleet: &mut Fleet) -> bool {
        let Some(grace) = grace else { return false };
        let now = tokio::time::Instant::now();
        let due: Vec<(String, Duration)> = fleet
            .unreachable_since
            .iter()
            .filter(|(c, since)| !fleet.tainted.contains(*c) && now >= **since + grace)
            .map(|(c, since)| (c.clone(), now - *since))
            .collect();
        for (cluster, for_) in &due {
            fleet.tainted.insert(cluster.clone());
            self.shared.cluster(cluster, |s| s.tainted = true);
            self.shared.metric(|m| m.failover(cluster));
            self.shared.emit(Event::Tainted {
                cluster: cluster.clone(),
                unreachable_seconds: for_.as_secs_f64(),
            });
        }
        !due.is_empty()
    }

    /// `cluster` holds the current generation except `failed`: the holds waiting only for it end.
    fn release(&self, cluster: &str, failed: &std::collections::HashSet<String>, fleet: &mut Fleet) {
        let mut done = Vec::new();
        for (x, hold) in &mut fleet.holds {
            let ok = hold
                .waiting
                .get(cluster)
                .is_some_and(|objs| objs.iter().all(|o| !failed.contains(o)));
            if ok {
                hold.waiting.remove(cluster);
            }
            if hold.waiting.is_empty() {
                done.push(x.clone());
            }
        }
        for x in done {
            let Some(hold) = fleet.holds.remove(&x) else { continue };
            fleet.handed.insert(x.clone(), Arc::clone(&hold.target.desired));
            if let Some(m) = fleet.members.get(&x) {
                m.set(hold.target);
            }
            self.shared.cluster(&x, |s| s.held.clear());
            self.shared.emit(Event::Released {
                cluster: x,
                objects: hold.objects,
            });
        }
    }

    /// Renders the current commit again (the set of tainted clusters changed).
    async fn rerender(
        &self,
        opts: &Options,
        kubeconfig: &kube::config::Kubeconfig,
        src: &source::Source,
        fleet: &mut Fleet,
    ) {
        if let Some(commit) = fleet.commit.clone() {
            self.commit(opts, kubeconfig, src, &commit, fleet).await;
        }
    }

    /// Renders `commit` (with the tainted clusters counted unreachable) and hands it to every member
    /// (creating actors for new inventory clusters). Objects that move from one cluster to others
    /// stay where they were until the clusters they move to hold them ([`Hold`]).
    async fn commit(
        &self,
        opts: &Options,
        kubeconfig: &kube::config::Kubeconfig,
        src: &source::Source,
        commit: &str,
        fleet: &mut Fleet,
    ) {
        let tainted: Vec<String> = fleet.tainted.iter().cloned().collect();
        let planned = {
            let (src, commit, tainted) = (src.clone(), commit.to_string(), tainted.clone());
            tokio::task::spawn_blocking(move || {
                let snapshot = src.snapshot(&commit)?;
                fleet::plan_with(&snapshot, &[], &tainted)
            })
            .await
        };
        let plan = match planned {
            Ok(Ok(Ok(plan))) => plan,
            Ok(Ok(Err(diagnostics))) => {
                let diagnostics: Vec<String> = diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(ToString::to_string)
                    .collect();
                self.shared.metric(metrics::Metrics::refused);
                self.shared.update(|s| {
                    s.refused = Some(Refusal {
                        commit: commit.to_string(),
                        diagnostics: diagnostics.clone(),
                    })
                });
                self.shared.emit(Event::Refused {
                    commit: commit.to_string(),
                    diagnostics,
                });
                return;
            }
            Ok(Err(e)) => {
                self.shared.emit(Event::SourceError {
                    error: format!("reading commit {commit}: {e:#}"),
                });
                return;
            }
            Err(e) => {
                self.shared.emit(Event::SourceError { error: e.to_string() });
                return;
            }
        };
        fleet.commit = Some(commit.to_string());
        fleet.generation += 1;
        self.shared.update(|s| {
            s.desired = Some(commit.to_string());
            s.refused = None;
        });
        publish::offer(&self.routing, commit, &plan);
        // Clusters that left the inventory: stop watching them; their objects stay (flotilla never
        // deletes from a cluster it no longer manages).
        let names: Vec<String> = plan.clusters.iter().map(|c| c.name.clone()).collect();
        for gone in fleet
            .members
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(m) = fleet.members.remove(&gone) {
                m.stop().await;
            }
            fleet.forget(&gone);
            self.shared.update(|s| {
                s.clusters.remove(&gone);
            });
        }
        // Make before break: which cluster newly gets which object.
        let new_sets: BTreeMap<&str, HashSet<Key>> = plan
            .clusters
            .iter()
            .map(|c| (c.name.as_str(), c.desired.iter().map(|d| key_of(&d.obj)).collect()))
            .collect();
        fleet.holds.clear();
        for c in &plan.clusters {
            let apply = ApplyOptions {
                prune: opts.prune,
                prune_guard: plan.prune_guard,
                allow_mass_prune: opts.allow_mass_prune,
                commit: Some(commit.to_string()),
                applyset: opts.applyset.clone(),
                ..ApplyOptions::default()
            };
            let target = member::Target {
                commit: commit.to_string(),
                generation: fleet.generation,
                tainted: fleet.tainted.contains(&c.name),
                desired: Arc::new(c.desired.clone()),
                apply,
            };
            let handed = match held(&c.name, &target, fleet.handed.get(&c.name), &new_sets) {
                Some((first, hold)) => {
                    let objects = hold.objects.clone();
                    let waiting: Vec<String> = hold.waiting.keys().cloned().collect();
                    self.shared.cluster(&c.name, |s| s.held = objects.clone());
                    self.shared.emit(Event::Held {
                        cluster: c.name.clone(),
                        objects,
                        waiting,
                    });
                    fleet.holds.insert(c.name.clone(), hold);
                    first
                }
                None => {
                    self.shared.cluster(&c.name, |s| s.held.clear());
                    target
                }
            };
            fleet.handed.insert(c.name.clone(), Arc::clone(&handed.desired));
            if !fleet.members.contains_key(&c.name) {
                match client_for(kubeconfig, &c.context).await {
                    Ok(client) => {
                        let m = Member {
                            name: c.name.clone(),
                            context: c.context.clone(),
                            client,
                        };
                        // Health checks often enough that failover starts about one grace period
                        // after a cluster stops answering, even when nothing else happens.
                        let health = opts.failover_grace.map_or(Duration::from_secs(10), |g| {
                            (g / 3).clamp(Duration::from_millis(500), Duration::from_secs(10))
                        });
                        let handle = member::spawn(m, opts.drift, self.shared.clone(), fleet.reports.clone(), health);
                        fleet.members.insert(c.name.clone(), handle);
                    }
                    Err(e) => {
                        let error = format!("{e:#}");
                        self.shared.cluster(&c.name, |s| {
                            s.state = SyncState::Failed;
                            s.last_error = Some(error.clone());
                        });
                        self.shared.emit(Event::SyncFailed {
                            cluster: c.name.clone(),
                            commit: commit.to_string(),
                            error,
                            retry_millis: 0,
                            failures: Vec::new(),
                        });
                        continue;
                    }
                }
            }
            if let Some(m) = fleet.members.get(&c.name) {
                m.set(handed);
            }
        }
    }
}

/// What the daemon keeps across commits.
struct Fleet {
    members: BTreeMap<String, member::Handle>,
    reports: tokio::sync::mpsc::UnboundedSender<member::Report>,
    /// The commit last rendered without errors, and the render generation (every render, also of the
    /// same commit, gets a new one).
    commit: Option<String>,
    generation: u64,
    /// What each cluster was last handed: what it holds, or will once it answers.
    handed: BTreeMap<String, Arc<Vec<Desired>>>,
    /// Per cluster: objects kept until the clusters they move to hold them.
    holds: BTreeMap<String, Hold>,
    unreachable_since: BTreeMap<String, tokio::time::Instant>,
    tainted: BTreeSet<String>,
}

impl Fleet {
    fn new(reports: tokio::sync::mpsc::UnboundedSender<member::Report>) -> Fleet {
        Fleet {
            members: BTreeMap::new(),
            reports,
            commit: None,
            generation: 0,
            handed: BTreeMap::new(),
            holds: BTreeMap::new(),
            unreachable_since: BTreeMap::new(),
            tainted: BTreeSet::new(),
        }
    }

    /// When the next unreachable cluster's grace period ends.
    fn next_taint(&self, grace: Option<Duration>) -> Option<tokio::time::Instant> {
        let grace = grace?;
        self.unreachable_since
            .iter()
            .filter(|(c, _)| !self.tainted.contains(*c))
            .map(|(_, since)| *since + grace)
            .min()
    }

    fn forget(&mut self, cluster: &str) {
        self.handed.remove(cluster);
        self.holds.remove(cluster);
        self.unreachable_since.remove(cluster);
        self.tainted.remove(cluster);
    }
}

/// A cluster's objects that move to other clusters, kept on it until those hold them.
struct Hold {
    /// Cluster -> the moved objects it must hold (display names, as in change sets).
    waiting: BTreeMap<String, BTreeSet<String>>,
    /// The held objects.
    objects: Vec<String>,
    /// The cluster's real target, handed once nothing is waited for.
    target: member::Target,
}

/// Make before break: the objects `cluster` was last handed that leave it and that another cluster
/// newly gets are kept in its set (as they were) until those clusters hold them. Returns the target to
/// hand now and the hold, or `None` when nothing moves away from `cluster`.
fn held(
    cluster: &str,
    target: &member::Target,
    before: Option<&Arc<Vec<Desired>>>,
    new_sets: &BTreeMap<&str, HashSet<Key>>,
) -> Option<(member::Target, Hold)> {
    let before = before?;
    let mine = new_sets.get(cluster)?;
    let mut kept: Vec<Desired> = Vec::new();
    let mut waiting: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut objects = Vec::new();
    for d in before.iter() {
        let k = key_of(&d.obj);
        if mine.contains(&k) {
            continue;
        }
        let to: Vec<&str> = new_sets
            .iter()
            .filter(|(c, set)| **c != cluster && set.contains(&k))
            .map(|(c, _)| *c)
            .collect();
        if to.is_empty() {
            continue; // gone from Git (or from every cluster): pruned as usual
        }
        let name = display(&k);
        for c in to {
            waiting.entry(c.to_string()).or_default().insert(name.clone());
        }
        objects.push(name);
        kept.push(d.clone());
    }
    if kept.is_empty() {
        return None;
    }
    let mut first = target.clone();
    let mut desired: Vec<Desired> = target.desired.iter().cloned().chain(kept).collect();
    desired.sort_by_cached_key(|d| {
        let k = key_of(&d.obj);
        (render::pipeline::apply_rank(&k.0, &k.1), k)
    });
    first.desired = Arc::new(desired);
    Some((
        first,
        Hold {
            waiting,
            objects,
            target: target.clone(),
        },
    ))
}

/// The failover grace period: a duration, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(pub Option<Duration>);

/// Parses a [`Grace`]: `off`, or a duration as [`parse_duration`] reads it.
pub fn parse_grace(s: &str) -> Result<Grace, String> {
    match s.trim() {
        "off" | "never" => Ok(Grace(None)),
        d => parse_duration(d).map(|d| Grace(Some(d))),
    }
}

/// Parses `60s`, `250ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 60s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}`: a duration must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_is_a_duration_or_off() {
        assert_eq!(parse_grace("off"), Ok(Grace(None)));
        assert_eq!(parse_grace("90s"), Ok(Grace(Some(Duration::from_secs(90)))));
        assert!(parse_grace("soon").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(9) && j < Duration::from_secs(11), "{j:?}");
        }
    }
}
