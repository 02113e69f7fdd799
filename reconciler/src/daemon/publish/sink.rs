//! One cluster's sink: writes the newest document it is given to the cluster's ConfigMap when its content changed.

use super::{
    EndpointMapStatus, BACKOFF_FIRST, BACKOFF_MAX, CONFIGMAP_KEY, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, HASH_ANNOTATION,
    RESYNC, VERSION_ANNOTATION,
};
use crate::cluster::applyset::FIELD_MANAGER;
use crate::daemon::{unix_now, Event, Shared};
use ebpf::EndpointMapConfig;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a sink should publish.
#[derive(Debug)]
pub(super) struct Desired {
    /// Sealed with version 0; the sink sets the version.
    pub(super) doc: EndpointMapConfig,
    pub(super) commit: String,
    pub(super) commit_time: u64,
    /// The commit exports services (otherwise only a document already there is replaced).
    pub(super) routing: bool,
}

/// The sending end of a sink's input.
pub(super) type Input = watch::Sender<Option<Arc<Desired>>>;

/// Starts the sink of one cluster.
pub(super) fn spawn(cluster: &str, client: kube::Client, shared: Shared) -> (Input, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let sink = Sink {
        cluster: cluster.to_string(),
        api: Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE),
        namespaces: Api::all(client),
        shared,
        desired: None,
        known: None,
        backoff: Duration::ZERO,
        retry_at: None,
    };
    (tx, tokio::spawn(sink.run(rx)))
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

/// What to do about one cluster's ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No exported services and no document in the cluster: nothing to do.
    Nothing,
    /// The ConfigMap holds this content already.
    Unchanged,
    /// Write it, with a version above the published one (`None`: there is none).
    Publish(Option<u64>),
}

/// What to do, given what the ConfigMap holds (`None`: no ConfigMap) and the wanted content.
fn decide(known: Option<&Published>, wanted: &EndpointMapConfig, routing: bool) -> Outcome {
    match known {
        None if !routing => Outcome::Nothing,
        None => Outcome::Publish(None),
        Some(p) if p.content.as_ref() == Some(wanted) => Outcome::Unchanged,
        Some(p) => Outcome::Publish(Some(p.version)),
    }
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
                    Outcome::Publish(_) => {
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
                if !d.routing && matches!(e, PublishError::Read(_)) {
                    // No exported services: only looking whether a document from before is there. A
                    // fleet that does not route hears nothing about it; the cluster's apply reports
                    // the cluster being unreachable.
                    tracing::debug!(cluster = %self.cluster, retry = ?self.backoff, "reading the endpoint map ConfigMap: {error}");
                    return;
                }
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
        let previous = match decide(known.as_ref(), &wanted, d.routing) {
            Outcome::Publish(previous) => previous,
            other => return Ok(other),
        };
        let mut doc = d.doc.clone();
        doc.version = ebpf::next_version(d.commit_time, previous);
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
        Ok(Outcome::Publish(previous))
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
    fn what_to_do_about_a_configmap() {
        let d = content(&doc(3, "abc"));
        let same = Published {
            version: 7,
            hash: String::new(),
            content: Some(d.clone()),
            commit: None,
        };
        let mut other_doc = d.clone();
        other_doc.cluster = "b".into();
        let other = Published {
            content: Some(other_doc),
            ..same.clone()
        };
        let broken = Published {
            content: None,
            ..same.clone()
        };
        assert_eq!(
            decide(None, &d, false),
            Outcome::Nothing,
            "no routing, no ConfigMap: leave the cluster alone"
        );
        assert_eq!(decide(None, &d, true), Outcome::Publish(None));
        assert_eq!(decide(Some(&same), &d, true), Outcome::Unchanged);
        assert_eq!(decide(Some(&same), &d, false), Outcome::Unchanged);
        assert_eq!(decide(Some(&other), &d, true), Outcome::Publish(Some(7)));
        assert_eq!(
            decide(Some(&other), &d, false),
            Outcome::Publish(Some(7)),
            "routing gone: a document already there is replaced"
        );
        assert_eq!(decide(Some(&broken), &d, true), Outcome::Publish(Some(7)));
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
        assert_eq!(
            (p.version, p.hash.as_str(), p.commit.as_deref()),
            (42, d.hash.as_str(), Some("abc"))
        );
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
