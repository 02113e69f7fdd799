//! The daemon's source: a branch of a Git repository, read from the object database (never a checkout).
//!
//! - [`Source::Local`]: a repository on this machine (or a directory inside its work tree, that subtree
//!   being the flotilla repository), read in place; the working tree may be dirty.
//! - [`Source::Remote`]: a URL (`file://`, `git://`, `http(s)://`, `ssh://`) fetched with libgit2 into a
//!   bare cache repository. The branch is fetched with a forced refspec, so a force-push is followed
//!   (and rolls back when it points at an older commit); a branch deleted on the remote is an error,
//!   and the daemon keeps the last good commit.
//!
//! Authentication ([`GitAuth`], the details in [`auth`]): `https://` sends a token as HTTP basic auth
//! and trusts the system's CAs or only the one in `--git-ca-file`; `ssh://` logs in with a key file and
//! accepts the server only if its host key is in a `known_hosts` file ([`known_hosts`]). The token
//! file and `known_hosts` are read at every fetch, so they can be rotated without a restart.
//! Credentials never appear in messages: a URL with a password is refused (and shown redacted), tokens
//! are only ever named by where they come from.

pub mod auth;
pub mod known_hosts;

use anyhow::{bail, Context, Result};
use render::Snapshot;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A branch to follow.
#[derive(Debug, Clone)]
pub enum Source {
    Local(Local),
    Remote(Remote),
    /// `--watch`: the working tree, committed or not (see [`super::worktree`]).
    WorkTree(super::worktree::WorkTree),
}

/// How to authenticate to a remote and what to trust (the `--git-*`, `--ssh-key` and `--known-hosts`
/// options). Options that do not apply to the source's scheme are refused.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// The user name: sent with the token (https), logged in as (ssh). Default: the URL's user, else
    /// [`HTTPS_USER`] or [`SSH_USER`].
    pub user: Option<String>,
    /// The token (https only).
    pub token: Option<Token>,
    /// Trust only the CA certificates in this PEM file for https (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The private key for ssh (OpenSSH or PEM format, without a passphrase).
    pub ssh_key: Option<PathBuf>,
    /// The `known_hosts` file for ssh (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
}

/// A fetch that hears nothing from the server for this long is abandoned with a source error. libgit2
/// has no timeouts of its own (only process-wide, through an `unsafe` option), and a server that
/// accepts a connection and then says nothing would otherwise hold the daemon's loop forever.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The default user of a token: what GitHub expects for app and fine-grained tokens, and accepted
/// with a personal access token by GitHub, GitLab and Gitea (which ignore the user for tokens).
pub const HTTPS_USER: &str = "x-access-token";
/// The default ssh user (GitHub, GitLab, Gitea, Bitbucket all use `git`).
pub const SSH_USER: &str = "git";
/// The environment variable a token may come from (`--git-token-file` wins).
pub const TOKEN_ENV: &str = "FLOTILLA_GIT_TOKEN";

/// Where the https token comes from. Its value is never printed (`Debug` shows only the source).
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// A file, read (and trimmed) at every fetch: a rotated token is picked up.
    File(PathBuf),
    /// An environment variable's value, read once at start.
    Env { var: String, value: String },
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::File(p) => f.debug_tuple("File").field(p).finish(),
            Token::Env { var, .. } => write!(f, "Env(${var}, <redacted>)"),
        }
    }
}

impl Token {
    /// The token in environment variable `var`, if it is set and not empty.
    pub fn from_env(var: &str) -> Option<Token> {
        let value = std::env::var(var).ok()?.trim().to_string();
        (!value.is_empty()).then(|| Token::Env {
            var: var.to_string(),
            value,
        })
    }

    /// Where it comes from, for messages.
    pub fn origin(&self) -> String {
        match self {
            Token::File(p) => format!("the token in {}", p.display()),
            Token::Env { var, .. } => format!("the token in ${var}"),
        }
    }

    /// The token now.
    pub fn read(&self) -> Result<String> {
        match self {
            Token::Env { value, .. } => Ok(value.clone()),
            Token::File(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading the token file {}", p.display()))?;
                let token = text.trim();
                if token.is_empty() {
                    bail!("the token file {} is empty", p.display());
                }
                Ok(token.to_string())
            }
        }
    }
}

/// `url` with any password replaced by `***` (for messages; URLs that carry one are refused anyway).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one, and this one has one.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL we can parse: hide everything between the scheme and the last `@` before the path.
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        },
    }
}

impl Source {
    /// `--source`: a URL with a scheme is fetched; anything else is a local path.
    pub fn parse(source: &str, branch: Option<String>, cache_dir: Option<PathBuf>, auth: &GitAuth) -> Result<Source> {
        let Some((scheme, _)) = source.split_once("://") else {
            if let Some(ssh) = scp_like(source) {
                bail!("--source {source}: a local path that does not exist; for ssh write {ssh}");
            }
            refuse_remote_options(source, auth, &[])?;
            return Ok(Source::Local(Local::new(PathBuf::from(source), branch)));
        };
        let transport = Transport::for_url(source, scheme, auth)?;
        let cache = match cache_dir {
            Some(c) => c,
            None => default_cache(source)?,
        };
        Ok(Source::Remote(Remote {
            url: source.to_string(),
            branch: branch.unwrap_or_else(|| "main".to_string()),
            cache,
            transport,
            stall_timeout: STALL_TIMEOUT,
            running: Arc::default(),
        }))
    }

    /// The commit the branch points at now (fetching first, for a remote).
    pub fn head(&self) -> Result<String> {
        match self {
            Source::Local(l) => l.head(),
            Source::Remote(r) => r.fetch(),
            Source::WorkTree(w) => w.head(),
        }
    }

    /// The repository as of `commit`.
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot> {
        match self {
            Source::Local(l) => l.snapshot(commit),
            Source::Remote(r) => crate::source::read_rev(&r.cache, commit),
            Source::WorkTree(w) => w.snapshot(commit),
        }
    }

    /// The committer time of `commit`, in seconds since the epoch (what endpoint map versions start from);
    /// `None` for a working tree, whose states are not commits.
    pub fn commit_time(&self, commit: &str) -> Result<Option<u64>> {
        match self {
            Source::Local(l) => crate::source::commit_time(&l.path, commit).map(Some),
            Source::Remote(r) => crate::source::commit_time(&r.cache, commit).map(Some),
            Source::WorkTree(_) => Ok(None),
        }
    }
}

/// `user@host:path` (Git's scp-like ssh syntax), when `source` is not an existing path: the
/// equivalent `ssh://` URL, which is what `--source` takes.
fn scp_like(source: &str) -> Option<String> {
    if std::path::Path::new(source).exists() {
        return None;
    }
    let (authority, path) = source.split_once(':')?;
    let (user, host) = authority.split_once('@')?;
    let simple = |s: &str| !s.is_empty() && !s.contains('/');
    (simple(user) && simple(host)).then(|| format!("ssh://{user}@{host}/{}", path.trim_start_matches('/')))
}

/// Refuses the options of `auth` that `scheme` does not use (`allowed` names the ones it does). A token
/// from the environment is not an option given for this source, so it is never refused.
fn refuse_remote_options(source: &str, auth: &GitAuth, allowed: &[&str]) -> Result<()> {
    let given = [
        ("--git-user", auth.user.is_some()),
        ("--git-token-file", matches!(auth.token, Some(Token::File(_)))),
        ("--git-ca-file", auth.ca_file.is_some()),
        ("--ssh-key", auth.ssh_key.is_some()),
        ("--known-hosts", auth.known_hosts.is_some()),
    ];
    let unused: Vec<&str> = given
        .iter()
        .filter(|(name, set)| *set && !allowed.contains(name))
        .map(|(name, _)| *name)
        .collect();
    if !unused.is_empty() {
        let what = if allowed.is_empty() {
            "a local repository".to_string()
        } else {
            format!("this source (it takes {})", allowed.join(", "))
        };
        bail!(
            "--source {}: {} {} not apply to {what}",
            redact(source),
            unused.join(", "),
            if unused.len() == 1 { "does" } else { "do" }
        );
    }
    Ok(())
}

/// How a remote is reached, decided once from the URL and the options.
#[derive(Debug, Clone)]
pub enum Transport {
    /// `file://`, `git://`, or `http://` without credentials.
    Plain,
    /// `https://`: basic auth with a token when the server asks, and the CA to trust.
    Https {
        user: String,
        token: Option<Token>,
        ca_file: Option<PathBuf>,
    },
    /// `ssh://`: public-key login, the host key checked against `known_hosts`.
    Ssh {
        host: String,
        port: u16,
        user: String,
        key: PathBuf,
        known_hosts: PathBuf,
    },
}

impl Transport {
    fn for_url(source: &str, scheme: &str, auth: &GitAuth) -> Result<Transport> {
        let shown = redact(source);
        let parsed = url::Url::parse(source).with_context(|| format!("--source {shown}: not a valid URL"))?;
        if parsed.password().is_some() {
            bail!(
                "--source {shown}: a password in the URL would show in the process list and the logs; \
                 give the token with --git-token-file or ${TOKEN_ENV}"
            );
        }
        let url_user = Some(parsed.username()).filter(|u| !u.is_empty()).map(str::to_string);
        let user = |default: &str| {
            auth.user
                .clone()
                .or_else(|| url_user.clone())
                .unwrap_or_else(|| default.to_string())
        };
        match scheme {
            "file" | "git" => {
                refuse_remote_options(source, auth, &[])?;
                Ok(Transport::Plain)
            }
            "http" => {
                if auth.token.is_some() {
                    bail!(
                        "--source {shown}: a token is only sent over https:// (it would cross the network in clear text)"
                    );
                }
                refuse_remote_options(source, auth, &[])?;
                Ok(Transport::Plain)
            }
            "https" => {
                refuse_remote_options(source, auth, &["--git-user", "--git-token-file", "--git-ca-file"])?;
                Ok(Transport::Https {
                    user: user(HTTPS_USER),
                    token: auth.token.clone(),
                    ca_file: auth.ca_file.clone(),
                })
            }
            "ssh" => {
                refuse_remote_options(source, auth, &["--git-user", "--ssh-key", "--known-hosts"])?;
                let host = parsed
                    .host_str()
                    .with_context(|| format!("--source {shown}: no host"))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let key = auth
                    .ssh_key
                    .clone()
                    .with_context(|| format!("--source {shown}: an ssh:// source needs --ssh-key FILE"))?;
                let known_hosts = match &auth.known_hosts {
                    Some(k) => k.clone(),
                    None => std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".ssh").join("known_hosts"))
                        .context("no known_hosts file: set HOME or give --known-hosts FILE")?,
                };
                Ok(Transport::Ssh {
                    host,
                    port: parsed.port().unwrap_or(22),
                    user: user(SSH_USER),
                    key,
                    known_hosts,
                })
            }
            other => bail!("--source {shown}: unknown scheme {other} (file, git, http, https and ssh are)"),
        }
    }
}

/// `~/.cache/flotilla/sources/<sha256(url)[:16]>`.
fn default_cache(url: &str) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("no cache directory: set HOME, XDG_CACHE_HOME or --cache-dir")?;
    let hash = Sha256::digest(url.as_bytes());
    Ok(base.join("flotilla").join("sources").join(hex::encode(&hash[..8])))
}

/// A local repository path and the branch to follow.
#[derive(Debug, Clone)]
pub struct Local {
    pub path: PathBuf,
    pub branch: Option<String>,
}

impl Local {
    pub fn new(path: PathBuf, branch: Option<String>) -> Local {
        Local { path, branch }
    }

    /// The commit the branch (or HEAD) points at now.
    pub fn head(&self) -> Result<String> {
        let repo = git2::Repository::discover(&self.path)
            .with_context(|| format!("{} is not inside a Git repository", self.path.display()))?;
        let reference = match &self.branch {
            Some(b) => repo
                .find_reference(&format!("refs/heads/{b}"))
                .with_context(|| format!("branch `{b}` does not exist in {}", self.path.display()))?,
            None => repo.head().context("reading HEAD")?,
        };
        let commit = reference
            .peel_to_commit()
            .context("the branch does not point at a commit")?;
        Ok(commit.id().to_string())
    }

    /// The repository as of `commit` (the subtree when `path` is a directory inside the work tree).
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot> {
        crate::source::read_rev(&self.path, commit)
    }
}

/// A remote branch fetched into a bare cache repository.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    /// The bare repository the branch is fetched into.
    pub cache: PathBuf,
    pub transport: Transport,
    /// A fetch that hears nothing from the server (no callback, no progress) for this long is
    /// abandoned ([`STALL_TIMEOUT`]).
    pub stall_timeout: Duration,
    /// Set while a fetch runs, also one that was abandoned and is still blocked: one at a time, shared
    /// by the clones of this remote.
    running: Arc<AtomicBool>,
}

/// When a fetch last heard from the server (its callbacks touch it).
#[derive(Debug)]
pub struct Heartbeat(Mutex<Instant>);

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat(Mutex::new(Instant::now()))
    }

    /// The server said something.
    pub fn touch(&self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn quiet(&self) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}

/// Clears [`Remote::running`] when the fetch thread ends, also by a panic.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Remote {
    fn open(&self) -> Result<git2::Repository> {
        if self.cache.join("HEAD").exists() {
            return git2::Repository::open_bare(&self.cache)
                .with_context(|| format!("opening the source cache {}", self.cache.display()));
        }
        std::fs::create_dir_all(&self.cache).with_context(|| format!("creating {}", self.cache.display()))?;
        git2::Repository::init_bare(&self.cache)
            .with_context(|| format!("creating the source cache {}", self.cache.display()))
    }

    /// Fetches the branch (forced: a force-push is followed) and returns the commit it points at. The
    /// fetch runs on a thread of its own and is abandoned (an error; the thread is left to end by
    /// itself) once the server has been silent for [`Remote::stall_timeout`]; until that thread ends,
    /// later fetches fail at once instead of piling up.
    pub fn fetch(&self) -> Result<String> {
        let url = redact(&self.url);
        if self.running.swap(true, Ordering::SeqCst) {
            bail!("the previous fetch from {url} is still waiting for the server; not starting another");
        }
        let running = Running(Arc::clone(&self.running));
        let heard = Arc::new(Heartbeat::new());
        let (tx, rx) = mpsc::channel();
        let (remote, beat) = (self.clone(), Arc::clone(&heard));
        std::thread::Builder::new()
            .name("flotilla-fetch".into())
            .spawn(move || {
                let _running = running;
                let _ = tx.send(remote.fetch_now(&beat));
            })
            .context("starting the fetch thread")?;
        loop {
            let quiet = heard.quiet();
            if quiet >= self.stall_timeout {
                bail!(
                    "no answer from {url} for {:.1} s: the fetch is abandoned (retried later; the last good commit stays applied)",
                    quiet.as_secs_f64()
                );
            }
            match rx.recv_timeout(self.stall_timeout - quiet) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the fetch from {url} ended without a result"),
            }
        }
    }

    /// The fetch itself. One connection: the advertised branches are listed (a missing branch is an
    /// error), then the branch is fetched over the same connection.
    fn fetch_now(&self, heard: &Heartbeat) -> Result<String> {
        let url = redact(&self.url);
        let repo = self.open()?;
        let mut remote = repo
            .remote_anonymous(&self.url)
            .with_context(|| format!("remote {url}"))?;
        let session = auth::Session::new(&self.transport, heard).with_context(|| format!("connecting to {url}"))?;
        let wanted = format!("refs/heads/{}", self.branch);
        let mut connection = remote
            .connect_auth(git2::Direction::Fetch, Some(session.callbacks()), None)
            .map_err(|e| session.explain(e))
            .with_context(|| format!("connecting to {url}"))?;
        heard.touch();
        let advertised = connection
            .list()
            .with_context(|| format!("listing the branches of {url}"))?
            .iter()
            .find(|h| h.name() == wanted)
            .map(|h| h.oid());
        let Some(oid) = advertised else {
            bail!(
                "branch `{}` does not exist on {url} (deleted?); the last good commit stays applied",
                self.branch
            );
        };
        let local = format!("refs/flotilla/{}", self.branch);
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(session.callbacks());
        connection
            .remote()
            .fetch(&[format!("+{wanted}:{local}")], Some(&mut options), None)
            .map_err(|e| session.explain(e))
            .with_context(|| format!("fetching {} from {url}", self.branch))?;
        drop(connection);
        let got = repo
            .find_reference(&local)
            .and_then(|r| r.peel_to_commit())
            .with_context(|| format!("reading the fetched {}", self.branch))?
            .id();
        if got != oid {
            bail!("fetched {got} but {url} advertised {oid} for {}", self.branch);
        }
        Ok(got.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str, auth: &GitAuth) -> Result<Transport> {
        match Source::parse(source, None, Some(PathBuf::from("/nonexistent/cache")), auth)? {
            Source::Remote(r) => Ok(r.transport),
            _ => bail!("not a remote"),
        }
    }

    fn key() -> GitAuth {
        GitAuth {
            ssh_key: Some("/k".into()),
            known_hosts: Some("/kh".into()),
            ..GitAuth::default()
        }
    }

    #[test]
    fn passwords_in_urls_are_refused_and_never_shown() {
        assert_eq!(redact("https://u:s3cret@host/r.git"), "https://u:***@host/r.git");
        assert_eq!(redact("https://host/r.git"), "https://host/r.git");
        assert_eq!(redact("https://u:s3cret@[::1/r"), "https://***@[::1/r");
        let e = format!(
            "{:#}",
            parse("https://u:s3cret@host/r.git", &GitAuth::default()).unwrap_err()
        );
        assert!(!e.contains("s3cret") && e.contains("u:***@host"), "{e}");
        assert!(e.contains("--git-token-file"), "{e}");
    }

    #[test]
    fn users_default_by_scheme_and_the_flag_wins() {
        let https = |src: &str, auth: &GitAuth| match parse(src, auth).unwrap() {
            Transport::Https { user, .. } => user,
            other => panic!("{other:?}"),
        };
        assert_eq!(https("https://host/r", &GitAuth::default()), HTTPS_USER);
        assert_eq!(https("https://oauth2@host/r", &GitAuth::default()), "oauth2");
        let flagged = GitAuth {
            user: Some("bot".into()),
            ..GitAuth::default()
        };
        assert_eq!(https("https://oauth2@host/r", &flagged), "bot");
        match parse("ssh://alice@git.example:2222/srv/r.git", &key()).unwrap() {
            Transport::Ssh { host, port, user, .. } => {
                assert_eq!((host.as_str(), port, user.as_str()), ("git.example", 2222, "alice"))
            }
            other => panic!("{other:?}"),
        }
        match parse("ssh://[::1]/r.git", &key()).unwrap() {
            Transport::Ssh { host, port, user, .. } => {
                assert_eq!((host.as_str(), port, user.as_str()), ("::1", 22, SSH_USER))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_must_fit_the_scheme() {
        let msg = |r: Result<Transport>| format!("{:#}", r.unwrap_err());
        assert!(msg(parse("ssh://host/r", &GitAuth::default())).contains("needs --ssh-key"));
        let token = GitAuth {
            token: Some(Token::File("/t".into())),
            ..GitAuth::default()
        };
        assert!(msg(parse("http://host/r", &token)).contains("only sent over https://"));
        let e = msg(parse("git://host/r", &key()));
        assert!(e.contains("--ssh-key, --known-hosts do not apply"), "{e}");
        let e = msg(parse(
            "ssh://host/r",
            &GitAuth {
                ca_file: Some("/ca".into()),
                ..key()
            },
        ));
        assert!(e.contains("--git-ca-file does not apply"), "{e}");
        let e = msg(Source::parse("/srv/repo", None, None, &token).map(|_| Transport::Plain));
        assert!(
            e.contains("--git-token-file does not apply to a local repository"),
            "{e}"
        );
        // A token from the environment is not an option given for this source.
        let env = GitAuth {
            token: Some(Token::Env {
                var: TOKEN_ENV.into(),
                value: "t".into(),
            }),
            ..GitAuth::default()
        };
        assert!(parse("git://host/r", &env).is_ok());
        assert!(msg(parse("ftp://host/r", &GitAuth::default())).contains("unknown scheme ftp"));
    }

    #[test]
    fn scp_like_sources_point_to_ssh_urls() {
        let e = format!(
            "{:#}",
            Source::parse("git@github.com:org/repo.git", None, None, &GitAuth::default()).unwrap_err()
        );
        assert!(e.contains("ssh://git@github.com/org/repo.git"), "{e}");
        assert_eq!(scp_like("/srv/repo"), None);
        assert_eq!(scp_like("dir/with:colon"), None);
    }

    #[test]
    fn token_values_stay_out_of_debug_output() {
        let t = Token::Env {
            var: TOKEN_ENV.into(),
            value: "s3cret".into(),
        };
        let shown = format!(
            "{:?}",
            GitAuth {
                token: Some(t),
                ..GitAuth::default()
            }
        );
        assert!(
            !shown.contains("s3cret") && shown.contains("FLOTILLA_GIT_TOKEN"),
            "{shown}"
        );
    }
}
