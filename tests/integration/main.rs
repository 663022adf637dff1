//! Integration tests: the proxy (in this process, or the real binary where a
//! process is the point) against real local origins (see `support`). One
//! crate, a module per area.
// One crate of test support: `pub` in its modules means shared between
// its files, so the library's `unreachable_pub` rule does not apply.
#![allow(unreachable_pub)]

mod support;

mod accesslog;
mod bodies;
mod bounded_buffer;
mod bounded_log;
mod bounded_log_memory;
mod bounded_origins;
mod bounded_policy;
mod budget_trust;
mod dns_refresh;
mod errors;
mod failover;
mod flags;
mod fleet_drain;
mod fleet_identity;
mod fleet_manifests;
mod fleet_redis;
mod goaway;
mod h1_keepalive;
mod hardening;
mod harness;
mod headers;
mod idle_learning;
mod idle_release;
mod observability;
mod operator;
mod origin_flood;
mod pool;
mod pool_basic;
mod readme;
mod retry_rules;
mod routing;
mod shutdown;
mod sign_scope;
mod sign_trust;
mod sign_verify;
