//! Sees an HTTP/2 origin's GOAWAY the moment its bytes arrive.
//!
//! hyper learns of a GOAWAY only when its connection task processes the
//! frame, and hands requests the pool gave it in the meantime the
//! connection's error. [`Watched`] wraps the read side of an upstream
//! HTTP/2 connection and follows the frame boundaries of the server→client
//! byte stream (which has no preface: every frame is a 9-byte header, a
//! 24-bit payload length first and the type next, then the payload). When a
//! GOAWAY header (type 0x7) goes by, it sets the connection's `going_away`
//! flag before hyper sees the frame, so the pool gives the connection no new
//! stream from then on. It then holds the first GOAWAY (and what follows it)
//! back from hyper until the requests already handed to the connection are
//! out (see [`Gate`]).
//!
//! Invariants: the bytes are never changed nor reordered, and copied only
//! once per connection, from its first GOAWAY on, while a hold lasts (a
//! frame header is gathered in a 9-byte array because it may span reads;
//! payloads are only counted); the cost is a few integer operations per
//! read plus one per frame header; the flag is only ever set, never
//! cleared; a hold ends within [`HOLD_AT_MOST`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// HTTP/2 frame header length (RFC 9113 §4.1).
const HEADER: usize = 9;
/// GOAWAY's frame type (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;

/// What one run of bytes held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No GOAWAY header completed in these bytes.
    Nothing,
    /// A GOAWAY header completed (its last stream id follows, maybe
    /// later), `end` bytes into the piece: the first such header if many.
    GoAway {
        /// Where in the piece the header ended.
        end: usize,
    },
}

/// Follows frame boundaries over a byte stream fed in arbitrary pieces.
#[derive(Debug, Default)]
pub(crate) struct FrameScan {
    /// The frame header being gathered.
    header: [u8; HEADER],
    /// How many bytes of `header` are filled.
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
    /// GOAWAY frames seen so far.
    goaways: u32,
    /// Inside a GOAWAY payload: the last-stream-id bytes gathered so far.
    id: Option<(usize, [u8; 4])>,
    /// The last stream id of the most recent complete GOAWAY.
    last_stream_id: Option<u32>,
}

impl FrameScan {
    /// Feeds the next bytes of the stream.
    pub(crate) fn feed(&mut self, piece: &[u8]) -> Seen {
        let mut seen = Seen::Nothing;
        let mut bytes = piece;
        while !bytes.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                if let Some((got, id)) = &mut self.id {
                    let take = (4 - *got).min(n);
                    id[*got..*got + take].copy_from_slice(&bytes[..take]);
                    *got += take;
                    if *got == 4 {
                        self.last_stream_id = Some(u32::from_be_bytes(*id) & 0x7fff_ffff);
                        self.id = None;
                    }
                }
                self.payload -= n;
                bytes = &bytes[n..];
                if self.payload == 0 {
                    self.id = None;
                }
                continue;
            }
            let take = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < HEADER {
                break;
            }
            self.have = 0;
            let [a, b, c, kind, ..] = self.header;
            self.payload = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if kind == GOAWAY {
                self.goaways += 1;
                self.id = Some((0, [0; 4]));
                if seen == Seen::Nothing {
                    seen = Seen::GoAway {
                        end: piece.len() - bytes.len(),
                    };
                }
            }
        }
        seen
    }

    /// The last stream id of the most recent GOAWAY whose id has arrived.
    pub(crate) fn last_stream_id(&self) -> Option<u32> {
        self.last_stream_id
    }
}

/// How long at most a GOAWAY is held back from hyper while requests it was
/// handed are still on their way to a stream (see [`Gate`]).
const HOLD_AT_MOST: Duration = Duration::from_millis(200);

/// What one HTTP/2 connection's reader and the pool share.
///
/// hyper's client opens a stream for a request and then checks the
/// connection again; if it has processed a GOAWAY in between, it fails the
/// request with the connection's error although the stream's HEADERS go
/// out (and the origin may process them). To keep that race from
/// happening, every request handed to the connection is *pending* from its
/// checkout until hyper has taken it up (polled or dropped its body, or
/// handed it back), and the reader holds a GOAWAY back from hyper while any
/// request is pending, at most [`HOLD_AT_MOST`]. No request becomes pending
/// once `going_away` is set ([`Gate::enter`] checks after counting, the
/// reader counts after setting: one of the two sees the other).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    going_away: AtomicBool,
    /// A GOAWAY went to hyper after [`HOLD_AT_MOST`] with requests pending.
    forced: AtomicBool,
    pending: AtomicUsize,
    waker: AtomicWaker,
}

impl Gate {
    /// Whether the origin sent GOAWAY (or a request learnt of one).
    pub(crate) fn is_going_away(&self) -> bool {
        self.going_away.load(Ordering::SeqCst)
    }

    /// Marks the connection as going away.
    pub(crate) fn go_away(&self) {
        self.going_away.store(true, Ordering::SeqCst);
    }

    /// Counts a request handed to this connection until the returned
    /// [`Pending`] is left or dropped; `false` (nothing counted) when the
    /// connection is going away.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<Pending> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let pending = Pending(Arc::new(Entered {
            gate: self.clone(),
            left: AtomicBool::new(false),
        }));
        if self.is_going_away() {
            pending.leave();
            return None;
        }
        Some(pending)
    }

    /// Whether a GOAWAY went to hyper with requests pending: a GOAWAY error
    /// on this connection is then not proof that the stream was refused.
    pub(crate) fn was_forced(&self) -> bool {
        self.forced.load(Ordering::SeqCst)
    }

    fn is_clear(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }
}

/// One request on its way to a stream (see [`Gate`]). Clones share it:
/// it is left once, when the first clone is left or dropped (hyper polled
/// or dropped the body that holds one, or the pool's send returned).
#[derive(Debug, Clone)]
pub(crate) struct Pending(Arc<Entered>);

#[derive(Debug)]
pub(crate) struct Entered {
    gate: Arc<Gate>,
    left: AtomicBool,
}

impl Pending {
    /// hyper has taken the request up, or it will never be sent here.
    pub(crate) fn leave(&self) {
        let Entered { gate, left } = &*self.0;
        if !left.swap(true, Ordering::SeqCst) && gate.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            gate.waker.wake();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Bytes from the first GOAWAY on, kept from hyper until the gate clears.
struct Withheld {
    bytes: Vec<u8>,
    at: usize,
    /// Until the hold ends (`None`: serving the bytes).
    until: Option<Pin<Box<Sleep>>>,
    /// A read found the gate clear (hyper had taken every request up).
    clear: bool,
    /// A flush came after `clear`: hyper has written the frames of those
    /// requests, ahead of its answer to a PING that follows the GOAWAY.
    flushed: bool,
}

/// An upstream HTTP/2 stream whose reads are scanned for GOAWAY.
pub(crate) struct Watched<S> {
    inner: S,
    scan: FrameScan,
    gate: Arc<Gate>,
    held: Option<Withheld>,
}

impl<S> Watched<S> {
    /// Wraps `inner`, sharing `gate` with the pool.
    pub(crate) fn new(inner: S, gate: Arc<Gate>) -> Self {
        Watched {
            inner,
            scan: FrameScan::default(),
            gate,
            held: None,
        }
    }

    /// Serves held bytes once the gate is clear or the hold ran out.
    fn poll_held(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let Some(held) = &mut self.held else {
            unreachable!("only called while holding")
        };
        if let Some(until) = &mut held.until {
            self.gate.waker.register(cx.waker());
            let timed_out = until.as_mut().poll(cx).is_ready();
            held.clear |= self.gate.is_clear();
            if !(timed_out || held.clear && held.flushed) {
                return Poll::Pending;
            }
            if !held.clear {
                self.gate.forced.store(true, Ordering::SeqCst);
                tracing::debug!("upstream GOAWAY given to hyper with requests still pending");
            }
            held.until = None;
        }
        let n = (held.bytes.len() - held.at).min(buf.remaining());
        buf.put_slice(&held.bytes[held.at..held.at + n]);
        held.at += n;
        if held.at == held.bytes.len() {
            self.held = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            return this.poll_held(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !matches!(polled, Poll::Ready(Ok(()))) {
            return polled;
        }
        let first = this.scan.goaways == 0;
        let Seen::GoAway { end } = this.scan.feed(&buf.filled()[before..]) else {
            return polled;
        };
        this.gate.go_away();
        if !first {
            return polled;
        }
        tracing::debug!(
            last_stream_id = this.scan.last_stream_id(),
            "upstream sent GOAWAY: held from hyper until its pending requests are out"
        );
        // From the frame's start if it is in this read (a partial header
        // is harmless: hyper acts on whole frames only).
        let from = before + end.saturating_sub(HEADER);
        this.held = Some(Withheld {
            bytes: buf.filled()[from..].to_vec(),
            at: 0,
            until: Some(Box::pin(tokio::time::sleep(HOLD_AT_MOST))),
            clear: false,
            flushed: false,
        });
        buf.set_filled(from);
        if from > before {
            return polled;
        }
        this.poll_held(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Some(held) = &mut this.held
            && held.clear
            && !held.flushed
            && flushed.is_ready()
        {
            // The reader may release the GOAWAY now: have it polled again.
            held.flushed = true;
            cx.waker().wake_by_ref();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            0,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn goaway(last: u32) -> Vec<u8> {
        let mut p = last.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(b"bye");
        frame(GOAWAY, &p)
    }

    /// SETTINGS, a DATA frame whose payload looks like a GOAWAY header, an
    /// empty frame, then a GOAWAY and a frame after it.
    fn stream() -> (Vec<u8>, usize) {
        let mut s = frame(0x4, &[0, 3, 0, 0, 0, 100]);
        s.extend(frame(0x0, &goaway(9)));
        s.extend(frame(0x8, &[]));
        s.extend(frame(0x6, &[0; 8]));
        let goaway_header_end = s.len() + HEADER;
        s.extend(goaway(0x7fff_ffff));
        s.extend(frame(0x1, &[1, 2, 3]));
        (s, goaway_header_end)
    }

    #[test]
    fn finds_goaway_header_split_at_every_byte_boundary() {
        let (s, end) = stream();
        for cut in 0..=s.len() {
            for second in cut..=s.len() {
                let mut scan = FrameScan::default();
                let mut at = None;
                for (start, piece) in [
                    (0, &s[..cut]),
                    (cut, &s[cut..second]),
                    (second, &s[second..]),
                ] {
                    if let Seen::GoAway { end: e } = scan.feed(piece) {
                        assert!(at.is_none(), "one GOAWAY reported once");
                        at = Some(start + e);
                    }
                }
                // Reported where its header ends, in whichever piece.
                assert_eq!(at, Some(end), "cuts at {cut} and {second}");
                assert_eq!(scan.goaways, 1);
                assert_eq!(scan.last_stream_id(), Some(0x7fff_ffff));
                assert_eq!((scan.have, scan.payload), (0, 0), "ends on a boundary");
            }
        }
    }

    #[test]
    fn byte_at_a_time_and_two_goaways() {
        let mut s = goaway(0x8000_0005);
        s.extend(goaway(3));
        let mut scan = FrameScan::default();
        let hits = s
            .iter()
            .filter(|b| scan.feed(std::slice::from_ref(b)) != Seen::Nothing)
            .count();
        assert_eq!(hits, 2);
        assert_eq!(
            scan.last_stream_id(),
            Some(3),
            "the reserved bit is ignored"
        );
        let mut scan = FrameScan::default();
        scan.feed(&goaway(0x8000_0005));
        assert_eq!(scan.last_stream_id(), Some(5));
    }

    #[test]
    fn large_payloads_are_skipped_without_looking() {
        let big = vec![GOAWAY; 70_000];
        let mut s = frame(0x0, &big);
        s.extend(frame(0x0, &[]));
        let mut scan = FrameScan::default();
        for chunk in s.chunks(4096) {
            assert_eq!(scan.feed(chunk), Seen::Nothing);
        }
        assert_eq!((scan.goaways, scan.have, scan.payload), (0, 0, 0));
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A connection whose peer has sent `bytes` (keep the peer: while it
    /// lives, reads see no end of stream).
    async fn connection(bytes: &[u8], gate: &Arc<Gate>) -> (Watched<DuplexStream>, DuplexStream) {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        theirs.write_all(bytes).await.expect("fits");
        (Watched::new(ours, gate.clone()), theirs)
    }

    /// Reads what `watched` gives now, without waiting.
    fn read_now(watched: &mut Watched<DuplexStream>) -> Option<Vec<u8>> {
        let mut buf = vec![0; 4096];
        let n = futures_util::FutureExt::now_or_never(watched.read(&mut buf))?;
        Some(buf[..n.expect("reads from memory")].to_vec())
    }

    fn flush_now(watched: &mut Watched<DuplexStream>) {
        futures_util::FutureExt::now_or_never(watched.flush())
            .expect("nothing to flush")
            .expect("flushed");
    }

    #[tokio::test(start_paused = true)]
    async fn goaway_is_held_until_pending_requests_are_taken_up_and_written() {
        let settings = frame(0x4, &[]);
        let mut bytes = settings.clone();
        bytes.extend(goaway(0x7fff_ffff));
        bytes.extend(frame(0x6, &[7; 8]));
        let gate = Arc::new(Gate::default());
        let pending = gate.enter().expect("not going away yet");
        let (mut watched, _peer) = connection(&bytes, &gate).await;
        assert_eq!(read_now(&mut watched), Some(settings.clone()));
        assert!(gate.is_going_away(), "known before hyper reads the frame");
        assert!(gate.enter().is_none(), "no request enters once going away");
        assert_eq!(read_now(&mut watched), None, "held");
        flush_now(&mut watched);
        assert_eq!(read_now(&mut watched), None, "held: a request is pending");
        drop(pending.clone());
        assert_eq!(read_now(&mut watched), None, "held: its frames are not out");
        flush_now(&mut watched);
        let rest = bytes[settings.len()..].to_vec();
        assert_eq!(read_now(&mut watched), Some(rest));
        assert!(!gate.was_forced());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_ends_after_its_bound_and_says_so() {
        let bytes = goaway(1);
        let gate = Arc::new(Gate::default());
        let pending = gate.enter().expect("not going away yet");
        let (mut watched, _peer) = connection(&bytes, &gate).await;
        assert_eq!(read_now(&mut watched), None, "held from the first byte");
        tokio::time::advance(HOLD_AT_MOST).await;
        assert_eq!(read_now(&mut watched), Some(bytes.clone()));
        assert!(gate.was_forced(), "a GOAWAY error on it proves nothing now");
        pending.leave();
        assert!(gate.is_clear());
    }

    #[tokio::test(start_paused = true)]
    async fn without_pending_requests_one_flush_releases_it() {
        let mut bytes = goaway(1);
        bytes.extend(goaway(1));
        let gate = Arc::new(Gate::default());
        drop(gate.enter());
        let (mut watched, _peer) = connection(&bytes, &gate).await;
        assert_eq!(read_now(&mut watched), None, "held");
        flush_now(&mut watched);
        assert_eq!(
            read_now(&mut watched),
            Some(bytes.clone()),
            "the second is not held"
        );
        assert!(gate.is_going_away() && gate.is_clear() && !gate.was_forced());
    }
}
