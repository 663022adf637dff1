//! Integration tests: the proxy (in this process, or the real binary where a
//! process is the point) against real local origins (see `support`). One
//! crate, a module per area.

mod support;

mod accesslog;
mod bodies;
mod bounded_log;
mod bounded_origins;
mod bounded_policy;
mod dns_refresh;
mod errors;
mod failover;
mod fleet_drain;
mod fleet_identity;
mod fleet_manifests;
mod fleet_redis;
mod goaway;
mod h1_keepalive;
mod hardening;
mod harness;
mod headers;
mod observability;
mod operator;
mod pool;
mod pool_basic;
mod routing;
mod shutdown;
