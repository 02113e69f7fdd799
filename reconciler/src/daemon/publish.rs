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

use super::source::Source;
use super::{unix_now, Event, Shared};
use crate::cluster::applyset::{FIELD_MANAGER, PARENT_NAMESPACE};
use crate::cluster::{client_for, fleet};
use crate::endpoints::live::{self, Wanted};
use crate::endpoints::watch::ClusterWatch;
use ebpf::plan::Plan;
use ebpf::{BuildOptions, EndpointMapConfig, Live};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde::{Deserialize, Serialize};
use serde_json::json;
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
    /// Stops the publisher, its watches and sinks (a write in flight gets 10 s to finish).
    pub(crate) async fn stop(self) {
        let Handle { stop, mut task } = self;
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
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
        wanted: Wanted::new(),
        members: BTreeMap::new(),
        changed_tx,
    };
    Handle {
        stop,
        task: tokio::spawn(publisher.run(rx, changed_rx, stopped)),
    }
}

/// What a sink should publish.
#[derive(Debug)]
struct Desired {
    /// Sealed with version 0; the sink sets the version.
    doc: EndpointMapConfig,
    commit: String,
    commit_time: u64,
    /// The commit exports services (otherwise only a document already there is replaced).
    routing: bool,
}

/// One member cluster: its live inputs and its sink.
struct Member {
    context: String,
    watch: ClusterWatch,
    sink: watch::Sender<Option<Arc<Desired>>>,
    task: JoinHandle<()>,
}

struct Publisher {
    kubeconfig: Kubeconfig,
    source: Source,
    shared: Shared,
    target: Option<Arc<Target>>,
    commit_time: u64,
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
        // (first change, last change) since the documents were last built.
        let mut dirty: Option<(Instant, Instant)> = None;
        loop {
            let due = dirty.map(|(first, last)| (last + DEBOUNCE).min(first + DEBOUNCE_MAX));
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
                        let now = Instant::now();
                        dirty = Some(dirty.map_or((now, now), |(first, _)| (first, now)));
                    }
                }
                Some(cluster) = changed.recv() => {
                    tracing::debug!(cluster = %cluster, "live inputs of the endpoint maps changed");
                    let now = Instant::now();
                    dirty = Some(dirty.map_or((now, now), |(first, _)| (first, now)));
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    dirty = None;
                    self.dispatch();
                }
            }
        }
        let sinks: Vec<JoinHandle<()>> = std::mem::take(&mut self.members)
            .into_values()
            .map(|m| m.task) // dropping the member closes its sink's channel
            .collect();
        for mut task in sinks {
            if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    /// Takes a new commit: its commit time, the members (clients, watches, sinks) of its inventory.
    async fn retarget(&mut self, t: Arc<Target>) {
        let (source, commit) = (self.source.clone(), t.commit.clone());
        self.commit_time = match tokio::task::spawn_blocking(move || source.commit_time(&commit)).await {
            Ok(Ok(time)) => time,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::warn!(commit = %t.commit, "reading the commit time failed ({error}); endpoint map versions start from the current time");
                unix_now() as u64
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
                    let (sink, rx) = watch::channel(None);
                    let task = tokio::spawn(
                        Sink {
                            cluster: name.clone(),
                            api: Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE),
                            namespaces: Api::all(client.clone()),
                            shared: self.shared.clone(),
                            desired: None,
                            known: None,
                            backoff: Duration::ZERO,
                            retry_at: None,
                        }
                        .run(rx),
                    );
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
            git_revision: Some(t.commit.clone()),
        };
        for (name, m) in &self.members {
            match ebpf::build(&t.plan, name, &live, &opts) {
                Some(Ok(doc)) => {
                    m.sink.send_replace(Some(Arc::new(Desired {
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

/// The document with what does not count as a change cleared: version, source and hash.
fn content(doc: &EndpointMapConfig) -> EndpointMapConfig {
    let mut d = doc.clone();
    d.version = 0;
    d.source = ebpf::config::Source::default();
    d.hash.clear();
    d
}

/// What a cluster's ConfigMap holds.
#[derive(Debug, Clone)]
struct Published {
    version: u64,
    hash: String,
    /// `None` when the document in it does not parse (then it always differs).
    content: Option<EndpointMapConfig>,
    commit: Option<String>,
}

/// Errors of publishing to one cluster.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("reading ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {0}")]
    Read(#[source] kube::Error),
    #[error("applying Namespace {CONFIGMAP_NAMESPACE}: {0}")]
    Namespace(#[source] kube::Error),
    #[error("applying ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {0}")]
    Write(#[source] kube::Error),
    #[error("{0}")]
    Document(#[from] ebpf::ConfigError),
}

/// What a publish attempt did.
enum Outcome {
    /// No exported services and no document in the cluster: nothing to do.
    Nothing,
    Unchanged,
    Published,
}

/// One cluster's writer of the ConfigMap.
struct Sink {
    cluster: String,
    api: Api<ConfigMap>,
    namespaces: Api<Namespace>,
    shared: Shared,
    desired: Option<Arc<Desired>>,
    /// What the ConfigMap holds, as far as this sink knows: `None` = read it first; `Some(None)` = absent.
    known: Option<Option<Published>>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl Sink {
    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Desired>>>) {
        let mut resync_at = Instant::now() + RESYNC;
        loop {
            let retry = self.retry_at;
            tokio::select! {
                biased;
                c = rx.changed() => {
                    if c.is_err() {
                        break;
                    }
                    self.desired = rx.borrow_and_update().clone();
                    self.attempt().await;
                }
                () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => {
                    self.attempt().await;
                }
                () = tokio::time::sleep_until(resync_at) => {
                    resync_at = Instant::now() + RESYNC;
                    if self.retry_at.is_none() {
                        self.known = None;
                        self.attempt().await;
                    }
                }
            }
        }
    }

    async fn attempt(&mut self) {
        let Some(d) = self.desired.clone() else { return };
        self.retry_at = None;
        match self.publish(&d).await {
            Ok(outcome) => {
                self.backoff = Duration::ZERO;
                let Some(Some(p)) = &self.known else { return };
                let frontends = d.doc.frontends.len();
                let backends = d.doc.frontends.iter().map(|f| f.backends.len()).sum();
                let status = EndpointMapStatus {
                    version: Some(p.version),
                    hash: Some(p.hash.clone()),
                    commit: p.commit.clone(),
                    frontends,
                    backends,
                    published_at: None,
                    last_error: None,
                };
                match outcome {
                    Outcome::Nothing => {}
                    Outcome::Unchanged => {
                        tracing::debug!(cluster = %self.cluster, version = p.version, "endpoint map unchanged");
                        self.shared.update(|s| {
                            let e = s.endpoint_maps.entry(self.cluster.clone()).or_default();
                            *e = EndpointMapStatus {
                                published_at: e.published_at,
                                ..status
                            };
                        });
                    }
                    Outcome::Published => {
                        self.shared.update(|s| {
                            s.endpoint_maps.insert(
                                self.cluster.clone(),
                                EndpointMapStatus {
                                    published_at: Some(unix_now()),
                                    ..status
                                },
                            );
                        });
                        self.shared.emit(Event::EndpointMapPublished {
                            cluster: self.cluster.clone(),
                            commit: d.commit.clone(),
                            version: p.version,
                            hash: p.hash.clone(),
                            frontends,
                            backends,
                        });
                    }
                }
            }
            Err(e) => {
                self.known = None; // read it again next time
                self.backoff = if self.backoff.is_zero() {
                    BACKOFF_FIRST
                } else {
                    (self.backoff * 2).min(BACKOFF_MAX)
                };
                self.retry_at = Some(Instant::now() + self.backoff);
                let error = e.to_string();
                self.shared.update(|s| {
                    s.endpoint_maps.entry(self.cluster.clone()).or_default().last_error = Some(error.clone());
                });
                self.shared.emit(Event::EndpointMapFailed {
                    cluster: self.cluster.clone(),
                    error,
                    retry_millis: self.backoff.as_millis() as u64,
                });
            }
        }
    }

    async fn publish(&mut self, d: &Desired) -> Result<Outcome, PublishError> {
        let known = match self.known.take() {
            Some(k) => k,
            None => self.read().await?,
        };
        self.known = Some(known.clone());
        let wanted = content(&d.doc);
        match &known {
            None if !d.routing => return Ok(Outcome::Nothing),
            Some(p) if p.content.as_ref() == Some(&wanted) => return Ok(Outcome::Unchanged),
            _ => {}
        }
        let mut doc = d.doc.clone();
        doc.version = ebpf::next_version(d.commit_time, known.as_ref().map(|p| p.version));
        doc.seal()?;
        if known.is_none() {
            // No ConfigMap: its namespace may be missing too. The same bare Namespace as the ApplySet
            // parent's (same manager, same fields), so the two writers never take fields from each other.
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONFIGMAP_NAMESPACE}});
            self.namespaces
                .patch(CONFIGMAP_NAMESPACE, &apply_params(), &Patch::Apply(&ns))
                .await
                .map_err(PublishError::Namespace)?;
        }
        let text = String::from_utf8_lossy(&doc.to_canonical_json()?).into_owned(); // JSON is UTF-8
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CONFIGMAP_NAME,
                "namespace": CONFIGMAP_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "flotilla"},
                "annotations": {VERSION_ANNOTATION: doc.version.to_string(), HASH_ANNOTATION: doc.hash},
            },
            "data": {CONFIGMAP_KEY: text},
        });
        self.known = None; // unknown until the server has answered
        self.api
            .patch(CONFIGMAP_NAME, &apply_params(), &Patch::Apply(&cm))
            .await
            .map_err(PublishError::Write)?;
        tracing::debug!(cluster = %self.cluster, version = doc.version, "endpoint map published");
        self.known = Some(Some(Published {
            version: doc.version,
            hash: doc.hash.clone(),
            content: Some(wanted),
            commit: Some(d.commit.clone()),
        }));
        Ok(Outcome::Published)
    }

    /// What the ConfigMap holds now.
    async fn read(&self) -> Result<Option<Published>, PublishError> {
        let Some(cm) = self.api.get_opt(CONFIGMAP_NAME).await.map_err(PublishError::Read)? else {
            return Ok(None);
        };
        Ok(Some(published(&cm)))
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// What a ConfigMap holds: its document's version and content, else the version annotation.
fn published(cm: &ConfigMap) -> Published {
    let bytes = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(CONFIGMAP_KEY))
                .map(|b| b.0.clone())
        });
    let doc = bytes.and_then(|b| serde_json::from_slice::<EndpointMapConfig>(&b).ok());
    let annotation = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(VERSION_ANNOTATION))
        .and_then(|v| v.parse::<u64>().ok());
    let version = doc.as_ref().map(|d| d.version).max(annotation).unwrap_or(0);
    Published {
        version,
        hash: doc.as_ref().map(|d| d.hash.clone()).unwrap_or_default(),
        commit: doc.as_ref().and_then(|d| d.source.git_revision.clone()),
        content: doc.as_ref().map(content),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn doc(version: u64, revision: &str) -> EndpointMapConfig {
        let mut d = EndpointMapConfig {
            api_version: ebpf::config::API_VERSION.into(),
            kind: ebpf::config::KIND.into(),
            cluster: "a".into(),
            version,
            hash: String::new(),
            source: ebpf::config::Source {
                git_revision: Some(revision.into()),
            },
            clusters: vec![],
            frontends: vec![],
        };
        d.seal().unwrap();
        d
    }

    fn configmap(data: Option<&str>, annotation: Option<&str>) -> ConfigMap {
        ConfigMap {
            data: data.map(|d| [(CONFIGMAP_KEY.to_string(), d.to_string())].into()),
            metadata: kube::api::ObjectMeta {
                annotations: annotation.map(|a| [(VERSION_ANNOTATION.to_string(), a.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn content_ignores_version_source_and_hash() {
        assert_eq!(content(&doc(1, "abc")), content(&doc(7, "def")));
        let mut other = doc(1, "abc");
        other.cluster = "b".into();
        assert_ne!(content(&doc(1, "abc")), content(&other));
    }

    #[test]
    fn the_published_version_comes_from_the_document_or_the_annotation() {
        let d = doc(42, "abc");
        let text = String::from_utf8(d.to_canonical_json().unwrap()).unwrap();
        let p = published(&configmap(Some(&text), Some("40")));
        assert_eq!((p.version, p.hash.as_str(), p.commit.as_deref()), (42, d.hash.as_str(), Some("abc")));
        assert_eq!(p.content, Some(content(&d)));
        // A document that does not parse: the annotation's version, and a content that never matches.
        let p = published(&configmap(Some("{not json"), Some("50")));
        assert_eq!((p.version, p.content), (50, None));
        let p = published(&configmap(None, None));
        assert_eq!(p.version, 0);
        // The next version never goes back, whatever the commit time.
        assert_eq!(ebpf::next_version(10, Some(p.version)), 10);
        assert_eq!(ebpf::next_version(10, Some(50)), 51);
    }
}
