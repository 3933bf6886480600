//! TLS for Dura's gRPC: the client port (`--tls-cert/--tls-key`, mutual with
//! `--tls-client-ca`), the node-to-node port (`--peer-tls-*`, always mutual) and the channels a
//! node opens to its peers.
//!
//! Invariants:
//! - Certificates, keys and CAs are PEM files read again when they change (their bytes,
//!   looked at no more than once a second, on the next handshake): a renewed certificate
//!   serves new connections without a restart. A changed file that does not load (half
//!   written, a key not yet matching its certificate) keeps the previous configuration and is
//!   tried again on the next change check.
//! - Every configuration offers only HTTP/2 by ALPN: gRPC clients (grpc-go among them) refuse
//!   a TLS server that does not.
//! - A failed handshake is that connection's end, never the listener's: handshakes run
//!   concurrently, each bounded in time.
//! - One crypto provider (ring) for all of it, named explicitly rather than process-wide.

mod accept;
mod connect;
mod reload;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

pub use accept::incoming;
pub use connect::{connect, lazy_channel};
use reload::Reloading;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Rejected {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("client CA {}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
    #[error("{0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: format!("no usable PEM private key ({e})"),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Rejected {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

fn identity_parts(
    identity: &Identity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    Ok((certificates(&identity.cert)?, private_key(&identity.key)?))
}

fn server_config(identity: &Identity, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: ca.to_path_buf(),
                    message: e.to_string(),
                })?,
        ),
        None => builder.with_no_client_auth(),
    };
    let (certs, key) = identity_parts(identity)?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Rejected {
            path: identity.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn client_config(ca: &Path, identity: Option<&Identity>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some(identity) => {
            let (certs, key) = identity_parts(identity)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| TlsError::Rejected {
                    path: identity.key.clone(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// What a TLS port presents and, when `client_ca` is set, which client certificates it takes
/// (none without one is let through).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
}

impl ServerTls {
    pub fn new(identity: Identity, client_ca: Option<PathBuf>) -> Result<Self, TlsError> {
        let mut watched = vec![identity.cert.clone(), identity.key.clone()];
        watched.extend(client_ca.clone());
        let config = Reloading::new(watched, move || {
            server_config(&identity, client_ca.as_deref())
        })?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The configuration for the next handshake (re-read if its files changed).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.current()
    }
}

/// How a node (or the CLI) verifies the servers it connects to, and the certificate it
/// presents when they ask for one.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
    /// The name to verify instead of the address's host (`--tls-server-name`).
    server_name: Option<String>,
}

impl ClientTls {
    pub fn new(
        ca: PathBuf,
        identity: Option<Identity>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        let mut watched = vec![ca.clone()];
        if let Some(identity) = &identity {
            watched.extend([identity.cert.clone(), identity.key.clone()]);
        }
        let config = Reloading::new(watched, move || client_config(&ca, identity.as_ref()))?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.current()
    }
}

// By hand: the configurations hold key material.
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
