//! # ebpf: cross-cluster routing, the endpoint map config
//!
//! flotilla routes a connection to a multi-cluster service's virtual IP inside the kernel of every
//! node: a node agent loads a table, the *endpoint map config*, into eBPF maps, and socket hooks
//! rewrite `connect()` to a backend — the local Service, a pod of a remote cluster on the same
//! network, or a remote cluster's east-west gateway on an island network (SPEC §7). This crate is
//! the pure half of that: the document's types, and the builder that computes one document per
//! consuming cluster from a rendered commit; the BPF program (`bpf/flotilla.bpf.c`, compiled by
//! `build.rs` with the `bpf-object` feature and embedded as `object::OBJECT`); and the map layout the node
//! agent writes ([`datapath`]). The agent itself (aya, kernel IO) is the `flotilla-agent` crate, so
//! `reconciler`, which builds documents through this crate, never links aya nor needs clang.
//!
//! ## Main types
//! - [`EndpointMapConfig`] (module [`config`]): the document, its canonical JSON and `sha256:` hash.
//! - [`plan::Plan`] ([`plan::plan`]): what a rendered commit means for routing — exported services,
//!   their VIPs, modes, targets, tiers, gateway ports — plus diagnostics about bad inputs.
//! - [`Live`]: what the caller observed on the clusters (ClusterIPs, ready endpoints); empty offline.
//! - [`build`] / [`build_all`]: plan + live → sealed documents. [`eastwest_services`]: the generated
//!   `<service>-eastwest` LoadBalancer Services, plan → objects.
//! - [`datapath::tables`]: a document → the entries of one generation of the BPF maps (bytes).
//!
//! ## Inputs and rules
//! - An *exported service* is a `Service` with a `ServiceExport` (`multicluster.x-k8s.io`) of the same
//!   namespace and name in the repository. It is exported *from* every cluster whose rendered set
//!   holds both (MCS semantics: the export is per cluster; one policy usually places both).
//! - Its VIP comes from `vipRange` (RepoConfig, default [`alloc::DEFAULT_VIP_RANGE`]), deterministic
//!   from namespace/name, or from the annotation `flotilla.dev/vip` (validated); see [`alloc`]. VIPs
//!   do not depend on placement: a failover never renumbers them.
//! - Every inventory cluster consumes: its document lists every exported service's frontends (one
//!   per Service port), with the backends *that* cluster routes to. Tiers by mode: Locality = the
//!   consumer's own backends only; FailOver = the consumer first (when it exports the service), then
//!   the `GlobalTrafficPolicy` targets in order, one tier each, at most 4; ActiveActive = the consumer
//!   and every target in tier 0, weighted. Without targets: every exporting cluster in name order,
//!   weight 1.
//! - Backends of a tier cluster: itself → its Service's ClusterIP and port (`Direct`); a cluster on the
//!   same `network` → its ready pod endpoints (`Direct`); a cluster on another network → its
//!   `eastWestGateway.address` and a port allocated from its `portRange` (`Gateway`), behind which the
//!   generated `<service>-eastwest` Service listens.
//! - Weights: a backend standing for several endpoints (a ClusterIP or a gateway) weighs *ready
//!   endpoints × target weight* when the cluster is observed, and the target weight otherwise; a pod
//!   endpoint weighs the target weight.
//!
//! ## Offline documents (no live data)
//! Offline (`flotilla endpoints`, pull-request checks) a document holds exactly what Git determines:
//! every cluster, every frontend with its VIP, port, mode and id, and the backends whose address is
//! known — gateway backends of island clusters, and the local ClusterIP when the Service sets
//! `spec.clusterIP` explicitly. Backends only a cluster knows (allocated ClusterIPs, pod IPs on flat
//! networks) are *omitted*, never invented; such a frontend may have no backends. Unobserved backends
//! are `ready: true` with the target weight. Priorities do not depend on what is known: a cluster's
//! tier is the same offline and live.
//!
//! ## Versions
//! `version` must increase strictly per cluster. The caller chooses it with [`next_version`]: the
//! commit's committer time in seconds, but above the last published version (the daemon reads that
//! from the published ConfigMap; offline there is none). A working tree has no commit: version 0,
//! for inspection only. `hash` covers `version` and `source` too.
//!
//! ## Example
//! ```
//! let snap = render::Snapshot::from_texts([
//!     ("c.yaml", "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: eu-1}\n"),
//!     ("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n\
//!                   spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n---\n\
//!                   apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\n\
//!                   metadata: {name: api, namespace: shop}\n"),
//!     ("pp.yaml", "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\n\
//!                  metadata: {name: api, namespace: shop}\nspec:\n  resourceSelectors:\n\
//!                  \x20 - {apiVersion: v1, kind: Service}\n\
//!                  \x20 - {apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport}\n"),
//! ]);
//! let repo = render::repo::load(&snap);
//! let (out, _) = render::pipeline::run(&repo, &render::RenderOptions::default());
//! let plan = ebpf::plan::plan(&repo, &out);
//! let docs = ebpf::build_all(&plan, &ebpf::Live::default(), &ebpf::BuildOptions::default()).unwrap();
//! let f = &docs[0].frontends[0];
//! assert_eq!((f.port, f.backends[0].address.to_string()), (80, "10.96.0.10".to_string()));
//! docs[0].verify().unwrap();
//! ```

pub mod alloc;
pub mod config;
pub mod datapath;
pub mod documents;
pub mod eastwest;
pub mod live;
#[cfg(feature = "bpf-object")]
pub mod object;
pub mod plan;

pub use config::{Backend, ConfigError, EndpointMapConfig, Frontend, Mode, Protocol, Via};
pub use documents::{build, build_all, next_version, BuildOptions};
pub use eastwest::eastwest_services;
pub use live::{Live, LiveCluster, LiveEndpoint, LiveService};

/// Whether the repository exports any Service (has a `ServiceExport` template): only then can the
/// routing step add objects to the rendered sets.
pub fn exports_any(repo: &render::repo::Repo<'_>) -> bool {
    repo.templates
        .iter()
        .any(|t| t.group == "multicluster.x-k8s.io" && t.kind == "ServiceExport")
}
