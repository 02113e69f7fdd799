//! Island networks: gateway backends, their weights, missing gateways, gateway port allocation.

use crate::util::{backends, cluster, gtp, live, observed_empty, route, Svc};
use ebpf::alloc::preferred_slot;
use ebpf::Live;

fn two_networks(gw_b: Option<(&str, &str)>) -> Vec<(String, String)> {
    vec![
        (
            "clusters.yaml".into(),
            cluster("a1", "a", Some(("192.0.2.1", "31000-31999"))),
        ),
        ("clusters-b.yaml".into(), cluster("b1", "b", gw_b)),
    ]
}

#[test]
fn a_gateway_backend_weighs_the_ready_endpoints_behind_it() {
    let mut files = two_networks(Some(("198.51.100.1", "31000-31999")));
    files.push(("api.yaml".into(), Svc::new("shop", "api", &["b1"]).yaml()));
    files.push(("gtp.yaml".into(), gtp("shop", "api", "FailOver", &[])));
    let r = route(&files);
    r.no_errors();
    // The port is the key's preferred slot in the range (no other key competes).
    let port = 31000 + u16::try_from(preferred_slot("shop/api/http/TCP", 1000)).unwrap();
    let one = |l: &Live| backends(&r.frontend("a1", "api", l));
    assert_eq!(
        one(&Live::default()),
        [("198.51.100.1".into(), port, 1, "b1".into(), true, "Gateway".into(), 0)]
    );
    let three = live(&[(
        "b1",
        "shop",
        "api",
        Some("10.97.0.1"),
        &[("10.2.0.1", true), ("10.2.0.2", true), ("10.2.0.3", true)],
    )]);
    assert_eq!(one(&three)[0].2, 3);
    // Observed with no ready endpoint: listed, drained.
    let none = live(&[("b1", "shop", "api", Some("10.97.0.1"), &[("10.2.0.1", false)])]);
    assert_eq!((one(&none)[0].2, one(&none)[0].4), (0, false));
    // Observed, and the Service is not there at all: the same.
    let mut gone = Live::default();
    observed_empty(&mut gone, &["b1"]);
    assert_eq!((one(&gone)[0].2, one(&gone)[0].4), (0, false));
}

#[test]
fn flat_networks_reach_pods_directly_and_only_live() {
    let files = vec![
        ("c.yaml".to_string(), cluster("a1", "a", None)),
        ("d.yaml".to_string(), cluster("a2", "a", None)),
        ("api.yaml".to_string(), Svc::new("shop", "api", &["a2"]).yaml()),
        ("gtp.yaml".to_string(), gtp("shop", "api", "FailOver", &[])),
    ];
    let r = route(&files);
    r.no_errors();
    assert!(r.frontend("a1", "api", &Live::default()).backends.is_empty());
    assert!(
        r.plan.services[0].gateway_ports.is_empty(),
        "no island, no gateway port"
    );
    let l = live(&[(
        "a2",
        "shop",
        "api",
        Some("10.96.0.2"),
        &[("10.1.0.9", true), ("10.1.0.8", false)],
    )]);
    assert_eq!(
        backends(&r.frontend("a1", "api", &l)),
        [("10.1.0.9".into(), 8080, 1, "a2".into(), true, "Direct".into(), 0)]
    );
}

#[test]
fn an_exporter_without_gateway_cannot_be_reached_from_other_networks() {
    let mut files = two_networks(None);
    files.push(("api.yaml".into(), Svc::new("shop", "api", &["b1"]).yaml()));
    files.push(("gtp.yaml".into(), gtp("shop", "api", "ActiveActive", &[])));
    let r = route(&files);
    let w = r.with_code("W062");
    assert_eq!(w.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!((w[0].file.as_str(), w[0].line), ("clusters-b.yaml", 1));
    assert_eq!(w[0].cluster.as_deref(), Some("b1"));
    assert!(r.frontend("a1", "api", &Live::default()).backends.is_empty());
}

#[test]
fn gateway_ports_run_out_with_an_error_at_the_port_range() {
    let mut files = two_networks(Some(("198.51.100.1", "31000-31000")));
    for name in ["api", "web"] {
        files.push((format!("{name}.yaml"), Svc::new("shop", name, &["b1"]).yaml()));
        files.push((format!("{name}-gtp.yaml"), gtp("shop", name, "FailOver", &[])));
    }
    let r = route(&files);
    let e = r.with_code("E064");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    // clusters-b.yaml: apiVersion, kind, metadata, spec, region, zones, network, eastWestGateway (line 8).
    assert_eq!((e[0].file.as_str(), e[0].line), ("clusters-b.yaml", 8));
    assert!(
        e[0].message.contains("shop/web/http/TCP"),
        "sorted order: api first: {}",
        e[0].message
    );
    let api = &r.plan.services[0];
    assert_eq!(api.gateway_ports.values().copied().collect::<Vec<_>>(), [31000]);
    assert!(r.plan.services[1].gateway_ports.is_empty());
}

#[test]
fn a_malformed_port_range_is_an_error() {
    let mut files = two_networks(Some(("198.51.100.1", "32000-31000")));
    files.push(("api.yaml".into(), Svc::new("shop", "api", &["b1"]).yaml()));
    let r = route(&files);
    let e = r.with_code("E064");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert!(e[0].message.contains("32000-31000"), "{}", e[0].message);
}

#[test]
fn gateway_ports_are_stable_when_other_services_come_and_go() {
    let base = |names: &[&str]| {
        let mut files = two_networks(Some(("198.51.100.1", "31000-31999")));
        for name in names {
            files.push((format!("{name}.yaml"), Svc::new("shop", name, &["b1"]).yaml()));
            files.push((format!("{name}-gtp.yaml"), gtp("shop", name, "FailOver", &[])));
        }
        route(&files)
    };
    let port = |r: &crate::util::Routed, name: &str| {
        let s = r.plan.services.iter().find(|s| s.name == name).unwrap();
        s.gateway_ports.values().copied().collect::<Vec<_>>()
    };
    let small = base(&["api"]);
    let big = base(&["api", "cart", "search", "web"]);
    assert_eq!(port(&small, "api"), port(&big, "api"));
    let all: std::collections::BTreeSet<u16> = ["api", "cart", "search", "web"]
        .iter()
        .flat_map(|n| port(&big, n))
        .collect();
    assert_eq!(all.len(), 4, "distinct ports");
}
