//! ccnproxy: a proxy that makes AWS API calls fast from anywhere.
//!
//! Modules, in the order a request meets them:
//! - `config`: flags, `--config` TOML and `CCNPROXY_*` → `Config`.
//! - `route`, `pattern`: request head → `Route` (origin and mode).
//! - `scope`: the client's SigV4 credential scope.
//! - `sign`: SigV4 re-signing with the proxy's credentials.
//! - `upstream`: the per-origin pool and its `Timing`.
//! - `accesslog`: one line per request, off the hot path.
//! - `body`: the boxed body type used on both sides.

pub mod accesslog;
pub mod body;
pub mod config;
pub mod pattern;
pub mod route;
pub mod scope;
pub mod sign;
pub mod upstream;
