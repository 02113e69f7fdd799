//! The client side of the BPF tests: this test binary, re-run as a child process that first moves
//! itself into the test's cgroup (so the attached programs see its sockets), then connects to a VIP
//! and prints what happened as one JSON line.
//!
//! A backend answers every TCP connection with one byte, its id, and every UDP datagram with its id
//! byte followed by the datagram.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable carrying the probe's command (JSON); set only for the child.
pub const PROBE: &str = "FLOTILLA_PROBE";
/// Environment variable naming the cgroup the child moves into.
pub const PROBE_CGROUP: &str = "FLOTILLA_PROBE_CGROUP";

/// What the probe does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// `count` TCP connections to `vip`, one after the other.
    Tcp { vip: SocketAddrV4, count: u32 },
    /// `sockets` unconnected UDP sockets, each sending `datagrams` datagrams to `vip`; then one
    /// connected UDP socket.
    Udp {
        vip: SocketAddrV4,
        sockets: u32,
        datagrams: u32,
    },
    /// TCP connections to `vip` in a loop until standard input closes (at most `max_secs`).
    Loop { vip: SocketAddrV4, max_secs: u64 },
}

/// What the probe saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Connections (or replies) per backend id.
    pub ids: BTreeMap<u8, u32>,
    pub attempts: u32,
    pub failures: u32,
    /// The first few failures, for the test's message.
    pub errors: Vec<String>,
    /// Connections whose `getpeername()` (or datagrams whose source) was not the VIP.
    pub not_vip: u32,
    /// UDP: the backend ids each socket's replies came from.
    pub per_socket: Vec<Vec<u8>>,
    /// UDP: what the connected socket's `getpeername()` returned.
    pub connected_peer: Option<String>,
}

impl Report {
    fn fail(&mut self, e: impl std::fmt::Display) {
        self.failures += 1;
        if self.errors.len() < 5 {
            self.errors.push(e.to_string());
        }
    }
}

/// Runs the probe (in the child): join the cgroup, run the command, print the report.
pub fn main(command: &str) -> std::process::ExitCode {
    let result = (|| -> Result<Report, String> {
        let cgroup = std::env::var(PROBE_CGROUP).map_err(|_| format!("{PROBE_CGROUP} is not set"))?;
        std::fs::write(format!("{cgroup}/cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("joining {cgroup}: {e}"))?;
        let command: Command = serde_json::from_str(command).map_err(|e| e.to_string())?;
        Ok(run(&command))
    })();
    match result {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("probe: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: &Command) -> Report {
    let mut r = Report::default();
    match command {
        Command::Tcp { vip, count } => {
            for _ in 0..*count {
                tcp_once(*vip, &mut r);
            }
        }
        Command::Loop { vip, max_secs } => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
                flag.store(true, Ordering::SeqCst);
            });
            let end = Instant::now() + Duration::from_secs(*max_secs);
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                tcp_once(*vip, &mut r);
            }
        }
        Command::Udp {
            vip,
            sockets,
            datagrams,
        } => {
            for _ in 0..*sockets {
                let ids = udp_socket(*vip, *datagrams, &mut r);
                r.per_socket.push(ids);
            }
            udp_connected(*vip, &mut r);
        }
    }
    r
}

fn tcp_once(vip: SocketAddrV4, r: &mut Report) {
    r.attempts += 1;
    let mut s = match TcpStream::connect_timeout(&SocketAddr::V4(vip), Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return r.fail(format!("connect: {e}")),
    };
    match s.peer_addr() {
        Ok(p) if p == SocketAddr::V4(vip) => {}
        Ok(_) | Err(_) => r.not_vip += 1,
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut id = [0u8; 1];
    match s.read_exact(&mut id) {
        Ok(()) => *r.ids.entry(id[0]).or_default() += 1,
        Err(e) => r.fail(format!("read: {e}")),
    }
}

fn udp_socket(vip: SocketAddrV4, datagrams: u32, r: &mut Report) -> Vec<u8> {
    let mut seen = Vec::new();
    let sock = match UdpSocket::bind("127.0.0.1:0") {
        Ok(s) => s,
        Err(e) => {
            r.fail(format!("bind: {e}"));
            return seen;
        }
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(3)));
    for i in 0..datagrams {
        r.attempts += 1;
        if let Err(e) = sock.send_to(&i.to_be_bytes(), vip) {
            r.fail(format!("sendto: {e}"));
            continue;
        }
        let mut buf = [0u8; 64];
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if n >= 1 => {
                if from != SocketAddr::V4(vip) {
                    r.not_vip += 1;
                }
                *r.ids.entry(buf[0]).or_default() += 1;
                if !seen.contains(&buf[0]) {
                    seen.push(buf[0]);
                }
            }
            Ok(_) => r.fail("empty datagram"),
            Err(e) => r.fail(format!("recvfrom: {e}")),
        }
    }
    seen
}

fn udp_connected(vip: SocketAddrV4, r: &mut Report) {
    let sock = match UdpSocket::bind("127.0.0.1:0").and_then(|s| s.connect(vip).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return r.fail(format!("connected udp: {e}")),
    };
    r.connected_peer = sock.peer_addr().ok().map(|p| p.to_string());
    let _ = sock.set_read_timeout(Some(Duration::from_secs(3)));
    r.attempts += 1;
    let mut buf = [0u8; 64];
    match sock.send(b"c").and_then(|_| sock.recv(&mut buf)) {
        Ok(n) if n >= 1 => *r.ids.entry(buf[0]).or_default() += 1,
        Ok(_) => r.fail("empty datagram"),
        Err(e) => r.fail(format!("connected udp send/recv: {e}")),
    }
}
