//! The bodies the pool wraps: [`DoneSignal`] around a request body (says when
//! it has been sent, which starts the response timeout, and when hyper took
//! it up) and [`UpstreamBody`]
//! around a response body (gives the connection or stream back to the pool
//! when it ends or is dropped). Also the lease a request holds, [`LeaseGuard`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Pool, PoolLease};
use crate::body::ProxyBody;
use crate::upstream::goaway::Pending;

/// A lease that goes back to the pool when dropped (as not reusable unless
/// `finish(true)` said otherwise), so a cancelled request never leaks a
/// connection or a stream count.
pub(super) struct LeaseGuard {
    lease: Option<PoolLease>,
    pool: Arc<Pool>,
}

impl LeaseGuard {
    pub(super) fn new(lease: PoolLease, pool: Arc<Pool>) -> Self {
        LeaseGuard {
            lease: Some(lease),
            pool,
        }
    }

    #[allow(
        clippy::expect_used,
        reason = "only `finish` and `drop` take the lease, and both end the guard"
    )]
    pub(super) fn lease_mut(&mut self) -> &mut PoolLease {
        self.lease
            .as_mut()
            .expect("a held lease is present until finished")
    }

    pub(super) fn finish(mut self, reusable: bool) {
        if let Some(lease) = self.lease.take() {
            self.pool.release(lease, reusable);
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.pool.release(lease, false);
        }
    }
}

/// What sending on either protocol returns.
pub(super) type TryResult =
    Result<Response<Incoming>, hyper::client::conn::TrySendError<http::Request<ProxyBody>>>;

/// Waits for the response head; the `--proxy-read-timeout` clock starts
/// when the request body has been sent (a slow upload is not the origin's
/// fault). `None` on timeout.
pub(super) async fn with_response_timeout<F: Future<Output = TryResult>>(
    fut: F,
    body_done: tokio::sync::oneshot::Receiver<()>,
    limit: Duration,
) -> Option<TryResult> {
    tokio::pin!(fut);
    let timer = async {
        let _ = body_done.await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        r = &mut fut => Some(r),
        () = timer => None,
    }
}

pin_project_lite::pin_project! {
    /// The request body on its way upstream; says when it has ended, and
    /// (HTTP/2) when hyper took the request up: it polls the body from the
    /// stream it opened for it, or drops it (see `upstream/goaway.rs`).
    pub struct DoneSignal {
        #[pin]
        inner: ProxyBody,
        done: Option<tokio::sync::oneshot::Sender<()>>,
        // Until the first poll (or drop): hyper has not taken the request up.
        pending: Option<Pending>,
    }
}

impl DoneSignal {
    pub(super) fn wrap(inner: ProxyBody, done: tokio::sync::oneshot::Sender<()>) -> Self {
        let mut this = DoneSignal {
            inner,
            done: Some(done),
            pending: None,
        };
        if this.inner.is_end_stream() {
            this.fire();
        }
        this
    }

    /// `pending` is left at the first poll or when the body is dropped.
    pub(super) fn watched(mut self, pending: Option<Pending>) -> Self {
        self.pending = pending;
        self
    }

    fn fire(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for DoneSignal {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(pending) = this.pending.take() {
            pending.leave();
        }
        let polled = this.inner.poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => false,
            Poll::Pending => false,
        };
        if ended && let Some(tx) = this.done.take() {
            let _ = tx.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body from the origin; gives its connection or stream back to
/// the pool when it ends (reusable) or is dropped early (closed).
pub struct UpstreamBody {
    inner: Incoming,
    held: Option<LeaseGuard>,
}

impl UpstreamBody {
    pub(super) fn new(inner: Incoming, held: LeaseGuard) -> Self {
        UpstreamBody {
            inner,
            held: Some(held),
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(held) = self.held.take() {
                    held.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(held) = self.held.take() {
                    held.finish(false);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            // An HTTP/1.1 body not read to its end leaves the connection
            // mid-message: it cannot serve again.
            let reusable = self.inner.is_end_stream();
            held.finish(reusable);
        }
    }
}
