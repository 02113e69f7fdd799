//! End to end (SPEC §7): the daemon renders a repository, applies it to two real kube-apiservers and
//! publishes cluster-1's endpoint map as the ConfigMap `flotilla-system/endpoint-map`; the real
//! `flotilla-agent`, reading that ConfigMap through the API server, loads it into the kernel; a client in the
//! agent's cgroup connects to the VIP and reaches the backend the EndpointSlices make the preferred one, and
//! moves when they change.
//!
//! Addresses: the kube-apiserver refuses loopback addresses in EndpointSlices ("may not be in the loopback
//! range"), so no pod endpoint can be a backend on this machine. The two backends a consumer reaches without
//! pod IPs are used instead, both in 127.0.0.0/8: its own Service's ClusterIP (the test adds a ServiceCIDR
//! 127.0.100.0/24 to cluster-1, which the API server accepts, and the Service asks for 127.0.100.2 there) and a
//! remote cluster's east-west gateway (cluster-2 is on another network, gateway 127.0.101.2 with a one-port
//! range). The EndpointSlices the test writes hold documentation addresses (192.0.2.0/24) that nothing
//! connects to: they decide readiness and weights. FailOver: cluster-1's own Service first, cluster-2 second.

use crate::probe::{Command, Report};
use crate::util::{check, Backend, Node, TestResult};
use ebpf::{EndpointMapConfig, Via};
use flotilla_tests::cluster::{self, unique_name, Harness};
use flotilla_tests::daemon::Running;
use flotilla_tests::git;
use flotilla_tests::routing::{backends, endpoint, endpoint_slice, write_repo, ClusterSpec, ServiceSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 100, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(127, 0, 101, 2);
const LOCAL_ID: u8 = 21;
const GATEWAY_ID: u8 = 22;

pub fn daemon_publishes_and_the_agent_routes() -> TestResult {
    if cluster::skip_requested() {
        eprintln!(
            "the_daemon_publishes_and_the_agent_routes_end_to_end: skipped ({}=1)",
            cluster::SKIP_ENV
        );
        return Ok(());
    }
    let harness = Harness::start(2).map_err(|e| format!("{e:#}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let local = Backend::start_at(CLUSTER_IP, LOCAL_ID);
    let gateway = Backend::start_at(GATEWAY, GATEWAY_ID);
    let port = local.addr.port();
    let (c1, c2) = rt.block_on(async { (harness.client(0).unwrap(), harness.client(1).unwrap()) });
    rt.block_on(service_cidr(&c1));

    // The repository: `api` exported from both clusters, on different networks.
    let ns = unique_name("e2e");
    let repo = tempfile::tempdir().unwrap();
    let gw = GATEWAY.to_string();
    let clusters = [
        ClusterSpec {
            name: "cluster-1",
            network: "net-1",
            gateway: None,
        },
        ClusterSpec {
            name: "cluster-2",
            network: "net-2",
            gateway: Some((&gw, gateway.addr.port())),
        },
    ];
    let ip = CLUSTER_IP.to_string();
    let svc = ServiceSpec {
        namespace: &ns,
        name: "api",
        port,
        target_port: 8080,
        cluster_ip: Some(&ip),
        mode: "FailOver",
        exported: true,
    };
    write_repo(repo.path(), &clusters, &svc).unwrap();
    // Only cluster-1 has the loopback ServiceCIDR: cluster-2's Service gets an allocated ClusterIP (its
    // generated east-west Service too, which could otherwise take 127.0.100.2 first).
    std::fs::write(
        repo.path().join("override.yaml"),
        format!(
            "apiVersion: policy.karmada.io/v1alpha1\nkind: OverridePolicy\nmetadata: {{name: api-cluster-ip, namespace: {ns}}}\n\
             spec:\n  resourceSelectors: [{{apiVersion: v1, kind: Service, name: api}}]\n  overrideRules:\n  \
             - targetCluster: {{clusterNames: [cluster-2]}}\n    overriders:\n      \
             plaintext: [{{path: /spec/clusterIP, operator: remove}}]\n"
        ),
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "export api"]);

    // The daemon, in this process.
    let daemon = {
        let _in_runtime = rt.enter();
        Running::start(&harness, repo.path(), |_| {})
    };
    // Pods behind both Services (as an EndpointSlice controller would write them), once the namespace is there.
    let both_ready = |d: &EndpointMapConfig| {
        backends(d)
            == [
                (CLUSTER_IP.to_string(), port, 0, 1, true, Via::Direct),
                (GATEWAY.to_string(), gateway.addr.port(), 1, 1, true, Via::Gateway),
            ]
    };
    let doc = rt.block_on(async {
        wait_namespace(&c1, &ns).await;
        wait_namespace(&c2, &ns).await;
        endpoint_slice(&c1, &ns, "api-a", serde_json::json!([endpoint("192.0.2.11", true)]))
            .await
            .unwrap();
        endpoint_slice(&c2, &ns, "api-b", serde_json::json!([endpoint("192.0.2.21", true)]))
            .await
            .unwrap();
        wait_doc(&c1, "both tiers ready", both_ready).await
    });
    let vip = SocketAddrV4::new(doc.frontends[0].vip, port);

    // The agent reads cluster-1's ConfigMap through the API server (the defaults: flotilla-system/endpoint-map).
    let kubeconfig = harness.kubeconfig().display().to_string();
    let mut node = Node::new("e2e").with_configmap(&[
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "cluster-1",
        "--cluster",
        "cluster-1",
    ]);
    node.start_agent();
    node.wait_applied(doc.version);
    let only = |r: &Report, id: u8| r.failures == 0 && r.not_vip == 0 && r.ids.keys().eq([id].iter());
    let r = node.probe(&Command::Tcp { vip, count: 20 });
    check(only(&r, LOCAL_ID), || {
        format!("tier 0 (cluster-1's ClusterIP) should take everything: {r:?}")
    })?;
    check(local.accepted() == 20, || {
        format!("the ClusterIP backend accepted {}", local.accepted())
    })?;

    // cluster-1's pod stops being ready: its ClusterIP is drained, connections go to cluster-2's gateway.
    let started = Instant::now();
    let doc = rt.block_on(async {
        endpoint_slice(&c1, &ns, "api-a", serde_json::json!([endpoint("192.0.2.11", false)]))
            .await
            .unwrap();
        wait_doc(&c1, "the local tier drained", |d| !backends(d)[0].4).await
    });
    node.wait_applied(doc.version);
    eprintln!(
        "EndpointSlice not ready -> agent applied version {}: {:.2} s",
        doc.version,
        started.elapsed().as_secs_f64()
    );
    let r = node.probe(&Command::Tcp { vip, count: 20 });
    check(only(&r, GATEWAY_ID), || {
        format!("tier 0 empty: cluster-2's gateway should take everything: {r:?}")
    })?;
    check(gateway.accepted() == 20, || {
        format!("the gateway backend accepted {}", gateway.accepted())
    })?;

    // Ready again: back to the local Service.
    let started = Instant::now();
    let doc = rt.block_on(async {
        endpoint_slice(&c1, &ns, "api-a", serde_json::json!([endpoint("192.0.2.11", true)]))
            .await
            .unwrap();
        wait_doc(&c1, "both tiers ready again", both_ready).await
    });
    node.wait_applied(doc.version);
    eprintln!(
        "EndpointSlice ready -> agent applied version {}: {:.2} s",
        doc.version,
        started.elapsed().as_secs_f64()
    );
    let r = node.probe(&Command::Tcp { vip, count: 20 });
    check(only(&r, LOCAL_ID), || format!("back to tier 0: {r:?}"))?;

    rt.block_on(daemon.stop());
    Ok(())
}

/// The ServiceCIDR that lets the Service have a loopback ClusterIP.
async fn service_cidr(client: &kube::Client) {
    let ar = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
    ));
    let obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                     "metadata": {"name": "flotilla-e2e-loopback"}, "spec": {"cidrs": ["127.0.100.0/24"]}});
    Api::<DynamicObject>::all_with(client.clone(), &ar)
        .patch(
            "flotilla-e2e-loopback",
            &PatchParams::apply("flotilla-test"),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
}

async fn wait_namespace(client: &kube::Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt(ns).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "namespace {ns} never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls cluster-1's published document (up to 60 s) until `ok` holds.
async fn wait_doc(client: &kube::Client, what: &str, ok: impl Fn(&EndpointMapConfig) -> bool) -> EndpointMapConfig {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "flotilla-system");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<Value> = None;
    loop {
        if let Some(cm) = api.get_opt("endpoint-map").await.unwrap() {
            let text = cm
                .data
                .unwrap_or_default()
                .remove("endpoint-map.json")
                .unwrap_or_default();
            let doc: EndpointMapConfig = serde_json::from_str(&text).unwrap();
            if ok(&doc) {
                return doc;
            }
            last = serde_json::to_value(&doc).ok();
        }
        assert!(
            Instant::now() < deadline,
            "waiting for the endpoint map: {what}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
