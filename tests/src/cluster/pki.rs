//! Certificates and keys of a harness: one CA, a serving certificate, client identities, and the
//! service-account key pair, all made with `rcgen` (ECDSA P-256).
//!
//! One CA signs everything: the kube-apiservers' serving certificate (SANs `127.0.0.1` and
//! `localhost`, shared by every cluster since all listen on 127.0.0.1) and client certificates
//! (`--client-ca-file`), whose common name is the user and whose organisations are the groups, as
//! kube-apiserver reads them. The admin is `flotilla-admin` in `system:masters`.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The admin user of every harness cluster (group `system:masters`).
pub const ADMIN_USER: &str = "flotilla-admin";

/// A client identity: certificate and key, PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// The key material of one harness.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    serving: Identity,
    admin: Identity,
    sa_key: KeyPair,
}

/// Where [`Pki::write`] put the files the kube-apiservers read.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    /// The CA certificate (`--client-ca-file`).
    pub ca: PathBuf,
    /// The serving certificate (`--tls-cert-file`).
    pub serving_cert: PathBuf,
    /// Its key (`--tls-private-key-file`).
    pub serving_key: PathBuf,
    /// The service-account public key (`--service-account-key-file`).
    pub sa_pub: PathBuf,
    /// The service-account private key (`--service-account-signing-key-file`).
    pub sa_key: PathBuf,
}

impl Pki {
    /// Generates a fresh CA, serving certificate, admin identity and service-account key pair.
    pub fn generate() -> Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "flotilla test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().context("CA key")?)
            .context("self-signing the CA")?;

        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .context("serving certificate parameters")?;
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("serving key")?;
        let cert = params.signed_by(&key, &ca).context("signing the serving certificate")?;
        let serving = Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };

        let sa_key = KeyPair::generate().context("service-account key")?;
        let mut pki = Pki {
            ca,
            serving,
            admin: Identity {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            sa_key,
        };
        pki.admin = pki.client(ADMIN_USER, &["system:masters"])?;
        Ok(pki)
    }

    /// A client certificate for `user` in `groups`, signed by the harness CA (for tests of
    /// restricted identities: bind RBAC roles to `user` or a group, then connect with
    /// [`crate::cluster::Harness::config_as`]).
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<Identity> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("client certificate parameters")?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().context("client key")?;
        let cert = params
            .signed_by(&key, &self.ca)
            .with_context(|| format!("signing the client certificate of {user}"))?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The serving certificate (SANs `127.0.0.1` and `localhost`) and its key; also what the test Git
    /// servers of [`crate::gitserver`] present.
    pub fn serving(&self) -> &Identity {
        &self.serving
    }

    /// The admin identity (`flotilla-admin`, `system:masters`).
    pub fn admin(&self) -> &Identity {
        &self.admin
    }

    /// Writes the files the kube-apiservers read into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PkiFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = PkiFiles {
            ca: dir.join("ca.crt"),
            serving_cert: dir.join("serving.crt"),
            serving_key: dir.join("serving.key"),
            sa_pub: dir.join("sa.pub"),
            sa_key: dir.join("sa.key"),
        };
        let admin_cert = dir.join("admin.crt");
        let admin_key = dir.join("admin.key");
        for (path, text) in [
            (&files.ca, self.ca_pem()),
            (&files.serving_cert, self.serving.cert_pem.clone()),
            (&files.serving_key, self.serving.key_pem.clone()),
            (&files.sa_pub, self.sa_key.public_key_pem()),
            (&files.sa_key, self.sa_key.serialize_pem()),
            (&admin_cert, self.admin.cert_pem.clone()),
            (&admin_key, self.admin.key_pem.clone()),
        ] {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(files)
    }
}
