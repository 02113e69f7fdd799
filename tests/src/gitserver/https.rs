//! `git http-backend` behind an HTTPS server that requires a token as basic auth.

use crate::cluster::pki::Pki;
use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt as _;

/// An HTTPS Git server on 127.0.0.1 serving the bare repositories under a root directory. Every
/// request must carry `Authorization: Basic base64(user:token)`; anything else gets `401` with a
/// basic-auth challenge. Stopped when dropped.
pub struct HttpsServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    user: String,
    token: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    root: PathBuf,
    expected: String,
    user: String,
    /// Requests without credentials (the normal first step of basic auth).
    challenged: AtomicUsize,
    /// Requests with credentials that were not the right ones.
    rejected: AtomicUsize,
    /// Requests handed to `git http-backend`.
    served: AtomicUsize,
    log: Mutex<Vec<String>>,
}

impl HttpsServer {
    /// Serves the repositories under `root`, accepting `user` with `token`. The server's certificate is
    /// signed by a CA made for it alone ([`HttpsServer::ca_file`]).
    pub fn start(root: &Path, user: &str, token: &str) -> Result<HttpsServer> {
        let dir = tempfile::Builder::new()
            .prefix("flotilla-https-")
            .tempdir()
            .context("creating the server's directory")?;
        let pki = Pki::generate()?;
        std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).context("writing the CA")?;
        let certs = vec![CertificateDer::from_pem_slice(pki.serving().cert_pem.as_bytes())
            .map_err(|e| anyhow!("the serving certificate: {e}"))?];
        let key = PrivateKeyDer::from_pem_slice(pki.serving().key_pem.as_bytes())
            .map_err(|e| anyhow!("the serving key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the TLS configuration")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true).context("a non-blocking listener")?;
        let addr = listener.local_addr().context("the listening address")?;
        let state = Arc::new(State {
            root: root.to_path_buf(),
            expected: basic(user, token),
            user: user.to_string(),
            challenged: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the server's runtime")?;
        let serving = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("https-git-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, acceptor, serving, stopped)))
            .context("starting the server thread")?;
        Ok(HttpsServer {
            addr,
            dir,
            user: user.to_string(),
            token: token.to_string(),
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `https://127.0.0.1:PORT/<repo>` (`repo` relative to the root).
    pub fn url(&self, repo: &str) -> String {
        format!("https://{}/{repo}", self.addr)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `-c` options that let the git CLI push and fetch here: the credentials as a header. The CA
    /// goes in the environment ([`HttpsServer::git_env`]): `GIT_SSL_CAINFO`, when set, wins over
    /// `http.sslCAInfo`.
    pub fn git_config(&self) -> Vec<String> {
        vec![
            "-c".into(),
            format!("http.extraHeader=Authorization: {}", basic(&self.user, &self.token)),
        ]
    }

    /// The environment for the git CLI: `GIT_SSL_CAINFO` naming [`HttpsServer::ca_file`].
    pub fn git_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![("GIT_SSL_CAINFO", self.ca_file().into_os_string())]
    }

    /// Requests that carried credentials other than the accepted ones (answered 401).
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// Requests without credentials (answered 401 with the challenge).
    pub fn challenged(&self) -> usize {
        self.state.challenged.load(Ordering::SeqCst)
    }

    /// Requests that reached `git http-backend`.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// One line per request: method, path, status.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn basic(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    // A client that does not trust the certificate hangs up here: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&state)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        }
    }
}

type Answer = Response<Full<Bytes>>;

fn plain(status: StatusCode, text: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Answer, std::convert::Infallible> {
    let line = format!("{} {}", req.method(), req.uri());
    let answer = match req.headers().get(AUTHORIZATION) {
        None => {
            state.challenged.fetch_add(1, Ordering::SeqCst);
            challenge()
        }
        Some(given) if given.as_bytes() != state.expected.as_bytes() => {
            state.rejected.fetch_add(1, Ordering::SeqCst);
            challenge()
        }
        Some(_) => {
            state.served.fetch_add(1, Ordering::SeqCst);
            cgi(req, &state)
                .await
                .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}\n")))
        }
    };
    state
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{line} -> {}", answer.status().as_u16()));
    Ok(answer)
}

fn challenge() -> Answer {
    let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"flotilla-tests\""),
    );
    r
}

/// Runs `git http-backend` for one request (CGI/1.1: the request in the environment and on stdin,
/// the response as headers, a blank line and the body on stdout).
async fn cgi(req: Request<Incoming>, state: &State) -> Result<Answer> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.context("reading the request body")?.to_bytes();
    let header = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("REMOTE_USER", &state.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header(CONTENT_TYPE) {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header(CONTENT_ENCODING) {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header(hyper::header::HeaderName::from_static("git-protocol")) {
        cmd.env("GIT_PROTOCOL", v);
    }
    let mut child = cmd.spawn().context("starting git http-backend")?;
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            stdin.write_all(&body).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    let output = output.context("running git http-backend")?;
    written.context("writing the request body to git http-backend")?;
    if !output.status.success() {
        return Ok(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("git http-backend: {}", String::from_utf8_lossy(&output.stderr)),
        ));
    }
    cgi_response(&output.stdout)
}

/// A CGI response (headers, blank line, body) as an HTTP response; `Status:` sets the code.
fn cgi_response(out: &[u8]) -> Result<Answer> {
    let (head, body) = match (find(out, b"\r\n\r\n"), find(out, b"\n\n")) {
        (Some(a), Some(b)) if b < a => (&out[..b], &out[b + 2..]),
        (Some(a), _) => (&out[..a], &out[a + 4..]),
        (None, Some(b)) => (&out[..b], &out[b + 2..]),
        (None, None) => return Err(anyhow!("git http-backend wrote no header")),
    };
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.split_whitespace().next().unwrap_or("500").parse().unwrap_or(500);
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    Ok(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
