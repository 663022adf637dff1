//! The bench's HTTP clients: one connection (HTTPS straight to an origin,
//! HTTP/2 when ALPN says so, or plain HTTP/1.1 to a proxy) that sends
//! API-like calls: `POST /` with 1 KiB, a 1 KiB answer expected (or 1 MiB,
//! see [`Call`]).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{KIB, LARGE_PATH, MIB, Res};

/// What one call asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `POST /` with 1 KiB, 1 KiB back (an API call).
    Small,
    /// The same with `Connection: close` (a CLI invocation's one call).
    SmallClose,
    /// `POST /1m` with 1 KiB, 1 MiB back (a download).
    Large,
}

/// One client connection.
pub enum Conn {
    /// HTTP/1.1, plain or over TLS.
    H1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2 over TLS.
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// TCP + TLS (SNI `name`) to `addr`, then HTTP/2 or HTTP/1.1 as ALPN
    /// decided.
    pub async fn tls(addr: SocketAddr, name: &str, tls: Arc<ClientConfig>) -> Res<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let server_name = ServerName::try_from(name.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, conn) =
                http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Ok(Conn::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Ok(Conn::H1(sender))
        }
    }

    /// Plain HTTP/1.1 to a proxy at `addr`.
    pub async fn plain(addr: SocketAddr) -> Res<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Conn::H1(sender))
    }

    /// One call: `POST /` with 1 KiB to `authority` (the `Host` of an
    /// HTTP/1.1 request, the `:authority` of an HTTP/2 one); an error unless
    /// the answer is `200` with 1 KiB.
    pub async fn call(&mut self, authority: &str) -> Res<()> {
        self.call_with(authority, Bytes::from_static(&KIB)).await
    }

    /// [`Conn::call`] with `body` as the request body.
    pub async fn call_with(&mut self, authority: &str, body: Bytes) -> Res<()> {
        self.send(authority, Call::Small, body).await
    }

    /// One call of kind `call` (see [`Call`]); an error unless the answer
    /// is `200` with the expected length.
    pub async fn request(&mut self, authority: &str, call: Call) -> Res<()> {
        self.send(authority, call, Bytes::from_static(&KIB)).await
    }

    async fn send(&mut self, authority: &str, call: Call, body: Bytes) -> Res<()> {
        let (path, expected) = match call {
            Call::Small | Call::SmallClose => ("/", KIB.len()),
            Call::Large => (LARGE_PATH, MIB.len()),
        };
        let body = Full::new(body);
        let resp = match self {
            Conn::H1(sender) => {
                let mut req = Request::post(path).body(body)?;
                req.headers_mut()
                    .insert(HOST, HeaderValue::from_str(authority)?);
                if call == Call::SmallClose {
                    req.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                req.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-amz-json-1.0"),
                );
                sender.ready().await?;
                sender.send_request(req).await?
            }
            Conn::H2(sender) => {
                let mut req = Request::post(format!("https://{authority}{path}")).body(body)?;
                req.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-amz-json-1.0"),
                );
                sender.ready().await?;
                sender.send_request(req).await?
            }
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status != http::StatusCode::OK || bytes.len() != expected {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Err(format!("answer {status}, {} bytes: {text:?}", bytes.len()).into());
        }
        Ok(())
    }

    /// Whether the connection is gone (closed by the peer or failed).
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::H1(sender) => sender.is_closed(),
            Conn::H2(sender) => sender.is_closed(),
        }
    }
}

/// `GET path` (an admin endpoint: `/metrics`, `/.api/stats`) from the
/// proxy or metrics listener at `addr`; the body as text, whatever the
/// status. (The proxy bench does not read them.)
#[allow(dead_code)]
pub async fn admin_get(addr: SocketAddr, path: &str) -> Res<String> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
