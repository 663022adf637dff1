//! An HTTP/1.1 client connection, served by one hyper connection after
//! another so that an idle one holds no buffers.
//!
//! hyper keeps an 8 KiB read and an 8 KiB write buffer for as long as its
//! connection lives. So a connection gives them back once it falls quiet:
//! when a response is done, nothing else is in flight, the request body was
//! read to its end, nobody asked to close, and no new request came for
//! `GRACE` (50 ms), the hyper connection is shut down gracefully. hyper
//! closes an idle connection at once, so this ends it at a message
//! boundary, after its last bytes are flushed; the socket's shutdown is
//! skipped (`ReleasableSocket`). The socket then waits
//! for its next bytes holding nothing but its registration, and a new hyper
//! connection takes over when they come, after any bytes hyper had read and
//! not parsed. A pipelined request already read keeps the connection busy,
//! so nothing is released between pipelined requests.
//!
//! The idle wait keeps hyper's limit: a keep-alive connection with no new
//! request for the read timeout closes. While stopping, an idle connection
//! closes at once; while draining, it stays open and its next response says
//! `Connection: close`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::idle_release::{Activity, ClientBody, ReleasableSocket, Served, Stream};
use crate::exchange::ConnInfo;
use crate::proxy::Handler;
use crate::rewrite;
use crate::shutdown::Phase;

/// How long a connection must stay quiet before it gives its buffers back:
/// longer than the pause between a busy client's back-to-back calls, so
/// those do not pay for a new hyper connection each (its cost is measured
/// in docs/bench.md, "Memory per idle client connection"), short enough
/// that a burst of clients that each make one call holds few buffers at once.
const GRACE: Duration = Duration::from_millis(50);

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
            let (service, info) = (service.clone(), info.clone());
            let phase = phase.clone();
            let activity = activity.clone();
            let connect = req.method() == http::Method::CONNECT;
            activity.request_started(
                !http_body::Body::is_end_stream(req.body()),
                connect || asks_close(&req),
            );
            // Boxed: hyper keeps the service future inside each connection's
            // state, and the request path's future is large (docs/bench.md). Boxing it keeps
            // busy connections small too (memory per client, docs/bench.md).
            Box::pin(async move {
                let req = req.map(|b| ClientBody::new(b, Some(&activity)));
                let mut resp = service.handle(info, req).await;
                // The only `Connection` a response can carry: the origin's
                // went with the other hop-by-hop headers.
                if !connect && *phase.borrow() != Phase::Serving {
                    resp.headers_mut().insert(CONNECTION, CLOSE.clone());
                    activity.response_closes();
                }
                Ok::<_, Infallible>(resp.map(|b| Served::new(b, activity)))
            })
        }
    });
    let grace = tokio::time::sleep(GRACE);
    tokio::pin!(grace);
    loop {
        // Everything of the hyper connection lives in this block, so that
        // the task holds none of it (not even the room) while it waits.
        let (quiet_since, _idle) = {
            activity.set_releasing(false);
            let io = TokioIo::new(ReleasableSocket {
                stream,
                activity: activity.clone(),
            });
            let mut conn = Box::new(builder.serve_connection(io, svc).with_upgrades());
            let released = match drive(&mut *conn, &activity, grace.as_mut(), &mut phase).await? {
                Some(quiet_since) => conn.into_parts().map(|parts| (parts, quiet_since)),
                None => None,
            };
            // Released: the socket comes back, with what hyper read ahead.
            let Some((parts, quiet_since)) = released else {
                return Ok(());
            };
            svc = parts.service;
            stream = parts.io.into_inner().stream;
            let idle = handler.idle_connection();
            let read_ahead = parts.read_buf;
            if !read_ahead.is_empty() {
                unread(&mut stream, read_ahead);
                continue;
            }
            // `read_ahead`, empty, can still hold hyper's whole read
            // buffer: it goes at the end of the block.
            (quiet_since, idle)
        };
        // The read timeout counts from the end of the last response, as
        // hyper's does.
        grace.as_mut().reset(quiet_since + read_timeout);
        if !wait_for_request(&stream, grace.as_mut(), &mut phase).await {
            return Ok(());
        }
    }
}

/// Polls `conn` to its end, releasing it once it falls quiet. `Ok(Some(t))`
/// when it ended because it was released (its socket is to be served
/// again), quiet since `t`; `Ok(None)` when it is done.
async fn drive<C>(
    conn: &mut C,
    activity: &Activity,
    grace: Pin<&mut Sleep>,
    phase: &mut watch::Receiver<Phase>,
) -> Result<Option<Instant>, Box<dyn std::error::Error + Send + Sync>>
where
    C: Future<Output = hyper::Result<()>> + GracefulShutdown + Unpin,
{
    let mut serving = Quiet {
        conn,
        activity,
        grace,
        served: activity.started(),
        armed_for: None,
        quiet_since: Instant::now(),
        released: false,
    };
    let (mut stopping, mut watching) = (false, true);
    loop {
        if !stopping && *phase.borrow_and_update() == Phase::Stopping {
            // Idle: closes now; busy: after the response in flight.
            serving.conn.shut_down();
            stopping = true;
        }
        tokio::select! {
            done = &mut serving => {
                done?;
                return Ok((serving.released && !stopping).then_some(serving.quiet_since));
            }
            changed = phase.changed(), if watching && !stopping => watching = changed.is_ok(),
        }
    }
}

/// Polls a hyper connection; once it has served a request and stayed quiet
/// (`Activity::is_quiet`) for `GRACE`, shuts it down gracefully with the
/// socket's shutdown skipped.
struct Quiet<'a, C> {
    conn: &'a mut C,
    activity: &'a Activity,
    grace: Pin<&'a mut Sleep>,
    /// `Activity::started` when this hyper connection began.
    served: u32,
    /// `Activity::started` when `grace` was last set: one quiet spell.
    armed_for: Option<u32>,
    /// When the current quiet spell began.
    quiet_since: Instant,
    released: bool,
}

impl<C> Future for Quiet<'_, C>
where
    C: Future<Output = hyper::Result<()>> + GracefulShutdown + Unpin,
{
    type Output = hyper::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        let this = &mut *self;
        loop {
            let polled = Pin::new(&mut *this.conn).poll(cx);
            if polled.is_ready() || this.released {
                return polled;
            }
            let started = this.activity.started();
            if started == this.served || !this.activity.is_quiet() {
                return Poll::Pending;
            }
            if this.armed_for != Some(started) {
                // A new quiet spell. Moving a pending deadline later is
                // cheap (no timer-wheel work), and this happens per request.
                this.armed_for = Some(started);
                this.quiet_since = Instant::now();
                this.grace.as_mut().reset(this.quiet_since + GRACE);
            }
            if this.grace.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // hyper is between messages: it closes at once, so poll again.
            this.released = true;
            this.activity.set_releasing(true);
            this.conn.shut_down();
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
        Pin::new(self).graceful_shutdown();
    }
}

/// Waits, holding no buffer, until the client sends its next request (or
/// closes). `false` when `deadline` (the read timeout; the timer `GRACE`
/// used) passes or the proxy is stopping.
async fn wait_for_request(
    stream: &Stream,
    mut deadline: Pin<&mut Sleep>,
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
            () = deadline.as_mut() => return false,
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
        return !values.any(|v| rewrite::lists_token(v, "keep-alive"));
    }
    values.any(|v| rewrite::lists_token(v, "close"))
}
