//! Reading the routing inputs: the inventory, exported Services, GlobalTrafficPolicies.

use super::{object, ClusterInfo, ExportedService, Gateway, Local, Placed, Planner, ServicePort};
use crate::alloc::PortRange;
use crate::config::{Locality, Mode, Protocol};
use render::diagnostic::{code, Diagnostic};
use render::repo::{GlobalTrafficPolicy, Template};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

impl Planner<'_, '_> {
    pub(super) fn clusters(&mut self) -> Vec<ClusterInfo> {
        let mut out = Vec::with_capacity(self.repo.clusters.len());
        for c in &self.repo.clusters {
            let gateway = c.spec.east_west_gateway.as_ref().and_then(|g| {
                // The schema checks the address; an invalid one is an error there already.
                let address = g.address.parse::<Ipv4Addr>().ok()?;
                let ports = match PortRange::parse(&g.port_range) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let pos = super::cluster_pos(self.repo, c, "/spec/eastWestGateway/portRange");
                        self.diags.push(
                            Diagnostic::error(
                                code::GATEWAY_PORTS,
                                &c.file,
                                pos,
                                format!("Cluster {}: eastWestGateway.portRange {e}", c.name),
                            )
                            .with_cluster(&c.name),
                        );
                        None
                    }
                };
                Some(Gateway { address, ports })
            });
            out.push(ClusterInfo {
                name: c.name.clone(),
                network: c.network().to_string(),
                locality: Locality {
                    region: c.spec.region.clone(),
                    zone: c.spec.zones.first().cloned().unwrap_or_default(),
                },
                gateway,
            });
        }
        out
    }

    /// Services with a ServiceExport, their ports, and the clusters exporting them.
    pub(super) fn exported(&mut self, placed: &Placed<'_>) -> Vec<ExportedService> {
        let mut exports: Vec<(usize, &Template)> = self
            .repo
            .templates
            .iter()
            .enumerate()
            .filter(|(_, t)| t.group == "multicluster.x-k8s.io" && t.kind == "ServiceExport")
            .collect();
        exports.sort_by(|a, b| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name)));
        let mut out = Vec::new();
        for (ei, export) in exports {
            let (ns, name) = (export.namespace.as_str(), export.name.as_str());
            let Some(&(si, svc)) = self.service_templates.get(&(ns, name)) else {
                self.diags.push(
                    Diagnostic::warning(
                        code::EXPORT_WITHOUT_SERVICE,
                        &export.origin.file,
                        export.origin.pos,
                        format!("ServiceExport {ns}/{name} has no Service {ns}/{name} to export: nothing is routed"),
                    )
                    .with_object(export.object_ref().to_string()),
                );
                continue;
            };
            // The exporting clusters hold both (both lists are in cluster order).
            let exported_on: Vec<usize> = placed[ei].iter().map(|(c, _)| *c).collect();
            let held: Vec<(usize, &Arc<Value>)> = placed[si]
                .iter()
                .filter(|(c, _)| exported_on.binary_search(c).is_ok())
                .map(|(c, o)| (*c, *o))
                .collect();
            if let Some(s) = self.service(svc, export, &held) {
                out.push(s);
            }
        }
        out
    }

    fn not_routable(&mut self, svc: &Template, pointer: &str, why: String) {
        let pos = self.repo.locate(&svc.origin, pointer);
        self.diags.push(
            Diagnostic::warning(code::NOT_ROUTABLE, &svc.origin.file, pos, why)
                .with_object(object(&svc.namespace, &svc.name)),
        );
    }

    /// One exported Service; `held` = (cluster, rendered Service) of the exporting clusters.
    fn service(&mut self, svc: &Template, export: &Template, held: &[(usize, &Arc<Value>)]) -> Option<ExportedService> {
        let (ns, name) = (svc.namespace.as_str(), svc.name.as_str());
        let v = &svc.value;
        if v.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
            let why = format!("Service {ns}/{name} is an ExternalName Service: it has no backends to route to");
            self.not_routable(svc, "/spec/type", why);
            return None;
        }
        let mut ports = Vec::new();
        let list = v
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, port) in list.iter().enumerate() {
            let pname = port.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let number = port
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0);
            let proto_text = port.get("protocol").and_then(Value::as_str);
            match (number, Protocol::parse(proto_text)) {
                (Some(port), Some(protocol)) => {
                    if ports
                        .iter()
                        .any(|p: &ServicePort| p.port == port && p.protocol == protocol)
                    {
                        continue;
                    }
                    ports.push(ServicePort {
                        name: pname,
                        port,
                        protocol,
                        id: 0,
                    });
                }
                (None, _) => {
                    let why = format!("Service {ns}/{name}: spec.ports[{i}].port is not a port number 1-65535");
                    self.not_routable(svc, &format!("/spec/ports/{i}/port"), why);
                }
                (_, None) => {
                    let why = format!(
                        "Service {ns}/{name}: port {} uses protocol {}, which socket load balancing cannot redirect; \
                         it gets no frontend",
                        number.unwrap_or(0),
                        proto_text.unwrap_or("")
                    );
                    self.not_routable(svc, &format!("/spec/ports/{i}/protocol"), why);
                }
            }
        }
        if ports.is_empty() {
            let why = format!("exported Service {ns}/{name} has no TCP or UDP port: nothing is routed");
            self.not_routable(svc, "/spec/ports", why);
            return None;
        }
        let mut exporters = Vec::new();
        let mut local = BTreeMap::new();
        for &(ci, rendered) in held {
            exporters.push(ci);
            let ip_text = rendered.pointer("/spec/clusterIP").and_then(Value::as_str);
            let rendered_ports = rendered.pointer("/spec/ports").and_then(Value::as_array);
            let port_there = |p: &ServicePort| -> Option<u16> {
                rendered_ports?
                    .iter()
                    .find(|rp| {
                        rp.get("name").and_then(Value::as_str).unwrap_or("") == p.name
                            && Protocol::parse(rp.get("protocol").and_then(Value::as_str)) == Some(p.protocol)
                    })
                    .and_then(|rp| rp.get("port")?.as_u64())
                    .and_then(|n| u16::try_from(n).ok())
            };
            local.insert(
                ci,
                Local {
                    service: Arc::clone(rendered),
                    cluster_ip: ip_text.and_then(|s| s.parse().ok()),
                    headless: ip_text == Some("None"),
                    ports: ports.iter().map(port_there).collect(),
                },
            );
        }
        if exporters.is_empty() {
            self.diags.push(
                Diagnostic::warning(
                    code::EXPORTED_NOWHERE,
                    &export.origin.file,
                    export.origin.pos,
                    format!(
                        "Service {ns}/{name} is exported from no cluster: no cluster holds both the Service and its \
                         ServiceExport (place them with the same policy); its frontends have no backends"
                    ),
                )
                .with_object(export.object_ref().to_string()),
            );
        }
        let targets = exporters.iter().map(|c| (*c, 1)).collect();
        Some(ExportedService {
            namespace: ns.to_string(),
            name: name.to_string(),
            vip: None,
            mode: Mode::Locality,
            ports,
            exporters,
            targets,
            local,
            gateway_ports: BTreeMap::new(),
            origin: svc.origin.clone(),
            vip_request: v.pointer("/metadata/annotations/flotilla.dev~1vip").cloned(),
        })
    }

    /// Applies the GlobalTrafficPolicies: mode and targets.
    pub(super) fn traffic(&mut self, services: &mut [ExportedService]) {
        let mut policies: Vec<&GlobalTrafficPolicy> = self.repo.traffic.iter().filter(|p| !p.schema_invalid).collect();
        policies.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.origin.file, a.origin.pos).cmp(&(
                &b.namespace,
                &b.name,
                &b.origin.file,
                b.origin.pos,
            ))
        });
        let mut seen: HashMap<(&str, &str), &GlobalTrafficPolicy> = HashMap::new();
        let index: HashMap<(String, String), usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.namespace.clone(), s.name.clone()), i))
            .collect();
        for gtp in policies {
            let key = (gtp.namespace.as_str(), gtp.name.as_str());
            if let Some(first) = seen.get(&key) {
                self.diags.push(Diagnostic::error(
                    code::DUPLICATE_OBJECT,
                    &gtp.origin.file,
                    gtp.origin.pos,
                    format!(
                        "duplicate {}: already defined at {}; this one is ignored",
                        gtp.display(),
                        first.origin.at()
                    ),
                ));
                continue;
            }
            seen.insert(key, gtp);
            let found = index.get(&(gtp.namespace.clone(), gtp.name.clone()));
            let Some(svc) = found.map(|&i| &mut services[i]) else {
                self.diags.push(Diagnostic::warning(
                    code::TRAFFIC_WITHOUT_EXPORT,
                    &gtp.origin.file,
                    gtp.origin.pos,
                    format!(
                        "{} has no exported Service {}/{} (a Service with a ServiceExport of the same name): it has no effect",
                        gtp.display(),
                        gtp.namespace,
                        gtp.name
                    ),
                ));
                continue;
            };
            self.apply_policy(gtp, svc);
        }
    }

    fn apply_policy(&mut self, gtp: &GlobalTrafficPolicy, svc: &mut ExportedService) {
        svc.mode = gtp.spec.mode.as_deref().and_then(Mode::parse).unwrap_or_default();
        if gtp.spec.targets.is_empty() {
            return;
        }
        let warn = |diags: &mut Vec<Diagnostic>, i: usize, why: String| {
            let pos = self.repo.locate(&gtp.origin, &format!("/spec/targets/{i}"));
            diags.push(Diagnostic::warning(
                code::TRAFFIC_TARGET_UNUSED,
                &gtp.origin.file,
                pos,
                why,
            ));
        };
        if svc.mode == Mode::Locality {
            let why = format!(
                "{}: targets have no effect in mode Locality (only the consuming cluster's own backends are used)",
                gtp.display()
            );
            warn(&mut self.diags, 0, why);
            return;
        }
        let mut targets: Vec<(usize, u16)> = Vec::new();
        for (i, t) in gtp.spec.targets.iter().enumerate() {
            let Ok(ci) = self.repo.clusters.binary_search_by(|c| c.name.as_str().cmp(&t.cluster)) else {
                let pos = self.repo.locate(&gtp.origin, &format!("/spec/targets/{i}/cluster"));
                self.diags.push(Diagnostic::error(
                    code::TRAFFIC_UNKNOWN_CLUSTER,
                    &gtp.origin.file,
                    pos,
                    format!(
                        "{}: target cluster `{}` is not in the inventory",
                        gtp.display(),
                        t.cluster
                    ),
                ));
                continue;
            };
            if targets.iter().any(|(c, _)| *c == ci) {
                let why = format!(
                    "{}: cluster {} is listed twice; the first entry counts",
                    gtp.display(),
                    t.cluster
                );
                warn(&mut self.diags, i, why);
                continue;
            }
            if svc.exporters.binary_search(&ci).is_err() {
                let why = format!(
                    "{}: Service {}/{} is not exported from cluster {} in this commit, so that target has no backends",
                    gtp.display(),
                    svc.namespace,
                    svc.name,
                    t.cluster
                );
                warn(&mut self.diags, i, why);
                continue;
            }
            let weight = t.weight.unwrap_or(1).clamp(1, i64::from(u16::MAX));
            targets.push((ci, u16::try_from(weight).unwrap_or(u16::MAX)));
        }
        svc.targets = targets;
    }
}
