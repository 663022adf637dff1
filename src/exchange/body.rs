//! The client's request body on its way upstream: `Counted` counts it into
//! the exchange, `ContinueGate` holds it back until the origin wants it
//! (`Expect: 100-continue`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::body::{self, BoxError};

pin_project_lite::pin_project! {
    /// The client's request body, counted into its `Exchange`.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        failed: Arc<AtomicBool>,
    }
}

impl<B> Counted<B> {
    pub(super) fn new(inner: B, count: Arc<AtomicU64>, failed: Arc<AtomicBool>) -> Self {
        Counted {
            inner,
            count,
            failed,
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
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The client broke off its upload: whatever fails upstream
                // because of it is the client's doing (499), not the origin's.
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
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
