//! Integration tests: the real `ccnproxy` binary against real local origins
//! (see `support`). One crate, a module per area.

mod support;

mod accesslog;
mod bodies;
mod errors;
mod failover;
mod fleet_identity;
mod hardening;
mod harness;
mod headers;
mod observability;
mod operator;
mod pool;
mod pool_basic;
mod routing;
mod shutdown;
