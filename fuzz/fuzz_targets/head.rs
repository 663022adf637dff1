//! A client's request head, HTTP/1.1 or h2 pseudo-headers, through the
//! framing check, route and build phases: an upstream head with a Host and
//! an origin-form target, or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::head(data));
