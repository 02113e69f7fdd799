//! What the agent reports: a JSON status (file and `GET /status`) and Prometheus metrics (`GET /metrics`).

use crate::datapath::{ApplyTimings, LinkReport};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The document in the maps.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub version: u64,
    pub hash: String,
    /// Absent when the document was applied by an earlier run of the agent (only version and hash
    /// are kept in the maps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub frontends: usize,
    pub backends: usize,
    pub slots: usize,
    /// Seconds since the Unix epoch; 0 when applied by an earlier run.
    pub applied_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<ApplyTimings>,
}

/// The agent's state, as `--status-file` and `GET /status` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub cgroup: String,
    pub pin_dir: String,
    pub config: String,
    /// The object's tag (first 12 hex of its SHA-256), part of the link pin names.
    pub object: String,
    pub links: Option<LinkReport>,
    /// The active generation (0 or 1).
    pub generation: u8,
    pub applied: Option<Applied>,
    /// Documents applied by this run.
    pub applies: u64,
    /// Documents refused by this run (bad JSON, hash, apiVersion, kind, cluster, old version, too large).
    pub rejected: u64,
    pub last_error: Option<String>,
    /// Seconds since the Unix epoch of `last_error`.
    pub last_error_at: Option<u64>,
    /// The BPF program's counters, summed over CPUs.
    pub datapath: BTreeMap<String, u64>,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes the status as JSON to `path` atomically (a temporary file renamed over it).
pub fn write_file(status: &Status, path: &Path) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(status).context("serialising the status")?;
    text.push(b'\n');
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Prometheus text exposition of the status.
pub fn metrics(status: &Status) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let applied = status.applied.as_ref();
    gauge(
        "flotilla_agent_applied_version",
        "Version of the endpoint map config in the maps.",
        "gauge",
        applied.map_or(0, |a| a.version),
    );
    gauge(
        "flotilla_agent_frontends",
        "Frontends of the applied document.",
        "gauge",
        applied.map_or(0, |a| a.frontends as u64),
    );
    gauge(
        "flotilla_agent_backends",
        "Distinct backends of the applied document.",
        "gauge",
        applied.map_or(0, |a| a.backends as u64),
    );
    gauge(
        "flotilla_agent_applies_total",
        "Documents applied by this run.",
        "counter",
        status.applies,
    );
    gauge(
        "flotilla_agent_rejected_total",
        "Documents refused by this run.",
        "counter",
        status.rejected,
    );
    gauge(
        "flotilla_agent_generation",
        "Active generation of the maps.",
        "gauge",
        u64::from(status.generation),
    );
    for (name, value) in &status.datapath {
        gauge(
            &format!("flotilla_datapath_{name}_total"),
            "BPF program counter (all CPUs).",
            "counter",
            *value,
        );
    }
    out
}

/// Shared status for the HTTP thread.
pub type Shared = Arc<Mutex<Status>>;

/// Serves `GET /status` (JSON), `GET /metrics` (Prometheus) and `GET /healthz` on `addr`, one
/// connection at a time, on a thread of its own. Returns the bound address.
pub fn serve(addr: SocketAddr, shared: Shared) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr().context("reading the listening address")?;
    std::thread::Builder::new()
        .name("flotilla-agent-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &shared) {
                    tracing::debug!(error = %e, "status request failed");
                }
            }
        })
        .context("starting the HTTP thread")?;
    Ok(local)
}

fn answer(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let status = shared.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (code, kind, body) = match (request.split_whitespace().next(), path) {
        (Some("GET"), "/status") => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(&status).unwrap_or_default(),
        ),
        (Some("GET"), "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics(&status)),
        (Some("GET"), "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Read;

    #[test]
    fn status_and_metrics_are_served_over_http() {
        let shared: Shared = Arc::default();
        shared.lock().unwrap().rejected = 3;
        shared.lock().unwrap().datapath.insert("connect_redirected".into(), 9);
        let addr = serve("127.0.0.1:0".parse().unwrap(), shared).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let status = get("/status");
        assert!(status.starts_with("HTTP/1.1 200 OK"), "{status}");
        assert!(status.contains("\"rejected\": 3"), "{status}");
        let metrics = get("/metrics");
        assert!(metrics.contains("\nflotilla_agent_rejected_total 3\n"), "{metrics}");
        assert!(
            metrics.contains("\nflotilla_datapath_connect_redirected_total 9\n"),
            "{metrics}"
        );
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
