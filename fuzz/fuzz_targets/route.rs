//! Host/authority parsing and routing: any Host bytes and request target
//! must give a route or a `RouteError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ccnproxy::fuzzing::route(data));
