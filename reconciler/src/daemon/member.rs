//! One member cluster inside the daemon: an actor that applies the newest target it was given, retries
//! with backoff, and watches every managed kind (by the ApplySet `part-of` label) to find and correct
//! drift (see [`crate::drift`] for what counts as drift).
//!
//! Ordering is what keeps this simple: the actor does one thing at a time. Watch events that arrive
//! while it applies a commit wait in its queue; afterwards each is compared with what the server
//! answered to the apply, and an event older than that answer (by resourceVersion) is stale and
//! ignored, so flotilla never mistakes its own writes for drift.

use super::{unix_now, DriftAction, DriftMode, Event, ObjectFailure, Shared, SyncState};
use crate::cluster::apply::{
    apply_cluster_observed, display, key_of, reapply, ApplyOptions, Desired, Key, Observed, Resolver,
};
use crate::cluster::applyset::{self, LABEL_PART_OF};
use crate::cluster::changeset::Action;
use crate::cluster::Member;
use crate::drift;
use futures::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// What a cluster should hold: one rendered commit.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub commit: String,
    /// The daemon's render generation (a new commit, or the same commit rendered again because a
    /// cluster became unreachable or came back, or a hold released).
    pub generation: u64,
    /// This cluster counted as unreachable in this render (its placements moved elsewhere where they
    /// could): once it answers again, the daemon renders it back before it applies anything.
    pub tainted: bool,
    pub desired: Arc<Vec<Desired>>,
    pub apply: ApplyOptions,
}

/// What an actor tells the daemon (failover and make-before-break rollouts depend on it).
#[derive(Debug, Clone)]
pub(crate) enum Report {
    /// The cluster holds generation `generation`, except the objects in `failed`.
    Synced {
        cluster: String,
        generation: u64,
        failed: HashSet<String>,
    },
    /// The cluster answered (a sync that failed for other reasons, or a probe).
    Reachable { cluster: String },
    /// The cluster did not answer.
    Unreachable { cluster: String },
}

/// The daemon's handle on one actor.
pub(crate) struct Handle {
    tx: watch::Sender<Option<Arc<Target>>>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Replaces the target (an actor that is busy goes straight to the newest one when it is free).
    pub(crate) fn set(&self, t: Target) {
        let _ = self.tx.send(Some(Arc::new(t)));
    }

    /// Stops the actor and its watchers: an apply in flight gets [`STOP_GRACE`] to finish, then it is
    /// abandoned (safe: an interrupted apply leaves the ApplySet parent naming no commit, and the next
    /// run finishes the job).
    pub(crate) async fn stop(self) {
        let Handle { tx, mut task } = self;
        drop(tx);
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("an apply was still running after {STOP_GRACE:?}: abandoned");
        }
    }
}

/// Starts the actor of one member cluster.
pub(crate) fn spawn(
    member: Member,
    mode: DriftMode,
    shared: Shared,
    reports: mpsc::UnboundedSender<Report>,
    health_every: Duration,
) -> Handle {
    let (tx, rx) = watch::channel(None);
    let (seen_tx, seen_rx) = mpsc::channel(1024);
    let actor = Actor {
        resolver: Resolver::new(member.client.clone()),
        member,
        mode,
        shared,
        id: String::new(),
        target: None,
        index: HashMap::new(),
        tracked: HashMap::new(),
        drifted: HashMap::new(),
        watchers: HashMap::new(),
        pending: Vec::new(),
        seen_tx,
        retry_at: None,
        backoff: Duration::ZERO,
        reports,
        unreachable: false,
        parked: None,
        health_at: tokio::time::Instant::now() + health_every,
        health_every,
    };
    Handle {
        tx,
        task: tokio::spawn(actor.run(rx, seen_rx)),
    }
}

/// (group, kind)
type Gk = (String, String);

/// What a watcher saw, with the instant it saw it.
enum Seen {
    Apply(Gk, Box<PartialObjectMeta<DynamicObject>>, Instant),
    Delete(Gk, Box<PartialObjectMeta<DynamicObject>>, Instant),
    Init(Gk),
    InitDone(Gk),
}

/// A running watcher; aborted when dropped.
struct Watch {
    task: JoinHandle<()>,
    /// During a (re)list: the members listed so far; the tracked ones not listed were deleted.
    listing: Option<HashSet<Key>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A drift waiting for its correction.
struct Pending {
    key: Key,
    fields: Vec<String>,
    by: Vec<String>,
    at: Instant,
}

/// How long an apply in flight may take to finish when the daemon stops.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// Drift corrections in flight at once (like the apply's bound).
const HEAL_CONCURRENCY: usize = 16;
/// Watch events taken from the queue before the drift they revealed is corrected.
const HEAL_BATCH: usize = 256;

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A cluster that does not answer is retried at least this often, so failover moves placements back
/// soon after it returns (a refused connection costs nothing).
const UNREACHABLE_RETRY_MAX: Duration = Duration::from_secs(10);

struct Actor {
    member: Member,
    mode: DriftMode,
    shared: Shared,
    /// The ApplySet id (label value of members).
    id: String,
    resolver: Resolver,
    target: Option<Arc<Target>>,
    /// Desired object index by key.
    index: HashMap<Key, usize>,
    /// What the server answered to flotilla's last write of each member.
    tracked: HashMap<Key, Observed>,
    /// Report mode: drift seen and not corrected, with its fields.
    drifted: HashMap<Key, Vec<String>>,
    watchers: HashMap<Gk, Watch>,
    /// Heal mode: drift found and not yet corrected (corrected together, concurrently).
    pending: Vec<Pending>,
    seen_tx: mpsc::Sender<Seen>,
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
    reports: mpsc::UnboundedSender<Report>,
    /// The last request got no answer.
    unreachable: bool,
    /// A target not applied (see [`Actor::attempt`]); `target` stays what the cluster was last
    /// synced with, which drift detection works from.
    parked: Option<Arc<Target>>,
    /// The next health check, and how often.
    health_at: tokio::time::Instant,
    health_every: Duration,
}

/// Whether resourceVersion `a` is newer than `b` (etcd revisions; opaque ones: when they differ).
fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a != b,
    }
}

fn key_from(gk: &Gk, meta: &PartialObjectMeta<DynamicObject>) -> Key {
    (
        gk.0.clone(),
        gk.1.clone(),
        meta.metadata.namespace.clone().unwrap_or_default(),
        meta.metadata.name.clone().unwrap_or_default(),
    )
}

impl Actor {
    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Target>>>, mut seen_rx: mpsc::Receiver<Seen>) {
        loop {
            let retry = self.retry_at;
            tokio::select! {
                biased;
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let t = rx.borrow_and_update().clone();
                    if let Some(t) = t {
                        self.attempt(t).await;
                    }
                }
                () = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => {
                    if let Some(t) = self.parked.clone().or_else(|| self.target.clone()) {
                        self.attempt(t).await;
                    }
                }
                () = tokio::time::sleep_until(self.health_at), if retry.is_none() => {
                    self.health().await;
                }
                Some(seen) = seen_rx.recv() => {
                    // Take what else is queued, then correct all drift found at once: a burst of
                    // edits is healed concurrently, not one round trip after another.
                    self.observe(seen).await;
                    let mut taken = 1;
                    while taken < HEAL_BATCH {
                        let Ok(more) = seen_rx.try_recv() else { break };
                        self.observe(more).await;
                        taken += 1;
                    }
                    self.heal_pending().await;
                }
            }
        }
    }

    fn name(&self) -> &str {
        &self.member.name
    }

    fn report(&self, r: Report) {
        let _ = self.reports.send(r);
    }

    /// Between syncs: does the cluster still answer? A cluster that stops answering while nothing
    /// changes must still be noticed (failover counts from here); a failure is confirmed by a sync.
    async fn health(&mut self) {
        self.health_at = tokio::time::Instant::now() + self.health_every;
        let answered = tokio::time::timeout(
            self.health_every.max(Duration::from_secs(1)),
            self.member.client.apiserver_version(),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !answered && self.target.is_some() {
            tracing::debug!(cluster = %self.member.name, "health check: no answer; syncing to confirm");
            self.unreachable = true;
            self.report(Report::Unreachable {
                cluster: self.member.name.clone(),
            });
            self.schedule_retry();
        }
    }

    /// Applies `t`, unless it was rendered with this cluster counted unreachable: such a target is
    /// never applied (it would prune the placements that moved away only to bring them back once the
    /// daemon learns the cluster answers); the cluster is probed instead.
    async fn attempt(&mut self, t: Arc<Target>) {
        if t.tainted {
            self.parked = Some(t);
            self.probe().await;
        } else {
            self.sync(t).await;
        }
    }

    /// A cluster whose placements moved away while it was unreachable: asks whether it answers again
    /// (without applying the target that moved them, which would prune them here only to bring them
    /// back); the daemon then renders it back in.
    async fn probe(&mut self) {
        self.retry_at = None;
        let name = self.name().to_string();
        match self.member.client.apiserver_version().await {
            Ok(_) => {
                self.unreachable = false;
                self.backoff = Duration::ZERO;
                self.report(Report::Reachable { cluster: name });
            }
            Err(e) => {
                tracing::debug!(cluster = %name, "still unreachable: {e}");
                self.schedule_retry();
            }
        }
    }

    fn schedule_retry(&mut self) -> Duration {
        let max = if self.unreachable {
            UNREACHABLE_RETRY_MAX
        } else {
            BACKOFF_MAX
        };
        self.backoff = if self.backoff.is_zero() {
            BACKOFF_FIRST
        } else {
            (self.backoff * 2).min(max)
        };
        self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
        self.backoff
    }

    /// Applies `t`; records what the server answered; (re)starts the watchers it needs.
    async fn sync(&mut self, t: Arc<Target>) {
        self.retry_at = None;
        self.parked = None;
        let name = self.name().to_string();
        self.shared.cluster(&name, |s| s.state = SyncState::Syncing);
        self.id = applyset::applyset_id(&t.apply.applyset);
        let started = Instant::now();
        let (cs, observed) =
            apply_cluster_observed(&self.member, &t.desired, &t.apply, &indicatif::ProgressBar::hidden()).await;
        self.index = t.desired.iter().enumerate().map(|(i, d)| (key_of(&d.obj), i)).collect();
        self.tracked = observed
            .into_iter()
            .enumerate()
            .filter_map(|(i, o)| Some((key_of(&t.desired[i].obj), o?)))
            .collect();
        let counts: Vec<(&'static str, usize)> = [
            Action::Created,
            Action::Configured,
            Action::Unchanged,
            Action::Pruned,
            Action::Conflict,
            Action::Failed,
        ]
        .into_iter()
        .map(|a| (a.as_str(), cs.count(a)))
        .collect();
        let seconds = started.elapsed().as_secs_f64();
        let ok = cs.error.is_none();
        self.unreachable = cs.unreachable;
        if cs.unreachable {
            self.report(Report::Unreachable { cluster: name.clone() });
        } else {
            self.report(Report::Reachable { cluster: name.clone() });
        }
        self.shared
            .metric(|m| m.synced(&self.member.name, seconds, &counts, ok));
        self.drifted.clear();
        self.pending.clear(); // the apply just wrote every field again
        self.target = Some(Arc::clone(&t));
        let failures: Vec<ObjectFailure> = cs
            .entries
            .iter()
            .filter(|e| e.action == Action::Failed)
            .map(|e| ObjectFailure {
                object: e.object.clone(),
                message: e.message.clone().unwrap_or_default(),
            })
            .collect();
        if let Some(error) = cs.error.clone() {
            // The prune guard's refusal stands until a new commit; anything else is retried.
            let retry = if cs.guarded {
                Duration::ZERO
            } else {
                self.schedule_retry()
            };
            let first: Vec<ObjectFailure> = failures.iter().take(20).cloned().collect();
            self.shared.cluster(&name, |s| {
                s.state = SyncState::Failed;
                s.last_error = Some(error.clone());
                s.failures = failures;
                s.drifted.clear();
            });
            self.shared.emit(Event::SyncFailed {
                cluster: name,
                commit: t.commit.clone(),
                error,
                retry_millis: retry.as_millis() as u64,
                failures: first,
            });
        } else {
            let n_failed = failures.len();
            self.report(Report::Synced {
                cluster: name.clone(),
                generation: t.generation,
                failed: failures.iter().map(|f| f.object.clone()).collect(),
            });
            if n_failed == 0 {
                self.backoff = Duration::ZERO;
            } else {
                self.schedule_retry();
            }
            let commit = t.commit.clone();
            self.shared.cluster(&name, |s| {
                s.commit = Some(commit);
                s.drifted.clear();
                s.failures = failures;
                if n_failed == 0 {
                    s.state = SyncState::Synced;
                    s.last_error = None;
                    s.last_synced = Some(unix_now());
                } else {
                    s.state = SyncState::Degraded;
                    s.last_error = Some(format!("{n_failed} object(s) failed; retrying"));
                }
            });
            self.shared.emit(Event::Synced {
                cluster: name,
                commit: t.commit.clone(),
                created: cs.count(Action::Created),
                configured: cs.count(Action::Configured),
                unchanged: cs.count(Action::Unchanged),
                pruned: cs.count(Action::Pruned),
                conflicts: cs.count(Action::Conflict),
                failed: n_failed,
            });
        }
        self.ensure_watchers(&t).await;
    }

    /// One watcher per managed (group, kind); those of kinds that left are stopped.
    async fn ensure_watchers(&mut self, t: &Target) {
        let mut wanted: BTreeMap<Gk, String> = BTreeMap::new();
        for d in t.desired.iter() {
            let k = key_of(&d.obj);
            let api_version = d.obj["apiVersion"].as_str().unwrap_or("").to_string();
            wanted.entry((k.0, k.1)).or_insert(api_version);
        }
        self.watchers.retain(|gk, _| wanted.contains_key(gk));
        self.resolver.forget();
        let selector = format!("{LABEL_PART_OF}={}", self.id);
        for (gk, api_version) in wanted {
            if self.watchers.contains_key(&gk) {
                continue;
            }
            match self.resolver.resolve(&api_version, &gk.1).await {
                Ok((ar, _)) => {
                    let task = spawn_watcher(
                        self.member.client.clone(),
                        ar,
                        gk.clone(),
                        selector.clone(),
                        self.seen_tx.clone(),
                    );
                    self.watchers.insert(gk, Watch { task, listing: None });
                }
                // The kind is not served (its objects failed and are retried): watched after a retry.
                Err(e) => tracing::debug!(cluster = %self.member.name, "not watching: {}", e.message),
            }
        }
    }

    async fn observe(&mut self, seen: Seen) {
        match seen {
            Seen::Init(gk) => {
                if let Some(w) = self.watchers.get_mut(&gk) {
                    w.listing = Some(HashSet::new());
                }
            }
            Seen::InitDone(gk) => {
                let Some(listed) = self.watchers.get_mut(&gk).and_then(|w| w.listing.take()) else {
                    return;
                };
                let missing: Vec<Key> = self
                    .tracked
                    .keys()
                    .filter(|k| k.0 == gk.0 && k.1 == gk.1 && !listed.contains(*k))
                    .cloned()
                    .collect();
                for k in missing {
                    // A list can predate an object flotilla created meanwhile: confirm before acting.
                    if !self.exists(&k).await {
                        self.deleted(k, Instant::now()).await;
                    }
                }
            }
            Seen::Apply(gk, meta, at) => {
                let key = key_from(&gk, &meta);
                if let Some(l) = self.watchers.get_mut(&gk).and_then(|w| w.listing.as_mut()) {
                    l.insert(key.clone());
                }
                self.changed(key, &meta, at).await;
            }
            Seen::Delete(gk, meta, at) => {
                let key = key_from(&gk, &meta);
                let rv = meta.metadata.resource_version.clone().unwrap_or_default();
                let current = self.tracked.get(&key).is_some_and(|t| newer(&rv, &t.resource_version));
                if current {
                    self.deleted(key, at).await;
                }
            }
        }
    }

    async fn exists(&mut self, key: &Key) -> bool {
        let Some(d) = self.desired_of(key) else {
            return true;
        };
        let api_version = d.obj["apiVersion"].as_str().unwrap_or("").to_string();
        match self.resolver.resolve(&api_version, &key.1).await {
            Ok((ar, caps)) => {
                let api = crate::cluster::apply::api_for(&self.member.client, &ar, &caps, &key.2);
                !matches!(api.get_metadata_opt(&key.3).await, Ok(None))
            }
            Err(_) => true,
        }
    }

    fn desired_of(&self, key: &Key) -> Option<Desired> {
        let i = *self.index.get(key)?;
        self.target.as_ref()?.desired.get(i).cloned()
    }

    /// A member changed: drift if flotilla's field set lost anything since flotilla wrote it.
    async fn changed(&mut self, key: Key, meta: &PartialObjectMeta<DynamicObject>, at: Instant) {
        let Some(rec) = self.tracked.get_mut(&key) else {
            return; // not desired, or not written by this daemon (a conflict, a failure)
        };
        let rv = meta.metadata.resource_version.clone().unwrap_or_default();
        if !newer(&rv, &rec.resource_version) {
            return; // flotilla's own write, or older than it
        }
        let live = drift::flotilla_fields(&meta.metadata);
        if live == rec.fields {
            rec.resource_version = rv;
            if self.drifted.remove(&key).is_some() {
                let object = display(&key);
                self.shared.cluster(&self.member.name, |s| {
                    s.drifted.remove(&object);
                });
            }
            return;
        }
        let lost = drift::lost(rec.fields.as_deref(), live.as_deref());
        if lost.is_empty() {
            *rec = Observed {
                resource_version: rv,
                fields: live,
            };
            return;
        }
        let fields: Vec<String> = lost.iter().map(|p| drift::readable(p)).collect();
        let by = drift::holders(&meta.metadata, &lost);
        self.drift(key, rv, fields, by, at).await;
    }

    async fn deleted(&mut self, key: Key, at: Instant) {
        let rv = self
            .tracked
            .get(&key)
            .map(|t| t.resource_version.clone())
            .unwrap_or_default();
        self.drift(key, rv, vec!["(object deleted)".into()], Vec::new(), at)
            .await;
    }

    async fn drift(&mut self, key: Key, rv: String, fields: Vec<String>, by: Vec<String>, at: Instant) {
        let object = display(&key);
        let cluster = self.member.name.clone();
        match self.mode {
            DriftMode::Heal => match self.pending.iter_mut().find(|p| p.key == key) {
                Some(p) => {
                    for f in fields {
                        if !p.fields.contains(&f) {
                            p.fields.push(f);
                        }
                    }
                }
                None => self.pending.push(Pending { key, fields, by, at }),
            },
            DriftMode::Report => {
                if let Some(t) = self.tracked.get_mut(&key) {
                    t.resource_version = rv;
                }
                if self.drifted.get(&key) == Some(&fields) {
                    return; // already reported
                }
                self.drifted.insert(key, fields.clone());
                self.shared.metric(|m| m.drift(&cluster, false));
                self.shared.cluster(&cluster, |s| {
                    s.drifted.insert(object.clone(), fields.clone());
                });
                self.shared.emit(Event::Drift {
                    cluster,
                    object,
                    fields,
                    by,
                    action: DriftAction::Reported,
                });
            }
        }
    }
}

impl Actor {
    /// Corrects the pending drift: each object re-applied (server-side apply, force), concurrently.
    async fn heal_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let cluster = self.member.name.clone();
        let mut jobs = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let Some(d) = self.desired_of(&p.key) else {
                continue;
            };
            let api_version = d.obj["apiVersion"].as_str().unwrap_or("").to_string();
            match self.resolver.resolve(&api_version, &p.key.1).await {
                Ok(target) => jobs.push((p, d, target)),
                Err(e) => self.healed(&cluster, p, Err(e.message)),
            }
        }
        let (client, id) = (&self.member.client, self.id.as_str());
        let done: Vec<(Pending, Result<Observed, String>)> = stream::iter(jobs)
            .map(|(p, d, target)| async move {
                let r = reapply(client, target, id, &d, &p.key).await;
                (p, r)
            })
            .buffer_unordered(HEAL_CONCURRENCY)
            .collect()
            .await;
        for (p, r) in done {
            self.healed(&cluster, p, r);
        }
    }

    fn healed(&mut self, cluster: &str, p: Pending, r: Result<Observed, String>) {
        let action = match r {
            Ok(o) => {
                self.tracked.insert(p.key.clone(), o);
                self.shared.cluster(cluster, |s| s.drift_corrections += 1);
                self.shared.metric(|m| m.drift(cluster, true));
                DriftAction::Healed {
                    millis: p.at.elapsed().as_secs_f64() * 1000.0,
                }
            }
            Err(error) => {
                self.shared.metric(|m| m.drift(cluster, false));
                // Retried with the whole set (e.g. its namespace is being deleted).
                if self.retry_at.is_none() {
                    self.schedule_retry();
                }
                DriftAction::HealFailed { error }
            }
        };
        self.shared.emit(Event::Drift {
            cluster: cluster.to_string(),
            object: display(&p.key),
            fields: p.fields,
            by: p.by,
            action,
        });
    }
}

/// Watches the members of one kind (metadata only: `managedFields` is all drift detection needs).
fn spawn_watcher(
    client: kube::Client,
    ar: kube::core::ApiResource,
    gk: Gk,
    selector: String,
    tx: mpsc::Sender<Seen>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &ar);
        let stream = watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let seen = match ev {
                Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                    Seen::Apply(gk.clone(), Box::new(m), Instant::now())
                }
                Ok(watcher::Event::Delete(m)) => Seen::Delete(gk.clone(), Box::new(m), Instant::now()),
                Ok(watcher::Event::Init) => Seen::Init(gk.clone()),
                Ok(watcher::Event::InitDone) => Seen::InitDone(gk.clone()),
                Err(e) => {
                    tracing::debug!(kind = %gk.1, "watch: {e}");
                    continue;
                }
            };
            if tx.send(seen).await.is_err() {
                break;
            }
        }
    })
}
