//! Credentials and trust for one fetch: the libgit2 callbacks of a [`Session`].
//!
//! - **https**: the token is sent as HTTP basic auth (user, token) when the server answers 401; a
//!   second 401 means the token was refused, and the fetch stops there (libgit2 would ask again
//!   forever). Without `--git-ca-file` the server's certificate is verified by libgit2 (OpenSSL,
//!   the system's CAs); with it, only against the CAs of that file, here, with `rustls-webpki`
//!   (chain, validity period, server-auth usage, and the host name or IP address of the URL).
//! - **ssh**: public-key login with the key file; the host key the server offers is accepted only
//!   if `known_hosts` lists it for the host (on a port other than 22, as `[host]:port`). An unknown,
//!   changed or revoked key stops the fetch before any login.
//!
//! Why the verdicts are kept aside: for ssh, libgit2 replaces whatever the callback says with
//! "invalid or unknown remote ssh hostkey"; [`Session::explain`] puts the reason back.

use super::known_hosts::{self, KnownHosts, Verdict};
use super::{Heartbeat, Token, Transport, TOKEN_ENV};
use anyhow::{anyhow, bail, Context, Result};
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

/// What one fetch needs, read when it starts: the token, the trusted CAs, the known hosts.
pub struct Session<'t> {
    transport: &'t Transport,
    /// Touched by every callback: the server is still talking.
    heard: &'t Heartbeat,
    token: Option<(String, &'t Token)>,
    anchors: Option<(&'t Path, Vec<TrustAnchor<'static>>)>,
    known_hosts: Option<(&'t Path, KnownHosts)>,
    /// Credentials handed out so far (a second request means the first was refused).
    tries: Cell<u32>,
    /// Why a callback stopped the fetch.
    verdict: RefCell<Option<String>>,
}

impl<'t> Session<'t> {
    /// Reads the token file, the CA file and `known_hosts` (each fetch: they may have been rotated).
    pub fn new(transport: &'t Transport, heard: &'t Heartbeat) -> Result<Session<'t>> {
        let mut session = Session {
            transport,
            heard,
            token: None,
            anchors: None,
            known_hosts: None,
            tries: Cell::new(0),
            verdict: RefCell::new(None),
        };
        match transport {
            Transport::Plain => {}
            Transport::Https { token, ca_file, .. } => {
                if let Some(t) = token {
                    session.token = Some((t.read()?, t));
                }
                if let Some(ca) = ca_file {
                    session.anchors = Some((ca.as_path(), load_anchors(ca)?));
                }
            }
            Transport::Ssh { key, known_hosts, .. } => {
                std::fs::File::open(key).with_context(|| format!("reading the ssh key {}", key.display()))?;
                let text = std::fs::read_to_string(known_hosts).with_context(|| {
                    format!(
                        "reading {}: without it the server's host key cannot be verified (--known-hosts)",
                        known_hosts.display()
                    )
                })?;
                session.known_hosts = Some((known_hosts.as_path(), KnownHosts::parse(&text)));
            }
        }
        Ok(session)
    }

    /// Callbacks for `connect_auth` and `fetch` (each needs its own).
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        cb.credentials(|_url, _user_from_url, allowed| {
            self.heard.touch();
            self.credentials(allowed)
        });
        cb.transfer_progress(|_| {
            self.heard.touch();
            true
        });
        cb.sideband_progress(|_| {
            self.heard.touch();
            true
        });
        cb.certificate_check(|cert, host| {
            self.heard.touch();
            if let Some(hostkey) = cert.as_hostkey() {
                self.check_host_key(hostkey.hostkey())
            } else if let Some(x509) = cert.as_x509() {
                self.check_certificate(x509.data(), host)
            } else {
                Ok(CertificateCheckStatus::CertificatePassthrough)
            }
        });
        cb
    }

    /// The error to report for a failed connect or fetch: the callback's reason when one stopped it.
    pub fn explain(&self, error: git2::Error) -> anyhow::Error {
        match self.verdict.borrow().as_ref() {
            Some(reason) => anyhow!("{reason}"),
            // libgit2 verified the certificate itself (no --git-ca-file) and said only "invalid".
            None if error.class() == git2::ErrorClass::Ssl && error.message().contains("certificate") => anyhow!(
                "{}: the TLS certificate is not signed by a CA this system trusts, has expired, or names \
                 another host (a private CA: --git-ca-file)",
                error.message()
            ),
            None => anyhow!(error),
        }
    }

    fn refuse<T>(&self, reason: String) -> Result<T, git2::Error> {
        let error = git2::Error::from_str(&reason);
        *self.verdict.borrow_mut() = Some(reason);
        Err(error)
    }

    fn credentials(&self, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let tries = self.tries.get();
        match self.transport {
            Transport::Https { user, .. } => {
                let Some((token, origin)) = &self.token else {
                    return self.refuse(format!(
                        "the server asks for credentials: give a token with --git-token-file or ${TOKEN_ENV}"
                    ));
                };
                if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    return self.refuse("the server asks for credentials other than basic auth".into());
                }
                if tries > 0 {
                    return self.refuse(format!(
                        "the server refused {} for user `{user}` (HTTP 401): the token is wrong, expired or \
                         lacks read access (or the server wants another user: --git-user)",
                        origin.origin()
                    ));
                }
                self.tries.set(tries + 1);
                Cred::userpass_plaintext(user, token)
            }
            Transport::Ssh { user, key, .. } => {
                if allowed.contains(CredentialType::USERNAME) {
                    return Cred::username(user);
                }
                if !allowed.contains(CredentialType::SSH_KEY) {
                    return self.refuse("the ssh server offers no public-key login".into());
                }
                if tries > 0 {
                    return self.refuse(format!(
                        "the ssh server refused the key {} for user `{user}`",
                        key.display()
                    ));
                }
                self.tries.set(tries + 1);
                Cred::ssh_key(user, None, key, None)
            }
            Transport::Plain => self.refuse(
                "the server asks for credentials; they are only sent over https:// (token) and ssh:// (key)".into(),
            ),
        }
    }

    fn check_host_key(&self, key: Option<&[u8]>) -> Result<CertificateCheckStatus, git2::Error> {
        let (Transport::Ssh { host, port, .. }, Some((path, known))) = (self.transport, &self.known_hosts) else {
            return self.refuse("an ssh host key where none was expected".into());
        };
        let Some(key) = key else {
            return self.refuse("the ssh server's host key is not available to check".into());
        };
        let name = known_hosts::host_name(host, *port);
        let kind = known_hosts::key_type(key).unwrap_or("unknown type");
        let fingerprint = known_hosts::fingerprint(key);
        let path = path.display();
        match known.check(host, *port, key) {
            Verdict::Known { .. } => Ok(CertificateCheckStatus::CertificateOk),
            Verdict::Unknown => {
                let keyscan = if *port == 22 {
                    format!("ssh-keyscan -t {kind} {host}")
                } else {
                    format!("ssh-keyscan -p {port} -t {kind} {host}")
                };
                self.refuse(format!(
                    "unknown ssh host: {name} is not in {path} (it offers {kind} {fingerprint}); \
                     check that fingerprint with the server's owner, then add the key (`{keyscan}`)"
                ))
            }
            Verdict::Changed { known } => {
                let listed: Vec<String> = known.iter().map(|(t, line)| format!("{t} on line {line}")).collect();
                self.refuse(format!(
                    "ssh host key mismatch: {name} offers {kind} {fingerprint}, which {path} does not list for it \
                     (it has {}); the server's key changed, or something is impersonating it",
                    listed.join(", ")
                ))
            }
            Verdict::Revoked { line } => self.refuse(format!(
                "the ssh host key of {name} ({kind} {fingerprint}) is marked @revoked on line {line} of {path}"
            )),
        }
    }

    fn check_certificate(&self, der: &[u8], host: &str) -> Result<CertificateCheckStatus, git2::Error> {
        // Without --git-ca-file, libgit2's own verification (OpenSSL, the system's CAs) decides.
        let Some((path, anchors)) = &self.anchors else {
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        match verify(der, host, anchors) {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(e) => self.refuse(format!(
                "the TLS certificate of {host} is not trusted: {e} (verified against the CAs in --git-ca-file {})",
                path.display()
            )),
        }
    }
}

/// Every certificate of a PEM file, as trust anchors.
fn load_anchors(path: &PathBuf) -> Result<Vec<TrustAnchor<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("reading the CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("the CA file {} holds no PEM certificate", path.display());
    }
    certs
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| anyhow!("the CA file {}: a certificate cannot be a CA: {e:?}", path.display()))
        })
        .collect()
}

/// Verifies a server certificate (DER) for `host` against `anchors`: chain, validity, usage, name.
fn verify(der: &[u8], host: &str, anchors: &[TrustAnchor<'_>]) -> Result<(), String> {
    let leaf = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("unreadable certificate ({e:?})"))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::UnknownIssuer => "it is not signed by a CA of the file (UnknownIssuer)".to_string(),
        // A CA of the file has the issuer's name but not its key.
        webpki::Error::InvalidSignatureForPublicKey => {
            "it is not signed by a CA of the file (a CA there has the issuer's name, not its key)".to_string()
        }
        webpki::Error::CertExpired { .. } => "it has expired".to_string(),
        webpki::Error::CertNotValidYet { .. } => "it is not valid yet".to_string(),
        other => format!("{other:?}"),
    })?;
    let name = ServerName::try_from(host).map_err(|e| format!("`{host}` is not a host name ({e})"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|e| format!("it is not valid for `{host}` ({e:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, issuer).unwrap().der().to_vec()
    }

    #[test]
    fn certificates_verify_against_the_given_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, issuer) = ca("test CA");
        let (_, other) = ca("another CA");
        let (_, impostor) = ca("test CA");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &pem).unwrap();
        let anchors = load_anchors(&path).unwrap();
        let good = leaf(&["127.0.0.1", "git.example"], &issuer);
        assert_eq!(verify(&good, "127.0.0.1", &anchors), Ok(()));
        assert_eq!(verify(&good, "git.example", &anchors), Ok(()));
        let wrong_name = verify(&good, "127.0.0.2", &anchors).unwrap_err();
        assert!(wrong_name.contains("not valid for `127.0.0.2`"), "{wrong_name}");
        let foreign = leaf(&["127.0.0.1"], &other);
        let e = verify(&foreign, "127.0.0.1", &anchors).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
        let forged = leaf(&["127.0.0.1"], &impostor);
        let e = verify(&forged, "127.0.0.1", &anchors).unwrap_err();
        assert!(e.starts_with("it is not signed by a CA of the file"), "{e}");

        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = load_anchors(&path).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
