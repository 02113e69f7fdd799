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

use crate::cluster::apply::ApplyOptions;
use crate::cluster::applyset;
use crate::cluster::fleet;
use crate::cluster::{client_for, read_kubeconfig, Member};
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// `file://` / `git://` URL.
    pub source: String,
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
}

impl Options {
    pub fn new(source: impl Into<String>) -> Options {
        Options {
            source: source.into(),
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
        let src = source::Source::parse(&opts.source, opts.branch.clone(), opts.cache_dir.clone())?;
        let publisher = publish::spawn(&self.routing, kubeconfig.clone(), src.clone(), self.shared.clone());
        let mut backoff = Duration::ZERO;
        let mut members: BTreeMap<String, member::Handle> = BTreeMap::new();
        let mut last: Option<String> = None;
        tokio::pin!(shutdown);
        loop {
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
                        self.commit(&opts, &kubeconfig, &src, &commit, &mut members).await;
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
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
                () = &mut shutdown => break,
            }
        }
        for (_, m) in std::mem::take(&mut members) {
            m.stop().await;
        }
        publisher.stop().await;
        if let Some(server) = server {
            server.abort();
        }
        Ok(())
    }

    /// Renders `commit` and hands it to every member (creating actors for new inventory clusters).
    async fn commit(
        &self,
        opts: &Options,
        kubeconfig: &kube::config::Kubeconfig,
        src: &source::Source,
        commit: &str,
        members: &mut BTreeMap<String, member::Handle>,
    ) {
        let planned = {
            let (src, commit) = (src.clone(), commit.to_string());
            tokio::task::spawn_blocking(move || {
                let snapshot = src.snapshot(&commit)?;
                fleet::plan(&snapshot, &[])
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
        self.shared.update(|s| {
            s.desired = Some(commit.to_string());
            s.refused = None;
        });
        publish::offer(&self.routing, commit, &plan);
        // Clusters that left the inventory: stop watching them; their objects stay (flotilla never
        // deletes from a cluster it no longer manages).
        let names: Vec<String> = plan.clusters.iter().map(|c| c.name.clone()).collect();
        for gone in members
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(m) = members.remove(&gone) {
                m.stop().await;
            }
            self.shared.update(|s| {
                s.clusters.remove(&gone);
            });
        }
        for c in plan.clusters {
            let target = member::Target {
                commit: commit.to_string(),
                desired: Arc::new(c.desired),
                apply: ApplyOptions {
                    prune: opts.prune,
                    prune_guard: plan.prune_guard,
                    allow_mass_prune: opts.allow_mass_prune,
                    commit: Some(commit.to_string()),
                    applyset: opts.applyset.clone(),
                    ..ApplyOptions::default()
                },
            };
            if !members.contains_key(&c.name) {
                match client_for(kubeconfig, &c.context).await {
                    Ok(client) => {
                        let m = Member {
                            name: c.name.clone(),
                            context: c.context.clone(),
                            client,
                        };
                        members.insert(c.name.clone(), member::spawn(m, opts.drift, self.shared.clone()));
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
            if let Some(m) = members.get(&c.name) {
                m.set(target);
            }
        }
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
