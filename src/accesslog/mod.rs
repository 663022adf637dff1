//! The access log: one line per request, product output (never `tracing`).
//!
//! `AccessLog` is a cheap clonable handle; records go through a bounded
//! channel to one writer task, which formats and writes them off the request
//! path. `AccessLog::close` flushes what is queued at shutdown.
//!
//! PLACEHOLDER: the core issue ships a minimal writer; the access-log work
//! replaces the insides (format engine, presets, rotation) behind this API.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, Uri, Version};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::{AccessLogConfig, LogDestination};
use crate::scope::CredentialScope;
use crate::upstream::Timing;

/// Everything known about one finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request head was received.
    pub received: SystemTime,
    /// From request head received to the last response byte sent (or to the
    /// moment the client went away).
    pub duration: Duration,
    /// The client's address.
    pub client: SocketAddr,
    /// Port the request arrived on.
    pub local_port: u16,
    /// Request method as received.
    pub method: Method,
    /// Request target as received (origin-form or absolute-form).
    pub uri: Uri,
    /// Client's HTTP version.
    pub version: Version,
    /// `Host` as received (or the authority of an absolute-form target); empty if none.
    pub host: String,
    /// Status sent to the client; 499 if the client went away first.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// The request headers the format asked for (see `AccessLog::request_headers`).
    pub request_headers: HeaderMap,
    /// The response headers as sent to the client.
    pub response_headers: HeaderMap,
    /// `X-Chocon-Id` of this request.
    pub request_id: String,
    /// The origin the request was routed to (`https://host:443`), if any.
    pub origin: Option<String>,
    /// Upstream timing, if the request reached the pool.
    pub upstream: Option<Timing>,
    /// The client's SigV4 credential scope, if it sent one.
    pub scope: Option<CredentialScope>,
    /// One-line reason when the proxy produced the response itself or the
    /// exchange failed.
    pub error: Option<String>,
}

/// Handle to the access-log writer.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<Record>>,
    request_headers: std::sync::Arc<[HeaderName]>,
}

/// Owns the writer task; `close` drains and flushes.
pub struct Writer {
    task: tokio::task::JoinHandle<()>,
}

impl AccessLog {
    /// Starts the writer for `config`.
    pub fn start(config: &AccessLogConfig) -> std::io::Result<(AccessLog, Writer)> {
        let (tx, mut rx) = mpsc::channel::<Record>(4096);
        let dest = config.destination.clone();
        let task = tokio::spawn(async move {
            let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match dest {
                LogDestination::Stdout => Box::new(tokio::io::stdout()),
                LogDestination::None => Box::new(tokio::io::sink()),
                _ => Box::new(tokio::io::stderr()),
            };
            while let Some(rec) = rx.recv().await {
                let line = format_line(&rec);
                let _ = out.write_all(line.as_bytes()).await;
                if rx.is_empty() {
                    let _ = out.flush().await;
                }
            }
            let _ = out.flush().await;
        });
        let log = AccessLog {
            tx: Some(tx),
            request_headers: vec![http::header::USER_AGENT, http::header::REFERER].into(),
        };
        Ok((log, Writer { task }))
    }

    /// Request header names the format needs; the request path copies only these.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.request_headers
    }

    /// Response header names the format needs.
    pub fn response_headers(&self) -> &[HeaderName] {
        &[]
    }

    /// Queues one record. Never drops a record: when the queue is full the
    /// record waits in a task of its own.
    pub fn log(&self, record: Record) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::error::TrySendError::Full(record)) = tx.try_send(record) {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(record).await;
            });
        }
    }
}

impl Writer {
    /// Waits until every queued record is written and flushed. All `AccessLog`
    /// handles must be dropped first.
    pub async fn close(self) {
        let _ = self.task.await;
    }
}

fn format_line(r: &Record) -> String {
    let t = r.upstream.clone().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{} - - [{}] \"{} {} {:?}\" {} {} \"{}\" {:.3} {} {} reused={} connect_ms={:.3} header_ms={:.3} upstream_ms={:.3} {}\n",
        r.client.ip(),
        httpdate::fmt_http_date(r.received),
        r.method,
        r.uri,
        r.version,
        r.status,
        r.bytes_sent,
        r.host,
        r.duration.as_secs_f64(),
        r.request_id,
        r.origin.as_deref().unwrap_or("-"),
        t.reused,
        ms(t.connect),
        ms(t.header),
        ms(t.total),
        r.error.as_deref().unwrap_or("-"),
    )
}
