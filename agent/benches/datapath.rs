//! Benchmark of the agent and the datapath, in the real kernel (root; `harness = false`).
//!
//! `cargo bench -p flotilla-agent --bench datapath` measures, on the release profile:
//! 1. applying a document of 10,000 frontends and 100,000 backends (10 per frontend, weights 1–4,
//!    two tiers): parse + verify (canonical JSON, SHA-256), map entries, writing the inactive
//!    generation, the flip and RCU barrier, clearing the old generation; the first apply (empty
//!    maps) and replacing a full generation, median of several;
//! 2. what the program adds to `connect()`: connect latency to a local listener from a cgroup
//!    without the program, with the program (destination not a VIP), and to a VIP redirected to the
//!    same listener;
//! 3. connection setup (connect until the backend's first byte arrives) through the VIP versus
//!    through a user-space TCP proxy on loopback (a thread per connection, as simple proxies do).
//!
//! Everything stays on 127.0.0.0/8: VIPs in 127.201.0.0/16 and 127.202.0.0/16, backends on
//! 127.0.0.1 and 127.1.0.0/16–127.2.0.0/16 (the large document's backends are only written to maps,
//! never connected to). Results go in `docs/benchmarks.md`. Under `cargo test` (no `--bench`
//! argument) it runs a small version once as a smoke test; `FLOTILLA_SKIP_BPF=1` skips it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent::datapath::Datapath;
use ebpf::config::{PolicyEntry, ServiceRef, Source, API_VERSION, KIND};
use ebpf::{Backend, EndpointMapConfig, Frontend, Mode, Protocol, Via};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Scale {
    frontends: u32,
    per_frontend: u32,
    apply_runs: usize,
    connects: usize,
}

const FULL: Scale = Scale {
    frontends: 10_000,
    per_frontend: 10,
    apply_runs: 5,
    connects: 20_000,
};
const SMOKE: Scale = Scale {
    frontends: 100,
    per_frontend: 10,
    apply_runs: 2,
    connects: 200,
};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if std::env::var("FLOTILLA_SKIP_BPF").is_ok_and(|v| v == "1") {
        eprintln!("datapath benchmark skipped (FLOTILLA_SKIP_BPF=1)");
        return;
    }
    assert!(
        agent::system::is_root(),
        "the datapath benchmark loads BPF programs and needs root (FLOTILLA_SKIP_BPF=1 skips it)"
    );
    let scale = if full { FULL } else { SMOKE };
    let cg_root = agent::system::resolve_cgroup(None).expect("a cgroup v2 mount");
    let tag = format!("flotilla-bench-{}", std::process::id());
    let pin_dir = PathBuf::from("/sys/fs/bpf").join(&tag);
    agent::system::ensure_bpffs(&pin_dir).expect("bpffs");
    let cgroup = cg_root.join(&tag);
    std::fs::create_dir_all(&cgroup).expect("bench cgroup");
    let home = own_cgroup(&cg_root);
    let result = std::panic::catch_unwind(|| run(&scale, &cgroup, &pin_dir));
    join_cgroup(&home);
    let _ = agent::datapath::detach(&pin_dir);
    let _ = std::fs::remove_dir(cgroup.with_extension("bare"));
    let _ = std::fs::remove_dir(&cgroup);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn run(scale: &Scale, cgroup: &Path, pin_dir: &Path) {
    println!(
        "flotilla-agent datapath benchmark ({} frontends x {} backends; {} connects per case)",
        scale.frontends, scale.per_frontend, scale.connects
    );
    // Two sibling cgroups: the program is attached to `cgroup` only. The process moves between them
    // (a socket belongs to the cgroup it was created in), and the cases are measured in interleaved
    // rounds so that drift (other load, caches) hits all of them alike.
    let bare_cgroup = cgroup.with_extension("bare");
    std::fs::create_dir_all(&bare_cgroup).expect("bench cgroup");
    let listener = Listener::start();
    let vip = SocketAddrV4::new(Ipv4Addr::new(127, 202, 0, 1), 80);

    let mut dp = Datapath::open(pin_dir, cgroup).expect("opening the datapath");
    apply_large(&mut dp, scale);

    let mut small = sealed(1_000_000, vec![frontend(1, vip, &[(listener.addr, 1, 0)])]);
    small.frontends.extend(large(scale).frontends);
    small.seal().expect("seal");
    let tables = ebpf::datapath::tables(&small, dp.inactive().expect("gen")).expect("tables");
    dp.apply(&tables, small.version, &small.hash).expect("apply");

    let (mut bare, mut attached, mut via_vip) = (Vec::new(), Vec::new(), Vec::new());
    let mut left = scale.connects;
    while left > 0 {
        let round = left.min(500);
        join_cgroup(&bare_cgroup);
        bare.extend(connect_latency(listener.addr, round));
        join_cgroup(cgroup);
        attached.extend(connect_latency(listener.addr, round));
        via_vip.extend(connect_latency(vip, round));
        left -= round;
    }
    for v in [&mut bare, &mut attached, &mut via_vip] {
        v.sort_by(f64::total_cmp);
    }
    join_cgroup(&bare_cgroup);
    let _ = std::fs::remove_dir(&bare_cgroup);
    println!("\nconnect() latency, µs (median / p99 / mean):");
    print_row("no program attached", &bare);
    print_row("program attached, not a VIP", &attached);
    print_row("program attached, VIP redirected", &via_vip);
    println!(
        "  ratios of medians: attached/bare {:.2}, VIP/bare {:.2}; p99 VIP/bare {:.2}",
        median(&attached) / median(&bare),
        median(&via_vip) / median(&bare),
        p99(&via_vip) / p99(&bare)
    );

    join_cgroup(cgroup);
    let proxy = Proxy::start(listener.addr);
    let [setup_direct, setup_vip, setup_proxy] =
        interleaved([listener.addr, vip, proxy.addr], scale.connects, first_byte_latency);
    println!("\nconnection setup (connect until the backend's first byte), µs (median / p99 / mean):");
    print_row("direct to the backend", &setup_direct);
    print_row("through the VIP (BPF)", &setup_vip);
    print_row("through a user-space proxy", &setup_proxy);
    println!(
        "  ratios of medians: proxy/VIP {:.2}, VIP/direct {:.2}; p99 proxy/VIP {:.2}",
        median(&setup_proxy) / median(&setup_vip),
        median(&setup_vip) / median(&setup_direct),
        p99(&setup_proxy) / p99(&setup_vip)
    );
}

/// Runs `measure` for every target in rounds of 500, interleaved; sorted samples per target.
fn interleaved<const N: usize>(
    targets: [SocketAddrV4; N],
    n: usize,
    measure: fn(SocketAddrV4, usize) -> Vec<f64>,
) -> [Vec<f64>; N] {
    let mut out: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut left = n;
    while left > 0 {
        let round = left.min(500);
        for (t, samples) in targets.iter().zip(out.iter_mut()) {
            samples.extend(measure(*t, round));
        }
        left -= round;
    }
    for samples in &mut out {
        samples.sort_by(f64::total_cmp);
    }
    out
}

/// Applies the large document `apply_runs` times (alternating versions so every run replaces a full
/// generation) and prints the phases.
fn apply_large(dp: &mut Datapath, scale: &Scale) {
    let doc = large(scale);
    let bytes = doc.to_canonical_json().expect("json");
    println!(
        "\napplying {} frontends / {} backends ({:.1} MB of JSON), ms:",
        scale.frontends,
        scale.frontends * scale.per_frontend,
        bytes.len() as f64 / 1e6
    );
    println!(
        "  {:<8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "parse", "tables", "write", "barrier", "clear", "total"
    );
    let mut totals = Vec::new();
    for run in 0..scale.apply_runs {
        let start = Instant::now();
        let parsed: EndpointMapConfig = serde_json::from_slice(&bytes).expect("parse");
        parsed.verify().expect("verify");
        let parse = ms(start);
        let t = Instant::now();
        let tables = ebpf::datapath::tables(&parsed, dp.inactive().expect("gen")).expect("tables");
        let tables_ms = ms(t);
        let timings = dp
            .apply(&tables, parsed.version + run as u64, &parsed.hash)
            .expect("apply");
        let total = ms(start);
        totals.push(total);
        println!(
            "  {:<8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            if run == 0 {
                "first".to_string()
            } else {
                format!("replace{run}")
            },
            parse,
            tables_ms,
            timings.write_ms,
            timings.barrier_ms,
            timings.clear_ms,
            total
        );
    }
    let mut replace: Vec<f64> = totals.iter().skip(1).copied().collect();
    replace.sort_by(f64::total_cmp);
    if let Some(m) = replace.get(replace.len() / 2) {
        println!(
            "  median replace total: {m:.1} ms (entries per generation: {})",
            entries(scale)
        );
    }
}

fn entries(scale: &Scale) -> String {
    let doc = large(scale);
    let t = ebpf::datapath::tables(&doc, 0).expect("tables");
    format!(
        "{} services, {} slots, {} backends",
        t.services.len(),
        t.slots.len(),
        t.backends.len()
    )
}

fn large(scale: &Scale) -> EndpointMapConfig {
    let mut frontends = Vec::new();
    for f in 0..scale.frontends {
        let vip = SocketAddrV4::new(Ipv4Addr::new(127, 201, (f >> 8) as u8, f as u8), 80);
        let backends: Vec<(SocketAddrV4, u16, u8)> = (0..scale.per_frontend)
            .map(|b| {
                let i = f * scale.per_frontend + b;
                let ip = Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
                (SocketAddrV4::new(ip, 8080), 1 + (b % 4) as u16, u8::from(b >= 8))
            })
            .collect();
        frontends.push(frontend(f + 10, vip, &backends));
    }
    sealed(1, frontends)
}

fn frontend(id: u32, vip: SocketAddrV4, backends: &[(SocketAddrV4, u16, u8)]) -> Frontend {
    Frontend {
        backends: backends
            .iter()
            .map(|(addr, weight, priority)| Backend {
                address: *addr.ip(),
                cluster: "c1".into(),
                port: addr.port(),
                priority: *priority,
                ready: true,
                via: Via::Direct,
                weight: *weight,
            })
            .collect(),
        id,
        policy: PolicyEntry {
            mode: Mode::ActiveActive,
        },
        port: vip.port(),
        protocol: Protocol::Tcp,
        service: ServiceRef {
            name: format!("svc-{id}"),
            namespace: "bench".into(),
            port: "http".into(),
        },
        vip: *vip.ip(),
    }
}

fn sealed(version: u64, frontends: Vec<Frontend>) -> EndpointMapConfig {
    let mut d = EndpointMapConfig {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        cluster: "c1".into(),
        version,
        hash: String::new(),
        source: Source::default(),
        clusters: vec![],
        frontends,
    };
    d.seal().expect("seal");
    d
}

/// A listener that answers every connection with one byte and closes first (so the client side
/// leaves no TIME_WAIT behind and ports are not exhausted).
struct Listener {
    addr: SocketAddrV4,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(addr) = l.local_addr().expect("addr") else {
            unreachable!("bound to IPv4")
        };
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let _ = s.write_all(b"x");
            }
        });
        Listener { addr }
    }
}

/// A user-space TCP proxy: per connection, connect upstream and copy both ways (two threads).
struct Proxy {
    addr: SocketAddrV4,
}

impl Proxy {
    fn start(upstream: SocketAddrV4) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(addr) = l.local_addr().expect("addr") else {
            unreachable!("bound to IPv4")
        };
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let up = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut s2);
                        let _ = s2.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut client, mut server) = (client, server);
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                    let _ = up.join();
                });
            }
        });
        Proxy { addr }
    }
}

/// Microseconds of each `connect()` call; the connection is then drained until the server closes.
fn connect_latency(to: SocketAddrV4, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut s = TcpStream::connect(to).expect("connect");
        out.push(start.elapsed().as_secs_f64() * 1e6);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// Microseconds from `connect()` until the backend's first byte is read.
fn first_byte_latency(to: SocketAddrV4, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut s = TcpStream::connect(to).expect("connect");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("first byte");
        out.push(start.elapsed().as_secs_f64() * 1e6);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    out.sort_by(f64::total_cmp);
    out
}

fn median(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn p99(sorted: &[f64]) -> f64 {
    sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(f64::NAN)
}

fn print_row(name: &str, sorted: &[f64]) {
    let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
    println!(
        "  {name:<34} {:>8.1} {:>8.1} {:>8.1}",
        median(sorted),
        p99(sorted),
        mean
    );
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// This process's cgroup v2 directory (from `/proc/self/cgroup`, line `0::/path`).
fn own_cgroup(root: &Path) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .trim_start_matches('/');
    root.join(rel)
}

/// Moves the whole process into `cgroup`.
fn join_cgroup(cgroup: &Path) {
    std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())
        .unwrap_or_else(|e| panic!("joining {}: {e}", cgroup.display()));
}
