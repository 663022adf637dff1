//! The access-log format parser reads operator input at start: any string
//! must compile or give an error with a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ccnproxy::accesslog::format::Format;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Format::compile(text);
    }
});
