//! A certificate authority made at test time, and the server certificates it
//! issues. `Ca::trusted()` is the one handed to the proxy with `--ca-file`;
//! `Ca::untrusted()` is never handed to anyone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::provider;

/// A test CA: its certificate, its signing key, and its PEM on disk.
pub struct Ca {
    cert: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
    pem_path: PathBuf,
    // Keeps the PEM file alive as long as the CA.
    _dir: tempfile::TempDir,
}

/// A server certificate chain and its private key.
pub struct Leaf {
    /// Leaf certificate first, then the CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 private key.
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    /// Makes a new CA named `name`, its PEM written to a fresh temporary folder
    /// under the target dir.
    pub fn new(name: &str) -> Ca {
        Ca::with_dir_prefix(name, "ccnproxy-ca-")
    }

    fn with_dir_prefix(name: &str, prefix: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no SANs");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ccnproxy tests");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        let pem = cert.pem();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir for the CA");
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, &pem).expect("write CA PEM");
        Ca {
            cert: cert.der().clone(),
            pem,
            issuer: Issuer::new(params, key),
            pem_path,
            _dir: dir,
        }
    }

    /// The CA the proxy trusts (its PEM is what `Origin::proxy_args` passes
    /// as `--ca-file`). One per test process.
    pub fn trusted() -> &'static Ca {
        static CA: OnceLock<Ca> = OnceLock::new();
        CA.get_or_init(|| Ca::process_wide("ccnproxy test CA"))
    }

    /// A CA nobody trusts, for "untrusted certificate" tests.
    pub fn untrusted() -> &'static Ca {
        static CA: OnceLock<Ca> = OnceLock::new();
        CA.get_or_init(|| Ca::process_wide("ccnproxy untrusted CA"))
    }

    /// A CA living as long as the test process. Statics are never dropped, so
    /// its folder is named after the process and folders of processes that
    /// are gone are removed here instead.
    fn process_wide(name: &str) -> Ca {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(rest) = file_name
                    .to_str()
                    .and_then(|n| n.strip_prefix("ccnproxy-ca-pid"))
                else {
                    continue;
                };
                let Some(pid) = rest.split('-').next() else {
                    continue;
                };
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ca::with_dir_prefix(name, &format!("ccnproxy-ca-pid{}-", std::process::id()))
    }

    /// Path of the CA certificate PEM (valid while the CA lives).
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// Issues a server certificate for `names`: DNS names (wildcards such as
    /// `*.test` allowed) and IP literals.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("valid SANs");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).expect("add CA root");
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Leaf {
    /// A server config presenting this certificate, offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .expect("server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}
