//! Integration tests: the real `ccnproxy` binary against real local origins.

mod support;

mod harness;
