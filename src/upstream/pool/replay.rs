//! Replay copies of small request bodies, so that a request the origin
//! refused (never sent, `REFUSED_STREAM`, or above a GOAWAY's last stream
//! id) can be sent again whatever its method: RFC 9113 §8.7 says such a
//! request was not processed.
//!
//! A body qualifies when its length is known, at most [`REPLAY_MAX_BYTES`]
//! (API calls: a few KiB of JSON or XML), the request does not ask for
//! `100-continue` (its body waits for the origin's word), and
//! `--max-buffered-bytes` has room for it: it is then read whole before the
//! request goes upstream, and the one buffer serves both the send and the
//! replay (clones of `Bytes` share it). Anything else streams through as
//! before and is not replayed. The copy's bytes are charged to the budget
//! until the request has its response head or has failed.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};

use crate::body::ProxyBody;
use crate::buffer_budget::{BufferBudget, Reservation};

/// The largest body kept for a replay.
pub(super) const REPLAY_MAX_BYTES: u64 = 64 * 1024;

/// A request body kept to be sent again, charged to the buffer budget.
pub(super) struct Replay {
    body: Bytes,
    _charged: Reservation,
}

impl Replay {
    /// The body again (no copy).
    pub(super) fn body(&self) -> ProxyBody {
        crate::body::full(self.body.clone())
    }
}

/// The buffer accounting of replay copies: room for `len` bytes, or `None`
/// when the body is not one to keep (unknown, empty or too long) or the
/// budget is full (then the request streams, and a full budget refuses
/// nothing: it only costs the replay).
fn charge(budget: &Arc<BufferBudget>, len: Option<u64>) -> Option<Reservation> {
    let len = len.filter(|n| (1..=REPLAY_MAX_BYTES).contains(n))?;
    budget.reserve_if_room(len)
}

/// Reads a small body of known length whole and gives the request back
/// with it, plus its replay copy; other requests come back untouched. A
/// body that fails as it is read fails the request as it would have
/// upstream.
pub(super) async fn keep_copy(
    req: Request<ProxyBody>,
    budget: &Arc<BufferBudget>,
) -> (Request<ProxyBody>, Option<Replay>) {
    if req.headers().contains_key(http::header::EXPECT) || req.body().is_end_stream() {
        return (req, None);
    }
    let Some(charged) = charge(budget, req.body().size_hint().exact()) else {
        return (req, None);
    };
    let (parts, body) = req.into_parts();
    let (body, replay) = match body.collect().await {
        Ok(collected) if collected.trailers().is_none() => {
            let body = collected.to_bytes();
            let replay = Replay {
                body: body.clone(),
                _charged: charged,
            };
            (crate::body::full(body), Some(replay))
        }
        Ok(collected) => {
            // Trailers are rare with a known length; not kept.
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let frames = [
                Ok(Frame::data(collected.to_bytes())),
                Ok(Frame::trailers(trailers)),
            ];
            (
                StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync(),
                None,
            )
        }
        Err(err) => {
            let failed = futures_util::stream::iter([Err::<Frame<Bytes>, _>(err)]);
            (StreamBody::new(failed).boxed_unsync(), None)
        }
    };
    (Request::from_parts(parts, body), replay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: ProxyBody, expect: bool) -> Request<ProxyBody> {
        let mut b = Request::post("http://o.test/");
        if expect {
            b = b.header("expect", "100-continue");
        }
        b.body(body).expect("valid")
    }

    fn streamed(chunks: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<_, crate::body::BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn small_known_bodies_are_kept_and_charged_until_dropped() {
        let budget = BufferBudget::new(1024);
        let (req, replay) = keep_copy(post(crate::body::full("hello"), false), &budget).await;
        let replay = replay.expect("kept");
        assert_eq!(budget.held(), 5);
        let sent = req.into_body().collect().await.expect("body").to_bytes();
        let again = replay.body().collect().await.expect("body").to_bytes();
        assert_eq!((&sent[..], &again[..]), (&b"hello"[..], &b"hello"[..]));
        drop(replay);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn others_stream_untouched() {
        let budget = BufferBudget::new(1024);
        let big = crate::body::full(vec![0u8; REPLAY_MAX_BYTES as usize + 1]);
        let cases = [
            post(streamed(&[b"unknown ", b"length"]), false),
            post(crate::body::full("waits for 100"), true),
            post(crate::body::empty(), false),
            post(big, false),
            post(crate::body::full(vec![1u8; 2000]), false),
        ];
        for req in cases {
            let (_, replay) = keep_copy(req, &budget).await;
            assert!(replay.is_none());
        }
        assert_eq!(budget.held(), 0, "a full budget refuses nothing here");
    }
}
