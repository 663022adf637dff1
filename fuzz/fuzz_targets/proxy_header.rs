//! PROXY protocol v1/v2 headers: any bytes give a header, "need more", or a
//! `HeaderError`, never a panic; a header never claims more bytes than it
//! was given, parses the same from exactly its own bytes, and its prefixes
//! ask for more rather than fail.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ccnproxy::identity::proxy_protocol::{Opening, opening, parse};

fuzz_target!(|data: &[u8]| {
    let _ = opening(data);
    let Ok(Some((header, len))) = parse(data) else {
        return;
    };
    assert!(len <= data.len(), "header of {len} bytes in {} bytes", data.len());
    assert_ne!(opening(data), Opening::Other);
    assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
    for cut in [0, len / 2, len.saturating_sub(1)] {
        if cut < len {
            assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }
    if let Some(vpce) = header.vpce {
        assert!(vpce.as_str().bytes().all(|b| b.is_ascii_graphic()));
    }
});
