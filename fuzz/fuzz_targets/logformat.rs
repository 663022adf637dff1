//! The access-log format parser reads operator input at start: any string
//! must compile or give an error with a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::logformat(data));
