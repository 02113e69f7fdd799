//! SPEC §9 scenarios 1–3 on `examples-repo/`, end to end: the real reader, a real Git commit, render.
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
