//! The client's request body on its way upstream: `Counted` counts it into
//! the exchange and cuts it when the client stalls (`--body-timeout`),
//! `ContinueGate` holds it back until the origin wants it
//! (`Expect: 100-continue`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{self, BoxError};

/// How reading the client's body went wrong, if it did: shared by the body
/// (which sets it) and its exchange (which answers for it).
#[derive(Debug, Default)]
pub struct BodyFault(AtomicU8);

impl BodyFault {
    const FAILED: u8 = 1;
    const TIMED_OUT: u8 = 2;

    /// The client broke off its upload.
    pub fn set_failed(&self) {
        let _ = self
            .0
            .compare_exchange(0, Self::FAILED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The client sent nothing for the body timeout.
    pub fn set_timed_out(&self) {
        self.0.store(Self::TIMED_OUT, Ordering::Relaxed);
    }

    /// Reading the body failed because the client broke off.
    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::FAILED
    }

    /// Reading the body was cut because the client stalled.
    pub fn timed_out(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::TIMED_OUT
    }
}

/// The body error of a client that sent no body bytes for the limit.
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes for {0:?} (--body-timeout)")]
pub struct BodyTimedOut(pub Duration);

pin_project_lite::pin_project! {
    /// The client's request body, counted into its `Exchange`. A wait for
    /// the client's next bytes longer than `limit` fails the body: what
    /// reads it (the pool sending it, `--sign` hashing it) then fails and
    /// lets go of what the request holds. Only waits for the client count:
    /// while nobody polls (an origin not taking the body yet), no clock runs.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        fault: Arc<BodyFault>,
        limit: Option<Duration>,
        // Made on the first wait, then moved for each later one.
        timer: Option<Pin<Box<Sleep>>>,
        waiting: bool,
    }
}

impl<B> Counted<B> {
    pub(super) fn new(
        inner: B,
        count: Arc<AtomicU64>,
        fault: Arc<BodyFault>,
        limit: Option<Duration>,
    ) -> Self {
        Counted {
            inner,
            count,
            fault,
            limit,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if this.fault.timed_out() {
            return Poll::Ready(Some(Err(
                BodyTimedOut(this.limit.unwrap_or_default()).into()
            )));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The client broke off its upload: whatever fails upstream
                // because of it is the client's doing (499), not the origin's.
                this.fault.set_failed();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(limit) = *this.limit else {
                    return Poll::Pending;
                };
                if !*this.waiting {
                    *this.waiting = true;
                    let deadline = Instant::now() + limit;
                    match this.timer {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => *this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.fault.set_timed_out();
                Poll::Ready(Some(Err(BodyTimedOut(limit).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long to wait for the origin's `100 Continue` before sending the body
/// anyway (RFC 9110 §10.1.1 lets a client stop waiting; HTTP/2 origins and
/// some HTTP/1.1 ones never send it).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// `Expect: 100-continue` end to end: the client's body is not read (so
    /// hyper does not send the client `100 Continue`) until the origin says
    /// `100 Continue`, or `CONTINUE_WAIT` passes. An origin that answers early
    /// (e.g. 403) is relayed without the body ever being asked for.
    pub struct ContinueGate<B> {
        #[pin]
        inner: B,
        #[pin]
        open: tokio::sync::futures::OwnedNotified,
        #[pin]
        fallback: tokio::time::Sleep,
        is_open: bool,
    }
}

/// Opens a `ContinueGate` when the origin sends `100 Continue`.
pub struct GateOpener(Arc<tokio::sync::Notify>);

impl<B> ContinueGate<B> {
    /// Gates `inner`; the opener goes with the upstream request.
    pub fn new(inner: B) -> (Self, GateOpener) {
        let notify = Arc::new(tokio::sync::Notify::new());
        let open = notify.clone().notified_owned();
        let gate = ContinueGate {
            inner,
            open,
            fallback: tokio::time::sleep(CONTINUE_WAIT),
            is_open: false,
        };
        (gate, GateOpener(notify))
    }
}

impl GateOpener {
    /// Opens the gate on the origin's `100 Continue` to `req` (or on the
    /// pool's signal, for origins that never send it).
    pub fn attach<T>(self, req: &mut Request<T>) {
        let notify = self.0;
        req.extensions_mut()
            .insert(body::ContinueSignal(notify.clone()));
        hyper::ext::on_informational(req, move |resp| {
            if resp.status() == StatusCode::CONTINUE {
                notify.notify_one();
            }
        });
    }
}

impl<B: Body<Data = Bytes, Error = BoxError>> Body for ContinueGate<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if !*this.is_open {
            let opened = this.open.poll(cx).is_ready() || this.fallback.poll(cx).is_ready();
            if !opened {
                return Poll::Pending;
            }
            *this.is_open = true;
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
