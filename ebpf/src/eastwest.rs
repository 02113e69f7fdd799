//! The generated `<service>-eastwest` LoadBalancer Services: how other networks reach an exporter.
//!
//! For every exporting cluster that a consumer on another network routes to (see
//! [`crate::plan::ExportedService::gateway_ports`]), the cluster's set gains
//!
//! ```yaml
//! apiVersion: v1
//! kind: Service
//! metadata:
//!   name: <service>-eastwest
//!   namespace: <namespace>
//!   labels: {app.kubernetes.io/managed-by: flotilla, flotilla.dev/eastwest-for: <service>}
//!   annotations:
//!     flotilla.dev/gateway-address: <eastWestGateway.address>
//!     metallb.universe.tf/allow-shared-ip: flotilla-eastwest
//! spec:
//!   type: LoadBalancer
//!   loadBalancerIP: <eastWestGateway.address>
//!   selector: <the Service's selector on that cluster>
//!   ports: [{name, protocol, port: <allocated gateway port>, targetPort: <the Service's targetPort>}]
//! ```
//!
//! Every east-west Service of a cluster asks for the same address (the gateway's) on its own port.
//! `spec.loadBalancerIP` is deprecated in Kubernetes but is the one field on-premises load balancers
//! (MetalLB, kube-vip, Cilium LB-IPAM) still honour; MetalLB shares one address between Services only
//! when they carry the same `allow-shared-ip` key, hence that annotation. Other implementations ignore
//! both; the operator then points the gateway address at these Services by other means.

use crate::plan::{Plan, EASTWEST_SUFFIX};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The label naming the Service an east-west Service stands for.
pub const EASTWEST_LABEL: &str = "flotilla.dev/eastwest-for";

/// The east-west Services per cluster name (clusters without any are absent), each cluster's list
/// sorted by namespace and name.
pub fn eastwest_services(plan: &Plan) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<(String, String, Value)>> = BTreeMap::new();
    for svc in &plan.services {
        let mut by_cluster: BTreeMap<usize, Vec<(usize, u16)>> = BTreeMap::new();
        for ((e, pi), port) in &svc.gateway_ports {
            by_cluster.entry(*e).or_default().push((*pi, *port));
        }
        for (e, ports) in by_cluster {
            let (Some(gw), Some(local)) = (plan.clusters[e].gateway, svc.local.get(&e)) else {
                continue;
            };
            let rendered_ports = local.service.pointer("/spec/ports").and_then(Value::as_array);
            let mut spec_ports = Vec::new();
            for (pi, gw_port) in ports {
                let p = &svc.ports[pi];
                let target = rendered_ports
                    .and_then(|rps| {
                        rps.iter()
                            .find(|rp| rp.get("name").and_then(Value::as_str).unwrap_or("") == p.name)
                    })
                    .and_then(|rp| rp.get("targetPort").or_else(|| rp.get("port")).cloned())
                    .unwrap_or_else(|| json!(p.port));
                let mut port = Map::new();
                if !p.name.is_empty() {
                    port.insert("name".into(), json!(p.name));
                }
                port.insert("protocol".into(), json!(p.protocol.as_str()));
                port.insert("port".into(), json!(gw_port));
                port.insert("targetPort".into(), target);
                spec_ports.push(Value::Object(port));
            }
            let name = format!("{}{EASTWEST_SUFFIX}", svc.name);
            let address = gw.address.to_string();
            let mut spec = Map::new();
            spec.insert("type".into(), json!("LoadBalancer"));
            spec.insert("loadBalancerIP".into(), json!(address));
            if let Some(sel) = local.service.pointer("/spec/selector") {
                spec.insert("selector".into(), sel.clone());
            }
            spec.insert("ports".into(), Value::Array(spec_ports));
            let obj = json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": svc.namespace,
                    "labels": {
                        "app.kubernetes.io/managed-by": "flotilla",
                        EASTWEST_LABEL: svc.name,
                    },
                    "annotations": {
                        "flotilla.dev/gateway-address": address,
                        "metallb.universe.tf/allow-shared-ip": "flotilla-eastwest",
                    },
                },
                "spec": Value::Object(spec),
            });
            out.entry(plan.clusters[e].name.clone())
                .or_default()
                .push((svc.namespace.clone(), name, obj));
        }
    }
    out.into_iter()
        .map(|(c, mut objs)| {
            objs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            (c, objs.into_iter().map(|(_, _, o)| o).collect())
        })
        .collect()
}
