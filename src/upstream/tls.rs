//! Upstream TLS: rustls with the system roots plus `--ca-file`, ALPN `h2`
//! then `http/1.1`. Verification is always on.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;

use crate::config::TlsConfig;

/// Why the TLS client could not be set up (a startup error).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `--ca-file` unreadable.
    #[error("reading --ca-file {path}")]
    CaFile {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `--ca-file` holds no certificate rustls accepts.
    #[error("--ca-file {0} holds no usable PEM certificate")]
    NoCertificate(String),
    /// No trusted root at all.
    #[error("no trusted root certificates (system store empty and no --ca-file)")]
    NoRoots,
    /// rustls refused the configuration.
    #[error("building the TLS client configuration")]
    Rustls(#[source] rustls::Error),
}

/// The crypto provider used everywhere in ccnproxy (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the shared client configuration.
pub fn client_config(config: &TlsConfig) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::warn!(error = %err, "tls.roots: could not load some system certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "tls.roots loaded");
    if let Some(path) = &config.ca_file {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TlsSetupError::CaFile {
            path: shown.clone(),
            source,
        })?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .filter_map(Result::ok)
            .collect();
        let (ok, _) = roots.add_parsable_certificates(certs);
        if ok == 0 {
            return Err(TlsSetupError::NoCertificate(shown));
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
