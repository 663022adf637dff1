//! h2c requests name their target in `:authority`: any authority, path and
//! Host give a route and a well-formed upstream head, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::h2c_authority(data));
