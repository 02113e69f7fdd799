//! Watching the live inputs (for the daemon): per cluster and namespace, reflectors of Services and EndpointSlices.
//!
//! A [`ClusterWatch`] keeps, for every namespace it is given, a `kube` reflector store of the namespace's
//! Services and one of its EndpointSlices that carry the `kubernetes.io/service-name` label, and sends the
//! cluster's name on a channel whenever one of them changes (after its first complete list, and after every
//! re-list). [`ClusterWatch::snapshot`] turns the stores into a [`LiveCluster`] with the same rules as a
//! one-shot read ([`super::live::observe`]). Until every namespace has been listed once the cluster is not
//! observed (`None`: the builder treats it as unknown). When the API server becomes unreachable the stores
//! keep the last state they listed while the watches retry with backoff: an API server that is down says
//! nothing about the pods behind a Service.

use super::live::{observe, ServiceKey, SERVICE_NAME_LABEL};
use ebpf::LiveCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Server-side length of one watch request (seconds), below the client's read timeout.
const WATCH_SECONDS: u32 = 50;
const _: () = assert!((WATCH_SECONDS as u64) < crate::cluster::REQUEST_TIMEOUT.as_secs());

/// The live inputs of one cluster, watched.
pub struct ClusterWatch {
    client: kube::Client,
    cluster: String,
    changed: mpsc::Sender<String>,
    namespaces: BTreeMap<String, NamespaceWatch>,
}

/// The two reflectors of one namespace; their tasks end when it is dropped.
struct NamespaceWatch {
    services: Reflected<Service>,
    slices: Reflected<EndpointSlice>,
    started: Instant,
}

impl NamespaceWatch {
    fn listed(&self) -> bool {
        self.services.listed.load(Ordering::SeqCst) && self.slices.listed.load(Ordering::SeqCst)
    }
}

struct Reflected<K: Resource + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    /// Listed completely at least once.
    listed: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl<K: Resource + 'static> Drop for Reflected<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterWatch {
    /// A watch of nothing yet; `changed` receives `cluster` after every change (a full channel drops the
    /// notice: one pending is enough).
    pub fn new(client: kube::Client, cluster: &str, changed: mpsc::Sender<String>) -> ClusterWatch {
        ClusterWatch {
            client,
            cluster: cluster.to_string(),
            changed,
            namespaces: BTreeMap::new(),
        }
    }

    /// Watches exactly these namespaces: starts the new ones, stops those no longer wanted.
    pub fn set_namespaces(&mut self, namespaces: &BTreeSet<String>) {
        self.namespaces.retain(|ns, _| namespaces.contains(ns));
        for ns in namespaces {
            if self.namespaces.contains_key(ns) {
                continue;
            }
            // The server ends each watch request before the client's read timeout
            // (`crate::cluster::REQUEST_TIMEOUT`) would call a quiet one broken; the watcher then simply
            // watches again from where it was.
            let config = watcher::Config::default().timeout(WATCH_SECONDS);
            let services = reflect(
                Api::<Service>::namespaced(self.client.clone(), ns),
                config.clone(),
                self.context(ns, "Services"),
            );
            let slices = reflect(
                Api::<EndpointSlice>::namespaced(self.client.clone(), ns),
                config.labels(SERVICE_NAME_LABEL),
                self.context(ns, "EndpointSlices"),
            );
            self.namespaces.insert(
                ns.clone(),
                NamespaceWatch {
                    services,
                    slices,
                    started: Instant::now(),
                },
            );
        }
    }

    fn context(&self, namespace: &str, kind: &'static str) -> Context {
        Context {
            cluster: self.cluster.clone(),
            namespace: namespace.to_string(),
            kind,
            changed: self.changed.clone(),
        }
    }

    /// Until when to wait for the first lists: the latest `start + grace` of the watched namespaces not
    /// listed yet, when that is after `now` (`None`: nothing worth waiting for).
    pub fn listing_until(&self, now: Instant, grace: Duration) -> Option<Instant> {
        self.namespaces
            .values()
            .filter(|w| !w.listed())
            .map(|w| w.started + grace)
            .filter(|t| *t > now)
            .max()
    }

    /// The cluster's live state of `wanted` (whose namespaces must be watched), or `None` while some
    /// namespace has not been listed yet.
    pub fn snapshot(&self, wanted: &BTreeSet<ServiceKey>) -> Option<LiveCluster> {
        let namespaces: BTreeSet<&String> = wanted.iter().map(|(ns, _)| ns).collect();
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for ns in namespaces {
            let w = self.namespaces.get(ns).filter(|w| w.listed())?;
            services.extend(w.services.store.state());
            slices.extend(w.slices.store.state());
        }
        Some(observe(
            services.iter().map(AsRef::as_ref),
            slices.iter().map(AsRef::as_ref),
            wanted,
        ))
    }
}

/// Who a reflector reports to, and as what.
struct Context {
    cluster: String,
    namespace: String,
    kind: &'static str,
    changed: mpsc::Sender<String>,
}

impl Context {
    fn notify(&self) {
        let _ = self.changed.try_send(self.cluster.clone());
    }
}

fn reflect<K>(api: Api<K>, config: watcher::Config, cx: Context) -> Reflected<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + std::hash::Hash + Eq + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let listed = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&listed);
    let task = tokio::spawn(async move {
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            if failing && event.is_ok() {
                tracing::info!(cluster = %cx.cluster, namespace = %cx.namespace, kind = cx.kind, "watching again");
                failing = false;
            }
            match event {
                Ok(watcher::Event::InitDone) => {
                    done.store(true, Ordering::SeqCst);
                    cx.notify();
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => cx.notify(),
                Err(e) => {
                    // Said once per outage; the watcher retries with backoff.
                    if failing {
                        tracing::debug!(cluster = %cx.cluster, namespace = %cx.namespace, kind = cx.kind, error = %e, "watch still failing");
                    } else {
                        tracing::warn!(cluster = %cx.cluster, namespace = %cx.namespace, kind = cx.kind, error = %e, "watching the live inputs of the endpoint maps failed; retrying (the last state listed is kept)");
                        failing = true;
                    }
                }
            }
        }
    });
    Reflected { store, listed, task }
}
