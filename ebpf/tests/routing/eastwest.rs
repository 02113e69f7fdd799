//! The generated `<service>-eastwest` Services.

use crate::util::{cluster, gtp, route, Svc};
use ebpf::eastwest_services;
use serde_json::json;

fn fleet(mode: &str, svc: Svc<'_>) -> crate::util::Routed {
    let files = vec![
        (
            "a1.yaml".to_string(),
            cluster("a1", "a", Some(("192.0.2.1", "31000-31999"))),
        ),
        (
            "a2.yaml".to_string(),
            cluster("a2", "a", Some(("192.0.2.2", "31000-31999"))),
        ),
        (
            "b1.yaml".to_string(),
            cluster("b1", "b", Some(("198.51.100.1", "32000-32999"))),
        ),
        ("svc.yaml".to_string(), svc.yaml()),
        ("gtp.yaml".to_string(), gtp(svc.ns, svc.name, mode, &[])),
    ];
    route(&files)
}

#[test]
fn exporters_reached_from_another_network_get_a_load_balancer_on_their_gateway() {
    let mut svc = Svc::new("shop", "api", &["a1", "b1"]);
    svc.ports = "[{name: http, port: 80, targetPort: web}, {name: metrics, port: 9090}]";
    let r = fleet("FailOver", svc);
    r.no_errors();
    let objs = eastwest_services(&r.plan);
    assert_eq!(objs.keys().collect::<Vec<_>>(), ["a1", "b1"], "a2 exports nothing");
    let s = &r.plan.services[0];
    let b1 = 2;
    let (http, metrics) = (s.gateway_ports[&(b1, 0)], s.gateway_ports[&(b1, 1)]);
    assert_ne!(http, metrics);
    assert_eq!(
        objs["b1"],
        [json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "api-eastwest",
                "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "flotilla", "flotilla.dev/eastwest-for": "api"},
                "annotations": {
                    "flotilla.dev/gateway-address": "198.51.100.1",
                    "metallb.universe.tf/allow-shared-ip": "flotilla-eastwest",
                },
            },
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerIP": "198.51.100.1",
                "selector": {"app": "api"},
                "ports": [
                    {"name": "http", "protocol": "TCP", "port": http, "targetPort": "web"},
                    {"name": "metrics", "protocol": "TCP", "port": metrics, "targetPort": 9090},
                ],
            },
        })]
    );
    // The documents point at exactly those ports.
    let doc = r.doc("a2", &ebpf::Live::default());
    let ports: Vec<(u16, &str, u16)> = doc
        .frontends
        .iter()
        .flat_map(|f| f.backends.iter().map(move |b| (f.port, b.cluster.as_str(), b.port)))
        .collect();
    assert_eq!(ports, [(80, "b1", http), (9090, "b1", metrics)]);
}

#[test]
fn no_island_or_locality_means_no_eastwest_service() {
    let r = fleet("Locality", Svc::new("shop", "api", &["a1", "b1"]));
    assert!(eastwest_services(&r.plan).is_empty());
    let r = fleet("ActiveActive", Svc::new("shop", "api", &["a1", "a2"]));
    // b1 consumes a1 and a2 through their gateways: both get one; nobody needs b1's.
    assert_eq!(eastwest_services(&r.plan).keys().collect::<Vec<_>>(), ["a1", "a2"]);
}

#[test]
fn a_name_too_long_for_the_generated_service_is_an_error() {
    let long = "a-very-long-service-name-that-leaves-no-room-for-the-suffix-x";
    let r = fleet("FailOver", Svc::new("shop", long, &["a1", "b1"]));
    let e = r.with_code("E067");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!((e[0].file.as_str(), e[0].line), ("svc.yaml", 1));
    assert!(eastwest_services(&r.plan).is_empty());
}

#[test]
fn a_template_with_the_generated_name_is_an_error() {
    let files = vec![
        ("a1.yaml".to_string(), cluster("a1", "a", Some(("192.0.2.1", "31000-31999")))),
        ("b1.yaml".to_string(), cluster("b1", "b", Some(("198.51.100.1", "32000-32999")))),
        ("svc.yaml".to_string(), Svc::new("shop", "api", &["a1", "b1"]).yaml()),
        ("gtp.yaml".to_string(), gtp("shop", "api", "FailOver", &[])),
        (
            "mine.yaml".to_string(),
            "apiVersion: v1\nkind: Service\nmetadata: {name: api-eastwest, namespace: shop}\nspec: {ports: [{port: 1}]}\n"
                .to_string(),
        ),
    ];
    let r = route(&files);
    let e = r.with_code("E067");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert!(e[0].message.contains("mine.yaml:1"), "{}", e[0].message);
}
