//! Every `unsafe` block of ccnproxy, each with why it is sound. The crate
//! denies `unsafe_code` everywhere else (`[lints]` in `Cargo.toml`).
#![allow(unsafe_code)]

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The listening socket Server::Starter handed over as descriptor `fd`
/// (`SERVER_STARTER_PORT=host:port=fd`).
pub(crate) fn inherited_listener(fd: RawFd) -> TcpListener {
    // SAFETY: Server::Starter hands us this descriptor as a listening socket
    // that no one else in this process owns; it is taken once, at startup.
    unsafe { TcpListener::from_raw_fd(fd) }
}
