//! Re-signing a signed `aws-chunked` body as it streams
//! (`x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`,
//! sent by SDKs such as Java's for uploads over plain HTTP).
//!
//! Each chunk carries a signature chained from the request's signature
//! (<https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>):
//! once the head is re-signed every chunk signature must be recomputed. A
//! signature is always 64 hex digits, so the rewrite keeps every byte count
//! (`Content-Length`, `x-amz-decoded-content-length`) as the client sent it.
//!
//! A chunk's signature covers its data and precedes it, so one chunk at a time
//! is held (at most `max_chunk` bytes; a larger declared chunk fails the body).
//! Anything that is not well-formed `aws-chunked` fails the body: the upstream
//! request is aborted rather than sent with bytes we did not understand.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

use crate::body::{BoxError, ProxyBody};
use crate::buffer_budget::{BufferBudget, Reservation};

/// Longest chunk-header or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Hex SHA-256 of the empty string.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Computes the chained chunk and trailer signatures of one request.
#[derive(Clone)]
pub struct ChunkSigner {
    signing_key: Vec<u8>,
    date_time: String,
    scope: String,
    previous: String,
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key is a credential: never printed.
        f.debug_struct("ChunkSigner")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// Starts a chain from the request's `seed` signature.
    pub fn new(secret: &str, time: SystemTime, region: &str, service: &str, seed: String) -> Self {
        let signing_key = aws_sigv4::sign::v4::generate_signing_key(secret, time, region, service)
            .as_ref()
            .to_vec();
        let utc = chrono::DateTime::<chrono::Utc>::from(time);
        let date_time = utc.format("%Y%m%dT%H%M%SZ").to_string();
        let scope = format!("{}/{region}/{service}/aws4_request", utc.format("%Y%m%d"));
        ChunkSigner {
            signing_key,
            date_time,
            scope,
            previous: seed,
        }
    }

    /// The signature of the next chunk, holding `data`.
    pub fn chunk(&mut self, data: &[u8]) -> &str {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.date_time,
            self.scope,
            self.previous,
            sha256_hex(data)
        );
        self.previous =
            aws_sigv4::sign::v4::calculate_signature(&self.signing_key, string_to_sign.as_bytes());
        &self.previous
    }

    /// The signature of the trailing headers, given in canonical form
    /// (`name:value\n` each, lowercase names, trimmed values).
    pub fn trailer(&mut self, canonical: &[u8]) -> &str {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.date_time,
            self.scope,
            self.previous,
            sha256_hex(canonical)
        );
        self.previous =
            aws_sigv4::sign::v4::calculate_signature(&self.signing_key, string_to_sign.as_bytes());
        &self.previous
    }
}

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting `hex-size;chunk-signature=sig\r\n`.
    Header,
    /// Expecting `size` bytes of data and `\r\n`; `header` is the size text.
    Data { size: usize },
    /// After the final chunk: trailer lines, then an empty line.
    Trailers,
    /// The body is complete; nothing may follow.
    Done,
    /// A previous poll failed.
    Failed,
}

/// A body whose chunk signatures are recomputed by a `ChunkSigner`.
pub struct Resigned {
    inner: ProxyBody,
    signer: ChunkSigner,
    /// The client announced trailers (`…-PAYLOAD-TRAILER`).
    has_trailer: bool,
    max_chunk: usize,
    buf: BytesMut,
    state: State,
    /// The size text of the chunk being read, as the client wrote it.
    size_text: String,
    /// Canonical form of the trailer headers seen so far.
    trailers: Vec<u8>,
    inner_done: bool,
    /// What `buf` holds, counted against `--max-buffered-bytes`.
    held: Option<Reservation>,
}

impl Resigned {
    /// Wraps `inner`, an `aws-chunked` body with signed chunks.
    pub fn new(inner: ProxyBody, signer: ChunkSigner, has_trailer: bool, max_chunk: usize) -> Self {
        Resigned {
            inner,
            signer,
            has_trailer,
            max_chunk,
            buf: BytesMut::new(),
            state: State::Header,
            size_text: String::new(),
            trailers: Vec::new(),
            inner_done: false,
            held: None,
        }
    }

    /// Counts the bytes held between reads against `budget`.
    pub fn with_budget(mut self, budget: &Arc<BufferBudget>) -> Self {
        self.held = budget.reserve(0);
        self
    }

    /// Makes the reservation match what `buf` holds; an error when the
    /// budget has no room for it.
    fn account(&mut self) -> Result<(), BoxError> {
        let Some(held) = self.held.as_mut() else {
            return Ok(());
        };
        if held.resize(self.buf.len() as u64) {
            return Ok(());
        }
        Err(format!(
            "aws-chunked: request bodies held for re-signing already take --max-buffered-bytes ({} bytes)",
            held.budget_limit()
        )
        .into())
    }

    /// Rewrites what `buf` holds completely; `Ok(None)` when more input is
    /// needed.
    fn process(&mut self) -> Result<Option<Bytes>, BoxError> {
        let mut out = BytesMut::new();
        loop {
            match self.state {
                State::Header => {
                    let Some(line) = take_line(&mut self.buf)? else {
                        break;
                    };
                    let (size_text, signature) = line
                        .split_once(";chunk-signature=")
                        .ok_or("aws-chunked: chunk header without chunk-signature")?;
                    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err("aws-chunked: malformed chunk-signature".into());
                    }
                    if size_text.is_empty() || size_text.len() > 16 {
                        return Err("aws-chunked: malformed chunk size".into());
                    }
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| "aws-chunked: malformed chunk size")?;
                    if size > self.max_chunk {
                        return Err(format!(
                            "aws-chunked: chunk of {size} bytes exceeds --sign-max-body"
                        )
                        .into());
                    }
                    self.size_text = size_text.to_owned();
                    if size == 0 {
                        let signature = self.signer.chunk(&[]);
                        out.extend_from_slice(
                            format!("{};chunk-signature={signature}\r\n", self.size_text)
                                .as_bytes(),
                        );
                        self.state = State::Trailers;
                    } else {
                        self.state = State::Data { size };
                    }
                }
                State::Data { size } => {
                    if self.buf.len() < size + 2 {
                        self.buf.reserve(size + 2 - self.buf.len());
                        break;
                    }
                    if &self.buf[size..size + 2] != b"\r\n" {
                        return Err("aws-chunked: chunk data not followed by CRLF".into());
                    }
                    let data = self.buf.split_to(size + 2);
                    let signature = self.signer.chunk(&data[..size]);
                    out.extend_from_slice(
                        format!("{};chunk-signature={signature}\r\n", self.size_text).as_bytes(),
                    );
                    out.extend_from_slice(&data);
                    self.state = State::Header;
                }
                State::Trailers => {
                    let Some(line) = take_line(&mut self.buf)? else {
                        break;
                    };
                    if line.is_empty() {
                        out.extend_from_slice(b"\r\n");
                        self.state = State::Done;
                        continue;
                    }
                    if !self.has_trailer {
                        return Err("aws-chunked: trailer in a body announced without one".into());
                    }
                    let (name, value) = line
                        .split_once(':')
                        .ok_or("aws-chunked: malformed trailer")?;
                    if name.eq_ignore_ascii_case("x-amz-trailer-signature") {
                        let signature = self.signer.trailer(&self.trailers);
                        out.extend_from_slice(format!("{name}:{signature}\r\n").as_bytes());
                    } else {
                        self.trailers
                            .extend_from_slice(name.to_ascii_lowercase().as_bytes());
                        self.trailers.push(b':');
                        self.trailers.extend_from_slice(value.trim().as_bytes());
                        self.trailers.push(b'\n');
                        out.extend_from_slice(line.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                State::Done => {
                    if !self.buf.is_empty() {
                        return Err("aws-chunked: data after the final chunk".into());
                    }
                    break;
                }
                State::Failed => return Err("aws-chunked: body already failed".into()),
            }
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
    }
}

/// Takes one `\r\n`-terminated line (without it) from `buf`.
fn take_line(buf: &mut BytesMut) -> Result<Option<String>, BoxError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err("aws-chunked: line too long".into());
        }
        return Ok(None);
    };
    if end > MAX_LINE {
        return Err("aws-chunked: line too long".into());
    }
    let line = buf.split_to(end);
    buf.advance(2);
    let line = String::from_utf8(line.to_vec()).map_err(|_| "aws-chunked: line is not text")?;
    Ok(Some(line))
}

impl Body for Resigned {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.process().and_then(|out| this.account().map(|()| out)) {
                Ok(Some(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Ok(None) => {}
                Err(err) => {
                    this.state = State::Failed;
                    return Poll::Ready(Some(Err(err)));
                }
            }
            if this.inner_done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        if let Err(err) = this.account() {
                            this.state = State::Failed;
                            return Poll::Ready(Some(Err(err)));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(err)) => {
                    this.state = State::Failed;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.inner_done = true;
                    // A body may end right after the trailer signature line.
                    let complete = this.state == State::Done
                        || (this.state == State::Trailers
                            && this.buf.is_empty()
                            && !this.trailers.is_empty());
                    if !complete {
                        this.state = State::Failed;
                        return Poll::Ready(Some(Err(
                            "aws-chunked: body ended before its final chunk".into(),
                        )));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner_done && self.buf.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // The rewrite keeps every length.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use http_body_util::BodyExt;

    use super::*;
    use crate::body;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// 2013-05-24T00:00:00Z, the time of AWS's published examples.
    fn example_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    /// AWS's "Example: PUT Object" of the SigV4 streaming documentation:
    /// 64 KiB + 1 KiB of `a`, seed signature and chunk signatures as published.
    #[test]
    fn chunk_signatures_match_the_aws_example() {
        let seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".to_owned();
        let mut signer = ChunkSigner::new(SECRET, example_time(), "us-east-1", "s3", seed);
        assert_eq!(
            signer.chunk(&[b'a'; 65536]),
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        assert_eq!(
            signer.chunk(&[b'a'; 1024]),
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        assert_eq!(
            signer.chunk(&[]),
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }

    /// AWS's trailer example: the same chunks, then
    /// `x-amz-checksum-crc32c:sOO8/Q==` signed after the final chunk.
    #[test]
    fn trailer_signature_matches_the_aws_example() {
        let seed = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e".to_owned();
        let mut signer = ChunkSigner::new(SECRET, example_time(), "us-east-1", "s3", seed);
        assert_eq!(
            signer.chunk(&[b'a'; 65536]),
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
        );
        assert_eq!(
            signer.chunk(&[b'a'; 1024]),
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
        );
        assert_eq!(
            signer.chunk(&[]),
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
        );
        assert_eq!(
            signer.trailer(b"x-amz-checksum-crc32c:sOO8/Q==\n"),
            "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
        );
    }

    /// Builds a signed aws-chunked body with `signer`, chunks of `sizes`.
    fn encode(signer: &mut ChunkSigner, chunks: &[&[u8]], trailer: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        for data in chunks.iter().copied().chain([&b""[..]]) {
            let sig = signer.chunk(data).to_owned();
            out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", data.len()).as_bytes());
            if !data.is_empty() {
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(t) = trailer {
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\r\n");
            let (n, v) = t.split_once(':').unwrap();
            let sig = signer
                .trailer(format!("{n}:{}\n", v.trim()).as_bytes())
                .to_owned();
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Sends `bytes` through a `Resigned` in pieces of `piece` bytes.
    async fn resign(
        bytes: Vec<u8>,
        piece: usize,
        trailer: bool,
        max_chunk: usize,
    ) -> Result<Vec<u8>, BoxError> {
        let pieces: Vec<Result<Frame<Bytes>, BoxError>> = bytes
            .chunks(piece)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let inner =
            http_body_util::StreamBody::new(futures_util::stream::iter(pieces)).boxed_unsync();
        let signer = ChunkSigner::new(
            "proxy-secret",
            example_time(),
            "us-west-2",
            "s3",
            "f".repeat(64),
        );
        let body = Resigned::new(inner, signer, trailer, max_chunk);
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn held_chunks_count_against_the_buffer_budget() {
        let mut client =
            ChunkSigner::new(SECRET, example_time(), "us-west-2", "s3", "a".repeat(64));
        let bytes = encode(&mut client, &[&[b'x'; 70_000]], None);
        for (cap, fits) in [(200_000, true), (50_000, false)] {
            let budget = BufferBudget::new(cap);
            let pieces: Vec<Result<Frame<Bytes>, BoxError>> = bytes
                .chunks(16 << 10)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let inner =
                http_body_util::StreamBody::new(futures_util::stream::iter(pieces)).boxed_unsync();
            let signer =
                ChunkSigner::new(SECRET, example_time(), "us-west-2", "s3", "f".repeat(64));
            let body = Resigned::new(inner, signer, false, 1 << 20).with_budget(&budget);
            let got = body.collect().await;
            assert_eq!(got.is_ok(), fits, "cap {cap}");
            if let Err(err) = got {
                assert!(err.to_string().contains("--max-buffered-bytes"), "{err}");
            }
            assert_eq!(budget.held(), 0, "given back once the body is gone");
        }
    }

    #[tokio::test]
    async fn resigned_body_is_what_the_proxy_would_have_sent() {
        let data_a = vec![b'x'; 70_000];
        let data_b = b"tail".to_vec();
        for trailer in [None, Some("x-amz-checksum-crc32:AAAAAA==")] {
            let mut client = ChunkSigner::new(
                "client-secret",
                example_time(),
                "us-west-2",
                "s3",
                "0".repeat(64),
            );
            let sent = encode(&mut client, &[&data_a, &data_b], trailer);
            let mut proxy = ChunkSigner::new(
                "proxy-secret",
                example_time(),
                "us-west-2",
                "s3",
                "f".repeat(64),
            );
            let want = encode(&mut proxy, &[&data_a, &data_b], trailer);
            for piece in [1, 7, 4096, 1 << 20] {
                let got = resign(sent.clone(), piece, trailer.is_some(), 1 << 20)
                    .await
                    .unwrap();
                assert_eq!(got.len(), sent.len(), "lengths are kept");
                assert!(got == want, "piece {piece}, trailer {trailer:?}");
            }
        }
    }

    #[tokio::test]
    async fn malformed_bodies_fail() {
        let mut client = ChunkSigner::new(
            "client-secret",
            example_time(),
            "us-west-2",
            "s3",
            "0".repeat(64),
        );
        let good = encode(&mut client, &[b"hello"], None);
        let sig = "a".repeat(64);
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            ("truncated", good[..good.len() - 3].to_vec(), 1 << 20),
            (
                "trailing garbage",
                [good.clone(), b"x".to_vec()].concat(),
                1 << 20,
            ),
            ("no signature", b"5\r\nhello\r\n0\r\n\r\n".to_vec(), 1 << 20),
            (
                "short signature",
                b"5;chunk-signature=abc\r\nhello\r\n".to_vec(),
                1 << 20,
            ),
            (
                "bad size",
                format!("zz;chunk-signature={sig}\r\n").into_bytes(),
                1 << 20,
            ),
            (
                "size lies",
                format!("9;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n")
                    .into_bytes(),
                1 << 20,
            ),
            ("chunk too big", good.clone(), 4),
            (
                "unannounced trailer",
                format!("0;chunk-signature={sig}\r\nx-amz-checksum-crc32:AA==\r\n\r\n")
                    .into_bytes(),
                1 << 20,
            ),
            ("endless line", vec![b'1'; MAX_LINE + 10], 1 << 20),
        ];
        for (what, bytes, max_chunk) in cases {
            assert!(resign(bytes, 3, false, max_chunk).await.is_err(), "{what}");
        }
        assert!(resign(good, 3, false, 1 << 20).await.is_ok());
    }

    #[test]
    fn empty_hash_constant_is_right() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
        let _ = body::empty();
    }
}
