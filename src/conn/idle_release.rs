//! What lets an HTTP/1.1 connection give hyper's buffers back while it is
//! idle: `Activity` (what the requests on the connection are doing), the
//! request and response bodies that report into it, and `ReleasableSocket`, the socket
//! as hyper sees it, which skips the socket's shutdown while a release is
//! under way so that ending the hyper connection leaves the socket open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutWriter;

use crate::identity::Prefixed;

/// A client socket: bytes already read come first (`Prefixed`), and a write
/// that makes no progress for the write timeout fails.
pub(super) type Stream = Pin<Box<TimeoutWriter<Prefixed<TcpStream>>>>;

/// What the requests of one HTTP/1.1 connection are doing. The connection
/// task and the bodies hyper polls on that same task are its only users;
/// the atomics are there to make it `Sync`, not for contention.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Requests hyper handed to the service.
    started: AtomicU32,
    /// Responses hyper is done with (their body dropped).
    finished: AtomicU32,
    /// The latest request has a body not yet read to its end.
    unread_body: AtomicBool,
    /// A request or response asked to close the connection, or it was a
    /// CONNECT: hyper closes it itself and it must never be reused.
    closing: AtomicBool,
    /// A release is under way: the socket's shutdown is skipped.
    releasing: AtomicBool,
}

impl Activity {
    /// A request arrived; `has_body` unless hyper says its body is empty;
    /// `closes` when it asked to close the connection (or is a CONNECT).
    pub(super) fn request_started(&self, has_body: bool, closes: bool) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.unread_body.store(has_body, Ordering::Relaxed);
        if closes {
            self.closing.store(true, Ordering::Relaxed);
        }
    }

    /// The response says `Connection: close`.
    pub(super) fn response_closes(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// How many requests have started so far.
    pub(super) fn started(&self) -> u32 {
        self.started.load(Ordering::Relaxed)
    }

    /// Nothing is in flight, the last request body was read to its end, and
    /// nobody asked to close: hyper is between two messages.
    pub(super) fn is_quiet(&self) -> bool {
        self.finished.load(Ordering::Relaxed) == self.started.load(Ordering::Relaxed)
            && !self.unread_body.load(Ordering::Relaxed)
            && !self.closing.load(Ordering::Relaxed)
    }

    /// Marks (or clears) a release under way.
    pub(super) fn set_releasing(&self, on: bool) {
        self.releasing.store(on, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A request body that reports into `Activity` once read to its end.
    pub(super) struct ClientBody<B> {
        #[pin]
        inner: B,
        activity: Option<Arc<Activity>>,
    }
}

impl<B: Body> ClientBody<B> {
    /// `inner`, reporting to `activity` (HTTP/1.1) or to nobody (h2c, or
    /// no body to read).
    pub(super) fn new(inner: B, activity: Option<&Arc<Activity>>) -> Self {
        let activity = activity.filter(|_| !inner.is_end_stream()).cloned();
        ClientBody { inner, activity }
    }
}

impl<B: Body<Data = Bytes>> Body for ClientBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        // Readers stop at `is_end_stream` without asking for the `None`.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended && let Some(activity) = this.activity.take() {
            activity.unread_body.store(false, Ordering::Relaxed);
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

pin_project_lite::pin_project! {
    /// A response body that reports into `Activity` when hyper is done with
    /// it (hyper drops it after its last frame, or at once when it is empty).
    pub(super) struct Served<B> {
        #[pin]
        inner: B,
        activity: Arc<Activity>,
    }

    impl<B> PinnedDrop for Served<B> {
        fn drop(this: Pin<&mut Self>) {
            this.activity.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<B> Served<B> {
    /// `inner`, counted as finished into `activity` when dropped.
    pub(super) fn new(inner: B, activity: Arc<Activity>) -> Self {
        Served { inner, activity }
    }
}

impl<B: Body> Body for Served<B> {
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

/// The socket as hyper sees it. While `Activity` says a release is under
/// way, hyper's shutdown of the socket is skipped (hyper has flushed by
/// then), so the socket outlives the hyper connection.
pub(super) struct ReleasableSocket {
    /// The socket.
    pub(super) stream: Stream,
    /// Whether a release is under way.
    pub(super) activity: Arc<Activity>,
}

impl AsyncRead for ReleasableSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.stream.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for ReleasableSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.stream.as_mut().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.stream.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.activity.releasing.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        self.stream.as_mut().poll_shutdown(cx)
    }
}
