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

/// What glibc's malloc holds: (bytes handed out to the program and not yet
/// freed, bytes taken from the OS for the heap), both counting chunks
/// served by `mmap`. `None` where malloc is not glibc's.
///
/// The first stays flat when the program holds no more objects, whatever
/// the allocator keeps for reuse; the second, like RSS, keeps its
/// high-water mark. Their difference is memory free inside the heap.
pub(crate) fn malloc_heap() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct
        // by value; glibc locks each arena while it sums it.
        let info = unsafe { libc::mallinfo2() };
        let mapped = info.hblkhd as u64;
        Some((info.uordblks as u64 + mapped, info.arena as u64 + mapped))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Hands the free pages of every malloc arena back to the OS (glibc's
/// `malloc_trim(0)`); true when some were. Nothing where malloc is not
/// glibc's.
pub(crate) fn malloc_trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a size and only locks and walks
        // malloc's own arenas; any thread may call it at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_reports_its_heap() {
        const GROWN: usize = 64 << 20;
        let (allocated, held) = super::malloc_heap().expect("glibc reports its heap");
        assert!(allocated > 0 && allocated <= held, "{allocated} of {held}");
        let grown = vec![1u8; GROWN];
        let (after, _) = super::malloc_heap().expect("glibc reports its heap");
        // Other tests allocate and free meanwhile, by far less than this.
        assert!(
            after >= allocated + GROWN as u64 / 2,
            "{after} after a 64 MiB allocation, {allocated} before"
        );
        drop(grown);
    }
}
