//! Publishing the endpoint map configs: the ConfigMap `flotilla-system/endpoint-map` in every member cluster.
//!
//! Shape: one task (the *publisher*) gets the newest commit rendered without errors through a `watch`
//! channel ([`offer`]) and keeps, per member cluster, a [`ClusterWatch`] of the live inputs (Services and
//! EndpointSlices of the services that cluster exports). After a new commit or a live change, and a quiet
//! period of [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`] after the first change, so a stream of changes cannot
//! starve it), it builds every cluster's document (`ebpf::build`, with whatever live state is known) and hands
//! it to that cluster's *sink*, one task per cluster, again through a `watch` channel: a slow or unreachable
//! cluster only ever gets the newest document, and never holds the others back.
//!
//! Documents are not built while a watch started less than [`LIST_GRACE`] ago has not listed yet: a
//! restarted daemon would otherwise publish documents without the live state for a moment.
//!
//! A sink publishes when the document's content differs from the published one (`version`, `hash` and
//! `source` aside: a commit that changes nothing for routing publishes nothing). The version is
//! `ebpf::next_version(commit time, published version)`, with the published version read from the
//! ConfigMap (the document in it, or the version annotation when the document does not parse), so a restarted
//! daemon never goes backwards; a live change has the same commit time and so gets the published version + 1.
//! The write is a server-side apply (field manager `flotilla`, forced) of the ConfigMap; when there is no
//! ConfigMap yet the namespace is applied first, as for ApplySet parents. Failures are retried with backoff
//! (1 s doubling to 60 s); every [`RESYNC`] the sink reads the ConfigMap again and repairs it if someone
//! changed it.
//!
//! Only repositories that export a Service publish: without exported services a cluster with no ConfigMap is
//! left alone (nothing is written to clusters that do not use routing), while one that has a document from
//! before gets a document without frontends, so that agents stop routing the VIPs of services that are gone.

mod sink;

use super::member::STOP_GRACE;
use super::source::Source;
use super::{unix_now, Event, Shared};
use crate::cluster::applyset::PARENT_NAMESPACE;
use crate::cluster::{client_for, fleet};
use crate::endpoints::live::{self, Wanted};
use crate::endpoints::watch::ClusterWatch;
use ebpf::plan::Plan;
use ebpf::{BuildOptions, Live};
use kube::config::Kubeconfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The namespace of the published ConfigMap.
pub const CONFIGMAP_NAMESPACE: &str = PARENT_NAMESPACE;
/// The published ConfigMap's name (`flotilla-agent --configmap` defaults to it).
pub const CONFIGMAP_NAME: &str = "endpoint-map";
/// The key holding the document (canonical JSON); `flotilla-agent --configmap-key` defaults to it.
pub const CONFIGMAP_KEY: &str = "endpoint-map.json";
/// Annotation with the published version (read back when the document in the ConfigMap does not parse).
pub const VERSION_ANNOTATION: &str = "flotilla.dev/endpoint-map-version";
/// Annotation with the published document's hash.
pub const HASH_ANNOTATION: &str = "flotilla.dev/endpoint-map-hash";

/// Quiet time after a change before the documents are built (a burst of slice updates publishes once).
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// The longest a change waits for quiet.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// How long the documents wait for a new watch's first list before its cluster counts as unknown.
pub const LIST_GRACE: Duration = Duration::from_secs(10);
/// How often a sink reads its ConfigMap again to repair changes made by others.
pub const RESYNC: Duration = Duration::from_secs(300);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The publisher's input: the newest commit rendered without errors.
#[derive(Debug)]
pub(crate) struct Target {
    commit: String,
    plan: Arc<Plan>,
    /// Cluster → kubeconfig context, for every inventory cluster.
    contexts: BTreeMap<String, String>,
}

/// The daemon's end of the publisher's input.
pub(crate) type Sender = watch::Sender<Option<Arc<Target>>>;

/// Hands a rendered commit to the publisher (the newest wins).
pub(crate) fn offer(tx: &Sender, commit: &str, plan: &fleet::Plan) {
    tx.send_replace(Some(Arc::new(Target {
        commit: commit.to_string(),
        plan: Arc::clone(&plan.routing),
        contexts: plan
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.context.clone()))
            .collect(),
    })));
}

/// One cluster's endpoint map, as the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMapStatus {
    /// The version of the document in the ConfigMap.
    pub version: Option<u64>,
    pub hash: Option<String>,
    /// The commit of the document this daemon last published or found in place.
    pub commit: Option<String>,
    pub frontends: usize,
    pub backends: usize,
    /// Unix seconds of this daemon's last write.
    pub published_at: Option<f64>,
    pub last_error: Option<String>,
}

/// Logs one of the publisher's events.
pub(crate) fn log(e: &Event) {
    match e {
        Event::EndpointMapPublished {
            cluster,
            commit,
            version,
            hash,
            frontends,
            backends,
        } => {
            tracing::info!(cluster = %cluster, commit = %commit, version, hash = %hash, frontends, backends, "endpoint map published")
        }
        Event::EndpointMapFailed {
            cluster,
            error,
            retry_millis,
        } => tracing::warn!(cluster = %cluster, retry_millis, "publishing the endpoint map failed: {error}"),
        _ => {}
    }
}

/// The running publisher.
pub(crate) struct Handle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Stops the publisher, its watches and sinks (writes in flight get [`STOP_GRACE`] to finish, like
    /// the clusters' applies).
    pub(crate) async fn stop(self) {
        let Handle { stop, mut task } = self;
        let _ = stop.send(());
        // The publisher bounds its own stop by STOP_GRACE; this is only a backstop.
        if tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts the publisher on `tx`'s channel (cleared first: a previous run's commit is not published).
pub(crate) fn spawn(tx: &Sender, kubeconfig: Kubeconfig, source: Source, shared: Shared) -> Handle {
    tx.send_replace(None);
    let rx = tx.subscribe();
    let (stop, stopped) = oneshot::channel();
    let (changed_tx, changed_rx) = mpsc::channel(64);
    let publisher = Publisher {
        kubeconfig,
        source,
        shared,
        target: None,
        commit_time: 0,
        revision: None,
        wanted: Wanted::new(),
        members: BTreeMap::new(),
        changed_tx,
    };
    Handle {
        stop,
        task: tokio::spawn(publisher.run(rx, changed_rx, stopped)),
    }
}

/// When to build the documents after changes: [`DEBOUNCE`] after the last one, at most [`DEBOUNCE_MAX`]
/// after the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Debounce {
    /// (first change, last change) since the documents were last built.
    changes: Option<(Instant, Instant)>,
}

impl Debounce {
    fn change(&mut self, now: Instant) {
        self.changes = Some(self.changes.map_or((now, now), |(first, _)| (first, now)));
    }

    fn due(&self) -> Option<Instant> {
        self.changes
            .map(|(first, last)| (last + DEBOUNCE).min(first + DEBOUNCE_MAX))
    }
}

/// One member cluster: its live inputs and its sink.
struct Member {
    context: String,
    watch: ClusterWatch,
    sink: sink::Input,
    task: JoinHandle<()>,
}

struct Publisher {
    kubeconfig: Kubeconfig,
    source: Source,
    shared: Shared,
    target: Option<Arc<Target>>,
    commit_time: u64,
    /// `source.gitRevision` of the documents: the commit (none for a working tree).
    revision: Option<String>,
    wanted: Wanted,
    members: BTreeMap<String, Member>,
    changed_tx: mpsc::Sender<String>,
}

impl Publisher {
    async fn run(
        mut self,
        mut rx: watch::Receiver<Option<Arc<Target>>>,
        mut changed: mpsc::Receiver<String>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        let mut dirty = Debounce::default();
        // While a watch has not listed yet: when to build anyway (its cluster then counts as unknown).
        let mut held: Option<Instant> = None;
        loop {
            let due = dirty.due().or(held);
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                c = rx.changed() => {
                    if c.is_err() {
                        break;
                    }
                    let target = rx.borrow_and_update().clone();
                    if let Some(t) = target {
                        self.retarget(t).await;
                        dirty.change(Instant::now());
                    }
                }
                Some(cluster) = changed.recv() => {
                    tracing::debug!(cluster = %cluster, "live inputs of the endpoint maps changed");
                    dirty.change(Instant::now());
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    dirty = Debounce::default();
                    // Building before the watches have listed would publish documents without the live
                    // state they had (a restart would flap every agent's routing): wait for the lists (each
                    // one notifies), or LIST_GRACE for a cluster that does not answer.
                    held = self.listing_until(Instant::now());
                    if held.is_none() {
                        self.dispatch();
                    }
                }
            }
        }
        let sinks: Vec<JoinHandle<()>> = std::mem::take(&mut self.members)
            .into_values()
            .map(|m| m.task) // dropping the member closes its sink's channel
            .collect();
        let deadline = Instant::now() + STOP_GRACE;
        for mut task in sinks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("an endpoint map write was still running after {STOP_GRACE:?}: abandoned");
                task.abort();
            }
        }
    }

    /// Takes a new commit: its commit time, the members (clients, watches, sinks) of its inventory.
    async fn retarget(&mut self, t: Arc<Target>) {
        let (source, commit) = (self.source.clone(), t.commit.clone());
        // A working tree (`--watch`) has no commit: its documents name no revision and start from now.
        (self.commit_time, self.revision) = match tokio::task::spawn_blocking(move || source.commit_time(&commit)).await
        {
            Ok(Ok(Some(time))) => (time, Some(t.commit.clone())),
            Ok(Ok(None)) => (unix_now() as u64, None),
            Ok(Err(e)) => {
                tracing::warn!(commit = %t.commit, "reading the commit time failed ({e:#}); endpoint map versions start from the current time");
                (unix_now() as u64, Some(t.commit.clone()))
            }
            Err(e) => {
                tracing::warn!(commit = %t.commit, "reading the commit time failed ({e}); endpoint map versions start from the current time");
                (unix_now() as u64, Some(t.commit.clone()))
            }
        };
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(name, m)| t.contexts.get(*name) != Some(&m.context))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.members.remove(&name);
            if !t.contexts.contains_key(&name) {
                self.shared.update(|s| {
                    s.endpoint_maps.remove(&name);
                });
            }
        }
        for (name, context) in &t.contexts {
            if self.members.contains_key(name) {
                continue;
            }
            match client_for(&self.kubeconfig, context).await {
                Ok(client) => {
                    let (sink, task) = sink::spawn(name, client.clone(), self.shared.clone());
                    let watch = ClusterWatch::new(client, name, self.changed_tx.clone());
                    self.members.insert(
                        name.clone(),
                        Member {
                            context: context.clone(),
                            watch,
                            sink,
                            task,
                        },
                    );
                }
                Err(e) => {
                    // Retried with the next commit, like the cluster's apply.
                    let error = format!("{e:#}");
                    self.shared.update(|s| {
                        s.endpoint_maps.entry(name.clone()).or_default().last_error = Some(error.clone());
                    });
                    self.shared.emit(Event::EndpointMapFailed {
                        cluster: name.clone(),
                        error,
                        retry_millis: 0,
                    });
                }
            }
        }
        self.wanted = live::wanted(&t.plan, None);
        for (name, m) in &mut self.members {
            let namespaces = self.wanted.get(name).map(live::namespaces).unwrap_or_default();
            m.watch.set_namespaces(&namespaces);
        }
        self.target = Some(t);
    }

    /// See [`ClusterWatch::listing_until`].
    fn listing_until(&self, now: Instant) -> Option<Instant> {
        self.members
            .values()
            .filter_map(|m| m.watch.listing_until(now, LIST_GRACE))
            .max()
    }

    /// Builds every member's document from what is known now and hands it to its sink.
    fn dispatch(&self) {
        let Some(t) = &self.target else { return };
        let mut live = Live::default();
        for (name, m) in &self.members {
            if let Some(services) = self.wanted.get(name) {
                if let Some(observed) = m.watch.snapshot(services) {
                    live.clusters.insert(name.clone(), observed);
                }
            }
        }
        let opts = BuildOptions {
            version: 0,
            git_revision: self.revision.clone(),
        };
        for (name, m) in &self.members {
            match ebpf::build(&t.plan, name, &live, &opts) {
                Some(Ok(doc)) => {
                    m.sink.send_replace(Some(Arc::new(sink::Desired {
                        doc,
                        commit: t.commit.clone(),
                        commit_time: self.commit_time,
                        routing: !t.plan.services.is_empty(),
                    })));
                }
                Some(Err(e)) => self.shared.emit(Event::EndpointMapFailed {
                    cluster: name.clone(),
                    error: e.to_string(),
                    retry_millis: 0,
                }),
                None => {} // not in this commit's inventory (cannot happen: members follow it)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_changes_builds_once_and_a_stream_cannot_starve_it() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.due(), None);
        d.change(t0);
        assert_eq!(d.due(), Some(t0 + DEBOUNCE));
        // Changes 100 ms apart keep pushing it back...
        for i in 1..=5u32 {
            d.change(t0 + Duration::from_millis(100) * i);
        }
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(650)));
        // ...but never beyond DEBOUNCE_MAX after the first.
        for i in 6..=20u32 {
            d.change(t0 + Duration::from_millis(100) * i);
        }
        assert_eq!(d.due(), Some(t0 + DEBOUNCE_MAX));
    }
}
