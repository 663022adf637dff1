//! Clients: an HTTP/1.1 client over plain TCP (what talks to the proxy), a
//! TLS client (h2 or HTTP/1.1, for checking origins directly), and a raw TCP
//! connection for malformed or hand-timed exchanges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BoxError, Ca, TIMEOUT, pattern_range, within};

/// Request body type of the clients.
pub type ReqBody = BoxBody<Bytes, BoxError>;

/// A complete request body.
pub fn full(body: impl Into<Bytes>) -> ReqBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty request body.
pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `total` bytes of the test pattern with no known length (sent chunked).
pub fn pattern_stream(total: u64, chunk: usize) -> ReqBody {
    let frames = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(chunk as u64) as usize;
        let frame = Frame::data(Bytes::from(pattern_range(sent, n)));
        Some((Ok::<_, BoxError>(frame), sent + n as u64))
    });
    StreamBody::new(frames).boxed()
}

/// A response with its body collected.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Version.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Resp {
    /// Status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Collects a streaming response.
    pub async fn collect(resp: Response<Incoming>) -> Result<Resp, hyper::Error> {
        let (parts, body) = resp.into_parts();
        let body = within("response body", body.collect()).await?.to_bytes();
        Ok(Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}

/// One HTTP/1.1 client connection (keep-alive) over plain TCP.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        Client {
            sender,
            conn: tokio::spawn(conn),
        }
    }

    /// Sends `req` and returns the response head with a streaming body.
    /// The caller sets `Host`.
    pub async fn send_streaming(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        within("connection ready", self.sender.ready()).await?;
        within("response head", self.sender.send_request(req)).await
    }

    /// Sends `req` and collects the response.
    pub async fn send(&mut self, req: Request<ReqBody>) -> Result<Resp, hyper::Error> {
        let resp = self.send_streaming(req).await?;
        Resp::collect(resp).await
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.conn.is_finished()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// An HTTP/2 prior-knowledge (h2c) connection over plain TCP.
pub struct H2cClient {
    sender: hyper::client::conn::http2::SendRequest<ReqBody>,
    /// The connection's task: ends when the connection closes.
    conn: tokio::task::JoinHandle<()>,
}

impl H2cClient {
    /// Connects to `addr` and sends the h2 preface.
    pub async fn connect(addr: SocketAddr) -> H2cClient {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2cClient { sender, conn }
    }

    /// Waits until the connection is closed (by either side).
    pub async fn closed(&mut self) {
        let _ = (&mut self.conn).await;
    }

    /// Sends `req` (its URI carries the authority) and returns the response
    /// head with a streaming body.
    pub async fn send_streaming(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        within("connection ready", self.sender.ready()).await?;
        within("response head", self.sender.send_request(req)).await
    }

    /// Sends `req` (its URI carries the authority) and collects the response.
    pub async fn send(&mut self, req: Request<ReqBody>) -> Result<Resp, hyper::Error> {
        let resp = self.send_streaming(req).await?;
        Resp::collect(resp).await
    }
}

/// Builds a request with an explicit `Host` and extra headers.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Request<ReqBody> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).expect("valid request")
}

/// A TLS connection to an origin, h2 if the server picks it from `alpn`.
pub enum TlsClient {
    /// HTTP/1.1 over TLS.
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl TlsClient {
    /// Connects to `addr` naming `server_name`, trusting `ca` only.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        ca: &Ca,
        alpn: &[&[u8]],
    ) -> Result<TlsClient, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(alpn));
        let name = ServerName::try_from(server_name.to_owned())?;
        let tls = within("TLS handshake", connector.connect(name, stream)).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(TlsClient::H2(sender))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(TlsClient::H1(sender))
        }
    }

    /// Sends `req` and collects the response.
    pub async fn send(&mut self, req: Request<ReqBody>) -> Result<Resp, BoxError> {
        let resp = match self {
            TlsClient::H1(s) => {
                s.ready().await?;
                within("response head", s.send_request(req)).await?
            }
            TlsClient::H2(s) => {
                s.ready().await?;
                within("response head", s.send_request(req)).await?
            }
        };
        Ok(Resp::collect(resp).await?)
    }
}

/// The head of a response read by [`RawConn`].
#[derive(Debug, Clone)]
pub struct RawHead {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl RawHead {
    /// A header value (the first one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw TCP connection: write any bytes, read responses by hand.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; an error (the peer closed) is returned, not a panic.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        within("writing", self.stream.write_all(bytes)).await
    }

    /// Half-closes the write side.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    async fn fill(&mut self, limit: Duration) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match tokio::time::timeout(limit, self.stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no data within {limit:?}; buffered: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response head (1xx included), within `limit`.
    pub async fn read_head_within(&mut self, limit: Duration) -> std::io::Result<RawHead> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = RawHead {
                        status: parsed.code.expect("status"),
                        reason: parsed.reason.unwrap_or("").to_owned(),
                        headers: parsed
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    self.buf.drain(..len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{e}: {:?}", String::from_utf8_lossy(&self.buf)),
                    ));
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.fill(left).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed before a response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads one response head within [`TIMEOUT`]; panics otherwise.
    pub async fn read_head(&mut self) -> RawHead {
        self.read_head_within(TIMEOUT)
            .await
            .expect("reading a response head")
    }

    /// Reads the body that follows `head` (Content-Length, chunked, or until
    /// the peer closes), within [`TIMEOUT`].
    pub async fn read_body(&mut self, head: &RawHead) -> Vec<u8> {
        within("response body", self.read_body_inner(head))
            .await
            .expect("reading a response body")
    }

    async fn read_body_inner(&mut self, head: &RawHead) -> std::io::Result<Vec<u8>> {
        let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "body cut short");
        if head.status < 200 || head.status == 204 || head.status == 304 {
            return Ok(Vec::new());
        }
        if let Some(len) = head.header("content-length") {
            let len: usize = len.trim().parse().expect("Content-Length");
            while self.buf.len() < len {
                if self.fill(TIMEOUT).await? == 0 {
                    return Err(eof());
                }
            }
            return Ok(self.buf.drain(..len).collect());
        }
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if !chunked {
            while self.fill(TIMEOUT).await? > 0 {}
            return Ok(std::mem::take(&mut self.buf));
        }
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.fill(TIMEOUT).await? == 0 {
                    return Err(eof());
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                        continue;
                    }
                    if self.fill(TIMEOUT).await? == 0 {
                        return Err(eof());
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill(TIMEOUT).await? == 0 {
                    return Err(eof());
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    /// Reads whatever arrives next (at least one byte unless the peer
    /// closed), within [`TIMEOUT`]; returns how many bytes came.
    pub async fn read_some(&mut self) -> usize {
        let n = self.fill(TIMEOUT).await.expect("reading");
        self.buf.clear();
        n
    }

    /// Reads everything until the peer closes, within [`TIMEOUT`].
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        within("reading to EOF", async {
            while self.fill(TIMEOUT).await.expect("reading") > 0 {}
        })
        .await;
        std::mem::take(&mut self.buf)
    }

    /// Whether the peer closed (EOF or reset) within `limit`, without any
    /// further data.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        match self.fill(limit).await {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::TimedOut,
        }
    }
}

/// Connects a [`TlsClient`] via [`Ca::trusted`] with the given ALPN list.
pub async fn tls_client(addr: SocketAddr, name: &str, alpn: &[&[u8]]) -> TlsClient {
    TlsClient::connect(addr, name, Ca::trusted(), alpn)
        .await
        .expect("TLS connection to the origin")
}

/// Shares a client config for callers that want to build their own TLS.
pub fn trusted_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    Ca::trusted().client_config(alpn)
}
