//! `Exchange` writes exactly one record, whichever way the request ends;
//! the request body wrappers count and gate.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::*;
use crate::accesslog::AccessLog;
use crate::body;
use crate::config::{AccessLogConfig, ClientKey, LogDestination, MetricsConfig};
use crate::metrics::{Metrics, PoolSnapshot, PoolSource};

struct NoPools;

impl PoolSource for NoPools {
    fn snapshot(&self) -> Vec<PoolSnapshot> {
        Vec::new()
    }
}

/// A disabled access log and fresh metrics: the metrics count what the
/// exchanges record.
pub(crate) fn kit() -> (AccessLog, Arc<Metrics>) {
    let config = AccessLogConfig {
        destination: LogDestination::None,
        format: "aws".to_owned(),
        rotate_count: 1,
        rotate_interval: Duration::from_secs(60),
        ..crate::config::Config::default().access_log
    };
    let (log, _writer) = AccessLog::start(&config).expect("a disabled log starts");
    let metrics = MetricsConfig {
        client_key: ClientKey::Auto,
        max_client_keys: 10,
        client_series_ttl: std::time::Duration::from_secs(600),
    };
    (log, Arc::new(Metrics::new(&metrics, Arc::new(NoPools))))
}

/// Requests recorded so far, by status (statuses seen at least once).
pub(crate) fn recorded(metrics: &Metrics) -> BTreeMap<u16, u64> {
    let mut counts = metrics.http_stats().request.status_count;
    counts.retain(|_, n| *n > 0);
    counts
}

pub(crate) fn info() -> ConnInfo {
    ConnInfo {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        local_port: 3000,
        via: None,
        hold: None,
    }
}

pub(crate) fn exchange(log: &AccessLog, metrics: &Arc<Metrics>) -> Exchange {
    let req = Request::get("/x")
        .header("host", "s3.amazonaws.com.ccnproxy-https")
        .body(())
        .expect("request");
    Exchange::start(log, metrics, info(), &req)
}

#[test]
fn start_takes_host_and_gives_an_id() {
    let (log, metrics) = kit();
    let ex = exchange(&log, &metrics);
    assert_eq!(ex.record.host, "s3.amazonaws.com.ccnproxy-https");
    assert!(!ex.record.request_id.is_empty());
    assert_eq!(ex.record.request_id.as_bytes(), ex.request_id.as_bytes());
    // h2c: no Host header, the authority stands in.
    let req = Request::get("http://example.test:8080/y")
        .body(())
        .expect("request");
    let ex = Exchange::start(&log, &metrics, info(), &req);
    assert_eq!(ex.record.host, "example.test:8080");
}

#[tokio::test]
async fn dropped_before_a_response_is_499_once() {
    let (log, metrics) = kit();
    drop(exchange(&log, &metrics));
    assert_eq!(recorded(&metrics), BTreeMap::from([(499, 1)]));
}

#[tokio::test]
async fn a_response_read_to_the_end_is_logged_once_with_its_status() {
    let (log, metrics) = kit();
    let mut resp = Response::new(body::full("hello"));
    *resp.status_mut() = StatusCode::CREATED;
    let resp = exchange(&log, &metrics).respond(resp);
    assert_eq!(
        recorded(&metrics),
        BTreeMap::new(),
        "not before the body ends"
    );
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "hello");
    assert_eq!(recorded(&metrics), BTreeMap::from([(201, 1)]));
}

#[tokio::test]
async fn a_response_dropped_midway_is_499() {
    let (log, metrics) = kit();
    let resp = exchange(&log, &metrics).respond(Response::new(body::full("hello")));
    drop(resp);
    assert_eq!(recorded(&metrics), BTreeMap::from([(499, 1)]));
}

#[tokio::test]
async fn errors_after_a_failed_upload_are_the_clients() {
    let (log, metrics) = kit();
    let ex = exchange(&log, &metrics);
    ex.client_body.set_failed();
    let resp = ex.respond_error(ProxyError::HeadersTooLarge);
    assert_eq!(resp.status().as_u16(), 499);
    assert!(resp.headers().contains_key(&CHOCON_ID));
    drop(resp.into_body().collect().await.expect("body"));
    assert_eq!(recorded(&metrics), BTreeMap::from([(499, 1)]));
}

#[test]
fn rejected_heads_are_logged() {
    let (log, metrics) = kit();
    log_rejected(&log, &metrics, info(), 431, "too large".to_owned());
    assert_eq!(recorded(&metrics), BTreeMap::from([(431, 1)]));
}

#[tokio::test]
async fn the_request_body_is_counted() {
    let (log, metrics) = kit();
    let ex = exchange(&log, &metrics);
    let counted = ex.count_body(Full::new(Bytes::from_static(b"12345")));
    let read = counted.collect().await.expect("body").to_bytes();
    assert_eq!(read.len(), 5);
    assert_eq!(ex.received.load(Ordering::Relaxed), 5);
}

/// A client body that sends "a", waits `pause`, sends "b", then stalls.
fn trickle(pause: Duration) -> body::ProxyBody {
    let frames = futures_util::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok(http_body::Frame::data(Bytes::from_static(b"a"))), 1)),
            1 => {
                tokio::time::sleep(pause).await;
                Some((Ok(http_body::Frame::data(Bytes::from_static(b"b"))), 2))
            }
            _ => std::future::pending().await,
        }
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

#[tokio::test(start_paused = true)]
async fn a_body_silent_past_the_limit_fails_and_its_exchange_answers_408() {
    let (log, metrics) = kit();
    let mut ex = exchange(&log, &metrics);
    ex.set_body_timeout(Duration::from_secs(10));
    // A pause shorter than the limit is fine; the clock restarts per read.
    let mut counted = ex.count_body(trickle(Duration::from_secs(9)));
    let started = tokio::time::Instant::now();
    let mut read = Vec::new();
    let err = loop {
        match counted.frame().await {
            Some(Ok(frame)) => read.extend_from_slice(&frame.into_data().expect("data")),
            Some(Err(err)) => break err,
            None => panic!("the stalled body ended"),
        }
    };
    assert_eq!(read, b"ab");
    assert_eq!(started.elapsed(), Duration::from_secs(19));
    assert!(err.to_string().contains("--body-timeout"), "{err}");
    let resp = ex.respond_error(ProxyError::ShuttingDown);
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    let text = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("--body-timeout"),
        "{text:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_continue_gate_opens_on_the_signal_or_after_its_wait() {
    let (gate, opener) =
        ContinueGate::new(Full::new(Bytes::from_static(b"x")).map_err(|n| match n {}));
    let mut req = Request::new(());
    opener.attach(&mut req);
    let signal = req
        .extensions()
        .get::<crate::body::ContinueSignal>()
        .expect("the pool's signal is attached")
        .clone();
    signal.0.notify_one();
    let read = gate.collect().await.expect("body").to_bytes();
    assert_eq!(read, "x");

    // No signal: the body flows after the wait (paused time runs ahead).
    let (gate, _opener) =
        ContinueGate::new(Full::new(Bytes::from_static(b"y")).map_err(|n| match n {}));
    let started = Instant::now();
    let read = gate.collect().await.expect("body").to_bytes();
    assert_eq!(read, "y");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn short_and_long_messages_copy_the_same_headers() {
    use http::header::{HeaderName, REFERER, USER_AGENT};
    let wanted = [USER_AGENT, HeaderName::from_static("x-amz-request-id")];
    let more = [HeaderName::from_static("x-tenant"), USER_AGENT];
    let by_name = |map: &HeaderMap| {
        let mut all = BTreeMap::new();
        for (name, value) in map {
            all.entry(name.as_str().to_owned())
                .or_insert_with(Vec::new)
                .push(value.clone());
        }
        all
    };
    for filler in [0, 3, SCAN_HEADERS, SCAN_HEADERS + 1, 40] {
        let mut from = HeaderMap::new();
        from.append(USER_AGENT, HeaderValue::from_static("first"));
        for i in 0..filler {
            from.append(
                HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).expect("name"),
                HeaderValue::from_static("f"),
            );
        }
        from.append("x-tenant", HeaderValue::from_static("t1"));
        from.append(USER_AGENT, HeaderValue::from_static("second"));
        from.append(REFERER, HeaderValue::from_static("not wanted"));
        from.append("x-amz-request-id", HeaderValue::from_static("id"));
        let mut copied = HeaderMap::new();
        copy_headers(&from, &wanted, &more, &mut copied);
        let want = BTreeMap::from([
            (
                "user-agent".to_owned(),
                vec![
                    HeaderValue::from_static("first"),
                    HeaderValue::from_static("second"),
                ],
            ),
            (
                "x-amz-request-id".to_owned(),
                vec![HeaderValue::from_static("id")],
            ),
            ("x-tenant".to_owned(), vec![HeaderValue::from_static("t1")]),
        ]);
        assert_eq!(by_name(&copied), want, "{} names", from.keys_len());
    }
}
