//! Raw HTTP/1.1 responses read to the end and parsed with strict framing, to
//! tell a complete response from a truncated one and to see exactly which
//! framing headers the proxy sent.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TIMEOUT;

/// Everything the peer sent before it closed (or reset) the connection.
#[derive(Debug)]
pub struct Received {
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Connects to `addr`, writes `request` (errors ignored: the proxy may answer
/// and close before reading it all), reads until the peer closes.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Received {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the peer neither answered nor closed within {TIMEOUT:?}; got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            // A reset ends the exchange like a close; the framing check says
            // whether the response was whole.
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    Received { bytes }
}

/// One response parsed out of raw bytes.
#[derive(Debug)]
pub struct Parsed {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body as framed (de-chunked), as far as it went.
    pub body: Vec<u8>,
    /// `Ok` when the framing says the body ended; `Err(why)` when it was cut.
    pub complete: Result<(), String>,
    /// Bytes after the end of this response.
    pub rest: Vec<u8>,
}

impl Parsed {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parses the first response in `bytes` (to a request that was not HEAD).
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(bytes)
            ));
        }
        Err(e) => return Err(format!("{e}: {:?}", String::from_utf8_lossy(bytes))),
    };
    let status = resp.code.expect("status");
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut parsed = Parsed {
        status,
        headers,
        body: Vec::new(),
        complete: Ok(()),
        rest: Vec::new(),
    };
    let body = &bytes[head_len..];
    let chunked = parsed
        .all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    let lengths = parsed.all("content-length");
    if (100..200).contains(&status) || status == 204 || status == 304 {
        parsed.rest = body.to_vec();
    } else if chunked {
        let (data, end) = dechunk(body);
        parsed.body = data;
        match end {
            Ok(used) => parsed.rest = body[used..].to_vec(),
            Err(why) => parsed.complete = Err(why),
        }
    } else if let Some(len) = lengths.first() {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("Content-Length {len:?}"))?;
        let got = body.len().min(len);
        parsed.body = body[..got].to_vec();
        parsed.rest = body[got..].to_vec();
        if got < len {
            parsed.complete = Err(format!("{got} of {len} Content-Length bytes"));
        }
    } else {
        // Delimited by close: complete by definition, which is why a proxy
        // must not fall back to it for a body it failed to relay.
        parsed.body = body.to_vec();
    }
    Ok(parsed)
}

/// De-chunks `body`: the data, and how many bytes the chunked body used or
/// why it is incomplete or malformed.
fn dechunk(body: &[u8]) -> (Vec<u8>, Result<usize, String>) {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&body[at..]) else {
            let why = format!("cut in a chunk size line after {} bytes", data.len());
            return (data, Err(why));
        };
        let line = String::from_utf8_lossy(&body[at..at + eol]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (data, Err(format!("bad chunk size {line:?}")));
        };
        at += eol + 2;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                let Some(eol) = find_crlf(&body[at..]) else {
                    return (data, Err("cut in the trailers".into()));
                };
                at += eol + 2;
                if eol == 0 {
                    return (data, Ok(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            data.extend_from_slice(&body[at..body.len().min(at + size)]);
            return (data, Err(format!("cut inside a {size}-byte chunk")));
        }
        data.extend_from_slice(&body[at..at + size]);
        if &body[at + size..at + size + 2] != b"\r\n" {
            return (data, Err("chunk not followed by CRLF".into()));
        }
        at += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}
