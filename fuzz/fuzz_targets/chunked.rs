//! The aws-chunked re-signer reads a client's upload: any bytes, in any
//! framing, give the same-length body or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::chunked(data));
