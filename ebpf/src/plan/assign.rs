//! Assigning what the inputs leave open: VIPs, frontend ids, gateway ports; checking tier limits
//! and the generated east-west names.

use super::{object, vip_range_pos, ClusterInfo, ExportedService, Planner, EASTWEST_SUFFIX, VIP_ANNOTATION};
use crate::alloc::{self, VipRange};
use crate::config::{Mode, MAX_TIERS};
use render::diagnostic::{code, Diagnostic};
use render::snapshot::CONFIG_FILE;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

impl Planner<'_, '_> {
    /// Allocates VIPs: explicit ones first (validated), then the others in (namespace, name) order.
    pub(super) fn vips(&mut self, services: &mut [ExportedService]) {
        let text = self
            .repo
            .config
            .spec
            .vip_range
            .as_deref()
            .unwrap_or(alloc::DEFAULT_VIP_RANGE);
        let range = match VipRange::parse(text) {
            Ok(r) => r,
            Err(e) => {
                self.diags.push(Diagnostic::error(
                    code::VIP_RANGE,
                    CONFIG_FILE,
                    vip_range_pos(self.repo),
                    format!("vipRange {e}: exported Services get no VIP"),
                ));
                return;
            }
        };
        let mut taken: HashSet<u64> = HashSet::new();
        let mut owners: HashMap<u64, usize> = HashMap::new();
        for si in 0..services.len() {
            let svc = &services[si];
            let Some(requested) = svc.vip_request.clone() else {
                continue;
            };
            let pos = self.repo.locate(&svc.origin, "/metadata/annotations/flotilla.dev~1vip");
            let obj = object(&svc.namespace, &svc.name);
            let error = |code: &'static str, why: String| {
                Diagnostic::error(
                    code,
                    &svc.origin.file,
                    pos,
                    format!("{obj}: {why}; a VIP is allocated instead"),
                )
                .with_object(obj.clone())
            };
            let Some(ip) = requested.as_str().and_then(|s| s.trim().parse::<Ipv4Addr>().ok()) else {
                let d = error(
                    code::VIP_INVALID,
                    format!("{VIP_ANNOTATION} {requested} is not an IPv4 address"),
                );
                self.diags.push(d);
                continue;
            };
            let Some(slot) = range.slot_of(ip) else {
                let why = format!(
                    "{VIP_ANNOTATION} {ip} is outside the VIP range {range} (vipRange in {CONFIG_FILE}; its first and \
                     last address are reserved)"
                );
                self.diags.push(error(code::VIP_INVALID, why));
                continue;
            };
            if let Some(&first) = owners.get(&slot) {
                let other = &services[first];
                let why = format!(
                    "{VIP_ANNOTATION} {ip} is already requested by Service {}/{} ({})",
                    other.namespace,
                    other.name,
                    other.origin.at()
                );
                self.diags.push(error(code::VIP_COLLISION, why));
                continue;
            }
            owners.insert(slot, si);
            taken.insert(slot);
            services[si].vip = Some(ip);
        }
        let keys: Vec<String> = services
            .iter()
            .filter(|s| s.vip.is_none())
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        let mut slots = alloc::place(keys.iter().map(String::as_str), range.len(), &mut taken).into_iter();
        for svc in services.iter_mut().filter(|s| s.vip.is_none()) {
            match slots.next().flatten() {
                Some(slot) => svc.vip = Some(range.address(slot)),
                None => {
                    let obj = object(&svc.namespace, &svc.name);
                    self.diags.push(
                        Diagnostic::error(
                            code::VIP_EXHAUSTED,
                            &svc.origin.file,
                            svc.origin.pos,
                            format!("{obj}: the VIP range {range} has no free address left; it gets no frontend"),
                        )
                        .with_object(obj),
                    );
                }
            }
        }
    }

    /// Reports consumers that a FailOver policy gives more than [`MAX_TIERS`] tiers (once per service).
    pub(super) fn tier_limits(&mut self, services: &[ExportedService], clusters: &[ClusterInfo]) {
        for svc in services.iter().filter(|s| s.mode == Mode::FailOver) {
            let worst = (0..clusters.len())
                .map(|c| (svc.all_tiers(c).len(), c))
                .max_by_key(|(n, c)| (*n, std::cmp::Reverse(*c)));
            let Some((n, c)) = worst.filter(|(n, _)| *n > MAX_TIERS) else {
                continue;
            };
            let gtp = self
                .repo
                .traffic
                .iter()
                .find(|p| !p.schema_invalid && p.namespace == svc.namespace && p.name == svc.name);
            let (file, pos) = match gtp {
                Some(p) if p.spec.targets.is_empty() => {
                    (p.origin.file.clone(), self.repo.locate(&p.origin, "/spec/mode"))
                }
                Some(p) => (p.origin.file.clone(), self.repo.locate(&p.origin, "/spec/targets")),
                None => (svc.origin.file.clone(), svc.origin.pos),
            };
            self.diags.push(
                Diagnostic::error(
                    code::TOO_MANY_TIERS,
                    &file,
                    pos,
                    format!(
                        "FailOver for Service {}/{} gives cluster {} {n} priority tiers (its own, then one per target); \
                         at most {MAX_TIERS} are supported and the others are dropped: list at most {MAX_TIERS} targets",
                        svc.namespace, svc.name, clusters[c].name
                    ),
                )
                .with_object(object(&svc.namespace, &svc.name)),
            );
        }
    }

    /// Finds which exporters other networks reach through their gateway, and allocates their ports.
    pub(super) fn gateways(&mut self, services: &mut [ExportedService], clusters: &[ClusterInfo]) {
        // (exporter, service) pairs some consumer on another network routes to.
        let mut needed: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (si, svc) in services.iter().enumerate() {
            if svc.vip.is_none() {
                continue;
            }
            for (c, consumer) in clusters.iter().enumerate() {
                for (e, _) in svc.tiers(c) {
                    if clusters[e].network != consumer.network {
                        needed.insert((e, si));
                    }
                }
            }
        }
        let mut by_cluster: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (e, si) in needed {
            by_cluster.entry(e).or_default().push(si);
        }
        for (e, sis) in by_cluster {
            let info = &clusters[e];
            let Some(gw) = info.gateway else {
                for si in sis {
                    let svc = &services[si];
                    let c = &self.repo.clusters[e];
                    self.diags.push(
                        Diagnostic::warning(
                            code::NO_GATEWAY,
                            &c.file,
                            c.pos,
                            format!(
                                "cluster {} exports Service {}/{} but has no eastWestGateway: clusters on other networks \
                                 than `{}` cannot reach it there",
                                info.name, svc.namespace, svc.name, info.network
                            ),
                        )
                        .with_cluster(&info.name)
                        .with_object(object(&svc.namespace, &svc.name)),
                    );
                }
                continue;
            };
            let Some(range) = gw.ports else { continue };
            let keys = port_keys(services, sis);
            let mut taken = HashSet::new();
            let slots = alloc::place(keys.iter().map(|k| k.0.as_str()), range.len(), &mut taken);
            for ((key, si, pi), slot) in keys.iter().zip(slots) {
                match slot {
                    Some(slot) => {
                        services[*si].gateway_ports.insert((e, *pi), range.port(slot));
                    }
                    None => {
                        let c = &self.repo.clusters[e];
                        let pos = super::cluster_pos(self.repo, c, "/spec/eastWestGateway/portRange");
                        self.diags.push(
                            Diagnostic::error(
                                code::GATEWAY_PORTS,
                                &c.file,
                                pos,
                                format!(
                                    "cluster {}: eastWestGateway.portRange {range} has no free port left for {key}; \
                                     other networks cannot reach it there",
                                    info.name
                                ),
                            )
                            .with_cluster(&info.name),
                        );
                    }
                }
            }
        }
    }

    /// The generated `<name>-eastwest` Service must have a valid name that no template takes.
    pub(super) fn eastwest_names(&mut self, services: &mut [ExportedService]) {
        for svc in services.iter_mut().filter(|s| !s.gateway_ports.is_empty()) {
            let generated = format!("{}{EASTWEST_SUFFIX}", svc.name);
            let obj = object(&svc.namespace, &svc.name);
            let why = if render::names::dns1035_label(&generated).is_err() {
                Some(format!(
                    "{obj}: the generated east-west Service name `{generated}` is not a valid Service name \
                     (at most 63 characters): shorten the Service's name; other networks cannot reach it"
                ))
            } else {
                self.service_templates
                    .get(&(svc.namespace.as_str(), generated.as_str()))
                    .map(|t| {
                        format!(
                            "{obj}: flotilla generates Service {}/{generated} for other networks, but a template \
                             already has that name ({}); rename it",
                            svc.namespace,
                            t.1.origin.at()
                        )
                    })
            };
            if let Some(why) = why {
                self.diags.push(
                    Diagnostic::error(code::EASTWEST_NAME, &svc.origin.file, svc.origin.pos, why).with_object(obj),
                );
                svc.gateway_ports.clear();
            }
        }
    }
}

/// `(namespace/name/port/protocol, service index, port index)` of every port of `indices`, sorted: the
/// allocation keys of frontend ids and gateway ports.
fn port_keys(services: &[ExportedService], indices: impl IntoIterator<Item = usize>) -> Vec<(String, usize, usize)> {
    let mut keys = Vec::new();
    for si in indices {
        let svc = &services[si];
        for (pi, p) in svc.ports.iter().enumerate() {
            let port_key = if p.name.is_empty() {
                p.port.to_string()
            } else {
                p.name.clone()
            };
            keys.push((
                format!("{}/{}/{port_key}/{}", svc.namespace, svc.name, p.protocol.as_str()),
                si,
                pi,
            ));
        }
    }
    keys.sort();
    keys
}

/// Frontend ids, from `namespace/name/port/protocol` (see [`crate::alloc`]).
pub(super) fn frontend_ids(services: &mut [ExportedService]) {
    let keys = port_keys(services, 0..services.len());
    let mut taken = HashSet::new();
    let slots = alloc::place(keys.iter().map(|k| k.0.as_str()), alloc::FRONTEND_ID_SLOTS, &mut taken);
    for ((_, si, pi), slot) in keys.iter().zip(slots) {
        // 2^31-1 slots: more frontends than that cannot be rendered in the first place.
        let id = slot.map_or(0, |s| u32::try_from(s + 1).unwrap_or(0));
        services[*si].ports[*pi].id = id;
    }
}
