//! Test repositories for cross-cluster routing: a fleet and one exported Service, written as files.
//!
//! The repository holds the clusters, the ServiceExport CRD of `examples-repo/` (sent to every cluster), the
//! Service's namespace, the Service with its ServiceExport and GlobalTrafficPolicy, and the policies that place
//! them on every cluster. Tests commit it with [`crate::git`] and run the daemon on it.

use std::fmt::Write as _;
use std::path::Path;

/// A member cluster of the repository.
#[derive(Debug, Clone)]
pub struct ClusterSpec<'a> {
    pub name: &'a str,
    pub network: &'a str,
    /// `eastWestGateway`: its address and the one port of its `portRange`.
    pub gateway: Option<(&'a str, u16)>,
}

/// The exported Service.
#[derive(Debug, Clone)]
pub struct ServiceSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The Service port (named `http`, TCP).
    pub port: u16,
    pub target_port: u16,
    /// An explicit `spec.clusterIP`.
    pub cluster_ip: Option<&'a str>,
    /// The GlobalTrafficPolicy's mode.
    pub mode: &'a str,
    /// Whether the ServiceExport (and the GlobalTrafficPolicy) are there; without them the Service is an
    /// ordinary one and the repository has no routing inputs.
    pub exported: bool,
}

/// Writes the repository into `dir` (replacing the files a previous call wrote).
pub fn write_repo(dir: &Path, clusters: &[ClusterSpec<'_>], svc: &ServiceSpec<'_>) -> std::io::Result<()> {
    let mut inventory = String::new();
    for c in clusters {
        let _ = write!(
            inventory,
            "---\napiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {}}}\nspec:\n  network: {}\n",
            c.name, c.network
        );
        if let Some((address, port)) = c.gateway {
            let _ = writeln!(
                inventory,
                "  eastWestGateway: {{address: {address}, portRange: {port}-{port}}}"
            );
        }
    }
    let names: Vec<&str> = clusters.iter().map(|c| c.name).collect();
    let everywhere = format!("{{clusterAffinity: {{clusterNames: [{}]}}}}", names.join(", "));
    let (ns, name) = (svc.namespace, svc.name);
    let crd = std::fs::read_to_string(crate::examples_repo().join("apps/crds/serviceexport.yaml"))?;
    let policies = format!(
        "apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {{name: {ns}-cluster-wide}}
spec:
  resourceSelectors:
  - {{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, name: serviceexports.multicluster.x-k8s.io}}
  - {{apiVersion: v1, kind: Namespace, name: {ns}}}
  placement: {everywhere}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  resourceSelectors:
  - {{apiVersion: v1, kind: Service, name: {name}}}
  - {{apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport, name: {name}}}
  placement: {everywhere}
"
    );
    let cluster_ip = svc
        .cluster_ip
        .map(|ip| format!("clusterIP: {ip}, "))
        .unwrap_or_default();
    let mut app = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {{{cluster_ip}selector: {{app: {name}}}, ports: [{{name: http, port: {}, targetPort: {}}}]}}
",
        svc.port, svc.target_port
    );
    if svc.exported {
        let _ = write!(
            app,
            "---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {{name: {name}, namespace: {ns}}}
---
apiVersion: flotilla.dev/v1alpha1
kind: GlobalTrafficPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec: {{mode: {}}}
",
            svc.mode
        );
    }
    std::fs::write(dir.join("clusters.yaml"), inventory)?;
    std::fs::write(dir.join("serviceexport-crd.yaml"), crd)?;
    std::fs::write(dir.join("policies.yaml"), policies)?;
    std::fs::write(dir.join("app.yaml"), app)?;
    Ok(())
}

/// Writes EndpointSlice `name` of Service `api` in `ns` (port `http` 8080/TCP) with `endpoints`, as the
/// EndpointSlice controller would (server-side apply, its field manager).
pub async fn endpoint_slice(
    client: &kube::Client,
    ns: &str,
    name: &str,
    endpoints: serde_json::Value,
) -> kube::Result<()> {
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": "api"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    });
    kube::Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client.clone(), ns)
        .patch(
            name,
            &kube::api::PatchParams::apply("endpointslice-controller").force(),
            &kube::api::Patch::Apply(&slice),
        )
        .await
        .map(|_| ())
}

/// One endpoint with one address and its readiness, for [`endpoint_slice`].
pub fn endpoint(address: &str, ready: bool) -> serde_json::Value {
    serde_json::json!({"addresses": [address], "conditions": {"ready": ready}})
}

/// (address, port, priority, weight, ready, via) of the backends of a document's only frontend (panics
/// when it has another number of frontends: a test helper).
pub fn backends(doc: &ebpf::EndpointMapConfig) -> Vec<(String, u16, u8, u16, bool, ebpf::Via)> {
    assert_eq!(doc.frontends.len(), 1, "{doc:#?}");
    doc.frontends[0]
        .backends
        .iter()
        .map(|b| (b.address.to_string(), b.port, b.priority, b.weight, b.ready, b.via))
        .collect()
}
