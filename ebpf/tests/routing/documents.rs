//! The documents as a whole: determinism, canonical form and hash, the JSON Schema, versions.

use crate::util::{cluster, gtp, live, route, Svc};
use ebpf::{build_all, next_version, BuildOptions, EndpointMapConfig, Live};
use serde_json::Value;
use std::path::Path;

fn files() -> Vec<(String, String)> {
    let mut udp = Svc::new("infra", "dns", &["a1", "b1"]);
    udp.ports = "[{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]";
    let mut pinned = Svc::new("shop", "cart", &["a2"]);
    pinned.meta = "  annotations: {flotilla.dev/vip: 127.200.0.1}\n";
    pinned.spec = "  clusterIP: 10.96.3.3\n";
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
        (
            "apps/api.yaml".into(),
            Svc::new("shop", "api", &["a1", "a2", "b1"]).yaml(),
        ),
        ("apps/dns.yaml".into(), udp.yaml()),
        ("apps/cart.yaml".into(), pinned.yaml()),
        (
            "policies/api.yaml".into(),
            gtp("shop", "api", "FailOver", &[("a2", None), ("b1", None)]),
        ),
        (
            "policies/dns.yaml".into(),
            gtp("infra", "dns", "ActiveActive", &[("a1", Some(2)), ("b1", Some(1))]),
        ),
    ]
}

fn live_data() -> Live {
    live(&[
        ("a1", "shop", "api", Some("10.96.0.1"), &[("10.1.1.1", true)]),
        (
            "a2",
            "shop",
            "api",
            Some("10.96.0.2"),
            &[("10.1.2.1", true), ("10.1.2.2", false)],
        ),
        (
            "b1",
            "shop",
            "api",
            Some("10.97.0.1"),
            &[("10.2.0.1", true), ("10.2.0.2", true)],
        ),
    ])
}

fn docs(files: &[(String, String)], live: &Live) -> Vec<EndpointMapConfig> {
    let r = route(files);
    r.no_errors();
    let opts = BuildOptions {
        version: 1_700_000_000,
        git_revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
    };
    build_all(&r.plan, live, &opts).unwrap()
}

fn canonical(docs: &[EndpointMapConfig]) -> Vec<Vec<u8>> {
    docs.iter().map(|d| d.to_canonical_json().unwrap()).collect()
}

#[test]
fn the_same_commit_gives_byte_identical_documents_and_hashes() {
    for l in [Live::default(), live_data()] {
        let a = docs(&files(), &l);
        let b = docs(&files(), &l);
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            a.iter().map(|d| &d.hash).collect::<Vec<_>>(),
            b.iter().map(|d| &d.hash).collect::<Vec<_>>()
        );
        // Neither file names nor document order inside the repository matter.
        let mut shuffled: Vec<(String, String)> = files()
            .into_iter()
            .rev()
            .map(|(p, t)| (format!("zz/{}", p.replace('/', "-")), t))
            .collect();
        let all: String = shuffled.drain(3..).map(|(_, t)| format!("---\n{t}")).collect();
        shuffled.push(("everything.yaml".into(), all));
        assert_eq!(canonical(&docs(&shuffled, &l)), canonical(&a));
    }
}

#[test]
fn documents_are_canonical_sealed_and_sorted() {
    for d in docs(&files(), &live_data()) {
        d.verify().unwrap();
        let bytes = d.to_canonical_json().unwrap();
        assert!(!bytes.contains(&b' ') && !bytes.contains(&b'\n'), "no whitespace");
        // Re-canonicalising what was printed gives the same bytes (keys already sorted).
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        let mut again = Vec::new();
        ebpf::config::canonical_json(&parsed, &mut again);
        assert_eq!(again, bytes);
        // The hash is over everything but itself.
        let mut without = parsed.clone();
        without.as_object_mut().unwrap().remove("hash");
        let mut content = Vec::new();
        ebpf::config::canonical_json(&without, &mut content);
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&content);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(d.hash, format!("sha256:{hex}"));
        // Documented orders.
        let names: Vec<&str> = d.clusters.iter().map(|c| c.name.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        let keys: Vec<(u32, u16, ebpf::Protocol)> = d
            .frontends
            .iter()
            .map(|f| (u32::from(f.vip), f.port, f.protocol))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        for f in &d.frontends {
            let k: Vec<_> = f
                .backends
                .iter()
                .map(|b| (b.priority, b.cluster.clone(), u32::from(b.address), b.port))
                .collect();
            assert!(k.windows(2).all(|w| w[0] <= w[1]), "{k:?}");
        }
    }
}

#[test]
fn the_hash_changes_with_any_content_and_version_strictly_increases() {
    let a = docs(&files(), &Live::default());
    let b = docs(&files(), &live_data());
    assert_ne!(a[0].hash, b[0].hash);
    assert_eq!(next_version(1_700_000_000, None), 1_700_000_000);
    assert_eq!(next_version(1_700_000_000, Some(1_600_000_000)), 1_700_000_000);
    // A commit dated before the last published document (a rebase, a skewed clock) still moves up.
    assert_eq!(next_version(1_600_000_000, Some(1_700_000_000)), 1_700_000_001);
    assert_eq!(next_version(5, Some(5)), 6);
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-schemas/endpointmapconfig.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options().build(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc}");
}

#[test]
fn generated_documents_validate_against_the_schema() {
    let v = schema();
    let mut n = 0;
    for l in [Live::default(), live_data()] {
        for d in docs(&files(), &l) {
            assert_valid(&v, &serde_json::from_slice(&d.to_canonical_json().unwrap()).unwrap());
            n += 1;
        }
    }
    // A working-tree document (no revision, version 0) too.
    let r = route(&files());
    for d in build_all(&r.plan, &Live::default(), &BuildOptions::default()).unwrap() {
        assert_valid(&v, &d.to_value().unwrap());
        n += 1;
    }
    assert_eq!(n, 9);
    // And the schema can fail: a tampered document does not validate.
    let mut bad = docs(&files(), &live_data())[0].to_value().unwrap();
    bad["frontends"][0]["protocol"] = "SCTP".into();
    assert!(!v.is_valid(&bad));
    let mut bad = docs(&files(), &live_data())[0].to_value().unwrap();
    bad["hash"] = "md5:0".into();
    assert!(!v.is_valid(&bad));
}

#[test]
fn the_example_repository_documents_validate_against_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files);
    let r = route(&files);
    r.no_errors();
    let v = schema();
    let docs = build_all(&r.plan, &Live::default(), &BuildOptions::default()).unwrap();
    assert_eq!(docs.len(), 3);
    for d in docs {
        assert!(!d.frontends.is_empty());
        assert_valid(&v, &d.to_value().unwrap());
    }
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}
