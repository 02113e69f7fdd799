//! Benchmark of the endpoint map config builder (no criterion: a plain binary, `harness = false`).
//!
//! `cargo bench -p flotilla-ebpf --bench endpoints` builds a synthetic fleet — 10,000 exported
//! Services (one port each) with ActiveActive GlobalTrafficPolicies, exported from two clusters of
//! the consumer's network, each observed with 5 ready endpoints per Service — and times, on the
//! release profile: rendering the repository (context only), planning (VIPs, tiers, gateway ports),
//! and building the consumer's document: 10,000 frontends, 100,000 backends, sealed (canonical JSON +
//! SHA-256), then serialised as `flotilla endpoints --cluster` prints it. Results go in
//! `docs/benchmarks.md`. Under `cargo test` (no `--bench` argument) it runs a tiny fleet once, as a
//! smoke test.

use ebpf::{BuildOptions, Live, LiveEndpoint, LiveService, Protocol};
use render::{Emit, RenderOptions, Snapshot};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const NAMESPACES: usize = 10;
const ENDPOINTS_PER_EXPORTER: usize = 5;
const EXPORTERS: [&str; 2] = ["exporter-1", "exporter-2"];

fn repository(services: usize) -> Snapshot {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut clusters = String::new();
    for (name, net) in [("consumer", "flat"), ("exporter-1", "flat"), ("exporter-2", "flat")] {
        let _ = write!(
            clusters,
            "---\napiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {name}}}\n\
             spec: {{region: r1, network: {net}}}\n"
        );
    }
    files.push(("clusters.yaml".into(), clusters));
    files.push((
        "flotilla.yaml".into(),
        "apiVersion: flotilla.dev/v1alpha1\nkind: RepoConfig\nmetadata: {name: c}\nspec: {vipRange: 10.128.0.0/12}\n"
            .into(),
    ));
    let per_ns = services / NAMESPACES;
    for n in 0..NAMESPACES {
        let ns = format!("team-{n}");
        let mut text = format!(
            "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {{name: exported, namespace: {ns}}}\n\
             spec:\n  resourceSelectors:\n  - {{apiVersion: v1, kind: Service}}\n  \
             - {{apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport}}\n  \
             placement: {{clusterAffinity: {{clusterNames: [{}]}}}}\n",
            EXPORTERS.join(", ")
        );
        for i in 0..per_ns {
            let name = format!("svc-{i}");
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
                 spec: {{selector: {{app: {name}}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
                 ---\napiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {{name: {name}, namespace: {ns}}}\n\
                 ---\napiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n\
                 spec: {{mode: ActiveActive}}\n"
            );
        }
        files.push((format!("apps/{ns}.yaml"), text));
    }
    Snapshot::from_texts(files)
}

fn live(services: usize) -> Live {
    let mut live = Live::default();
    let per_ns = services / NAMESPACES;
    for (e, exporter) in EXPORTERS.iter().enumerate() {
        let cluster = live.clusters.entry(exporter.to_string()).or_default();
        for n in 0..NAMESPACES {
            for i in 0..per_ns {
                let endpoints = (0..ENDPOINTS_PER_EXPORTER)
                    .map(|k| LiveEndpoint {
                        address: Ipv4Addr::new(10, 1 + e as u8, (i / 50) as u8, (n * 25 + (i % 50) / 2 + k) as u8),
                        port_name: "http".into(),
                        port: 8080,
                        protocol: Protocol::Tcp,
                        ready: true,
                    })
                    .collect();
                cluster.services.insert(
                    (format!("team-{n}"), format!("svc-{i}")),
                    LiveService {
                        cluster_ip: Some(Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250) as u8)),
                        endpoints,
                    },
                );
            }
        }
    }
    live
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (services, runs) = if bench { (10_000, 5) } else { (100, 1) };
    let snapshot = repository(services);
    let live = live(services);

    let t = Instant::now();
    let repo = render::repo::load(&snapshot);
    let (out, _) = render::pipeline::run(
        &repo,
        &RenderOptions {
            emit: Emit::Nothing,
            ..RenderOptions::default()
        },
    );
    let render_time = t.elapsed();
    assert!(
        !out.has_errors(),
        "{:#?}",
        out.diagnostics.iter().take(5).collect::<Vec<_>>()
    );

    let mut plan_times = Vec::new();
    let mut build_times = Vec::new();
    let mut print_times = Vec::new();
    let mut stats = (0, 0, 0);
    for _ in 0..runs {
        let t = Instant::now();
        let plan = ebpf::plan::plan(&repo, &out);
        plan_times.push(t.elapsed());
        assert!(
            plan.diagnostics.is_empty(),
            "{:#?}",
            plan.diagnostics.iter().take(5).collect::<Vec<_>>()
        );

        let t = Instant::now();
        let doc = ebpf::build(&plan, "consumer", &live, &BuildOptions::default())
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the consumer's document builds"));
        build_times.push(t.elapsed());

        let t = Instant::now();
        let bytes = doc.to_canonical_json().unwrap_or_default();
        print_times.push(t.elapsed());

        let backends: usize = doc.frontends.iter().map(|f| f.backends.len()).sum();
        stats = (doc.frontends.len(), backends, bytes.len());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (frontends, backends, bytes) = stats;
    assert_eq!((frontends, backends), (services, services * 10));
    let (plan, build, print) = (
        median(&mut plan_times),
        median(&mut build_times),
        median(&mut print_times),
    );
    println!("endpoint map config benchmark ({runs} run(s), medians)");
    println!("  fleet:     {services} exported Services, 3 clusters, {ENDPOINTS_PER_EXPORTER} ready endpoints per Service on each of 2 exporters");
    println!("  document:  {frontends} frontends, {backends} backends, {bytes} bytes of canonical JSON");
    println!(
        "  render:    {} (context: load + place the {} templates, once)",
        ms(render_time),
        repo.templates.len()
    );
    println!("  plan:      {}", ms(plan));
    println!(
        "  build:     {} (backends, sort, seal = canonical JSON + SHA-256)",
        ms(build)
    );
    println!("  serialise: {} (the printed canonical JSON)", ms(print));
    println!("  plan + build + serialise: {}", ms(plan + build + print));
}
