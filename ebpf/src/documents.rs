//! Building the per-cluster documents from a plan and the live inputs.

use crate::config::{
    Backend, ClusterEntry, ConfigError, EndpointMapConfig, Frontend, GatewayEntry, PolicyEntry, ServiceRef, Source,
    Via, API_VERSION, KIND,
};
use crate::live::{Live, LiveService};
use crate::plan::{ExportedService, Plan, ServicePort};
use std::net::Ipv4Addr;

/// What the caller decides about a document: its version and source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// See [`next_version`].
    pub version: u64,
    /// The commit the plan was rendered from (`None` for a working tree).
    pub git_revision: Option<String>,
}

/// The version of a document published for a commit: the commit's committer time (seconds since
/// the epoch), but always above the version previously published for that cluster. Offline there is
/// no previous document (`None`); the daemon passes the version of the document it last published.
pub fn next_version(commit_time: u64, previous: Option<u64>) -> u64 {
    match previous {
        Some(p) => commit_time.max(p.saturating_add(1)),
        None => commit_time,
    }
}

/// The documents of every inventory cluster, in name order, sealed.
pub fn build_all(plan: &Plan, live: &Live, opts: &BuildOptions) -> Result<Vec<EndpointMapConfig>, ConfigError> {
    (0..plan.clusters.len())
        .map(|c| build_index(plan, c, live, opts))
        .collect()
}

/// The document of one cluster, sealed; `None` when the cluster is not in the inventory.
pub fn build(
    plan: &Plan,
    cluster: &str,
    live: &Live,
    opts: &BuildOptions,
) -> Option<Result<EndpointMapConfig, ConfigError>> {
    let c = plan.clusters.iter().position(|ci| ci.name == cluster)?;
    Some(build_index(plan, c, live, opts))
}

fn saturating_weight(count: usize, weight: u16) -> u16 {
    u16::try_from((count as u64).saturating_mul(u64::from(weight))).unwrap_or(u16::MAX)
}

fn build_index(
    plan: &Plan,
    consumer: usize,
    live: &Live,
    opts: &BuildOptions,
) -> Result<EndpointMapConfig, ConfigError> {
    let clusters = plan
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| ClusterEntry {
            name: c.name.clone(),
            index: u32::try_from(i).unwrap_or(u32::MAX),
            locality: c.locality.clone(),
            network: c.network.clone(),
            gateway: c.gateway.map(|g| GatewayEntry { address: g.address }),
        })
        .collect();
    let mut frontends = Vec::new();
    for svc in &plan.services {
        let Some(vip) = svc.vip else { continue };
        let tiers = svc.tiers(consumer);
        for (pi, port) in svc.ports.iter().enumerate() {
            let mut backends = Vec::new();
            for &(e, priority) in &tiers {
                backends_of(plan, svc, consumer, e, priority, pi, port, live, &mut backends);
            }
            backends.sort_by(|a, b| {
                (a.priority, &a.cluster, u32::from(a.address), a.port).cmp(&(
                    b.priority,
                    &b.cluster,
                    u32::from(b.address),
                    b.port,
                ))
            });
            frontends.push(Frontend {
                id: port.id,
                service: ServiceRef {
                    namespace: svc.namespace.clone(),
                    name: svc.name.clone(),
                    port: port.name.clone(),
                },
                vip,
                port: port.port,
                protocol: port.protocol,
                policy: PolicyEntry { mode: svc.mode },
                backends,
            });
        }
    }
    frontends.sort_by(|a, b| (u32::from(a.vip), a.port, a.protocol).cmp(&(u32::from(b.vip), b.port, b.protocol)));
    let mut doc = EndpointMapConfig {
        api_version: API_VERSION.to_string(),
        kind: KIND.to_string(),
        cluster: plan.clusters[consumer].name.clone(),
        version: opts.version,
        hash: String::new(),
        source: Source {
            git_revision: opts.git_revision.clone(),
        },
        clusters,
        frontends,
    };
    doc.seal()?;
    Ok(doc)
}

/// The backends cluster `e` contributes to `consumer`'s frontend for port `pi` of `svc`.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
fn backends_of(
    plan: &Plan,
    svc: &ExportedService,
    consumer: usize,
    e: usize,
    priority: u8,
    pi: usize,
    port: &ServicePort,
    live: &Live,
    out: &mut Vec<Backend>,
) {
    let cluster = &plan.clusters[e];
    let weight = svc.weight(e);
    let observed: Option<Option<&LiveService>> = live.service(&cluster.name, &svc.namespace, &svc.name);
    let ready_count = |ls: &LiveService| ls.ready_endpoints(&port.name, port.protocol).count();
    let backend = |address: Ipv4Addr, port: u16, weight: u16, ready: bool, via: Via| Backend {
        address,
        port,
        weight,
        cluster: cluster.name.clone(),
        ready,
        via,
        priority,
    };
    let direct_endpoints = |ls: &LiveService, out: &mut Vec<Backend>| {
        for ep in ls.ready_endpoints(&port.name, port.protocol) {
            out.push(backend(ep.address, ep.port, weight, true, Via::Direct));
        }
    };
    if e == consumer {
        // The local Service: its ClusterIP (live, else an explicit one from Git), weighted by its
        // ready endpoints when they are known; a headless Service's endpoints directly.
        let local = svc.local.get(&e);
        let local_port = local
            .and_then(|l| l.ports.get(pi).copied().flatten())
            .unwrap_or(port.port);
        let headless = local.is_some_and(|l| l.headless);
        match observed {
            Some(Some(ls)) if headless || ls.cluster_ip.is_none() => direct_endpoints(ls, out),
            Some(Some(ls)) => {
                let n = ready_count(ls);
                if let Some(ip) = ls.cluster_ip {
                    out.push(backend(
                        ip,
                        local_port,
                        saturating_weight(n, weight),
                        n > 0,
                        Via::Direct,
                    ));
                }
            }
            Some(None) => {}
            None => {
                if let Some(ip) = local.and_then(|l| l.cluster_ip) {
                    out.push(backend(ip, local_port, weight, true, Via::Direct));
                }
            }
        }
    } else if cluster.network == plan.clusters[consumer].network {
        // Flat network: the remote cluster's ready pod endpoints, known only live.
        if let Some(Some(ls)) = observed {
            direct_endpoints(ls, out);
        }
    } else {
        // Island network: the remote cluster's east-west gateway, one backend standing for every
        // endpoint behind it (weight = ready endpoints × target weight, Istio's rule).
        let (Some(gw), Some(gw_port)) = (cluster.gateway, svc.gateway_ports.get(&(e, pi))) else {
            return;
        };
        let (w, ready) = match observed {
            Some(Some(ls)) => {
                let n = ready_count(ls);
                (saturating_weight(n, weight), n > 0)
            }
            Some(None) => (0, false),
            None => (weight, true),
        };
        out.push(backend(gw.address, *gw_port, w, ready, Via::Gateway));
    }
}
