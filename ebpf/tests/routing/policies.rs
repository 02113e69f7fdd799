//! Diagnostics about routing inputs: GlobalTrafficPolicies, ServiceExports, unroutable Services.

use crate::util::{cluster, gtp, route, Svc};
use ebpf::Live;

fn base() -> Vec<(String, String)> {
    vec![
        (
            "clusters.yaml".into(),
            cluster("a1", "a", Some(("192.0.2.1", "31000-31999"))),
        ),
        (
            "clusters-b.yaml".into(),
            cluster("b1", "b", Some(("198.51.100.1", "31000-31999"))),
        ),
        ("api.yaml".into(), Svc::new("shop", "api", &["a1", "b1"]).yaml()),
    ]
}

#[test]
fn a_target_naming_an_unknown_cluster_is_an_error_at_its_line() {
    let mut files = base();
    files.push((
        "gtp.yaml".into(),
        gtp("shop", "api", "FailOver", &[("b1", None), ("nope", None)]),
    ));
    let r = route(&files);
    let e = r.with_code("E065");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    // apiVersion, kind, metadata, spec, mode, targets, - cluster: b1, - cluster: nope (line 8).
    assert_eq!((e[0].file.as_str(), e[0].line, e[0].column), ("gtp.yaml", 8, 5));
    assert!(e[0].message.contains("`nope`"), "{}", e[0].message);
    // The known target still counts.
    let order: Vec<String> = r
        .frontend("a1", "api", &Live::default())
        .backends
        .iter()
        .map(|b| b.cluster.clone())
        .collect();
    assert_eq!(order, ["b1"]);
}

#[test]
fn targets_without_effect_are_warnings() {
    let mut files = base();
    files.push(("c.yaml".into(), cluster("c1", "c", None)));
    files.push((
        "gtp.yaml".into(),
        gtp(
            "shop",
            "api",
            "FailOver",
            &[("b1", None), ("b1", Some(5)), ("c1", None)],
        ),
    ));
    let r = route(&files);
    r.no_errors();
    let w = r.with_code("W063");
    assert_eq!(w.len(), 2, "{:#?}", r.diagnostics);
    assert!(w.iter().any(|d| d.message.contains("listed twice")));
    assert!(w.iter().any(|d| d.message.contains("not exported from cluster c1")));
    // Locality ignores targets, and says so.
    let mut files = base();
    files.push(("gtp.yaml".into(), gtp("shop", "api", "Locality", &[("b1", None)])));
    let r = route(&files);
    assert_eq!(r.with_code("W063").len(), 1, "{:#?}", r.diagnostics);
}

#[test]
fn a_second_policy_for_the_same_service_is_a_duplicate() {
    let mut files = base();
    files.push(("gtp-1.yaml".into(), gtp("shop", "api", "FailOver", &[])));
    files.push(("gtp-2.yaml".into(), gtp("shop", "api", "ActiveActive", &[])));
    let r = route(&files);
    let e = r.with_code("E012");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!(e[0].file, "gtp-2.yaml");
    assert!(e[0].message.contains("gtp-1.yaml:1"), "{}", e[0].message);
    assert_eq!(r.plan.services[0].mode, ebpf::Mode::FailOver);
}

#[test]
fn a_policy_without_exported_service_and_an_export_without_service_are_warnings() {
    let mut files = base();
    files.push(("gtp.yaml".into(), gtp("shop", "other", "FailOver", &[])));
    files.push((
        "export.yaml".into(),
        "apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: ghost, namespace: shop}\n"
            .into(),
    ));
    let r = route(&files);
    r.no_errors();
    assert_eq!(r.with_code("W061")[0].file, "gtp.yaml");
    let w = r.with_code("W060");
    assert_eq!((w[0].file.as_str(), w[0].line), ("export.yaml", 1));
}

#[test]
fn a_service_exported_from_no_cluster_keeps_its_vip_without_backends() {
    let files = vec![
        ("clusters.yaml".to_string(), cluster("a1", "a", None)),
        ("api.yaml".to_string(), Svc::new("shop", "api", &["gone"]).yaml()),
    ];
    let r = route(&files);
    assert_eq!(r.with_code("W065").len(), 1, "{:#?}", r.diagnostics);
    let f = r.frontend("a1", "api", &Live::default());
    assert!(f.backends.is_empty());
}

#[test]
fn unroutable_services_and_ports_are_warnings() {
    let mut external = Svc::new("shop", "ext", &["a1"]);
    external.spec = "  type: ExternalName\n  externalName: example.com\n";
    let mut sctp = Svc::new("shop", "mixed", &["a1"]);
    sctp.ports = "[{name: sig, port: 3868, protocol: SCTP}, {name: http, port: 80}]";
    let files = vec![
        ("clusters.yaml".to_string(), cluster("a1", "a", None)),
        ("ext.yaml".to_string(), external.yaml()),
        ("mixed.yaml".to_string(), sctp.yaml()),
    ];
    let r = route(&files);
    r.no_errors();
    let w = r.with_code("W064");
    assert_eq!(w.len(), 2, "{:#?}", r.diagnostics);
    assert!(w
        .iter()
        .any(|d| d.file == "ext.yaml" && d.message.contains("ExternalName")));
    assert!(w.iter().any(|d| d.file == "mixed.yaml" && d.message.contains("SCTP")));
    let doc = r.doc("a1", &Live::default());
    let ports: Vec<(&str, u16)> = doc
        .frontends
        .iter()
        .map(|f| (f.service.name.as_str(), f.port))
        .collect();
    assert_eq!(ports, [("mixed", 80)]);
}
