//! SPEC §9 scenarios 1–4 on `examples-repo/`, end to end: the real reader, a real Git commit, render,
//! and for scenario 4 the routing step and the endpoint map configs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use flotilla_tests::{copy_tree, examples_repo, git};
use render::{Output, RenderOptions};
use serde_json::Value;
use std::path::Path;

fn render_dir(dir: &Path, rev: Option<&str>) -> Output {
    let snapshot = reconciler::source::read(dir, rev).unwrap();
    render::render(&snapshot, &RenderOptions::default())
}

fn find<'a>(out: &'a Output, cluster: &str, kind: &str, name: &str) -> Option<&'a Value> {
    out.clusters[cluster]
        .iter()
        .map(|v| v.as_ref())
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn no_errors(out: &Output) {
    let errors: Vec<String> = out
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn seed_scenario_overrides_the_image_only_on_dc1() {
    let out = render_dir(&examples_repo(), None);
    no_errors(&out);
    for c in ["cluster-1", "cluster-2"] {
        let d = find(&out, c, "Deployment", "nginx").unwrap_or_else(|| panic!("nginx on {c}"));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "dc-1.registry.io/nginx:1.17.0-alpine"
        );
        assert!(
            d["metadata"]["annotations"].as_object().is_some_and(|a| !a.is_empty()),
            "annotation added on {c}"
        );
    }
    let d = find(&out, "cluster-3", "Deployment", "nginx").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.17.0-alpine"
    );
    // The nginx ConfigMap follows the Deployment (propagateDeps) everywhere.
    for c in ["cluster-1", "cluster-2", "cluster-3"] {
        assert!(find(&out, c, "ConfigMap", "nginx-conf").is_some(), "nginx-conf on {c}");
    }
}

#[test]
fn weighted_division_with_a_remainder() {
    let out = render_dir(&examples_repo(), None);
    let replicas: Vec<i64> = ["cluster-1", "cluster-2", "cluster-3"]
        .iter()
        .map(|c| {
            find(&out, c, "Deployment", "checkout").unwrap()["spec"]["replicas"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // 10 replicas at 3:2:1 by Webster: 5/3/2 (Karmada <= v1.15 would give 6/3/1).
    assert_eq!(replicas, [5, 3, 2]);
}

#[test]
fn failover_moves_the_workload_when_the_primary_group_is_tainted() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&examples_repo(), dir.path()).unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fleet"]);

    let before = render_dir(dir.path(), Some("HEAD"));
    no_errors(&before);
    assert!(find(&before, "cluster-1", "Deployment", "payments-api").is_some());
    assert!(find(&before, "cluster-2", "Deployment", "payments-api").is_some());
    assert!(find(&before, "cluster-3", "Deployment", "payments-api").is_none());

    // Taint both dc1 clusters in a new commit (as an operator draining dc1 would).
    for c in ["cluster-1", "cluster-2"] {
        let p = dir.path().join(format!("clusters/{c}.yaml"));
        let text = std::fs::read_to_string(&p).unwrap();
        let tainted = text.replacen(
            "  taints: []\n",
            "  taints:\n  - {key: maintenance, value: drain, effect: NoSchedule}\n",
            1,
        );
        assert_ne!(text, tainted, "{c}.yaml declares `taints: []`");
        std::fs::write(&p, tainted).unwrap();
    }
    git(dir.path(), &["commit", "-q", "-am", "drain dc1"]);

    let after = render_dir(dir.path(), Some("HEAD"));
    let d = find(&after, "cluster-3", "Deployment", "payments-api").expect("payments-api fails over to cluster-3");
    assert_eq!(d["spec"]["replicas"], 4, "the backup group holds every replica");
    assert!(find(&after, "cluster-1", "Deployment", "payments-api").is_none());
    // And the previous commit still renders the old placement: reading is by commit, not checkout.
    let again = render_dir(dir.path(), Some("HEAD~1"));
    assert!(find(&again, "cluster-1", "Deployment", "payments-api").is_some());
}

fn route_dir(dir: &Path, rev: Option<&str>) -> (Output, ebpf::plan::Plan) {
    let snapshot = reconciler::source::read(dir, rev).unwrap();
    let repo = render::repo::load(&snapshot);
    reconciler::routing::render(&repo, &RenderOptions::default())
}

/// (cluster, via, priority, address:port) of a frontend's backends.
fn tiers(f: &ebpf::Frontend) -> Vec<(String, ebpf::Via, u8, String)> {
    f.backends
        .iter()
        .map(|b| {
            (
                b.cluster.clone(),
                b.via,
                b.priority,
                format!("{}:{}", b.address, b.port),
            )
        })
        .collect()
}

#[test]
fn cross_cluster_routing_scenario() {
    use ebpf::Via::{Direct, Gateway};
    let (out, plan) = route_dir(&examples_repo(), None);
    no_errors(&out);
    assert!(out.diagnostics.is_empty(), "{:#?}", out.diagnostics);

    // The east-west Services are in the rendered sets of the two exporters, nowhere else.
    for (c, present) in [("cluster-1", true), ("cluster-2", false), ("cluster-3", true)] {
        let ew = find(&out, c, "Service", "orders-api-eastwest");
        assert_eq!(ew.is_some(), present, "orders-api-eastwest on {c}");
        if let Some(ew) = ew {
            assert_eq!(ew["spec"]["type"], "LoadBalancer");
            assert_eq!(ew["spec"]["ports"][0]["port"], 31912);
            assert_eq!(ew["spec"]["ports"][0]["targetPort"], "http");
            assert_eq!(ew["spec"]["selector"]["app"], "orders-api");
        }
    }
    assert_eq!(
        find(&out, "cluster-3", "Service", "orders-api-eastwest").unwrap()["spec"]["loadBalancerIP"],
        "198.51.100.13"
    );

    // Offline documents (examples-repo/README.md, scenario 4): the VIP, and what Git alone knows.
    let offline = ebpf::build_all(&plan, &ebpf::Live::default(), &ebpf::BuildOptions::default()).unwrap();
    let by = |docs: &[ebpf::EndpointMapConfig], c: &str| -> ebpf::Frontend {
        let d = docs.iter().find(|d| d.cluster == c).unwrap();
        d.verify().unwrap();
        assert_eq!(d.frontends.len(), 1);
        d.frontends[0].clone()
    };
    let f = by(&offline, "cluster-2");
    assert_eq!(
        (f.vip.to_string(), f.port, f.policy.mode),
        ("127.200.207.238".into(), 80, ebpf::Mode::FailOver)
    );
    assert_eq!(
        tiers(&by(&offline, "cluster-1")),
        [("cluster-3".into(), Gateway, 1, "198.51.100.13:31912".into())]
    );
    assert_eq!(
        tiers(&by(&offline, "cluster-2")),
        [("cluster-3".into(), Gateway, 1, "198.51.100.13:31912".into())]
    );
    assert_eq!(
        tiers(&by(&offline, "cluster-3")),
        [("cluster-1".into(), Gateway, 1, "192.0.2.11:31912".into())]
    );

    // With live data every tier fills in: cluster-2 reaches cluster-1's pods directly (same network).
    let mut live = ebpf::Live::default();
    for (c, ip, pods) in [
        ("cluster-1", "10.96.0.20", ["10.1.0.5", "10.1.0.6"]),
        ("cluster-3", "10.100.0.20", ["10.3.0.5", "10.3.0.6"]),
    ] {
        let svc = ebpf::LiveService {
            cluster_ip: Some(ip.parse().unwrap()),
            endpoints: pods
                .iter()
                .map(|a| ebpf::LiveEndpoint {
                    address: a.parse().unwrap(),
                    port_name: "http".into(),
                    port: 8080,
                    protocol: ebpf::Protocol::Tcp,
                    ready: true,
                })
                .collect(),
        };
        live.clusters
            .entry(c.to_string())
            .or_default()
            .services
            .insert(("orders".into(), "orders-api".into()), svc);
    }
    let docs = ebpf::build_all(&plan, &live, &ebpf::BuildOptions::default()).unwrap();
    assert_eq!(
        tiers(&by(&docs, "cluster-2")),
        [
            ("cluster-1".into(), Direct, 0, "10.1.0.5:8080".into()),
            ("cluster-1".into(), Direct, 0, "10.1.0.6:8080".into()),
            ("cluster-3".into(), Gateway, 1, "198.51.100.13:31912".into()),
        ]
    );
    assert_eq!(
        tiers(&by(&docs, "cluster-1")),
        [
            ("cluster-1".into(), Direct, 0, "10.96.0.20:80".into()),
            ("cluster-3".into(), Gateway, 1, "198.51.100.13:31912".into()),
        ]
    );
    let f = by(&docs, "cluster-1");
    assert_eq!(
        f.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [2, 2],
        "ready endpoints x weight 1"
    );
}

#[test]
fn endpoint_maps_of_a_commit_carry_its_revision_and_time_and_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&examples_repo(), dir.path()).unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fleet"]);
    let head = git(dir.path(), &["rev-parse", "HEAD"]);
    let time: u64 = git(dir.path(), &["log", "-1", "--format=%ct"]).parse().unwrap();

    let build = || {
        let (_, plan) = route_dir(dir.path(), Some("HEAD"));
        let opts = ebpf::BuildOptions {
            version: ebpf::next_version(reconciler::source::commit_time(dir.path(), "HEAD").unwrap(), None),
            git_revision: Some(head.clone()),
        };
        ebpf::build_all(&plan, &ebpf::Live::default(), &opts).unwrap()
    };
    let a = build();
    assert!(a
        .iter()
        .all(|d| d.version == time && d.source.git_revision.as_deref() == Some(head.as_str())));
    let bytes = |docs: &[ebpf::EndpointMapConfig]| -> Vec<Vec<u8>> {
        docs.iter().map(|d| d.to_canonical_json().unwrap()).collect()
    };
    assert_eq!(
        bytes(&a),
        bytes(&build()),
        "the same commit gives byte-identical documents"
    );
    // The working tree it was made of has the same frontends and backends (only version/source differ).
    let (_, plan) = route_dir(dir.path(), None);
    let wt = ebpf::build_all(&plan, &ebpf::Live::default(), &ebpf::BuildOptions::default()).unwrap();
    assert_eq!(
        wt.iter().map(|d| &d.frontends).collect::<Vec<_>>(),
        a.iter().map(|d| &d.frontends).collect::<Vec<_>>()
    );
}

#[test]
fn the_routing_agent_daemonset_goes_to_every_cluster() {
    let out = render_dir(&examples_repo(), None);
    no_errors(&out);
    for c in ["cluster-1", "cluster-2", "cluster-3"] {
        let ds = find(&out, c, "DaemonSet", "flotilla-agent").unwrap_or_else(|| panic!("flotilla-agent on {c}"));
        assert_eq!(ds["metadata"]["namespace"], "flotilla-system");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
        let host_paths: Vec<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["hostPath"]["path"].as_str())
            .collect();
        assert_eq!(host_paths, ["/sys/fs/bpf", "/sys/fs/cgroup"], "{c}");
        assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none(), "{c}");
    }
}
