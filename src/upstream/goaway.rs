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
//! stream from then on.
//!
//! Invariants: the bytes are never copied or changed (a frame header is
//! gathered in a 9-byte array because it may span reads; payloads are only
//! counted); the cost is a few integer operations per read plus one per
//! frame header; the flag is only ever set, never cleared.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// HTTP/2 frame header length (RFC 9113 §4.1).
const HEADER: usize = 9;
/// GOAWAY's frame type (RFC 9113 §6.8).
const GOAWAY: u8 = 0x7;

/// What one run of bytes held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// No GOAWAY header completed in these bytes.
    Nothing,
    /// A GOAWAY header completed (its last stream id follows, maybe later).
    GoAway,
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
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::Nothing;
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
                seen = Seen::GoAway;
            }
        }
        seen
    }

    /// The last stream id of the most recent GOAWAY whose id has arrived.
    pub(crate) fn last_stream_id(&self) -> Option<u32> {
        self.last_stream_id
    }
}

/// An upstream HTTP/2 stream whose reads are scanned for GOAWAY.
pub(crate) struct Watched<S> {
    inner: S,
    scan: FrameScan,
    going_away: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; `going_away` is set at the first GOAWAY header read.
    pub(crate) fn new(inner: S, going_away: Arc<AtomicBool>) -> Self {
        Watched {
            inner,
            scan: FrameScan::default(),
            going_away,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let first = this.scan.goaways == 0;
            if this.scan.feed(&buf.filled()[before..]) == Seen::GoAway {
                this.going_away.store(true, Ordering::Release);
                if first {
                    tracing::debug!(
                        last_stream_id = this.scan.last_stream_id(),
                        "upstream sent GOAWAY: no new stream on this connection"
                    );
                }
            }
        }
        polled
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
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
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
                    if scan.feed(piece) == Seen::GoAway {
                        assert!(at.is_none(), "one GOAWAY reported once");
                        at = Some(start + piece.len());
                    }
                }
                // Reported in the piece that completed its header.
                let piece_end = [cut, second, s.len()]
                    .into_iter()
                    .find(|&e| e >= end)
                    .unwrap();
                assert_eq!(at, Some(piece_end), "cuts at {cut} and {second}");
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
            .filter(|b| scan.feed(std::slice::from_ref(b)) == Seen::GoAway)
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
}
