//! What a queued record really holds, so that `--access-log-queue-bytes`
//! bounds memory and not an estimate of it.
//!
//! A finished request's record points into memory it does not own: hyper
//! parses the request target and header values as slices of the
//! connection's read buffer (and a response's header values as slices of
//! the upstream read buffer), so one queued `User-Agent` keeps that whole
//! buffer, kilobytes, alive after the connection is gone. `detach` copies
//! every such slice into an allocation of its own, exactly as long as the
//! text, shrinks the strings to their length and returns the bytes the
//! record then holds: each allocation as glibc's malloc sizes its chunk
//! (the header word, 16-byte rounding, a 32-byte minimum), which is what
//! the heap gauges count. The map and `Bytes` internals that `http` does
//! not expose are counted from above (`SLOT_BYTES`, `SHARED_BYTES`), so the
//! figure never falls short of the memory held.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};

use super::Record;

/// One slot of a `HeaderMap`: its entry (hash, links, name, value) and its
/// index, rounded up (an entry is about 100 bytes on 64-bit targets).
const SLOT_BYTES: usize = 128;
/// The shared header `Bytes` allocates when a buffer is sliced.
const SHARED_BYTES: usize = 32;

/// Bytes malloc takes for an allocation of `n` (0: none).
fn chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16).max(2) * 16
    }
}

fn string(s: &mut String) -> usize {
    s.shrink_to_fit();
    chunk(s.capacity())
}

/// A copy of `map` that shares no buffer, and the bytes it holds.
fn headers(map: &HeaderMap) -> (HeaderMap, usize) {
    if map.is_empty() {
        return (HeaderMap::new(), 0);
    }
    let mut own = HeaderMap::with_capacity(map.len());
    let mut bytes = 0;
    for (name, value) in map {
        // Custom names are slices of the read buffer too.
        let name =
            HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
        let mut copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
            .unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        bytes += chunk(name.as_str().len()) + chunk(copy.len());
        own.append(name, copy);
    }
    // The capacity `with_capacity` gave, indices and entries.
    bytes += 2 * chunk(own.capacity() * SLOT_BYTES);
    (own, bytes)
}

/// A copy of `uri` in one allocation of its own.
fn uri(uri: &Uri) -> (Uri, usize) {
    let text = uri.to_string();
    let len = text.len();
    let own = Uri::from_maybe_shared(Bytes::from(text)).unwrap_or_else(|_| uri.clone());
    // Scheme, authority and path may each slice that allocation.
    (own, chunk(len) + 3 * SHARED_BYTES)
}

/// Makes `record` own all it points to and returns the bytes it holds,
/// with its `Box` and its slot in the writer's channel (`slot` bytes).
pub(super) fn detach(record: &mut Record, slot: usize) -> u64 {
    let (target, mut bytes) = uri(&record.uri);
    record.uri = target;
    let (request, n) = headers(&record.request_headers);
    record.request_headers = request;
    bytes += n;
    let (response, n) = headers(&record.response_headers);
    record.response_headers = response;
    bytes += n;
    bytes += string(&mut record.host) + string(&mut record.request_id);
    for s in [&mut record.origin, &mut record.error]
        .into_iter()
        .flatten()
    {
        bytes += string(s);
    }
    if let Some(scope) = &mut record.scope {
        for s in [
            &mut scope.access_key,
            &mut scope.date,
            &mut scope.region,
            &mut scope.service,
        ] {
            bytes += string(s);
        }
    }
    if let Some(verified) = &mut record.verified {
        bytes += string(&mut verified.access_key_id);
        if let Some(name) = &mut verified.name {
            bytes += string(name);
        }
    }
    // The balancer's `Via` is shared with its connection; counted whole.
    if record.via.is_some() {
        bytes += chunk(std::mem::size_of::<crate::identity::Via>() + 16);
    }
    bytes += chunk(std::mem::size_of::<Record>()) + slot;
    bytes as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malloc_chunks_round_up_like_glibc() {
        assert_eq!(chunk(0), 0);
        assert_eq!(chunk(1), 32);
        assert_eq!(chunk(24), 32);
        assert_eq!(chunk(25), 48);
        assert_eq!(chunk(1000), 1008);
    }

    #[test]
    fn a_detached_record_shares_no_buffer_and_counts_its_contents() {
        let mut record = crate::accesslog::tests::sample_record();
        // A header value that slices a large buffer, as hyper's do.
        let buffer = Bytes::from(vec![b'a'; 64 << 10]);
        let value = HeaderValue::from_maybe_shared(buffer.slice(..10)).expect("value");
        record.request_headers.insert("x-pad", value);
        let small = detach(&mut record.clone(), 16);
        let mut big = record.clone();
        big.error = Some("x".repeat(10_000));
        let bytes = detach(&mut big, 16);
        assert!(bytes >= small + 10_000, "{bytes} vs {small}");
        assert!(small >= std::mem::size_of::<Record>() as u64);
        // The copy no longer points into the 64 KiB buffer.
        let held = big.request_headers["x-pad"].as_bytes().as_ptr();
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&held), "the value still slices the buffer");
        assert_eq!(big.request_headers["x-pad"], "aaaaaaaaaa");
        assert_eq!(big.uri, record.uri);
    }
}
