//! OpenSSH's `sshd` on a loopback port, for `ssh://` sources.

use crate::cluster::process::{free_port, lost_port_race, Lifetime, Supervisor};
use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

/// Set to `1` to skip the tests that need `sshd` on purpose (they print why and pass).
pub const SKIP_ENV: &str = "FLOTILLA_SKIP_SSHD";

/// An `sshd` on 127.0.0.1 that lets the current user in with one key: [`Sshd::client_key`].
/// Its host key is fresh (ed25519); [`Sshd::known_hosts`] lists it. Stopped when dropped.
pub struct Sshd {
    // Dropped first (fields drop in order): sshd is gone before its directory is removed.
    supervisor: Supervisor,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
}

/// Whether the ssh tests are skipped on purpose (after saying so once).
pub fn skip_requested() -> bool {
    let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
    if skip {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "ssh tests skipped on purpose: {SKIP_ENV}=1 (they need sshd; CI never skips them)"
            );
        });
    }
    skip
}

fn find_sshd() -> Result<PathBuf> {
    // sshd re-executes itself and insists on an absolute path.
    let candidates = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "sshd is not installed (Debian: apt-get install openssh-server); the ssh:// tests need it \
                 ({SKIP_ENV}=1 skips them on purpose)"
            )
        })
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (Debian: apt-get install openssh-client openssh-server; {SKIP_ENV}=1 skips)")
    })?;
    if !out.status.success() {
        bail!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A fresh ed25519 key pair at `path` and `path.pub` (replacing any).
pub fn keygen(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let p = path.to_string_lossy();
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", "flotilla-tests", "-f", &p],
    )?;
    Ok(())
}

impl Sshd {
    /// Starts sshd; `Ok(None)` when [`SKIP_ENV`] is set.
    pub fn start() -> Result<Option<Sshd>> {
        if skip_requested() {
            return Ok(None);
        }
        let sshd = find_sshd()?;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-sshd-")
            .tempdir()
            .context("creating sshd's directory")?;
        keygen(&dir.path().join("host_key"))?;
        keygen(&dir.path().join("client_key"))?;
        let client_pub = std::fs::read_to_string(dir.path().join("client_key.pub")).context("the client key")?;
        std::fs::write(dir.path().join("authorized_keys"), client_pub).context("writing authorized_keys")?;
        let user = run("id", &["-un"])?;
        if run("id", &["-u"])? == "0" {
            // sshd started as root refuses to run without its privilege-separation directory (the
            // package's service would create it).
            std::fs::create_dir_all("/run/sshd").context("creating /run/sshd")?;
        }
        let supervisor = Supervisor::new(dir.path(), Lifetime::Tied)?;
        let config = dir.path().join("sshd_config");
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            std::fs::write(&config, sshd_config(dir.path(), port, &user)).context("writing sshd_config")?;
            let args = ["-D", "-e", "-f", &config.to_string_lossy()].map(String::from);
            supervisor.spawn("sshd", &sshd, &args)?;
            match super::wait_listening(port, Duration::from_secs(10), || supervisor.check_running("sshd")) {
                Ok(()) => {
                    return Ok(Some(Sshd {
                        supervisor,
                        dir,
                        port,
                        user,
                    }))
                }
                Err(e) if lost_port_race(&supervisor.log_path("sshd")) => last = Some(e),
                Err(e) => return Err(e.context("starting sshd")),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("sshd did not start"))
            .context("starting sshd"))
    }

    /// `ssh://USER@127.0.0.1:PORT/<absolute path>`.
    pub fn url(&self, path: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, path.display())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private key sshd lets in.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The `known_hosts` line of the server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> Result<String> {
        let public = std::fs::read_to_string(self.dir.path().join("host_key.pub")).context("the host key")?;
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
        Ok(format!("[127.0.0.1]:{} {kind} {key}\n", self.port))
    }

    /// Writes a `known_hosts` file listing the server (plain, not hashed) at `path`.
    pub fn write_known_hosts(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.known_hosts_line()?).with_context(|| format!("writing {}", path.display()))
    }

    /// A `core.sshCommand` for the git CLI: the client key, a `known_hosts` file of its own, no prompts.
    pub fn ssh_command(&self) -> Result<String> {
        let known = self.dir.path().join("cli_known_hosts");
        self.write_known_hosts(&known)?;
        Ok(format!(
            "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
            self.client_key().display(),
            known.display()
        ))
    }

    /// Restarts sshd on the same port with a new host key: what a rebuilt server, or an impostor,
    /// looks like to clients.
    pub fn change_host_key(&self) -> Result<()> {
        self.supervisor.stop("sshd")?;
        keygen(&self.dir.path().join("host_key"))?;
        self.supervisor.restart("sshd")?;
        super::wait_listening(self.port, Duration::from_secs(10), || {
            self.supervisor.check_running("sshd")
        })
    }

    /// sshd's log (its stderr).
    pub fn log(&self) -> PathBuf {
        self.supervisor.log_path("sshd")
    }
}

fn sshd_config(dir: &Path, port: u16, user: &str) -> String {
    format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile none
AuthorizedKeysFile {dir}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# The key files live in a temporary directory under /tmp (world-writable): do not insist on strict modes.
StrictModes no
LogLevel VERBOSE
",
        dir = dir.display()
    )
}
