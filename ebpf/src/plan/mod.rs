//! The routing plan of one commit: exported services, VIPs, targets, tiers, gateway ports, findings.

use crate::alloc::PortRange;
use crate::config::{Locality, Mode, Protocol, MAX_TIERS};
use render::diagnostic::Diagnostic;
use render::inventory::Cluster;
use render::repo::{Origin, Repo, Template};
use render::snapshot::CONFIG_FILE;
use render::{Output, Pos};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The annotation that asks for an explicit VIP.
pub const VIP_ANNOTATION: &str = "flotilla.dev/vip";
/// The suffix of the generated east-west Service's name.
pub const EASTWEST_SUFFIX: &str = "-eastwest";

/// A member cluster, as routing sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    pub network: String,
    pub locality: Locality,
    /// `eastWestGateway`, when set and usable.
    pub gateway: Option<Gateway>,
}

/// A cluster's east-west gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub address: Ipv4Addr,
    /// `None` when `portRange` does not parse (an error diagnostic says so).
    pub ports: Option<PortRange>,
}

/// One routable port of an exported Service: one frontend per consuming cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name ("" for the unnamed port of a single-port Service).
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The frontend id (see [`crate::alloc`]).
    pub id: u32,
}

/// What an exporting cluster's own rendered Service says.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    /// The rendered Service on that cluster (for the east-west Service: selector, targetPort).
    pub service: Arc<Value>,
    /// An explicit `spec.clusterIP` (an IPv4 address; not `None`, not empty).
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.clusterIP: None`.
    pub headless: bool,
    /// The port number there of each [`ExportedService::ports`] entry (matched by name).
    pub ports: Vec<Option<u16>>,
}

/// A Service with a ServiceExport of the same namespace and name.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedService {
    pub namespace: String,
    pub name: String,
    /// `None` when no VIP could be allocated (an error diagnostic says why): no frontend then.
    pub vip: Option<Ipv4Addr>,
    pub mode: Mode,
    pub ports: Vec<ServicePort>,
    /// Indices into [`Plan::clusters`] of the clusters holding both the Service and its ServiceExport,
    /// ascending (name order).
    pub exporters: Vec<usize>,
    /// The clusters taking part, in order, with their weights: the GlobalTrafficPolicy's targets that
    /// export the Service, or every exporter in name order with weight 1.
    pub targets: Vec<(usize, u16)>,
    /// Per exporting cluster, its rendered Service.
    pub local: BTreeMap<usize, Local>,
    /// Gateway port per (exporting cluster, index into `ports`), for exporters other networks reach
    /// through their gateway. The east-west Services are rendered from this.
    pub gateway_ports: BTreeMap<(usize, usize), u16>,
    /// The Service template (for diagnostics).
    pub origin: Origin,
    /// The template's `flotilla.dev/vip` annotation, as written.
    pub vip_request: Option<Value>,
}

/// The routing plan of one commit.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The inventory, by name (same order and indices as `render`'s).
    pub clusters: Vec<ClusterInfo>,
    /// By (namespace, name).
    pub services: Vec<ExportedService>,
    /// Sorted like render's.
    pub diagnostics: Vec<Diagnostic>,
}

impl ExportedService {
    /// The weight of a taking-part cluster (1 when the policy does not say).
    pub fn weight(&self, cluster: usize) -> u16 {
        self.targets.iter().find(|(c, _)| *c == cluster).map_or(1, |(_, w)| *w)
    }

    /// The clusters `consumer` routes to, with their priority, before the limit of
    /// [`MAX_TIERS`] tiers: Locality = the consumer itself if it exports the Service; FailOver = the
    /// consumer first (if it exports), then the targets in order, one tier each; ActiveActive = the
    /// consumer (if it exports) and every target, all in tier 0.
    pub fn all_tiers(&self, consumer: usize) -> Vec<(usize, usize)> {
        let local = self.exporters.binary_search(&consumer).is_ok();
        let others = self.targets.iter().map(|(c, _)| *c).filter(|c| *c != consumer);
        match self.mode {
            Mode::Locality => {
                if local {
                    vec![(consumer, 0)]
                } else {
                    Vec::new()
                }
            }
            Mode::FailOver => local
                .then_some(consumer)
                .into_iter()
                .chain(others)
                .enumerate()
                .map(|(p, c)| (c, p))
                .collect(),
            Mode::ActiveActive => local
                .then_some(consumer)
                .into_iter()
                .chain(others)
                .map(|c| (c, 0))
                .collect(),
        }
    }

    /// [`Self::all_tiers`] without the tiers beyond [`MAX_TIERS`] (an error diagnostic reports them).
    pub fn tiers(&self, consumer: usize) -> Vec<(usize, u8)> {
        self.all_tiers(consumer)
            .into_iter()
            .filter(|(_, p)| *p < MAX_TIERS)
            .map(|(c, p)| (c, u8::try_from(p).unwrap_or(u8::MAX)))
            .collect()
    }
}

/// The position of `pointer` inside a cluster's document (the document's own line when it cannot
/// be found). A `Cluster` keeps its file and line but not its document index: find the document
/// whose position is the cluster's.
pub(crate) fn cluster_pos(repo: &Repo<'_>, c: &Cluster, pointer: &str) -> Pos {
    let Some(file) = repo.snapshot.files.iter().find(|f| f.path == c.file) else {
        return c.pos;
    };
    let Ok(text) = std::str::from_utf8(&file.bytes) else {
        return c.pos;
    };
    for doc in 0.. {
        let Some(index) = render::yaml::locate(text, c.file.ends_with(".json"), doc) else {
            break;
        };
        if index.is_empty() {
            break;
        }
        if index.get("") == Some(&c.pos) {
            return render::yaml::lookup(&index, pointer).unwrap_or(c.pos);
        }
    }
    c.pos
}

/// The position of `spec.vipRange` in `flotilla.yaml`.
fn vip_range_pos(repo: &Repo<'_>) -> Pos {
    repo.snapshot
        .files
        .iter()
        .find(|f| f.path == CONFIG_FILE)
        .and_then(|f| std::str::from_utf8(&f.bytes).ok())
        .and_then(|text| render::yaml::locate(text, false, 0))
        .and_then(|ix| render::yaml::lookup(&ix, "/spec/vipRange"))
        .unwrap_or_default()
}

pub(crate) fn object(namespace: &str, name: &str) -> String {
    format!("Service {namespace}/{name}")
}

/// Where each template's rendered copies are: per template index, (cluster index, object), by cluster.
/// Only routing inputs (Services, ServiceExports) have entries.
type Placed<'o> = Vec<Vec<(usize, &'o Arc<Value>)>>;

fn placed<'o>(repo: &Repo<'_>, out: &'o Output) -> Placed<'o> {
    let mut placed: Placed<'o> = vec![Vec::new(); repo.templates.len()];
    for (ci, c) in repo.clusters.iter().enumerate() {
        for (t, obj) in out.routing_inputs.get(&c.name).into_iter().flatten() {
            if let Some(list) = placed.get_mut(*t) {
                list.push((ci, obj));
            }
        }
    }
    placed
}

struct Planner<'r, 's> {
    repo: &'r Repo<'s>,
    diags: Vec<Diagnostic>,
    /// The repository's Service templates by (namespace, name), with their index.
    service_templates: HashMap<(&'r str, &'r str), (usize, &'r Template)>,
}

mod assign;
mod inputs;

/// Computes the routing plan of a rendered commit. Never fails: findings are diagnostics.
pub fn plan(repo: &Repo<'_>, out: &Output) -> Plan {
    let mut p = Planner {
        repo,
        diags: Vec::new(),
        service_templates: repo
            .templates
            .iter()
            .enumerate()
            .filter(|(_, t)| t.group.is_empty() && t.kind == "Service")
            .map(|(i, t)| ((t.namespace.as_str(), t.name.as_str()), (i, t)))
            .collect(),
    };
    let clusters = p.clusters();
    let placed = placed(repo, out);
    let mut services = p.exported(&placed);
    p.traffic(&mut services);
    p.vips(&mut services);
    assign::frontend_ids(&mut services);
    p.tier_limits(&services, &clusters);
    p.gateways(&mut services, &clusters);
    p.eastwest_names(&mut services);
    let mut diagnostics = p.diags;
    render::diagnostic::finish(&mut diagnostics);
    Plan {
        clusters,
        services,
        diagnostics,
    }
}
