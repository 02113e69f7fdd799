//! Helpers: miniature fleets as YAML, rendered and planned; documents; live data.

use ebpf::plan::Plan;
use ebpf::{BuildOptions, EndpointMapConfig, Frontend, Live, LiveCluster, LiveEndpoint, LiveService, Protocol};
use render::{Diagnostic, RenderOptions, Snapshot};
use std::net::Ipv4Addr;

/// A member cluster: name, network, optional gateway (address, port range).
pub fn cluster(name: &str, network: &str, gateway: Option<(&str, &str)>) -> String {
    let gw = gateway
        .map(|(a, r)| format!("\n  eastWestGateway: {{address: {a}, portRange: {r}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\n\
         spec:\n  region: r-{network}\n  zones: [z-{name}]\n  network: {network}{gw}\n"
    )
}

/// An exported Service (Service + ServiceExport + a PropagationPolicy placing both on `clusters`).
#[derive(Debug, Clone, Copy)]
pub struct Svc<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub clusters: &'a [&'a str],
    /// YAML flow list of the Service's ports.
    pub ports: &'a str,
    /// Extra lines under `metadata:` (e.g. annotations), indented by two spaces.
    pub meta: &'a str,
    /// Extra lines under `spec:`, indented by two spaces.
    pub spec: &'a str,
}

impl<'a> Svc<'a> {
    pub fn new(ns: &'a str, name: &'a str, clusters: &'a [&'a str]) -> Self {
        Svc {
            ns,
            name,
            clusters,
            ports: "[{name: http, port: 80, targetPort: 8080}]",
            meta: "",
            spec: "",
        }
    }

    pub fn yaml(&self) -> String {
        let (ns, name) = (self.ns, self.name);
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n{meta}\
             spec:\n  selector: {{app: {name}}}\n  ports: {ports}\n{spec}---\n\
             apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: {ns}}}\n---\n\
             apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  resourceSelectors:\n  - {{apiVersion: v1, kind: Service, name: {name}}}\n  \
             - {{apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport, name: {name}}}\n  \
             placement:\n    clusterAffinity: {{clusterNames: [{clusters}]}}\n",
            meta = self.meta,
            ports = self.ports,
            spec = self.spec,
            clusters = self.clusters.join(", "),
        )
    }
}

/// A GlobalTrafficPolicy.
pub fn gtp(ns: &str, name: &str, mode: &str, targets: &[(&str, Option<u32>)]) -> String {
    let mut s = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  mode: {mode}\n"
    );
    if !targets.is_empty() {
        s.push_str("  targets:\n");
        for (c, w) in targets {
            match w {
                Some(w) => s.push_str(&format!("  - cluster: {c}\n    weight: {w}\n")),
                None => s.push_str(&format!("  - cluster: {c}\n")),
            }
        }
    }
    s
}

/// A rendered and planned fleet.
pub struct Routed {
    pub plan: Plan,
    /// Render's diagnostics and the plan's.
    pub diagnostics: Vec<Diagnostic>,
}

pub fn route<P: AsRef<str>, T: AsRef<str>>(files: &[(P, T)]) -> Routed {
    let snap = Snapshot::from_texts(
        files
            .iter()
            .map(|(p, t)| (p.as_ref().to_string(), t.as_ref().to_string())),
    );
    let repo = render::repo::load(&snap);
    let (out, _) = render::pipeline::run(&repo, &RenderOptions::default());
    let plan = ebpf::plan::plan(&repo, &out);
    let mut diagnostics = out.diagnostics.clone();
    diagnostics.extend(plan.diagnostics.iter().cloned());
    Routed { plan, diagnostics }
}

impl Routed {
    pub fn doc(&self, cluster: &str, live: &Live) -> EndpointMapConfig {
        ebpf::build(&self.plan, cluster, live, &BuildOptions::default())
            .expect("cluster in the inventory")
            .expect("document serialises")
    }

    /// The only frontend of `cluster`'s document for Service `name`.
    pub fn frontend(&self, cluster: &str, name: &str, live: &Live) -> Frontend {
        let doc = self.doc(cluster, live);
        let mut fs = doc.frontends.into_iter().filter(|f| f.service.name == name);
        let f = fs
            .next()
            .unwrap_or_else(|| panic!("no frontend for {name} on {cluster}"));
        assert!(fs.next().is_none(), "one frontend for {name}");
        f
    }

    /// Diagnostics with this code.
    pub fn with_code(&self, code: &str) -> Vec<&Diagnostic> {
        self.diagnostics.iter().filter(|d| d.code == code).collect()
    }

    /// Asserts that no error diagnostic exists.
    pub fn no_errors(&self) {
        let errors: Vec<String> = self
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

/// (address, port, weight, cluster, ready, via, priority) of a frontend's backends, for compact asserts.
pub fn backends(f: &Frontend) -> Vec<(String, u16, u16, String, bool, String, u8)> {
    f.backends
        .iter()
        .map(|b| {
            (
                b.address.to_string(),
                b.port,
                b.weight,
                b.cluster.clone(),
                b.ready,
                format!("{:?}", b.via),
                b.priority,
            )
        })
        .collect()
}

/// One observed Service: cluster, namespace, name, ClusterIP, `(address, ready)` endpoints.
pub type Observed<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, &'a [(&'a str, bool)]);

/// Live data: per cluster, per (namespace, name): ClusterIP and `(address, ready)` endpoints of the
/// port named `http` on 8080/TCP.
pub fn live(entries: &[Observed<'_>]) -> Live {
    let mut l = Live::default();
    for (cluster, ns, name, ip, eps) in entries {
        let svc = LiveService {
            cluster_ip: ip.map(|s| s.parse::<Ipv4Addr>().expect("IPv4")),
            endpoints: eps
                .iter()
                .map(|(a, ready)| LiveEndpoint {
                    address: a.parse().expect("IPv4"),
                    port_name: "http".into(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                    ready: *ready,
                })
                .collect(),
        };
        l.clusters
            .entry(cluster.to_string())
            .or_insert_with(LiveCluster::default)
            .services
            .insert((ns.to_string(), name.to_string()), svc);
    }
    l
}

/// Marks clusters as observed with no services at all.
pub fn observed_empty(l: &mut Live, clusters: &[&str]) {
    for c in clusters {
        l.clusters.entry(c.to_string()).or_default();
    }
}
