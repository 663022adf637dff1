//! PROXY protocol v1/v2 headers: any bytes give a header, "need more", or a
//! `HeaderError`, never a panic; a header never claims more bytes than it
//! was given, parses the same from exactly its own bytes, and its prefixes
//! ask for more rather than fail.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::proxy_header(data));
