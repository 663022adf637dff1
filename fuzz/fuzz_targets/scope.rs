//! The SigV4 credential-scope parser reads client bytes: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::scope(data));
