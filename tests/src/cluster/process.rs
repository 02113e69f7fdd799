//! The harness's child processes: spawning with logs, free ports, and the guarantee that nothing
//! outlives the test binary.
//!
//! # Cleanup
//!
//! Every process (etcd, kube-apiservers) is a direct child of the test process, in its own process
//! group, with stdout and stderr appended to `logs/<name>.log`. Three exits are covered:
//!
//! - **Drop** of the harness (including unwinding from a panic): the children are killed
//!   (`SIGKILL`) and reaped right there.
//! - **Exit of the test binary**, the usual end of a harness shared through a `static` (Rust never
//!   drops statics, and libtest ends with `process::exit`), or its death by any signal, `SIGKILL`
//!   included: a *watchdog* catches it. The watchdog is a tiny `sh` started first, in its own
//!   process group (so a terminal's Ctrl-C does not reach it first), whose stdin is a pipe that only
//!   the test process holds (Rust opens pipes close-on-exec, so no other child inherits it). The
//!   harness writes the PID of every child to that pipe as it starts it. When the test process is
//!   gone, for whatever reason, the kernel closes the pipe; the watchdog reads end-of-file, kills
//!   the process group of every PID it was told, waits until they are gone, then removes the
//!   harness's etcd data and keys (the logs stay for inspection, see `cluster.rs`).
//! - **Stop and restart** of one child ([`Supervisor::stop`], [`Supervisor::restart`], for tests of
//!   a kube-apiserver that dies): the child is killed (`SIGKILL`), the watchdog is told to drop its
//!   PID (after the kill, before the reap, so neither a leak nor a kill of a reused PID is possible),
//!   and it is reaped. The restart runs the same program with the same arguments and tells the
//!   watchdog the new PID, so a restarted child is covered exactly like the first one.
//! - **Detached** clusters (`cargo xtask clusters up`) have no watchdog; their PIDs go to a state
//!   file and `cargo xtask clusters down` kills them.
//!
//! Why not `prctl(PR_SET_PDEATHSIG)`: it needs `unsafe` in a `pre_exec` hook (the workspace forbids
//! `unsafe_code`), and it fires when the spawning *thread* exits, which with libtest's thread per
//! test would kill a shared harness at the end of the first test. A per-child `sh` wrapper would
//! work too but costs a process per child and hides the child's exit status.
//!
//! The only gap: the test process killed between spawning a child and writing its PID (a few
//! microseconds).

use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The watchdog: on end-of-file on stdin, kill every process group it was told about, wait (at
/// most 10 s) until they are gone, then remove `$1/etcd`, `$1/pki` and `$1/kubeconfig`. `forget` ends it without
/// killing (the harness has reaped the children itself, so their PIDs may be reused); `drop PID`
/// removes one PID from its list (a child the harness stopped and is about to reap).
const WATCHDOG: &str = r#"trap '' INT HUP
pids=
while read -r line; do
    case "$line" in
        forget) exit 0 ;;
        "drop "*)
            gone=${line#drop }
            kept=
            for p in $pids; do [ "$p" = "$gone" ] || kept="$kept $p"; done
            pids=$kept
            ;;
        *) pids="$pids $line" ;;
    esac
done
for p in $pids; do kill -KILL -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
n=0
for p in $pids; do
    while kill -0 "$p" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
done
rm -rf "$1/etcd" "$1/pki" "$1/kubeconfig"
"#;

/// How the children's lifetime is tied to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the harness is dropped or the process exits (tests).
    Tied,
    /// Left running when the harness is detached (developer clusters).
    Detached,
}

/// One child process.
#[derive(Debug)]
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Child,
}

/// The children of one harness.
#[derive(Debug)]
pub struct Supervisor {
    logs: PathBuf,
    procs: Mutex<Vec<Proc>>,
    /// Children stopped by [`Supervisor::stop`]: name -> (program, arguments), for the restart.
    stopped: Mutex<Vec<(String, PathBuf, Vec<String>)>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// A detached child: its name, PID and program.
#[derive(Debug, Clone)]
pub struct DetachedProc {
    /// The name (`etcd`, `cluster-1`, ...).
    pub name: String,
    /// The process ID (also its process group ID).
    pub pid: u32,
    /// The program it runs.
    pub program: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl Supervisor {
    /// A supervisor whose logs go to `dir/logs`; with [`Lifetime::Tied`] the watchdog starts now.
    pub fn new(dir: &Path, lifetime: Lifetime) -> Result<Supervisor> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let watchdog = match lifetime {
            Lifetime::Detached => None,
            Lifetime::Tied => {
                let mut child = Command::new("sh")
                    .args(["-c", WATCHDOG, "flotilla-watchdog"])
                    .arg(dir)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .context("starting the watchdog (sh)")?;
                let stdin = child.stdin.take().context("the watchdog has no stdin")?;
                Some((child, stdin))
            }
        };
        Ok(Supervisor {
            logs,
            procs: Mutex::new(Vec::new()),
            stopped: Mutex::new(Vec::new()),
            watchdog: Mutex::new(watchdog),
        })
    }

    fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        // A poisoned lock only means another thread panicked while holding it; the list is intact.
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log file of the child `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    /// Starts `program args` as the child `name` (replacing a dead child of that name), logging to
    /// `logs/<name>.log` (appended, so a restarted child's earlier attempts stay visible).
    pub fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<()> {
        let log = self.log_path(name);
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().with_context(|| format!("opening {}", log.display()))?;
        let mut procs = self.procs();
        procs.retain(|p| p.name != name);
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} ({name})", program.display()))?;
        if let Some((_, stdin)) = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            writeln!(stdin, "{}", child.id()).context("telling the watchdog")?;
        }
        procs.push(Proc {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            log,
            child,
        });
        Ok(())
    }

    /// Kills the child `name` with `SIGKILL` and reaps it; [`Supervisor::restart`] starts it again.
    /// Returns its exit status (killed by signal 9, unless it had already exited).
    pub fn stop(&self, name: &str) -> Result<std::process::ExitStatus> {
        let mut procs = self.procs();
        let at = procs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow!("no running process {name}"))?;
        // Killed first: from here on the child cannot outlive us even if the watchdog forgets it.
        // Not yet reaped, so its PID cannot be reused before the watchdog has dropped it.
        procs[at].child.kill().with_context(|| format!("killing {name}"))?;
        let mut proc = procs.remove(at);
        drop(procs);
        let told = match self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some((_, stdin)) => writeln!(stdin, "drop {}", proc.child.id()),
            None => Ok(()),
        };
        let status = proc.child.wait().with_context(|| format!("waiting for {name} to exit"));
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((proc.name, proc.program, proc.args));
        told.context("telling the watchdog")?;
        status
    }

    /// Starts a child stopped by [`Supervisor::stop`] again, with the same program and arguments.
    pub fn restart(&self, name: &str) -> Result<()> {
        let (program, args) = {
            let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
            let at = stopped
                .iter()
                .position(|(n, _, _)| n == name)
                .ok_or_else(|| anyhow!("{name} was not stopped"))?;
            let (_, program, args) = stopped.remove(at);
            (program, args)
        };
        self.spawn(name, &program, &args)
    }

    /// `Ok` while the child `name` runs; an error with the end of its log once it has exited.
    pub fn check_running(&self, name: &str) -> Result<()> {
        let mut procs = self.procs();
        let proc = procs
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow!("no process {name}"))?;
        match proc.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(anyhow!(
                "{name} exited ({status}); the end of {}:\n{}",
                proc.log.display(),
                log_tail(&proc.log, 25)
            )),
            Err(e) => Err(e).with_context(|| format!("checking on {name}")),
        }
    }

    /// The PIDs of the children, by name.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.procs().iter().map(|p| (p.name.clone(), p.child.id())).collect()
    }

    /// Gives up ownership: the children keep running after this process exits.
    pub fn detach(self) -> Vec<DetachedProc> {
        let procs = std::mem::take(&mut *self.procs());
        procs
            .into_iter()
            .map(|p| DetachedProc {
                pid: p.child.id(),
                name: p.name,
                program: p.program,
                log: p.log,
            })
            .collect()
    }

    /// Kills and reaps every child, then releases the watchdog.
    pub fn shutdown(&self) {
        let mut procs = std::mem::take(&mut *self.procs());
        for p in &mut procs {
            let _ = p.child.kill();
        }
        for p in &mut procs {
            let _ = p.child.wait();
        }
        if let Some((mut child, mut stdin)) = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // The children are reaped, so their PIDs may be reused: the watchdog must not kill them.
            let _ = writeln!(stdin, "forget");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A loopback port that was free a moment ago (the kernel picks it; a process that loses the race
/// fails with "address already in use" and is restarted on another port by the caller).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr().context("reading a bound port")?.port())
}

/// Whether the log of a process that exited says it lost a port race.
pub fn lost_port_race(log: &Path) -> bool {
    log_tail(log, 40).contains("address already in use")
}

/// The last `n` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A plain-HTTP `GET` on loopback (etcd's `/health`); returns the status code and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("malformed HTTP response from 127.0.0.1:{port}{path}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    if status == 0 {
        bail!("HTTP status 0 from 127.0.0.1:{port}{path}");
    }
    Ok((status, body.to_string()))
}
