//! The head and idle limit of connections whose protocol hyper gives no
//! such limit for (h2c, and the admin listener's HTTP/1.1 and HTTP/2): a
//! connection with no request open for the limit is asked to close
//! (HTTP/2: GOAWAY), and dropped if it has not closed [`GRACE`] later with
//! still nothing open. "No request open" covers a client that never sends a
//! complete request head (or HEADERS frame), one that sends half of it, and
//! one that stays idle after its last response, so one timer serves for
//! the head and the idle limits, as `--read-timeout` does for HTTP/1.1.
//!
//! A request counts as open from when hyper hands it to the service until
//! its response body is dropped (`Guarded`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// How long a connection asked to close may take to do so (its GOAWAY
/// flushed) before it is dropped. An HTTP/2 graceful close waits for the
/// client's answer to a PING, which a stalled client never sends.
pub const GRACE: Duration = Duration::from_secs(1);

/// Requests open on one connection.
#[derive(Debug, Default)]
pub struct OpenRequests {
    open: AtomicUsize,
    changed: Notify,
}

impl OpenRequests {
    /// A request arrived: open until the guard drops.
    pub fn start(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        OpenGuard(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.open.load(Ordering::Relaxed) == 0
    }
}

/// Holds one request open.
#[derive(Debug)]
pub struct OpenGuard(Arc<OpenRequests>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until dropped.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        _guard: OpenGuard,
    }
}

impl<B> Guarded<B> {
    /// `inner`, holding `guard` until dropped.
    pub fn new(inner: B, guard: OpenGuard) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Watches one connection's open requests for a quiet spell of `limit`.
pub struct IdleWatch {
    open: Arc<OpenRequests>,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// The timer runs for the current quiet spell.
    armed: bool,
}

impl IdleWatch {
    /// Watches `open`, quiet from now on.
    pub fn new(open: Arc<OpenRequests>, limit: Duration) -> Self {
        IdleWatch {
            open,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: true,
        }
    }

    /// Resolves once no request has been open for the limit. Cancel-safe:
    /// the quiet spell's start is kept between calls.
    pub async fn quiet(&mut self) {
        loop {
            if self.open.is_idle() && !self.armed {
                self.timer.as_mut().reset(Instant::now() + self.limit);
                self.armed = true;
            }
            let changed = self.open.changed.notified();
            if self.armed {
                tokio::select! {
                    () = self.timer.as_mut() => {
                        if self.open.is_idle() {
                            // A later call watches a new spell.
                            self.armed = false;
                            return;
                        }
                        self.armed = false;
                    }
                    () = changed => self.armed = false,
                }
            } else {
                changed.await;
            }
        }
    }

    /// Whether no request is open now.
    pub fn is_idle(&self) -> bool {
        self.open.is_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quiet_counts_from_the_last_request_end() {
        let open = Arc::new(OpenRequests::default());
        let mut watch = IdleWatch::new(open.clone(), Duration::from_secs(10));
        let started = Instant::now();
        // Nothing ever opened: quiet after the limit.
        watch.quiet().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        let guard = open.start();
        let busy = tokio::time::timeout(Duration::from_secs(60), watch.quiet()).await;
        assert!(busy.is_err(), "quiet while a request is open");
        let ended = Instant::now();
        drop(guard);
        watch.quiet().await;
        assert_eq!(ended.elapsed(), Duration::from_secs(10));
    }
}
