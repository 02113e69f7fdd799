//! Priorities and weights of the three modes, offline and with live data.

use crate::util::{backends, cluster, gtp, live, route, Svc};
use ebpf::{Live, Mode};

/// a1, a2 on network `a`, b1 on `b` (each with a gateway), c1 on `c` without one.
fn fleet() -> Vec<(String, String)> {
    vec![
        (
            "clusters/a1.yaml".into(),
            cluster("a1", "a", Some(("192.0.2.1", "31000-31999"))),
        ),
        (
            "clusters/a2.yaml".into(),
            cluster("a2", "a", Some(("192.0.2.2", "31000-31999"))),
        ),
        (
            "clusters/b1.yaml".into(),
            cluster("b1", "b", Some(("198.51.100.1", "32000-32999"))),
        ),
        ("clusters/c1.yaml".into(), cluster("c1", "c", None)),
    ]
}

fn with(mut files: Vec<(String, String)>, more: &[(&str, String)]) -> Vec<(String, String)> {
    files.extend(more.iter().map(|(p, t)| (p.to_string(), t.clone())));
    files
}

type B = (String, u16, u16, String, bool, String, u8);

fn b(addr: &str, port: u16, weight: u16, cluster: &str, ready: bool, via: &str, prio: u8) -> B {
    (addr.into(), port, weight, cluster.into(), ready, via.into(), prio)
}

#[test]
fn locality_routes_to_the_consumers_own_service_only() {
    let mut svc = Svc::new("shop", "api", &["a1", "b1"]);
    svc.spec = "  clusterIP: 10.96.0.10\n";
    let r = route(&with(fleet(), &[("apps/api.yaml", svc.yaml())]));
    r.no_errors();
    let offline = Live::default();
    let f = r.frontend("a1", "api", &offline);
    assert_eq!(f.policy.mode, Mode::Locality);
    // The ClusterIP written in Git is known offline.
    assert_eq!(backends(&f), [b("10.96.0.10", 80, 1, "a1", true, "Direct", 0)]);
    // a2 does not run the service: Locality never leaves the cluster.
    assert!(r.frontend("a2", "api", &offline).backends.is_empty());
    assert!(r.frontend("c1", "api", &offline).backends.is_empty());
    // Live: the allocated ClusterIP, weighted by the ready endpoints behind it.
    let l = live(&[(
        "a1",
        "shop",
        "api",
        Some("10.96.5.5"),
        &[
            ("10.1.0.1", true),
            ("10.1.0.2", true),
            ("10.1.0.3", true),
            ("10.1.0.4", false),
        ],
    )]);
    assert_eq!(
        backends(&r.frontend("a1", "api", &l)),
        [b("10.96.5.5", 80, 3, "a1", true, "Direct", 0)]
    );
    // Locality needs no gateway anywhere.
    assert!(r.plan.services[0].gateway_ports.is_empty());
}

#[test]
fn failover_puts_the_consumer_first_then_the_targets_in_order() {
    let files = with(
        fleet(),
        &[
            ("apps/api.yaml", Svc::new("shop", "api", &["a1", "a2", "b1"]).yaml()),
            (
                "policies/api-traffic.yaml",
                gtp("shop", "api", "FailOver", &[("b1", None), ("a1", None), ("a2", None)]),
            ),
        ],
    );
    let r = route(&files);
    r.no_errors();
    let svc = &r.plan.services[0];
    let port_of = |c: &str| {
        let ci = r.plan.clusters.iter().position(|x| x.name == c).unwrap();
        svc.gateway_ports[&(ci, 0)]
    };
    let (gw_a1, gw_a2, gw_b1) = (port_of("a1"), port_of("a2"), port_of("b1"));
    assert!((31000..=31999).contains(&gw_a1) && (32000..=32999).contains(&gw_b1));

    // Offline, a1 knows only what Git says: b1's gateway (tier 1). Its own ClusterIP (tier 0) and
    // a2's pods (tier 2, same network) exist only on the clusters.
    let offline = Live::default();
    assert_eq!(
        backends(&r.frontend("a1", "api", &offline)),
        [b("198.51.100.1", gw_b1, 1, "b1", true, "Gateway", 1)]
    );
    // c1 runs nothing and has no network in common: the targets in order, all through gateways.
    assert_eq!(
        backends(&r.frontend("c1", "api", &offline)),
        [
            b("198.51.100.1", gw_b1, 1, "b1", true, "Gateway", 0),
            b("192.0.2.1", gw_a1, 1, "a1", true, "Gateway", 1),
            b("192.0.2.2", gw_a2, 1, "a2", true, "Gateway", 2),
        ]
    );
    // b1: itself first, then a1 and a2 through their gateways.
    let f = r.frontend("b1", "api", &offline);
    let prios: Vec<(String, u8)> = f.backends.iter().map(|x| (x.cluster.clone(), x.priority)).collect();
    assert_eq!(prios, [("a1".to_string(), 1), ("a2".to_string(), 2)]);

    // Live: every tier filled in.
    let l = live(&[
        (
            "a1",
            "shop",
            "api",
            Some("10.96.0.1"),
            &[("10.1.1.1", true), ("10.1.1.2", true)],
        ),
        (
            "a2",
            "shop",
            "api",
            Some("10.96.0.2"),
            &[("10.1.2.2", true), ("10.1.2.1", true), ("10.1.2.3", false)],
        ),
        (
            "b1",
            "shop",
            "api",
            Some("10.97.0.1"),
            &[
                ("10.2.0.1", true),
                ("10.2.0.2", true),
                ("10.2.0.3", true),
                ("10.2.0.4", true),
            ],
        ),
    ]);
    assert_eq!(
        backends(&r.frontend("a1", "api", &l)),
        [
            b("10.96.0.1", 80, 2, "a1", true, "Direct", 0),
            b("198.51.100.1", gw_b1, 4, "b1", true, "Gateway", 1),
            b("10.1.2.1", 8080, 1, "a2", true, "Direct", 2),
            b("10.1.2.2", 8080, 1, "a2", true, "Direct", 2),
        ]
    );
}

#[test]
fn failover_without_targets_takes_every_exporter_in_name_order() {
    let files = with(
        fleet(),
        &[
            ("apps/api.yaml", Svc::new("shop", "api", &["b1", "a2"]).yaml()),
            ("policies/api-traffic.yaml", gtp("shop", "api", "FailOver", &[])),
        ],
    );
    let r = route(&files);
    r.no_errors();
    let f = r.frontend("c1", "api", &Live::default());
    let order: Vec<(&str, u8)> = f.backends.iter().map(|x| (x.cluster.as_str(), x.priority)).collect();
    assert_eq!(order, [("a2", 0), ("b1", 1)]);
}

#[test]
fn more_than_four_failover_tiers_is_an_error_and_the_rest_are_dropped() {
    let mut files = fleet();
    files.push((
        "clusters/d1.yaml".into(),
        cluster("d1", "d", Some(("203.0.113.1", "31000-31999"))),
    ));
    let files = with(
        files,
        &[
            (
                "apps/api.yaml",
                Svc::new("shop", "api", &["a1", "a2", "b1", "c1", "d1"]).yaml(),
            ),
            ("policies/api-traffic.yaml", gtp("shop", "api", "FailOver", &[])),
        ],
    );
    let r = route(&files);
    let e = r.with_code("E066");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    // Points at spec.mode of the policy (there are no targets to shorten).
    assert_eq!((e[0].file.as_str(), e[0].line), ("policies/api-traffic.yaml", 5));
    assert!(e[0].message.contains("5 priority tiers"), "{}", e[0].message);
    // From a1: a1, a2, b1, c1, d1 (tiers 0-4); d1's gateway backend, in tier 4, is dropped.
    let f = r.frontend("a1", "api", &Live::default());
    let got: Vec<(&str, u8)> = f.backends.iter().map(|x| (x.cluster.as_str(), x.priority)).collect();
    assert_eq!(
        got,
        [("b1", 2)],
        "c1 has no gateway, a1/a2 are unknown offline, d1 is beyond tier 3"
    );
    // From d1 itself the dropped tier is the last target instead.
    let f = r.frontend("d1", "api", &Live::default());
    let got: Vec<(&str, u8)> = f.backends.iter().map(|x| (x.cluster.as_str(), x.priority)).collect();
    assert_eq!(got, [("a1", 1), ("a2", 2), ("b1", 3)]);
}

#[test]
fn active_active_puts_everything_in_one_weighted_tier() {
    let files = with(
        fleet(),
        &[
            ("apps/api.yaml", Svc::new("shop", "api", &["a1", "a2", "b1"]).yaml()),
            (
                "policies/api-traffic.yaml",
                gtp("shop", "api", "ActiveActive", &[("a1", Some(3)), ("b1", Some(2))]),
            ),
        ],
    );
    let r = route(&files);
    r.no_errors();
    let svc = &r.plan.services[0];
    let b1 = r.plan.clusters.iter().position(|c| c.name == "b1").unwrap();
    let a1 = r.plan.clusters.iter().position(|c| c.name == "a1").unwrap();
    let (gw_b1, gw_a1) = (svc.gateway_ports[&(b1, 0)], svc.gateway_ports[&(a1, 0)]);

    // Offline from c1: both targets through their gateways, weighted by the target weight.
    assert_eq!(
        backends(&r.frontend("c1", "api", &Live::default())),
        [
            b("192.0.2.1", gw_a1, 3, "a1", true, "Gateway", 0),
            b("198.51.100.1", gw_b1, 2, "b1", true, "Gateway", 0),
        ]
    );
    // Live from a2 (exports, not a target: its own Service takes part with weight 1): a1's pods at
    // weight 3 each, b1's gateway at ready endpoints × 2.
    let l = live(&[
        ("a2", "shop", "api", Some("10.96.0.2"), &[("10.1.2.1", true)]),
        (
            "a1",
            "shop",
            "api",
            Some("10.96.0.1"),
            &[("10.1.1.1", true), ("10.1.1.2", true)],
        ),
        (
            "b1",
            "shop",
            "api",
            Some("10.97.0.1"),
            &[
                ("10.2.0.1", true),
                ("10.2.0.2", true),
                ("10.2.0.3", true),
                ("10.2.0.4", false),
            ],
        ),
    ]);
    assert_eq!(
        backends(&r.frontend("a2", "api", &l)),
        [
            b("10.1.1.1", 8080, 3, "a1", true, "Direct", 0),
            b("10.1.1.2", 8080, 3, "a1", true, "Direct", 0),
            b("10.96.0.2", 80, 1, "a2", true, "Direct", 0),
            b("198.51.100.1", gw_b1, 6, "b1", true, "Gateway", 0),
        ]
    );
}
