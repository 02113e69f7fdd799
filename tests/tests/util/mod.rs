//! Helpers shared by the daemon's end-to-end test binaries (`reconcile.rs`, `git_servers.rs`): a
//! three-cluster repository, a daemon started with `flotilla_tests::daemon::Running`, plain HTTP
//! requests to the daemon. Each binary uses a subset, hence the `dead_code` allowance.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use flotilla_tests::cluster::{self, unique_name};
pub use flotilla_tests::daemon::Running;
use flotilla_tests::git;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use reconciler::daemon::{DriftMode, Options};
use std::path::Path;

/// The clusters of [`CLUSTERS`], for [`Running::synced`].
pub const ALL: &[&str] = &["cluster-1", "cluster-2", "cluster-3"];

pub const CLUSTERS: &str = "apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-1}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-2}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-3}
";

/// Writes the repository's files for namespace `ns` with ConfigMap value `value` and commits them.
pub fn commit_repo(dir: &Path, ns: &str, value: &str, image: &str) -> String {
    let files = [
        ("clusters.yaml", CLUSTERS.to_string()),
        (
            "ns.yaml",
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        ),
        (
            "policies.yaml",
            format!(
                "apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {{name: {ns}-ns}}
spec:
  resourceSelectors: [{{apiVersion: v1, kind: Namespace, name: {ns}}}]
  placement: {{clusterAffinity: {{clusterNames: [cluster-1, cluster-2, cluster-3]}}}}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: all, namespace: {ns}}}
spec:
  resourceSelectors:
  - {{apiVersion: v1, kind: ConfigMap}}
  - {{apiVersion: apps/v1, kind: Deployment}}
  placement: {{clusterAffinity: {{clusterNames: [cluster-1, cluster-2, cluster-3]}}}}
"
            ),
        ),
        (
            "app.yaml",
            format!(
                "apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{k: {value}}}
---
# No replicas: an autoscaler owns them; flotilla must not fight it.
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: '{image}'}}]
"
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", &format!("settings {value}")]);
    git(dir, &["rev-parse", "HEAD"])
}

pub fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

pub fn start(h: &cluster::Harness, repo: &Path, drift: DriftMode) -> Running {
    start_with(h, repo, drift, |_| {})
}

/// A daemon following `main` of `repo` (polling every 200 ms) on the harness's clusters, with drift
/// mode `drift`; `tune` changes any other option.
pub fn start_with(h: &cluster::Harness, repo: &Path, drift: DriftMode, tune: impl FnOnce(&mut Options)) -> Running {
    Running::start(h, repo, |opts| {
        opts.drift = drift;
        opts.applyset = unique_name("reconcile");
        tune(opts);
    })
}

pub async fn setting(h: &cluster::Harness, i: usize, ns: &str) -> Option<String> {
    Api::<ConfigMap>::namespaced(h.client(i).unwrap(), ns)
        .get_opt("settings")
        .await
        .unwrap()
        .and_then(|c| c.data)
        .and_then(|d| d.get("k").cloned())
}

/// One HTTP/1.1 request to the daemon; returns (status code, body).
pub fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A refused oversized body may be answered before it is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
