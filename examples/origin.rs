//! A local HTTPS origin for trying ccnproxy (and for the benchmarks): makes a
//! throw-away CA and a certificate for the names given, writes the CA to a
//! file for `--ca-file`, and answers every request with `200 hello`, or with
//! `?size=N` bytes, or echoes the length of a request body.
//!
//! ```sh
//! cargo run --example origin -- 127.0.0.1:8443 /tmp/origin-ca.pem origin.test [--h1]
//! cargo run --release -- -p 3000 --allow-host '*.test' --allow-cidr 127.0.0.0/8 \
//!     --ca-file /tmp/origin-ca.pem --resolve origin.test:443:127.0.0.1:8443
//! curl -H 'Host: origin.test.ccnproxy-https' http://127.0.0.1:3000/
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:8443", String::as_str);
    let ca_path = args.get(1).map_or("/tmp/origin-ca.pem", String::as_str);
    let h1_only = args.iter().any(|a| a == "--h1");
    let mut names: Vec<String> = args
        .iter()
        .skip(2)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .collect();
    if names.is_empty() {
        names.push("origin.test".to_owned());
    }

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: OpenSSL-based peers (nginx) take a CA and a leaf with
    // the same subject for a self-signed leaf.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ccnproxy example origin CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    std::fs::write(ca_path, ca_cert.pem())?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(names.clone())?.signed_by(&leaf_key, &issuer)?;

    let certs = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = if h1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "origin listening on {} for {names:?}; CA in {ca_path}",
        listener.local_addr()?
    );
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(answer);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let size = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("size=")))
        .and_then(|n| n.parse::<usize>().ok());
    let body = match size {
        Some(n) => Bytes::from(vec![b'x'; n]),
        None => {
            let got = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            if got > 0 {
                Bytes::from(format!("received {got} bytes\n"))
            } else {
                Bytes::from_static(b"hello\n")
            }
        }
    };
    Ok(Response::new(Full::new(body)))
}
