//! What an accept loop does when `accept` fails: out of descriptors
//! (`EMFILE`, `ENFILE`), buffers (`ENOBUFS`) or anything else the kernel
//! says. Retrying at once would spin a core, since the listening socket
//! stays readable while its backlog holds connections; so the loop waits,
//! doubling from [`FIRST`] up to [`MAX`], and says so once per burst of
//! failures (a warning when it starts, a line with the count when accepting
//! works again) instead of once per failure.

use std::time::Duration;

/// The first wait after a failed accept.
pub const FIRST: Duration = Duration::from_millis(5);
/// The longest wait between two attempts.
pub const MAX: Duration = Duration::from_secs(1);

/// One accept loop's backoff state.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The next wait, while failing.
    next: Option<Duration>,
    /// Failures in the current burst.
    failures: u64,
}

impl AcceptBackoff {
    /// An accept succeeded: a burst of failures, if any, is over.
    pub fn succeeded(&mut self, listener: &str) {
        if self.failures > 0 {
            tracing::info!(
                listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        *self = AcceptBackoff::default();
    }

    /// An accept failed with `err`: how long to wait before the next try.
    /// Logs the first failure of a burst only.
    pub fn failed(&mut self, listener: &str, err: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(
                listener,
                error = err as &dyn std::error::Error,
                "accept failed; backing off (up to 1 s between attempts) until it works again"
            );
        }
        self.failures += 1;
        let wait = self.next.unwrap_or(FIRST);
        self.next = Some((wait * 2).min(MAX));
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_start_over_after_a_success() {
        let mut b = AcceptBackoff::default();
        let err = std::io::Error::from_raw_os_error(24);
        let waits: Vec<_> = (0..10).map(|_| b.failed("test", &err)).collect();
        assert_eq!(waits[0], FIRST);
        assert_eq!(waits[1], FIRST * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX);
        b.succeeded("test");
        assert_eq!(b.failed("test", &err), FIRST);
    }
}
