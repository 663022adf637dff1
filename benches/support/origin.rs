//! A local HTTPS origin: a throw-away CA (written to a PEM file for
//! `--ca-file` and nginx's `proxy_ssl_trusted_certificate`), one leaf for
//! the bench's names, ALPN `h2` + `http/1.1` or `http/1.1` only. It counts
//! the TCP connections it accepted and answers every request, once its body
//! is read, with 1 KiB (1 MiB for `GET /1m`); it can recycle each connection
//! after N requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{KIB, LARGE_PATH, MIB, Res};

/// Test-time certificates: a CA and one leaf signed by it.
pub struct Pki {
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
    /// The CA in PEM, for `--ca-file`.
    pub ca_file: PathBuf,
}

impl Pki {
    /// A CA written to `dir/ca.pem` and a leaf for `names`.
    pub fn new(dir: &Path, names: &[&str]) -> Res<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // rcgen gives every certificate the same default name; OpenSSL
        // (nginx) then takes the leaf for self-signed. Distinct names.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ccnproxy bench CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut leaf_params = CertificateParams::new(names.clone())?;
        leaf_params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        Ok(Pki {
            ca_der: CertificateDer::from(ca_cert.der().to_vec()),
            leaf_der: CertificateDer::from(leaf.der().to_vec()),
            leaf_key_der: leaf_key.serialize_der(),
            ca_file,
        })
    }

    /// The origin's TLS: ALPN `h2` + `http/1.1`, or `http/1.1` only.
    pub fn server_config(&self, h2: bool) -> Res<Arc<ServerConfig>> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut tls =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![self.leaf_der.clone()], key)?;
        tls.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Arc::new(tls))
    }

    /// A direct client's TLS (1.3, or 1.2 only with `tls12`): trusts the
    /// CA, offers `h2` and `http/1.1`, and never resumes a session: each
    /// new connection pays a full handshake, as a fresh CLI process does.
    pub fn client_config(&self, tls12: bool) -> Res<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()));
        let builder = if tls12 {
            builder.with_protocol_versions(&[&rustls::version::TLS12])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let mut tls = builder.with_root_certificates(roots).with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(tls))
    }
}

/// A running origin; stops accepting when dropped.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    /// Dropped with the origin: its open connections end too.
    _stop: tokio::sync::watch::Sender<()>,
}

impl Origin {
    /// Listens on 127.0.0.1, any free port.
    pub async fn start(tls: Arc<ServerConfig>) -> Res<Origin> {
        Origin::start_recycling(tls, None).await
    }

    /// Like [`Origin::start`]; with `goaway_after`, each connection starts
    /// a graceful shutdown (h2: GOAWAY, in-flight streams finish) after that
    /// many requests, as nginx's `keepalive_requests` does.
    pub async fn start_recycling(
        tls: Arc<ServerConfig>,
        goaway_after: Option<usize>,
    ) -> Res<Origin> {
        Origin::start_at(tls, goaway_after, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`Origin::start_recycling`], listening on `at` (a fixed port
    /// lets a restarted origin come back where it was).
    pub async fn start_at(
        tls: Arc<ServerConfig>,
        goaway_after: Option<usize>,
        at: SocketAddr,
    ) -> Res<Origin> {
        let listener = tokio::net::TcpListener::bind(at).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (stop_tx, stop) = tokio::sync::watch::channel(());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let served = Arc::new(AtomicUsize::new(0));
                    let recycle = Arc::new(Notify::new());
                    let service = {
                        let recycle = recycle.clone();
                        service_fn(move |req| {
                            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                            if goaway_after == Some(n) {
                                recycle.notify_one();
                            }
                            answer(req)
                        })
                    };
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    tokio::pin!(conn);
                    let mut closing = false;
                    loop {
                        tokio::select! {
                            _ = conn.as_mut() => break,
                            _ = stop.changed() => break,
                            () = recycle.notified(), if !closing => {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                        }
                    }
                });
            }
        });
        Ok(Origin {
            addr,
            accepted,
            task,
            _stop: stop_tx,
        })
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Flags for origins on 127.0.0.0/8 (read by `dns.rs`, shared with the
/// integration tests, which passes no origins).
pub fn args_for(_origins: &[&Origin]) -> Vec<String> {
    "--allow-host * --allow-port * --allow-cidr 127.0.0.0/8"
        .split(' ')
        .map(str::to_owned)
        .collect()
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body: &'static [u8] = if req.uri().path() == LARGE_PATH {
        &MIB
    } else {
        &KIB
    };
    req.into_body().collect().await?;
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    Ok(resp)
}
