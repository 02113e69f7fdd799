//! Live inputs of the endpoint map configs: Service ClusterIPs and EndpointSlice endpoints read from the clusters.
//!
//! What is read: on every cluster that exports a service (holds both the Service and its ServiceExport after
//! placement), that Service and the EndpointSlices (`discovery.k8s.io/v1`) labelled
//! `kubernetes.io/service-name=<service>` in its namespace. [`wanted`] says which, from a routing plan.
//! [`observe`] turns the objects into `ebpf`'s [`LiveCluster`] (pure; the daemon's watches use it too, see
//! [`super::watch`]); [`read_all`] lists them once on every cluster (`flotilla endpoints --live`).
//!
//! Contract (the one of [`ebpf::Live`]): a cluster that was read is *observed* and its map of services is
//! complete — a wanted Service missing there has no backends there. A cluster that could not be read is left
//! out: it stays *unknown*, and the builder applies the offline rules to it. Only IPv4 EndpointSlices count;
//! an endpoint whose `conditions.ready` is unset is ready (the API's own rule); an address listed by several
//! slices (as during a slice split) appears once, ready when any slice says so.

use crate::cluster::client_with_timeout;
use ebpf::plan::Plan;
use ebpf::{Live, LiveCluster, LiveEndpoint, LiveService, Protocol};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The label EndpointSlices carry with the name of their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// (namespace, name) of a Service.
pub type ServiceKey = (String, String);

/// What to read: per cluster, the Services whose live state some document uses.
pub type Wanted = BTreeMap<String, BTreeSet<ServiceKey>>;

/// Errors of reading one cluster.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cluster {cluster}: cannot connect: {message}")]
    Connect { cluster: String, message: String },
    #[error("cluster {cluster}: listing {kind} in namespace {namespace}")]
    List {
        cluster: String,
        namespace: String,
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl LiveError {
    /// The cluster that could not be read.
    pub fn cluster(&self) -> &str {
        match self {
            LiveError::Connect { cluster, .. } | LiveError::List { cluster, .. } => cluster,
        }
    }

    /// The message with its causes, `: `-separated (what a warning shows).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.ends_with(&text) {
                // (hyper repeats some messages down the chain)
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
    }
}

/// The Services to read for the documents of `consumer` (of every cluster when `None`): on each cluster that
/// appears in a consumer's tiers for a service (so exports it), that service.
pub fn wanted(plan: &Plan, consumer: Option<&str>) -> Wanted {
    let consumers: Vec<usize> = match consumer {
        Some(name) => plan.clusters.iter().position(|c| c.name == name).into_iter().collect(),
        None => (0..plan.clusters.len()).collect(),
    };
    let mut out = Wanted::new();
    for svc in &plan.services {
        for &consumer in &consumers {
            for (c, _) in svc.tiers(consumer) {
                if let Some(cluster) = plan.clusters.get(c) {
                    out.entry(cluster.name.clone())
                        .or_default()
                        .insert((svc.namespace.clone(), svc.name.clone()));
                }
            }
        }
    }
    out
}

/// The namespaces of a set of services.
pub fn namespaces(services: &BTreeSet<ServiceKey>) -> BTreeSet<String> {
    services.iter().map(|(ns, _)| ns.clone()).collect()
}

/// One cluster's live state of the `wanted` Services, from its Services and EndpointSlices (any others
/// are ignored).
pub fn observe<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    wanted: &BTreeSet<ServiceKey>,
) -> LiveCluster {
    let key = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, name: Option<&String>| {
        Some((meta.namespace.clone().unwrap_or_default(), name?.clone()))
    };
    let mut out: BTreeMap<ServiceKey, LiveService> = BTreeMap::new();
    for s in services {
        let Some(k) = key(&s.metadata, s.metadata.name.as_ref()) else {
            continue;
        };
        if !wanted.contains(&k) {
            continue;
        }
        let cluster_ip = s
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok()); // "None" (headless), "", IPv6: none
        out.insert(
            k,
            LiveService {
                cluster_ip,
                endpoints: Vec::new(),
            },
        );
    }
    // Per Service: (address, port name, port, protocol) -> ready.
    type Seen = BTreeMap<(u32, String, u16, Protocol), bool>;
    let mut endpoints: BTreeMap<ServiceKey, Seen> = BTreeMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let Some(k) = key(&slice.metadata, labels.and_then(|l| l.get(SERVICE_NAME_LABEL))) else {
            continue;
        };
        if slice.address_type != "IPv4" || !out.contains_key(&k) {
            continue;
        }
        let ports: Vec<(String, u16, Protocol)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port?).ok().filter(|p| *p != 0)?;
                let protocol = Protocol::parse(p.protocol.as_deref())?;
                Some((p.name.clone().unwrap_or_default(), port, protocol))
            })
            .collect();
        let found = endpoints.entry(k).or_default();
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            for address in ep.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                for (name, port, protocol) in &ports {
                    let seen = found
                        .entry((u32::from(address), name.clone(), *port, *protocol))
                        .or_insert(false);
                    *seen |= ready;
                }
            }
        }
    }
    for (k, eps) in endpoints {
        if let Some(svc) = out.get_mut(&k) {
            svc.endpoints = eps
                .into_iter()
                .map(|((address, port_name, port, protocol), ready)| LiveEndpoint {
                    address: Ipv4Addr::from(address),
                    port_name,
                    port,
                    protocol,
                    ready,
                })
                .collect();
        }
    }
    LiveCluster { services: out }
}

/// Lists the `wanted` Services and their EndpointSlices on one cluster: two lists per namespace.
pub async fn read_cluster(
    client: &kube::Client,
    cluster: &str,
    wanted: &BTreeSet<ServiceKey>,
) -> Result<LiveCluster, LiveError> {
    let lists = namespaces(wanted).into_iter().map(|ns| async move {
        let list_err = |kind: &'static str| {
            let ns = ns.clone();
            move |source| LiveError::List {
                cluster: cluster.to_string(),
                namespace: ns,
                kind,
                source,
            }
        };
        let services = Api::<Service>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(list_err("Services"))?;
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels(SERVICE_NAME_LABEL))
            .await
            .map_err(list_err("EndpointSlices"))?;
        Ok::<_, LiveError>((services.items, slices.items))
    });
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for (s, e) in futures::future::try_join_all(lists).await? {
        services.extend(s);
        slices.extend(e);
    }
    Ok(observe(&services, &slices, wanted))
}

/// How long `flotilla endpoints --live` waits for a cluster's answers before it counts as unreachable.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads every cluster of `wanted` concurrently, through the kubeconfig `contexts` (cluster → context).
/// Clusters that cannot be reached are returned with their error and left out of the [`Live`] (unknown).
pub async fn read_all(
    kubeconfig: &Kubeconfig,
    contexts: &BTreeMap<String, String>,
    wanted: &Wanted,
    timeout: Duration,
) -> (Live, Vec<LiveError>) {
    let reads = wanted.iter().map(|(cluster, services)| async move {
        let context = contexts.get(cluster).map_or(cluster.as_str(), String::as_str);
        let client = client_with_timeout(kubeconfig, context, timeout)
            .await
            .map_err(|e| LiveError::Connect {
                cluster: cluster.clone(),
                message: format!("{e:#}"),
            })?;
        let observed = read_cluster(&client, cluster, services).await?;
        Ok::<_, LiveError>((cluster.clone(), observed))
    });
    let mut live = Live::default();
    let mut errors = Vec::new();
    for r in futures::future::join_all(reads).await {
        match r {
            Ok((cluster, observed)) => {
                live.clusters.insert(cluster, observed);
            }
            Err(e) => errors.push(e),
        }
    }
    (live, errors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, ip: &str) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip}})).unwrap()
    }

    fn slice(
        ns: &str,
        service: &str,
        family: &str,
        endpoints: serde_json::Value,
        ports: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "namespace": ns, "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": family, "endpoints": endpoints, "ports": ports,
        }))
        .unwrap()
    }

    fn key(ns: &str, name: &str) -> ServiceKey {
        (ns.to_string(), name.to_string())
    }

    #[test]
    fn services_and_slices_become_live_services() {
        let wanted: BTreeSet<ServiceKey> = [key("shop", "api"), key("shop", "db"), key("shop", "gone")].into();
        let services = [
            service("shop", "api", "10.96.0.10"),
            service("shop", "db", "None"),
            service("shop", "other", "10.96.0.11"), // not wanted
            service("web", "api", "10.96.0.12"),    // same name, other namespace
        ];
        let ports = json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "sctp", "port": 9, "protocol": "SCTP"}, {"name": "any"}]);
        let slices = [
            slice(
                "shop",
                "api",
                "IPv4",
                json!([
                    {"addresses": ["192.0.2.1"], "conditions": {"ready": true}},
                    {"addresses": ["192.0.2.2"], "conditions": {"ready": false}},
                    {"addresses": ["192.0.2.3"]},
                ]),
                ports.clone(),
            ),
            // A second slice repeating 192.0.2.2, ready there: ready once.
            slice(
                "shop",
                "api",
                "IPv4",
                json!([{"addresses": ["192.0.2.2"], "conditions": {"ready": true}}]),
                json!([{"name": "http", "port": 8080}]),
            ),
            slice(
                "shop",
                "api",
                "IPv6",
                json!([{"addresses": ["2001:db8::1"]}]),
                ports.clone(),
            ),
            slice(
                "shop",
                "db",
                "IPv4",
                json!([{"addresses": ["192.0.2.9"]}]),
                json!([{"port": 5432}]),
            ),
            slice("shop", "nosvc", "IPv4", json!([{"addresses": ["192.0.2.7"]}]), ports),
        ];
        let live = observe(&services, &slices, &wanted);
        assert_eq!(
            live.services.keys().cloned().collect::<Vec<_>>(),
            [key("shop", "api"), key("shop", "db")],
            "wanted services that exist, and only those"
        );
        let api = &live.services[&key("shop", "api")];
        assert_eq!(api.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 10)));
        let summary: Vec<(String, &str, u16, Protocol, bool)> = api
            .endpoints
            .iter()
            .map(|e| (e.address.to_string(), e.port_name.as_str(), e.port, e.protocol, e.ready))
            .collect();
        assert_eq!(
            summary,
            [
                ("192.0.2.1".into(), "dns", 53, Protocol::Udp, true),
                ("192.0.2.1".into(), "http", 8080, Protocol::Tcp, true),
                ("192.0.2.2".into(), "dns", 53, Protocol::Udp, false),
                ("192.0.2.2".into(), "http", 8080, Protocol::Tcp, true),
                ("192.0.2.3".into(), "dns", 53, Protocol::Udp, true),
                ("192.0.2.3".into(), "http", 8080, Protocol::Tcp, true),
            ]
        );
        let db = &live.services[&key("shop", "db")];
        assert_eq!(db.cluster_ip, None, "headless");
        assert_eq!(db.endpoints.len(), 1);
        assert_eq!((db.endpoints[0].port_name.as_str(), db.endpoints[0].port), ("", 5432));
    }

    #[test]
    fn wanted_follows_the_tiers() {
        let snap = render::Snapshot::from_texts([
            (
                "c.yaml",
                "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: a}\n---\n\
                 apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: b}\n---\n\
                 apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\n",
            ),
            (
                "svc.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\n\
                 apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: api, namespace: shop}\n---\n\
                 apiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: api, namespace: shop}\nspec: {mode: FailOver}\n",
            ),
            (
                "pp.yaml",
                "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: api, namespace: shop}\nspec:\n  \
                 resourceSelectors:\n  - {apiVersion: v1, kind: Service}\n  - {apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport}\n  \
                 placement: {clusterAffinity: {clusterNames: [a, b]}}\n",
            ),
        ]);
        let repo = render::repo::load(&snap);
        let (_, plan) = crate::routing::render(&repo, &render::RenderOptions::default());
        let all = wanted(&plan, None);
        assert_eq!(
            all.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b"],
            "exporters only"
        );
        assert!(all.values().all(|s| s.contains(&key("shop", "api"))));
        // c exports nothing but consumes: its FailOver tiers are a, then b.
        assert_eq!(wanted(&plan, Some("c")).len(), 2);
        assert_eq!(wanted(&plan, Some("nope")).len(), 0);
    }
}
