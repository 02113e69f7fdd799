//! BPF tests: the real program in the real kernel (TESTING.md, "Real BPF").
//!
//! Each test gets a child cgroup of the cgroup v2 root and a pin directory of its own, starts
//! `flotilla-agent` on them, runs backends on 127.0.0.x in this process and a client (the *probe*,
//! this binary re-run in the test's cgroup) that connects to a VIP in 127.200.0.0/16. Nothing leaves
//! the loopback range. They need root; without it they fail and say so, unless `FLOTILLA_SKIP_BPF=1`
//! asks to skip them (then each passes after printing that it was skipped).
//!
//! A custom harness (libtest-mimic, same command line as libtest) so that the binary can also be the
//! probe: with `FLOTILLA_PROBE` set, `main` runs the probe instead of the tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;
mod probe;
mod util;

use libtest_mimic::{Arguments, Trial};
use probe::Command;
use std::net::{Ipv4Addr, SocketAddrV4};
use util::{check, doc, Backend, Node, TestResult};

type TestFn = fn() -> TestResult;

fn vip(n: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 200, n, 1), 80)
}

fn main() -> std::process::ExitCode {
    if let Ok(command) = std::env::var(probe::PROBE) {
        return probe::main(&command);
    }
    let args = Arguments::from_args();
    let tests: [(&str, TestFn); 9] = [
        ("weights_3_to_1_hold_over_2000_tcp_connections", weights_3_to_1),
        ("emptying_tier_0_fails_over_to_tier_1_and_back", tier_failover),
        ("getpeername_returns_the_vip", getpeername_vip),
        ("a_udp_socket_sticks_to_one_backend_and_sees_the_vip", udp_sticky),
        (
            "two_hundred_updates_while_connecting_fail_no_connection",
            updates_under_load,
        ),
        ("an_agent_restart_keeps_routing", restart_keeps_routing),
        (
            "bad_documents_are_rejected_and_the_last_good_one_stays",
            rejects_bad_documents,
        ),
        ("documents_from_a_configmap_on_a_real_apiserver", configmap_source),
        (
            "the_daemon_publishes_and_the_agent_routes_end_to_end",
            e2e::daemon_publishes_and_the_agent_routes,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || match util::skip_or_require() {
                Ok(true) => {
                    eprintln!("{name}: skipped ({}=1)", util::SKIP);
                    Ok(())
                }
                Ok(false) => f(),
                Err(why) => Err(why.into()),
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Weights 3:1 in one tier give a 3:1 split of 2,000 connections (share within ±5% of 75%).
fn weights_3_to_1() -> TestResult {
    let mut node = Node::new("weights");
    let (a, b) = (Backend::start(1), Backend::start(2));
    node.write_doc(&doc(1, vip(1), &[a.entry(3, 0), b.entry(1, 0)]));
    node.start_agent();
    node.wait_applied(1);
    let r = node.probe(&Command::Tcp {
        vip: vip(1),
        count: 2000,
    });
    check(r.failures == 0, || format!("failed connections: {r:?}"))?;
    check(r.not_vip == 0, || {
        format!("getpeername was not the VIP {} times", r.not_vip)
    })?;
    let (na, nb) = (a.accepted(), b.accepted());
    check(na + nb == 2000, || {
        format!("backends accepted {na} + {nb}, expected 2000")
    })?;
    check(r.ids.get(&1) == Some(&na), || {
        format!("the client saw {:?}, backend 1 accepted {na}", r.ids)
    })?;
    let share = f64::from(na) / 2000.0;
    check((share / 0.75 - 1.0).abs() <= 0.05, || {
        format!(
            "backend with weight 3 got {na} of 2000 ({:.1}%), expected 75% ± 5%",
            share * 100.0
        )
    })
}

/// Tier 0 empty (its only backend not ready) → tier 1; tier 0 back → tier 0; nothing ready → refused.
fn tier_failover() -> TestResult {
    let mut node = Node::new("failover");
    let (a, b) = (Backend::start(3), Backend::start(4));
    node.write_doc(&doc(1, vip(2), &[a.entry(1, 0), b.entry(1, 1)]));
    node.start_agent();
    node.wait_applied(1);
    let only = |r: &probe::Report, id: u8| r.failures == 0 && r.ids.len() == 1 && r.ids.contains_key(&id);
    let r = node.probe(&Command::Tcp { vip: vip(2), count: 50 });
    check(only(&r, 3), || format!("tier 0 should take everything: {r:?}"))?;

    node.write_doc(&doc(2, vip(2), &[a.entry(1, 0).not_ready(), b.entry(1, 1)]));
    node.wait_applied(2);
    let r = node.probe(&Command::Tcp { vip: vip(2), count: 50 });
    check(only(&r, 4), || {
        format!("tier 0 empty: tier 1 should take everything: {r:?}")
    })?;

    node.write_doc(&doc(3, vip(2), &[a.entry(1, 0), b.entry(1, 1)]));
    node.wait_applied(3);
    let r = node.probe(&Command::Tcp { vip: vip(2), count: 50 });
    check(only(&r, 3), || {
        format!("tier 0 back: it should take everything again: {r:?}")
    })?;

    node.write_doc(&doc(4, vip(2), &[a.entry(1, 0).not_ready(), b.entry(1, 1).not_ready()]));
    node.wait_applied(4);
    let r = node.probe(&Command::Tcp { vip: vip(2), count: 5 });
    check(
        r.failures == 5 && r.errors.iter().all(|e| e.contains("not permitted")),
        || format!("no backend in any tier: connect() should be refused (EPERM): {r:?}"),
    )?;
    // The agent reads the program's counters every poll (1 s here).
    node.wait_status("5 refusals counted", |s| s["datapath"]["no_backend_refused"] == 5);
    Ok(())
}

/// `getpeername()` on a redirected TCP socket (and a connected UDP socket) is the VIP, while the
/// connection really reached the backend.
fn getpeername_vip() -> TestResult {
    let mut node = Node::new("peername");
    let a = Backend::start(5);
    node.write_doc(&doc(1, vip(3), &[a.entry(1, 0)]));
    node.start_agent();
    node.wait_applied(1);
    let r = node.probe(&Command::Tcp { vip: vip(3), count: 20 });
    check(r.failures == 0 && r.not_vip == 0, || {
        format!("peer should be {}: {r:?}", vip(3))
    })?;
    check(a.accepted() == 20, || {
        format!("the backend accepted {} of 20", a.accepted())
    })?;
    let r = node.probe(&Command::Udp {
        vip: vip(3),
        sockets: 0,
        datagrams: 0,
    });
    check(r.connected_peer == Some(vip(3).to_string()), || {
        format!("connected UDP peer: {r:?}")
    })
}

/// Every datagram of one unconnected UDP socket goes to one backend, replies come from the VIP, and
/// different sockets spread over the backends.
fn udp_sticky() -> TestResult {
    let mut node = Node::new("udp");
    let (a, b) = (Backend::start(6), Backend::start(7));
    node.write_doc(&doc(1, vip(4), &[a.entry(1, 0), b.entry(1, 0)]));
    node.start_agent();
    node.wait_applied(1);
    let r = node.probe(&Command::Udp {
        vip: vip(4),
        sockets: 24,
        datagrams: 10,
    });
    check(r.failures == 0, || format!("lost datagrams: {r:?}"))?;
    check(r.not_vip == 0, || {
        format!("{} replies did not come from the VIP", r.not_vip)
    })?;
    check(r.per_socket.iter().all(|ids| ids.len() == 1), || {
        format!("a socket's datagrams went to several backends: {:?}", r.per_socket)
    })?;
    check(r.ids.contains_key(&6) && r.ids.contains_key(&7), || {
        format!("24 sockets should use both backends: {:?}", r.ids)
    })?;
    check(r.connected_peer == Some(vip(4).to_string()), || {
        format!("connected UDP peer: {r:?}")
    })
}

/// 200 documents applied one after the other, each changing the backends, while a client connects
/// in a loop: no connection fails.
fn updates_under_load() -> TestResult {
    let mut node = Node::new("updates");
    let backends = [Backend::start(8), Backend::start(9), Backend::start(10)];
    let version_doc = |v: u64| {
        let i = (v % 3) as usize;
        let (x, y, z) = (&backends[i], &backends[(i + 1) % 3], &backends[(i + 2) % 3]);
        // Rotating weights and tiers; tier 0 sometimes empty (not ready), never every tier.
        let first = if v.is_multiple_of(5) {
            x.entry(1, 0).not_ready()
        } else {
            x.entry(1 + (v % 4) as u16, 0)
        };
        doc(v, vip(5), &[first, y.entry(2, 0), z.entry(1, 1 + (v % 3) as u8)])
    };
    node.write_doc(&version_doc(1));
    node.start_agent();
    node.wait_applied(1);
    let running = node.probe_running(&Command::Loop {
        vip: vip(5),
        max_secs: 120,
    });
    for v in 2..=201 {
        node.write_doc(&version_doc(v));
        node.wait_applied(v);
    }
    let r = running.finish();
    let s = node.status().unwrap_or_default();
    check(s["applies"] == 201 && s["rejected"] == 0, || {
        format!("the agent should have applied 201 documents: {s}")
    })?;
    check(r.failures == 0, || {
        format!("{} of {} connections failed: {:?}", r.failures, r.attempts, r.errors)
    })?;
    check(r.attempts >= 200, || {
        format!("only {} connections during 200 updates", r.attempts)
    })?;
    check(r.ids.len() == 3, || {
        format!("every backend should have been used: {:?}", r.ids)
    })
}

/// Killing the agent (SIGKILL) and starting it again interrupts nothing: the programs and maps stay
/// pinned, the restarted agent keeps the links and knows the applied version, and applies new
/// documents.
fn restart_keeps_routing() -> TestResult {
    let mut node = Node::new("restart");
    let (a, b) = (Backend::start(11), Backend::start(12));
    node.write_doc(&doc(1, vip(6), &[a.entry(1, 0)]));
    node.start_agent();
    let first = node.wait_applied(1);
    check(first["links"]["attached"] == 4, || {
        format!("first start attaches 4 links: {first}")
    })?;
    let running = node.probe_running(&Command::Loop {
        vip: vip(6),
        max_secs: 120,
    });

    node.kill_agent();
    let r = node.probe(&Command::Tcp {
        vip: vip(6),
        count: 100,
    });
    check(r.failures == 0 && r.ids.keys().eq([11u8].iter()), || {
        format!("with the agent down: {r:?}")
    })?;

    node.start_agent();
    let s = node.wait_status("restarted", |s| s["links"].is_object());
    check(s["links"]["reused"] == 4 && s["links"]["attached"] == 0, || {
        format!("links should be reused: {s}")
    })?;
    check(s["applied"]["version"] == 1 && s["applies"] == 0, || {
        format!("version 1 is known from the maps: {s}")
    })?;
    let r = node.probe(&Command::Tcp {
        vip: vip(6),
        count: 100,
    });
    check(r.failures == 0 && r.ids.keys().eq([11u8].iter()), || {
        format!("after the restart: {r:?}")
    })?;

    node.write_doc(&doc(2, vip(6), &[b.entry(1, 0)]));
    node.wait_applied(2);
    let r = node.probe(&Command::Tcp { vip: vip(6), count: 50 });
    check(r.failures == 0 && r.ids.keys().eq([12u8].iter()), || {
        format!("version 2 after the restart: {r:?}")
    })?;
    let looped = running.finish();
    check(looped.failures == 0, || {
        format!(
            "{} of {} connections failed across the restart: {:?}",
            looped.failures, looped.attempts, looped.errors
        )
    })
}

/// A bad hash, an older version, another cluster, an unknown apiVersion and garbage are refused one
/// by one; the last good document keeps routing, and a newer good one is applied afterwards.
fn rejects_bad_documents() -> TestResult {
    let mut node = Node::new("reject").with_args(&["--cluster", "c1"]);
    let (a, b) = (Backend::start(13), Backend::start(14));
    node.write_doc(&doc(5, vip(7), &[a.entry(1, 0)]));
    node.start_agent();
    node.wait_applied(5);
    let routes_to_a = |node: &Node| {
        let r = node.probe(&Command::Tcp { vip: vip(7), count: 20 });
        check(r.failures == 0 && r.ids.keys().eq([13u8].iter()), || {
            format!("the last good document should route: {r:?}")
        })
    };

    let mut tampered = doc(6, vip(7), &[a.entry(1, 0)]);
    tampered.frontends[0].backends[0].address = *b.addr.ip();
    tampered.frontends[0].backends[0].port = b.addr.port();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![("hash mismatch", tampered.to_canonical_json().unwrap())];
    cases.push((
        "not newer than the applied version 5",
        doc(4, vip(7), &[b.entry(1, 0)]).to_canonical_json().unwrap(),
    ));
    let mut other = doc(7, vip(7), &[b.entry(1, 0)]);
    other.cluster = "c2".into();
    other.seal().unwrap();
    cases.push(("this agent serves `c1`", other.to_canonical_json().unwrap()));
    let mut future = doc(8, vip(7), &[b.entry(1, 0)]);
    future.api_version = "flotilla.dev/v2".into();
    future.seal().unwrap();
    cases.push(("unknown apiVersion", future.to_canonical_json().unwrap()));
    cases.push(("not an endpoint map config", b"{\"apiVersion\": ".to_vec()));
    for (i, (message, bytes)) in cases.into_iter().enumerate() {
        node.write_config(&bytes);
        let s = node.wait_rejected(i as u64 + 1);
        let error = s["lastError"].as_str().unwrap_or_default().to_string();
        check(error.contains(message), || {
            format!("case {i}: error `{error}` should say `{message}`")
        })?;
        check(s["applied"]["version"] == 5, || {
            format!("case {i}: version 5 should stay applied: {s}")
        })?;
        routes_to_a(&node)?;
    }
    node.write_doc(&doc(9, vip(7), &[b.entry(1, 0)]));
    let s = node.wait_applied(9);
    check(s["rejected"] == 5, || format!("five rejections: {s}"))?;
    let r = node.probe(&Command::Tcp { vip: vip(7), count: 20 });
    check(r.failures == 0 && r.ids.keys().eq([14u8].iter()), || {
        format!("version 9 should route to b: {r:?}")
    })
}

/// The ConfigMap source: documents read through a real kube-apiserver (the cluster harness of
/// `flotilla-tests`; `FLOTILLA_SKIP_CLUSTER=1` skips this test); each update of the ConfigMap is
/// applied, a bad one refused.
fn configmap_source() -> TestResult {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};

    let Some(harness) = flotilla_tests::cluster::shared(1).map_err(|e| format!("{e:#}"))? else {
        eprintln!("documents_from_a_configmap_on_a_real_apiserver: skipped (FLOTILLA_SKIP_CLUSTER=1)");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (api, ns) = rt.block_on(async {
        let client = harness.clusters()[0].client().unwrap();
        let ns = flotilla_tests::cluster::create_namespace(&client, "agent")
            .await
            .unwrap();
        (Api::<ConfigMap>::namespaced(client, &ns), ns)
    });
    let publish = |bytes: Vec<u8>| {
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "endpoint-map"},
            "data": {"endpoint-map.json": String::from_utf8(bytes).unwrap()},
        });
        rt.block_on(api.patch(
            "endpoint-map",
            &PatchParams::apply("flotilla-test").force(),
            &Patch::Apply(&cm),
        ))
        .unwrap();
    };
    let (a, b) = (Backend::start(15), Backend::start(16));
    publish(doc(1, vip(8), &[a.entry(1, 0)]).to_canonical_json().unwrap());
    let kubeconfig = harness.kubeconfig().display().to_string();
    let configmap = format!("{ns}/endpoint-map");
    let args = [
        "--kubeconfig",
        &kubeconfig,
        "--context",
        "cluster-1",
        "--configmap",
        &configmap,
    ];
    let mut node = Node::new("configmap").with_configmap(&args);
    node.start_agent();
    let s = node.wait_applied(1);
    check(
        s["config"] == format!("configmap {configmap} key endpoint-map.json"),
        || format!("source: {s}"),
    )?;
    let r = node.probe(&Command::Tcp { vip: vip(8), count: 20 });
    check(r.failures == 0 && r.ids.keys().eq([15u8].iter()), || {
        format!("version 1: {r:?}")
    })?;

    publish(doc(2, vip(8), &[b.entry(1, 0)]).to_canonical_json().unwrap());
    node.wait_applied(2);
    let r = node.probe(&Command::Tcp { vip: vip(8), count: 20 });
    check(r.failures == 0 && r.ids.keys().eq([16u8].iter()), || {
        format!("version 2: {r:?}")
    })?;

    let mut tampered = doc(3, vip(8), &[a.entry(1, 0)]);
    tampered.version = 4;
    publish(tampered.to_canonical_json().unwrap());
    let s = node.wait_rejected(1);
    check(s["applied"]["version"] == 2, || format!("version 2 should stay: {s}"))?;
    let r = node.probe(&Command::Tcp { vip: vip(8), count: 20 });
    check(r.failures == 0 && r.ids.keys().eq([16u8].iter()), || {
        format!("after the refusal: {r:?}")
    })
}
