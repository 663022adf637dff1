//! Whether a failed request may be sent again: the one place that decides
//! (RFC 9110 §9.2.2, RFC 9113 §8.7). A request is sent again only when
//!
//! - it provably did not reach the origin: it never left (hyper handed it
//!   back), or an HTTP/2 origin refused its stream (`REFUSED_STREAM`, or a
//!   stream above its GOAWAY's last stream id); a failed connect is failed
//!   over before any request is sent (`race.rs`), so it never gets here; or
//! - the connection broke under it before any response byte, the
//!   connection had served before (a fresh one that breaks is the origin's
//!   own failure), its method is idempotent, and its body can be sent again
//!   (none, or a replay copy).
//!
//! Everything else is not sent again: the client gets `502` with the
//! [`Rule`] that applied in its reason (and so in the access log's `error`).

use http::Method;

/// Which rule decided. The first four allow a retry, the rest refuse one.
/// A refused stream whose body was streamed (not kept) is refused too: it
/// was not processed, but cannot be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The request never left: hyper handed it back unsent.
    Unsent,
    /// The HTTP/2 origin reset the stream with `REFUSED_STREAM`.
    RefusedStream,
    /// The stream was above the last stream id of the origin's GOAWAY.
    AboveGoAway,
    /// An idempotent request with a replayable body; its reused connection
    /// broke before any response byte.
    IdempotentReplay,
    /// The connection broke; the method is not idempotent, so the origin
    /// may have processed the request.
    NotIdempotent,
    /// The connection broke; the method is idempotent but the body was
    /// streamed and not kept, so it cannot be sent again.
    BodyNotReplayable,
    /// A connection opened for this request (or for its retry) broke: the
    /// origin failed it, sending it again would not help.
    FreshConnection,
    /// An HTTP/2 GOAWAY arrived as the request was handed over and hyper
    /// cannot say whether the stream left.
    MaybeProcessed,
    /// The request was already sent again [`super::MAX_RETRIES`] times.
    OutOfRetries,
}

impl Rule {
    /// The rule's short name, as the reason and docs/pool.md spell it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Unsent => "unsent",
            Rule::RefusedStream => "refused-stream",
            Rule::AboveGoAway => "above-goaway",
            Rule::IdempotentReplay => "idempotent-replay",
            Rule::NotIdempotent => "not-idempotent",
            Rule::BodyNotReplayable => "body-not-replayable",
            Rule::FreshConnection => "fresh-connection",
            Rule::MaybeProcessed => "maybe-processed",
            Rule::OutOfRetries => "out-of-retries",
        }
    }

    /// Whether the rule lets the request be sent again.
    pub fn allows_retry(self) -> bool {
        matches!(
            self,
            Rule::Unsent | Rule::RefusedStream | Rule::AboveGoAway | Rule::IdempotentReplay
        )
    }
}

/// What is known about a failed attempt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure<'a> {
    /// hyper handed the request back: it never left.
    pub unsent: bool,
    /// The HTTP/2 origin refused the stream, and how.
    pub refused: Option<super::request_form::Refusal>,
    /// A GOAWAY error that does not prove a refusal (see `Gate`).
    pub goaway_unproven: bool,
    /// The connection broke (closed, reset, EOF) before any response byte.
    pub broke: bool,
    /// The attempt went over a connection that had served before, and was
    /// not itself a retry on a connection opened for it.
    pub reused: bool,
    /// The request's method.
    pub method: &'a Method,
    /// Its body can be sent again (none, or a replay copy is kept).
    pub replayable: bool,
    /// Retries left for this request.
    pub retries_left: bool,
}

/// The decision for one failed attempt; `None` when the failure is not a
/// broken or refused exchange at all (the origin answered badly), which is
/// never retried and needs no rule.
pub(super) fn decide(f: &Failure<'_>) -> Option<Rule> {
    use super::request_form::Refusal;
    let allowed = if f.unsent {
        Rule::Unsent
    } else if f.refused.is_some() && !f.replayable {
        // Not processed, but its streamed body is gone.
        return Some(Rule::BodyNotReplayable);
    } else if f.refused == Some(Refusal::RefusedStream) {
        Rule::RefusedStream
    } else if f.refused == Some(Refusal::GoAway) {
        Rule::AboveGoAway
    } else if f.goaway_unproven {
        return Some(Rule::MaybeProcessed);
    } else if !f.broke {
        return None;
    } else if !f.reused {
        return Some(Rule::FreshConnection);
    } else if !is_idempotent(f.method) {
        return Some(Rule::NotIdempotent);
    } else if !f.replayable {
        return Some(Rule::BodyNotReplayable);
    } else {
        Rule::IdempotentReplay
    };
    Some(if f.retries_left {
        allowed
    } else {
        Rule::OutOfRetries
    })
}

/// RFC 9110 §9.2.2: the methods whose intended effect of several identical
/// requests is that of one.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::super::request_form::Refusal;
    use super::*;

    fn broke(method: &Method) -> Failure<'_> {
        Failure {
            unsent: false,
            refused: None,
            goaway_unproven: false,
            broke: true,
            reused: true,
            method,
            replayable: true,
            retries_left: true,
        }
    }

    #[test]
    fn a_post_whose_reused_connection_broke_is_not_sent_again() {
        assert_eq!(decide(&broke(&Method::POST)), Some(Rule::NotIdempotent));
        assert_eq!(decide(&broke(&Method::PATCH)), Some(Rule::NotIdempotent));
    }

    #[test]
    fn an_idempotent_request_is_sent_again_only_with_a_replayable_body() {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert_eq!(decide(&broke(&m)), Some(Rule::IdempotentReplay), "{m}");
        }
        let streamed = Failure {
            replayable: false,
            ..broke(&Method::PUT)
        };
        assert_eq!(decide(&streamed), Some(Rule::BodyNotReplayable));
    }

    #[test]
    fn a_fresh_connection_that_broke_is_not_retried() {
        let fresh = Failure {
            reused: false,
            ..broke(&Method::GET)
        };
        assert_eq!(decide(&fresh), Some(Rule::FreshConnection));
    }

    #[test]
    fn requests_that_did_not_reach_the_origin_are_retried_whatever_the_method() {
        let m = Method::POST;
        let unsent = Failure {
            unsent: true,
            broke: false,
            reused: false,
            replayable: false,
            ..broke(&m)
        };
        assert_eq!(decide(&unsent), Some(Rule::Unsent));
        for (refusal, rule) in [
            (Refusal::RefusedStream, Rule::RefusedStream),
            (Refusal::GoAway, Rule::AboveGoAway),
        ] {
            let refused = Failure {
                refused: Some(refusal),
                broke: false,
                ..broke(&m)
            };
            assert_eq!(decide(&refused), Some(rule));
            assert!(rule.allows_retry());
            let streamed = Failure {
                replayable: false,
                ..refused
            };
            assert_eq!(decide(&streamed), Some(Rule::BodyNotReplayable));
        }
    }

    #[test]
    fn retries_are_bounded_and_unproven_goaways_and_bad_answers_are_not_retried() {
        let spent = Failure {
            retries_left: false,
            ..broke(&Method::GET)
        };
        assert_eq!(decide(&spent), Some(Rule::OutOfRetries));
        assert!(!Rule::OutOfRetries.allows_retry());
        let unproven = Failure {
            goaway_unproven: true,
            broke: false,
            ..broke(&Method::GET)
        };
        assert_eq!(decide(&unproven), Some(Rule::MaybeProcessed));
        let answered = Failure {
            broke: false,
            ..broke(&Method::GET)
        };
        assert_eq!(decide(&answered), None);
    }
}
