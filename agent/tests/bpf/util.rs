//! Helpers of the BPF tests: a fresh cgroup and pin directory per test, the agent as a child process,
//! backends (TCP and UDP servers on 127.0.0.x that count what they get), documents, and the probe.

use crate::probe::{self, Command, Report};
use ebpf::config::{PolicyEntry, ServiceRef, Source, API_VERSION, KIND};
use ebpf::{EndpointMapConfig, Frontend, Mode, Protocol, Via};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub type TestResult = Result<(), libtest_mimic::Failed>;

/// Environment variable that skips the BPF tests on purpose (CI never sets it).
pub const SKIP: &str = "FLOTILLA_SKIP_BPF";

/// Whether the tests are skipped on purpose; otherwise checks that they can run and says why not.
pub fn skip_or_require() -> Result<bool, String> {
    if std::env::var(SKIP).is_ok_and(|v| v == "1") {
        return Ok(true);
    }
    if !agent::system::is_root() {
        return Err(format!(
            "the BPF tests load programs into the kernel and need root (CI runs as root); \
             run them as root or set {SKIP}=1 to skip them on purpose"
        ));
    }
    agent::system::resolve_cgroup(None).map_err(|e| format!("{e} ({SKIP}=1 skips the BPF tests)"))?;
    agent::system::ensure_bpffs(Path::new("/sys/fs/bpf/flotilla-tests"))
        .map_err(|e| format!("{e} ({SKIP}=1 skips the BPF tests)"))?;
    Ok(false)
}

/// A test's node: a child cgroup of the cgroup v2 root, a pin directory, a scratch directory with the
/// config and status files. Removed when dropped (links first, which detaches the programs).
pub struct Node {
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    pub dir: tempfile::TempDir,
    agent: Option<Child>,
    extra_args: Vec<String>,
    /// Documents come from a ConfigMap (these are the source arguments) instead of the config file.
    configmap_args: Option<Vec<String>>,
}

impl Node {
    pub fn new(name: &str) -> Node {
        let root = agent::system::resolve_cgroup(None).expect("cgroup v2");
        let tag = format!("flotilla-test-{}-{name}", std::process::id());
        let cgroup = root.join(&tag);
        std::fs::create_dir_all(&cgroup).expect("creating the test cgroup");
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&tag);
        Node {
            cgroup,
            pin_dir,
            dir: tempfile::tempdir().expect("tempdir"),
            agent: None,
            extra_args: Vec::new(),
            configmap_args: None,
        }
    }

    /// Passes these arguments to every start of the agent.
    pub fn with_args(mut self, args: &[&str]) -> Node {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Reads documents through the API server with these arguments (`--kubeconfig`, `--configmap`).
    pub fn with_configmap(mut self, args: &[&str]) -> Node {
        self.configmap_args = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("endpoint-map.json")
    }

    fn status_file(&self) -> PathBuf {
        self.dir.path().join("status.json")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// Starts `flotilla-agent` on this node (appending to its log).
    pub fn start_agent(&mut self) {
        assert!(self.agent.is_none(), "the agent is already running");
        let _ = std::fs::remove_file(self.status_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("agent log");
        let source = match &self.configmap_args {
            Some(args) => args.clone(),
            None => vec!["--config".to_string(), self.config().display().to_string()],
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
            .args(&source)
            .arg("--cgroup")
            .arg(&self.cgroup)
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("--status-file")
            .arg(self.status_file())
            .args(["--poll-interval", "1"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting flotilla-agent");
        self.agent = Some(child);
    }

    /// Kills the agent with SIGKILL (no chance to clean anything up) and reaps it.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a document the way a ConfigMap update does: a new file renamed over the old.
    pub fn write_config(&self, bytes: &[u8]) {
        let tmp = self.dir.path().join(".endpoint-map.json.tmp");
        std::fs::write(&tmp, bytes).expect("writing the config");
        std::fs::rename(&tmp, self.config()).expect("replacing the config");
    }

    pub fn write_doc(&self, doc: &EndpointMapConfig) {
        self.write_config(&doc.to_canonical_json().expect("serialising"));
    }

    /// The agent's status file, once it exists.
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.status_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits (up to 30 s) until the status satisfies `ok`; panics with the agent's log otherwise.
    pub fn wait_status(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.status() {
                if ok(&s) {
                    return s;
                }
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for the agent: {what}\nstatus: {:?}\nagent log:\n{}",
                    self.status(),
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_applied(&self, version: u64) -> Value {
        self.wait_status(&format!("version {version} applied"), |s| {
            s["applied"]["version"] == version
        })
    }

    pub fn wait_rejected(&self, count: u64) -> Value {
        self.wait_status(&format!("{count} documents rejected"), |s| s["rejected"] == count)
    }

    /// Runs a probe in this node's cgroup to completion.
    pub fn probe(&self, command: &Command) -> Report {
        let out = self
            .probe_command(command)
            .stdin(Stdio::null())
            .output()
            .expect("running the probe");
        assert!(
            out.status.success(),
            "probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("probe output {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Starts a probe that runs until [`Running::finish`].
    pub fn probe_running(&self, command: &Command) -> Running {
        let mut child = self
            .probe_command(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the probe");
        let stdin = child.stdin.take();
        Running { child, stdin }
    }

    fn probe_command(&self, command: &Command) -> std::process::Command {
        let mut c = std::process::Command::new(std::env::current_exe().expect("test binary"));
        c.env(probe::PROBE, serde_json::to_string(command).expect("command"))
            .env(probe::PROBE_CGROUP, &self.cgroup);
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        if self.pin_dir.exists() {
            if let Err(e) = agent::datapath::detach(&self.pin_dir) {
                eprintln!("cleaning {}: {e:#}", self.pin_dir.display());
            }
        }
        // Probes have exited; the cgroup is empty.
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// A probe running in the background.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Running {
    /// Tells the probe to stop (closes its input) and returns its report.
    pub fn finish(mut self) -> Report {
        drop(self.stdin.take());
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = self.child.wait().expect("waiting for the probe");
        assert!(status.success(), "probe failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("probe output {e}: {out}"))
    }
}

/// A backend: a TCP and a UDP server on the same 127.0.0.x address and port. TCP answers every
/// connection with the id byte; UDP answers every datagram with the id byte and the datagram.
pub struct Backend {
    pub addr: SocketAddrV4,
    accepted: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(id: u8) -> Backend {
        Backend::start_at(Ipv4Addr::new(127, 0, 0, 10 + id), id)
    }

    /// A backend on another loopback address (any of 127.0.0.0/8), answering with `id`.
    pub fn start_at(ip: Ipv4Addr, id: u8) -> Backend {
        // A port free for both protocols.
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind((ip, 0)).expect("binding a backend");
            let port = tcp.local_addr().expect("addr").port();
            if let Ok(udp) = UdpSocket::bind((ip, port)) {
                break (tcp, udp);
            }
        };
        let addr = SocketAddrV4::new(ip, tcp.local_addr().expect("addr").port());
        let accepted = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for s in tcp.incoming() {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut s) = s {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(&[id]);
                }
            }
        });
        let halt = stop.clone();
        let _ = udp.set_read_timeout(Some(Duration::from_millis(200)));
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !halt.load(Ordering::SeqCst) {
                if let Ok((n, from)) = udp.recv_from(&mut buf[1..]) {
                    buf[0] = id;
                    let _ = udp.send_to(&buf[..n + 1], from);
                }
            }
        });
        Backend { addr, accepted, stop }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A document backend for this server.
    pub fn entry(&self, weight: u16, priority: u8) -> Entry {
        Entry {
            addr: self.addr,
            weight,
            priority,
            ready: true,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr.into(), Duration::from_millis(200));
    }
}

/// A backend entry of a test document.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub addr: SocketAddrV4,
    pub weight: u16,
    pub priority: u8,
    pub ready: bool,
}

impl Entry {
    pub fn not_ready(mut self) -> Entry {
        self.ready = false;
        self
    }
}

/// A sealed document for cluster `c1` with a TCP and a UDP frontend on `vip`, both with `backends`.
pub fn doc(version: u64, vip: SocketAddrV4, backends: &[Entry]) -> EndpointMapConfig {
    let frontend = |id: u32, protocol: Protocol| Frontend {
        backends: backends
            .iter()
            .map(|b| ebpf::Backend {
                address: *b.addr.ip(),
                cluster: "c1".into(),
                port: b.addr.port(),
                priority: b.priority,
                ready: b.ready,
                via: Via::Direct,
                weight: b.weight,
            })
            .collect(),
        id,
        policy: PolicyEntry { mode: Mode::FailOver },
        port: vip.port(),
        protocol,
        service: ServiceRef {
            name: "api".into(),
            namespace: "shop".into(),
            port: "http".into(),
        },
        vip: *vip.ip(),
    };
    let mut d = EndpointMapConfig {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        cluster: "c1".into(),
        version,
        hash: String::new(),
        source: Source::default(),
        clusters: vec![],
        frontends: vec![frontend(1, Protocol::Tcp), frontend(2, Protocol::Udp)],
    };
    d.seal().expect("sealing");
    d
}

/// Fails the test with `message` unless `cond`.
pub fn check(cond: bool, message: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(message().into())
    }
}
