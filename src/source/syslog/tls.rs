//! TLS for syslog over TCP (RFC 5425) with rustls: the server certificate and key, and,
//! when `ca_file` is set, required client certificates verified against that CA.
//!
//! Owns: loading PEM files into a rustls server config at build time, so a bad file is a
//! config error, not a runtime one. Never: accepts a client without a valid certificate when
//! `ca_file` is set.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use tokio_rustls::rustls;

/// `tls:` settings of a TCP syslog source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that sign client certificates. When set, clients
    /// must present a certificate it verifies (mutual TLS); when unset, none is asked for.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A loaded TLS server configuration.
#[derive(Debug, Clone)]
pub struct Tls(pub(super) Arc<rustls::ServerConfig>);

impl TlsConfig {
    /// Loads the certificates and key and builds the server configuration.
    pub fn build(&self) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = load_certs(&self.cert_file)?;
        let key = {
            let file = File::open(&self.key_file)
                .with_context(|| format!("key_file {}", self.key_file.display()))?;
            rustls_pemfile::private_key(&mut BufReader::new(file))
                .with_context(|| format!("key_file {}", self.key_file.display()))?
                .with_context(|| {
                    format!("key_file {}: no private key found", self.key_file.display())
                })?
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("tls protocol versions")?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(ca_file) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs(ca_file)? {
                    roots
                        .add(cert)
                        .with_context(|| format!("ca_file {}", ca_file.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .with_context(|| format!("ca_file {}", ca_file.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .context("cert_file and key_file do not make a valid certificate and key pair")?;
        Ok(Tls(Arc::new(config)))
    }
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate found",
        path.display()
    );
    Ok(certs)
}
