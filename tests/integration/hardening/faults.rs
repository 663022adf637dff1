//! Faults on either side of the proxy: an origin that resets in the middle
//! of a response, one that stalls, a client that leaves in the middle of an
//! upload or a download, an origin restarted under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::time::Instant;

use super::raw_origin::{RawOrigin, Then};
use super::{admin_addr, metric_sum, next_rec, poll, rec_where, scrape};
use crate::support::client::{self, Client, H2cClient};
use crate::support::origin::{OriginBody, args_for};
use crate::support::{BoxError, Origin, Proxy, TIMEOUT, pattern};

/// 64 KiB of the pattern, then a body error (the origin's server aborts: an
/// HTTP/1.1 connection closes, an HTTP/2 stream is reset). The body yields
/// once in between, so the origin's server flushes the head and the data
/// before it breaks off: the proxy is in the middle of relaying a response.
fn body_that_breaks() -> OriginBody {
    let frames = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Frame::data(Bytes::from(pattern(64 * 1024)))), 1)),
            1 => {
                tokio::task::yield_now().await;
                Some((Err(BoxError::from("origin broke off")), 2))
            }
            _ => None,
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// An origin whose responses announce 1 MiB (or nothing: chunked) and break
/// off after 64 KiB.
async fn breaking_origin(builder: crate::support::origin::OriginBuilder, sized: bool) -> Origin {
    builder
        .handler(move |_req| async move {
            let mut resp = http::Response::new(body_that_breaks());
            if sized {
                resp.headers_mut()
                    .insert("content-length", http::HeaderValue::from(1u32 << 20));
            }
            resp
        })
        .start()
        .await
}

/// What a client made of one response whose origin broke off: `Ok` for a
/// 502, or a 200 whose body ends in an error after an intact prefix of the
/// pattern; `Err` (the test fails) for no response head at all, a
/// complete-looking 200, another status, or a body error that is not the
/// connection or stream breaking off.
async fn outcome(
    head: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<String, String> {
    let resp = match head {
        Ok(resp) => resp,
        // An h2 client may see its stream reset before the head: the proxy
        // had not sent it yet when the origin broke off. That is a clear
        // failure too; an HTTP/1.1 connection closed without a head is not.
        Err(err) if is_stream_reset(&err) => return Ok(format!("reset before the head: {err}")),
        Err(err) => return Err(format!("no response head: {err:?}")),
    };
    match resp.status().as_u16() {
        502 => return Ok("502".into()),
        200 => {}
        other => return Err(format!("status {other}")),
    }
    let mut body = resp.into_body();
    let mut got = Vec::new();
    loop {
        match crate::support::within("the rest of the body", body.frame()).await {
            None => {
                return Err(format!(
                    "a complete-looking 200 with {} body bytes",
                    got.len()
                ));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                }
            }
            Some(Err(err)) => {
                if got != pattern(got.len()) {
                    return Err(format!("{} body bytes that are not the pattern", got.len()));
                }
                return if broke_off(&err) {
                    Ok(format!("200, then {err} after {} bytes", got.len()))
                } else {
                    Err(format!("200, then an unexpected body error: {err:?}"))
                };
            }
        }
    }
}

/// Whether `err` is the client side of a connection or stream that ended
/// early: HTTP/1.1 closed or reset before the end of the message, or the
/// proxy resetting the HTTP/2 stream (h2 has no other way to say it; the
/// h2 crate is not a direct dependency, so its error is known by its text).
fn broke_off(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() {
        return true;
    }
    if is_stream_reset(err) {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether `err` is the proxy resetting an HTTP/2 stream (`RST_STREAM`).
fn is_stream_reset(err: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.to_string().starts_with("stream error received") {
            return true;
        }
        source = e.source();
    }
    false
}

#[tokio::test]
async fn origin_reset_mid_response_never_looks_complete() {
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for (kind, host) in [
        ("HTTP/1.1 origin, Content-Length", "example.test.ccnproxy"),
        ("HTTP/1.1 origin, chunked", "example.test.ccnproxy"),
        ("HTTP/2 origin, stream reset", "example.test.ccnproxy-https"),
        (
            "raw origin, TCP reset after 1000 of 1000000 bytes",
            "raw.test.ccnproxy",
        ),
        ("raw origin, TCP reset inside a chunk", "raw.test.ccnproxy"),
    ] {
        let (_origin, _raw, proxy) = match kind {
            k if k.starts_with("HTTP/1.1") => {
                let o = breaking_origin(Origin::plain_http1(), k.ends_with("Length")).await;
                let p = Proxy::start(o.proxy_args()).await;
                (Some(o), None, p)
            }
            k if k.starts_with("HTTP/2") => {
                let o = breaking_origin(Origin::tls_h2(), true).await;
                let p = Proxy::start(o.proxy_args()).await;
                (Some(o), None, p)
            }
            k => {
                let chunked = k.ends_with("chunk");
                let raw = RawOrigin::start(move |_| {
                    let mut bytes = if chunked {
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n".to_vec()
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec()
                    };
                    bytes.extend(pattern(1000));
                    (bytes, Then::Reset)
                })
                .await;
                let mut args = args_for(&[]);
                args.extend(["--resolve".to_owned(), raw.resolve_arg("raw.test")]);
                let p = Proxy::start(args).await;
                (None, Some(raw), p)
            }
        };

        let mut h1 = Client::connect(proxy.addr()).await;
        let req = client::request("GET", host, "/h1", &[], client::empty());
        match outcome(h1.send_streaming(req).await).await {
            Ok(how) => seen.push(format!("{kind}, HTTP/1.1 client: {how}")),
            Err(why) => wrong.push(format!("{kind}, HTTP/1.1 client: {why}")),
        }
        let rec = next_rec(&proxy).await;
        if rec.error().is_empty() {
            wrong.push(format!(
                "{kind}, HTTP/1.1 client: logged without an error: {}",
                rec.line
            ));
        }

        let mut h2c = H2cClient::connect(proxy.addr()).await;
        let req = http::Request::get(format!("http://{host}/h2c"))
            .body(client::empty())
            .expect("request");
        match outcome(h2c.send_streaming(req).await).await {
            Ok(how) => seen.push(format!("{kind}, h2c client: {how}")),
            Err(why) => wrong.push(format!("{kind}, h2c client: {why}")),
        }
        let rec = next_rec(&proxy).await;
        if rec.error().is_empty() {
            wrong.push(format!(
                "{kind}, h2c client: logged without an error: {}",
                rec.line
            ));
        }
    }
    println!("{}", seen.join("\n"));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn origin_that_stalls_gets_504_and_its_connection_is_closed() {
    let origin = Origin::plain_http1().never_answer().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--proxy-read-timeout", "1s"])).await;
    let started = Instant::now();
    let resp = proxy.get("example.test.ccnproxy", "/stall").await;
    assert_eq!(resp.status(), 504, "{}", resp.text());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "504 before the timeout"
    );
    let rec = next_rec(&proxy).await;
    assert_eq!(rec.status, 504, "{}", rec.line);
    assert!(
        !rec.error().is_empty(),
        "the 504 is logged with its reason: {}",
        rec.line
    );
    // docs/pool.md "Timeout": the connection is closed, never reused.
    origin.wait_all_closed().await;
    assert_eq!(
        proxy.get("example.test.ccnproxy", "/stall").await.status(),
        504
    );
    assert_eq!(origin.accepted(), 2, "a timed-out connection was reused");
}

/// A proxy with `--metrics-listen` and the admin address.
async fn proxy_with_metrics(origin: &Origin) -> (Proxy, std::net::SocketAddr) {
    let proxy = Proxy::start(origin.proxy_args_with(&["--metrics-listen", "127.0.0.1:0"])).await;
    let admin = admin_addr(&proxy).await;
    (proxy, admin)
}

/// Waits until the pools' busy-connection gauge sums to `want`.
async fn wait_busy(admin: std::net::SocketAddr, want: f64) {
    poll(
        &format!("ccnproxy_pool_busy_connections == {want}"),
        TIMEOUT,
        || async move {
            let text = scrape(admin).await;
            match metric_sum(&text, "ccnproxy_pool_busy_connections") {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn client_gone_mid_upload_is_499_and_cancels_upstream() {
    let origin = Origin::plain_http1().reply(200, "stored").start().await;
    let (proxy, admin) = proxy_with_metrics(&origin).await;
    let mut conn = proxy.raw().await;
    conn.write(
        b"PUT /upload HTTP/1.1\r\nHost: example.test.ccnproxy\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await
    .unwrap();
    conn.write(&pattern(256 * 1024)).await.unwrap();
    origin.wait_requests(1).await;
    wait_busy(admin, 1.0).await;
    drop(conn);

    let rec = rec_where(&proxy, "the upload's record", |r| {
        r.line.contains("/upload")
    })
    .await;
    let mut wrong = Vec::new();
    if rec.status != 499 {
        wrong.push(format!(
            "logged as {} instead of 499: {}",
            rec.status, rec.line
        ));
    }
    origin.wait_all_closed().await;
    wait_busy(admin, 0.0).await;
    assert_eq!(origin.requests(), 1);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn client_gone_mid_download_is_499_and_cancels_upstream() {
    // An endless download (1 GiB, 16 KiB per millisecond at most).
    let origin = Origin::plain_http1()
        .stream(1 << 30, 16 * 1024, Duration::from_millis(1))
        .start()
        .await;
    let (proxy, admin) = proxy_with_metrics(&origin).await;
    let mut conn = proxy.raw().await;
    conn.write(b"GET /download HTTP/1.1\r\nHost: example.test.ccnproxy\r\n\r\n")
        .await
        .unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    assert!(conn.read_some().await > 0, "some of the body arrives");
    wait_busy(admin, 1.0).await;
    drop(conn);

    let rec = rec_where(&proxy, "the download's record", |r| {
        r.line.contains("/download")
    })
    .await;
    assert_eq!(rec.status, 499, "{}", rec.line);
    // The pool cannot reuse a connection in the middle of a body: it closes it.
    origin.wait_all_closed().await;
    wait_busy(admin, 0.0).await;
}

#[tokio::test]
async fn client_gone_mid_download_resets_the_h2_stream() {
    let origin = Origin::tls_h2()
        .stream(1 << 30, 16 * 1024, Duration::from_millis(1))
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut conn = proxy.raw().await;
    conn.write(b"GET /download HTTP/1.1\r\nHost: example.test.ccnproxy-https\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(conn.read_head().await.status, 200);
    assert!(conn.read_some().await > 0, "some of the body arrives");
    assert_eq!(origin.inflight_now(), 1);
    drop(conn);
    let rec = rec_where(&proxy, "the download's record", |r| {
        r.line.contains("/download")
    })
    .await;
    assert_eq!(rec.status, 499, "{}", rec.line);
    // The stream is reset; the origin drops the response it was sending.
    origin
        .wait_for("the origin's stream to end", |o| o.inflight_now() == 0)
        .await;
}

/// One request's fate in the restart test.
struct Done {
    started: Instant,
    result: Result<u16, String>,
}

async fn restart_under_load(origin: Origin, host: &'static str) {
    let proxy = Arc::new(Proxy::start(origin.proxy_args_with(&["-c", "16"])).await);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let proxy = proxy.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut c = Client::connect(proxy.addr()).await;
            // Bounded: the test stops the loop long before.
            for n in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let started = Instant::now();
                let req =
                    client::request("GET", host, &format!("/load/{i}/{n}"), &[], client::empty());
                let result = match c.send(req).await {
                    Ok(r) if r.status() == 200 && r.body.as_ref() == b"ok" => Ok(200),
                    Ok(r) => Err(format!("{} {:?}", r.status(), r.text())),
                    Err(e) => Err(format!("{e:?}")),
                };
                if result.is_err() || c.is_closed() {
                    c = Client::connect(proxy.addr()).await;
                }
                done.push(Done { started, result });
            }
            done
        }));
    }
    origin.wait_requests(200).await;
    let before = Instant::now();
    origin.restart().await;
    let restarted = Instant::now();
    let at_restart = origin.requests();
    origin.wait_requests(at_restart + 400).await;
    stop.store(true, Ordering::SeqCst);
    let mut after_ok = 0;
    let mut during = Vec::new();
    let mut wrong = Vec::new();
    for t in tasks {
        for d in t.await.expect("client task") {
            if d.started >= restarted {
                match d.result {
                    Ok(_) => after_ok += 1,
                    Err(e) => wrong.push(e),
                }
            } else if let Err(e) = d.result {
                during.push(e);
            }
        }
    }
    println!(
        "{host}: restart took {:?}; {} request(s) in flight then failed; {after_ok} later ones succeeded",
        restarted - before,
        during.len()
    );
    assert!(after_ok >= 100, "the load went on after the restart");
    assert!(
        wrong.is_empty(),
        "{} request(s) started after the origin was back failed: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[tokio::test]
async fn origin_restart_under_load_fails_only_requests_in_flight_h1() {
    let origin = Origin::plain_http1()
        .reply(200, "ok")
        .delay(Duration::from_millis(10))
        .start()
        .await;
    restart_under_load(origin, "example.test.ccnproxy").await;
}

#[tokio::test]
async fn origin_restart_under_load_fails_only_requests_in_flight_h2() {
    let origin = Origin::tls_h2()
        .reply(200, "ok")
        .delay(Duration::from_millis(10))
        .start()
        .await;
    restart_under_load(origin, "example.test.ccnproxy-https").await;
}
