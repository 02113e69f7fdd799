//! VIP allocation: determinism, collisions, explicit VIPs, exhaustion, a bad range; frontend ids.

use crate::util::{cluster, route, Routed, Svc};
use ebpf::alloc::{preferred_slot, VipRange};
use std::net::Ipv4Addr;

fn config(range: &str) -> (String, String) {
    (
        "flotilla.yaml".into(),
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: RepoConfig\nmetadata: {{name: c}}\nspec:\n  vipRange: {range}\n"
        ),
    )
}

fn fleet(range: Option<&str>, services: &[Svc<'_>]) -> Routed {
    let mut files = vec![("clusters.yaml".to_string(), cluster("a1", "a", None))];
    files.extend(range.map(config));
    for (i, s) in services.iter().enumerate() {
        files.push((format!("apps/{i}-{}.yaml", s.name), s.yaml()));
    }
    route(&files)
}

fn vip(r: &Routed, name: &str) -> Option<Ipv4Addr> {
    r.plan.services.iter().find(|s| s.name == name).and_then(|s| s.vip)
}

#[test]
fn a_vip_is_derived_from_namespace_and_name_and_ignores_placement() {
    let r = fleet(None, &[Svc::new("shop", "api", &["a1"])]);
    r.no_errors();
    let range = VipRange::parse("127.200.0.0/16").unwrap();
    let want = range.address(preferred_slot("shop/api", range.len()));
    assert_eq!(vip(&r, "api"), Some(want));
    // Placed nowhere: same VIP (a failover never renumbers a service).
    let nowhere = fleet(None, &[Svc::new("shop", "api", &["elsewhere"])]);
    assert_eq!(vip(&nowhere, "api"), Some(want));
}

/// Two names whose preferred slots collide in a range of `len` addresses, in sorted order.
fn colliding(len: u64) -> (String, String) {
    let names: Vec<String> = (0..200).map(|i| format!("svc-{i:03}")).collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            if preferred_slot(&format!("ns/{a}"), len) == preferred_slot(&format!("ns/{b}"), len) {
                return (a.clone(), b.clone());
            }
        }
    }
    panic!("no collision among 200 names in {len} slots");
}

#[test]
fn a_collision_is_resolved_in_sorted_order() {
    // 10.9.0.0/29: six usable addresses, .1 to .6.
    let (first, second) = colliding(6);
    let r = fleet(
        Some("10.9.0.0/29"),
        &[Svc::new("ns", &second, &["a1"]), Svc::new("ns", &first, &["a1"])],
    );
    r.no_errors();
    let slot = preferred_slot(&format!("ns/{first}"), 6);
    let range = VipRange::parse("10.9.0.0/29").unwrap();
    assert_eq!(
        vip(&r, &first),
        Some(range.address(slot)),
        "the first in sorted order keeps its slot"
    );
    assert_eq!(
        vip(&r, &second),
        Some(range.address((slot + 1) % 6)),
        "the second probes forward"
    );
}

#[test]
fn an_explicit_vip_is_honoured_and_others_move_out_of_its_way() {
    let range = VipRange::parse("10.9.0.0/29").unwrap();
    let wanted_by_auto = range.address(preferred_slot("ns/auto", 6));
    let meta = format!("  annotations: {{flotilla.dev/vip: \"{wanted_by_auto}\"}}\n");
    let mut pinned = Svc::new("ns", "pinned", &["a1"]);
    pinned.meta = &meta;
    let r = fleet(Some("10.9.0.0/29"), &[Svc::new("ns", "auto", &["a1"]), pinned]);
    r.no_errors();
    assert_eq!(vip(&r, "pinned"), Some(wanted_by_auto));
    let slot = preferred_slot("ns/auto", 6);
    assert_eq!(vip(&r, "auto"), Some(range.address((slot + 1) % 6)));
}

#[test]
fn an_explicit_vip_outside_the_range_or_malformed_is_an_error_at_the_annotation() {
    for (value, why) in [
        ("10.10.0.1", "outside the VIP range 10.9.0.0/29"),
        ("not-an-ip", "is not an IPv4 address"),
    ] {
        let meta = format!("  annotations:\n    flotilla.dev/vip: {value}\n");
        let mut s = Svc::new("ns", "api", &["a1"]);
        s.meta = &meta;
        let r = fleet(Some("10.9.0.0/29"), &[s]);
        let e = r.with_code("E061");
        assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
        // Service document: apiVersion, kind, metadata, name, namespace, annotations, the key (line 7).
        assert_eq!((e[0].file.as_str(), e[0].line), ("apps/0-api.yaml", 7), "{}", e[0]);
        assert!(e[0].message.contains(why), "{}", e[0].message);
        assert!(vip(&r, "api").is_some(), "a VIP is allocated instead");
    }
}

#[test]
fn two_services_asking_for_the_same_vip_is_an_error_naming_the_first() {
    let meta = "  annotations: {flotilla.dev/vip: 127.200.10.10}\n";
    let mut a = Svc::new("ns", "a", &["a1"]);
    a.meta = meta;
    let mut b = Svc::new("ns", "b", &["a1"]);
    b.meta = meta;
    let r = fleet(None, &[b, a]);
    let e = r.with_code("E062");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!(e[0].file, "apps/0-b.yaml");
    assert!(
        e[0].message.contains("Service ns/a (apps/1-a.yaml:1)"),
        "{}",
        e[0].message
    );
    assert_eq!(vip(&r, "a"), Some(Ipv4Addr::new(127, 200, 10, 10)));
    assert_ne!(vip(&r, "b"), Some(Ipv4Addr::new(127, 200, 10, 10)));
}

#[test]
fn an_exhausted_range_leaves_the_last_services_without_vip() {
    // A /30 has two usable addresses.
    let r = fleet(
        Some("10.9.0.0/30"),
        &[
            Svc::new("ns", "c", &["a1"]),
            Svc::new("ns", "a", &["a1"]),
            Svc::new("ns", "b", &["a1"]),
        ],
    );
    let e = r.with_code("E063");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert!(e[0].message.contains("ns/c"), "{}", e[0].message);
    assert_eq!(vip(&r, "c"), None);
    let doc = r.doc("a1", &ebpf::Live::default());
    let names: Vec<&str> = doc.frontends.iter().map(|f| f.service.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(!names.contains(&"c"));
}

#[test]
fn a_bad_vip_range_is_an_error_at_flotilla_yaml() {
    let r = fleet(Some("10.9.0.1/16"), &[Svc::new("ns", "api", &["a1"])]);
    let e = r.with_code("E060");
    assert_eq!(e.len(), 1, "{:#?}", r.diagnostics);
    assert_eq!((e[0].file.as_str(), e[0].line), ("flotilla.yaml", 5));
    assert!(e[0].message.contains("host bits"), "{}", e[0].message);
    assert!(r.doc("a1", &ebpf::Live::default()).frontends.is_empty());
}

#[test]
fn frontend_ids_are_unique_and_deterministic() {
    let svcs = [Svc::new("ns", "a", &["a1"]), Svc::new("ns", "b", &["a1"])];
    let mut multi = Svc::new("ns", "m", &["a1"]);
    multi.ports = "[{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]";
    let r = fleet(None, &[svcs[0], svcs[1], multi]);
    r.no_errors();
    let doc = r.doc("a1", &ebpf::Live::default());
    let ids: Vec<u32> = doc.frontends.iter().map(|f| f.id).collect();
    assert_eq!(ids.len(), 5);
    let unique: std::collections::BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 5);
    assert!(ids.iter().all(|id| *id > 0 && *id < 1 << 31));
    let again = fleet(None, &[Svc::new("ns", "b", &["a1"])]);
    let b_id = again.doc("a1", &ebpf::Live::default()).frontends[0].id;
    assert!(
        ids.contains(&b_id),
        "a frontend's id does not depend on the other services"
    );
}
