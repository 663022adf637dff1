//! An HTTP/1.1 client connection, served by one hyper connection after
//! another so that an idle one holds no buffers.
//!
//! hyper keeps an 8 KiB read and an 8 KiB write buffer for as long as its
//! connection lives. Once a connection has been quiet for a whole
//! `IDLE_RELEASE` tick (no request started since the previous tick, nothing
//! in flight, the last request body read to its end, nobody asked to
//! close), the hyper connection is shut down gracefully. hyper closes an
//! idle connection at once, so this ends it at a message boundary; the
//! socket's shutdown is skipped (`Held`). The socket then waits for its next
//! bytes holding nothing but its registration, and a new hyper connection
//! takes over when they come, after the bytes hyper had read and not parsed.
//!
//! The idle wait keeps hyper's limit: a keep-alive connection with no new
//! request for the read timeout closes (up to one tick later than with
//! hyper alone). While stopping, an idle connection closes at once; while
//! draining, it stays open and its next response says `Connection: close`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::held::{Activity, ClientBody, Held, Served, Stream};
use crate::exchange::ConnInfo;
use crate::proxy::Handler;
use crate::shutdown::Phase;

/// How long a connection must be quiet before its buffers go back.
const IDLE_RELEASE: Duration = Duration::from_secs(1);

static CLOSE: HeaderValue = HeaderValue::from_static("close");

/// Serves HTTP/1.1 on `stream` until the client closes, a timeout fires, or
/// `phase` reaches `Stopping` and the request in flight is done.
pub(super) async fn serve(
    mut stream: Stream,
    info: ConnInfo,
    service: Arc<Handler>,
    builder: &http1::Builder,
    read_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let activity = Arc::new(Activity::default());
    let handler = service.clone();
    let mut svc = service_fn({
        let activity = activity.clone();
        let phase = phase.clone();
        move |req: http::Request<Incoming>| {
            let service = service.clone();
            let phase = phase.clone();
            let activity = activity.clone();
            let connect = req.method() == http::Method::CONNECT;
            activity.request_started(
                !http_body::Body::is_end_stream(req.body()),
                connect || asks_close(&req),
            );
            // Boxed: hyper keeps the service future inside each connection's
            // state, and the request path's future is ~11 KB. Boxing it keeps
            // busy connections small too (memory per client, docs/bench.md).
            Box::pin(async move {
                let req = req.map(|b| ClientBody::new(b, Some(activity.clone())));
                let mut resp = service.handle(info, req).await;
                if !connect && *phase.borrow() != Phase::Serving {
                    resp.headers_mut().insert(CONNECTION, CLOSE.clone());
                }
                if resp.headers().get_all(CONNECTION).iter().any(has_close) {
                    activity.response_closes();
                }
                Ok::<_, Infallible>(resp.map(|b| Served::new(b, activity)))
            })
        }
    });
    let mut tick = tokio::time::interval(IDLE_RELEASE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        activity.set_releasing(false);
        let io = TokioIo::new(Held {
            stream,
            activity: activity.clone(),
        });
        let mut conn = builder.serve_connection(io, svc).with_upgrades();
        tick.reset();
        if !drive(&mut conn, &activity, &mut tick, &mut phase).await? {
            return Ok(());
        }
        // Released: the socket comes back, with what hyper read ahead.
        let Some(parts) = conn.into_parts() else {
            return Ok(());
        };
        svc = parts.service;
        stream = parts.io.into_inner().stream;
        let _idle = handler.idle_connection();
        if !parts.read_buf.is_empty() {
            unread(&mut stream, parts.read_buf);
            continue;
        }
        let deadline = Instant::now() + read_timeout.saturating_sub(IDLE_RELEASE);
        if !wait_for_request(&stream, deadline, &mut phase).await {
            return Ok(());
        }
    }
}

/// Polls `conn` to its end. `Ok(true)` when it ended because it was
/// released (its socket is to be served again), `Ok(false)` when it is done.
async fn drive<C>(
    conn: &mut C,
    activity: &Activity,
    tick: &mut tokio::time::Interval,
    phase: &mut watch::Receiver<Phase>,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>>
where
    C: std::future::Future<Output = hyper::Result<()>> + GracefulShutdown + Unpin,
{
    let (mut releasing, mut stopping, mut watching) = (false, false, true);
    let mut seen = activity.started();
    loop {
        if !stopping && *phase.borrow_and_update() == Phase::Stopping {
            // Idle: closes now; busy: after the response in flight.
            conn.shut_down();
            stopping = true;
        }
        tokio::select! {
            done = &mut *conn => {
                done?;
                return Ok(releasing && !stopping);
            }
            _ = tick.tick(), if !releasing && !stopping => {
                let started = activity.started();
                if started == seen && activity.is_quiet() {
                    activity.set_releasing(true);
                    conn.shut_down();
                    releasing = true;
                }
                seen = started;
            }
            changed = phase.changed(), if watching && !stopping => watching = changed.is_ok(),
        }
    }
}

/// What `drive` needs of a hyper connection besides polling it.
trait GracefulShutdown {
    fn shut_down(&mut self);
}

impl<I, S, B> GracefulShutdown for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(&mut self) {
        std::pin::Pin::new(self).graceful_shutdown();
    }
}

/// Waits, holding no buffer, until the client sends its next request (or
/// closes). `false` when the read timeout passes or the proxy is stopping.
async fn wait_for_request(
    stream: &Stream,
    deadline: Instant,
    phase: &mut watch::Receiver<Phase>,
) -> bool {
    let socket = stream.get_ref().get_ref();
    let mut watching = true;
    loop {
        if *phase.borrow_and_update() == Phase::Stopping {
            return false;
        }
        tokio::select! {
            ready = socket.readable() => return ready.is_ok(),
            () = tokio::time::sleep_until(deadline) => return false,
            changed = phase.changed(), if watching => watching = changed.is_ok(),
        }
    }
}

/// Puts bytes hyper read ahead back in front of the socket.
fn unread(stream: &mut Stream, bytes: Bytes) {
    stream.as_mut().get_pin_mut().get_mut().unread(bytes);
}

/// The request asks to close the connection after its response: HTTP/1.0
/// without `keep-alive`, or a `close` token.
fn asks_close<B>(req: &http::Request<B>) -> bool {
    let mut values = req.headers().get_all(CONNECTION).iter();
    if req.version() == http::Version::HTTP_10 {
        return !values.any(|v| has_token(v, "keep-alive"));
    }
    values.any(has_close)
}

fn has_close(value: &HeaderValue) -> bool {
    has_token(value, "close")
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
