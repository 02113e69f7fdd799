//! `flotilla endpoints --live` against real kube-apiservers (the harness of `flotilla-tests`, two clusters):
//! ClusterIPs and EndpointSlices are read from the clusters, and a cluster that cannot be reached is named in
//! a warning and follows the offline rules. `FLOTILLA_SKIP_CLUSTER=1` skips it on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use ebpf::{EndpointMapConfig, Via};
use flotilla_tests::cluster;
use flotilla_tests::routing::{backends, endpoint_slice};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .output()
        .unwrap()
}

/// Three clusters on one network but cluster-3, an island behind a gateway; `api` exported from all three,
/// FailOver in name order.
fn write_repo(dir: &Path, ns: &str) {
    let files = [
        (
            "clusters.yaml",
            "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: cluster-1}\nspec: {network: flat}\n---\n\
             apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: cluster-2}\nspec: {network: flat}\n---\n\
             apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: cluster-3}\n\
             spec: {network: island, eastWestGateway: {address: 192.0.2.30, portRange: 31000-31000}}\n"
                .to_string(),
        ),
        (
            "api.yaml",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: {ns}}}\n\
                 spec: {{selector: {{app: api}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\n\
                 apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: api, namespace: {ns}}}\n---\n\
                 apiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {{name: api, namespace: {ns}}}\n\
                 spec: {{mode: FailOver}}\n---\n\
                 apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {{name: api, namespace: {ns}}}\n\
                 spec:\n  resourceSelectors:\n  - {{apiVersion: v1, kind: Service}}\n  \
                 - {{apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport}}\n"
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The harness kubeconfig plus a context `cluster-3` whose server refuses connections.
fn kubeconfig_with_a_dead_cluster(h: &cluster::Harness, path: &Path) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let mut doc = h.kubeconfig_document().clone();
    let user = doc["users"][0]["name"].clone();
    let ca = doc["clusters"][0]["cluster"]["certificate-authority-data"].clone();
    doc["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cluster-3", "cluster": {"server": server, "certificate-authority-data": ca}}));
    doc["contexts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cluster-3", "context": {"cluster": "cluster-3", "user": user}}));
    std::fs::write(path, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_live_reads_clusterips_and_endpointslices_and_warns_about_an_unreachable_cluster() {
    let Some(h) = cluster::shared(2).unwrap() else { return };
    let (c1, c2) = (h.client(0).unwrap(), h.client(1).unwrap());
    let ns = cluster::create_namespace(&c1, "endpoints-live").await.unwrap();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    Api::<Namespace>::all(c2.clone())
        .patch(&ns, &PatchParams::apply("flotilla-test"), &Patch::Apply(&namespace))
        .await
        .unwrap();
    // The Services as an apply would leave them (the command only reads), and their EndpointSlices.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": ns},
                     "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    for c in [&c1, &c2] {
        Api::<Service>::namespaced(c.clone(), &ns)
            .patch("api", &PatchParams::apply("flotilla-test"), &Patch::Apply(&svc))
            .await
            .unwrap();
    }
    let cluster_ip = Api::<Service>::namespaced(c1.clone(), &ns)
        .get("api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    endpoint_slice(
        &c1,
        &ns,
        "api-a",
        json!([{"addresses": ["192.0.2.11"], "conditions": {"ready": true}},
               {"addresses": ["192.0.2.12"], "conditions": {"ready": false}}]),
    )
    .await
    .unwrap();
    endpoint_slice(
        &c2,
        &ns,
        "api-b",
        json!([{"addresses": ["192.0.2.21"], "conditions": {"ready": true}},
               {"addresses": ["192.0.2.22"]}]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    write_repo(&repo, &ns);
    let kubeconfig = dir.path().join("kubeconfig");
    kubeconfig_with_a_dead_cluster(h, &kubeconfig);
    let (repo, kubeconfig) = (repo.to_str().unwrap(), kubeconfig.to_str().unwrap());

    let o = flotilla(&[
        "endpoints",
        "--repo",
        repo,
        "--cluster",
        "cluster-1",
        "--live",
        "--kubeconfig",
        kubeconfig,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: cluster cluster-3: ") && stderr.contains("cluster-3 is left unknown"),
        "the unreachable cluster is named: {stderr}"
    );
    assert!(
        !stderr.contains("warning: cluster cluster-1") && !stderr.contains("warning: cluster cluster-2"),
        "{stderr}"
    );
    let doc: EndpointMapConfig = serde_json::from_slice(&o.stdout).unwrap();
    doc.verify().unwrap();
    // Tier 0: the local ClusterIP the server allocated, weighing its one ready endpoint; tier 1: cluster-2's
    // ready pods on the same network (192.0.2.22's unset `ready` counts as ready); tier 2: cluster-3, not
    // reached, by the offline rule: its gateway, ready, with the target weight.
    assert_eq!(
        backends(&doc),
        [
            (cluster_ip.clone(), 80, 0, 1, true, Via::Direct),
            ("192.0.2.21".into(), 8080, 1, 1, true, Via::Direct),
            ("192.0.2.22".into(), 8080, 1, 1, true, Via::Direct),
            ("192.0.2.30".into(), 31000, 2, 1, true, Via::Gateway),
        ]
    );

    // Offline, the same document has only what Git says: the gateway.
    let offline = flotilla(&["endpoints", "--repo", repo, "--cluster", "cluster-1"]);
    assert_eq!(offline.status.code(), Some(0));
    let offline: EndpointMapConfig = serde_json::from_slice(&offline.stdout).unwrap();
    assert_eq!(
        backends(&offline),
        [("192.0.2.30".into(), 31000, 2, 1, true, Via::Gateway)]
    );

    // Every cluster's document; cluster-2's tier 1 has cluster-1's ready pod only, and the unreachable
    // cluster's own document is still printed.
    let all = flotilla(&["endpoints", "--repo", repo, "--live", "--kubeconfig", kubeconfig]);
    assert_eq!(all.status.code(), Some(0), "{}", String::from_utf8_lossy(&all.stderr));
    let v: Value = serde_json::from_slice(&all.stdout).unwrap();
    let docs = v["clusters"].as_object().unwrap();
    assert_eq!(docs.len(), 3);
    let c2_doc: EndpointMapConfig = serde_json::from_value(docs["cluster-2"].clone()).unwrap();
    let tier1: Vec<_> = backends(&c2_doc).into_iter().filter(|b| b.2 == 1).collect();
    assert_eq!(tier1, [("192.0.2.11".into(), 8080, 1, 1, true, Via::Direct)]);
    // cluster-3 consumes too: cluster-1 and cluster-2 are on another network and have no gateway.
    let c3_doc: EndpointMapConfig = serde_json::from_value(docs["cluster-3"].clone()).unwrap();
    assert_eq!(c3_doc.frontends.len(), 1);
}

#[test]
fn endpoints_live_needs_a_kubeconfig_it_can_read() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path(), "shop");
    let repo = dir.path().to_str().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    let o = flotilla(&[
        "endpoints",
        "--repo",
        repo,
        "--live",
        "--kubeconfig",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading kubeconfig"));
    let o = flotilla(&["endpoints", "--repo", repo, "--kubeconfig", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "--kubeconfig without --live is a usage error");
}
