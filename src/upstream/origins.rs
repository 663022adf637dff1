//! The origin table: one entry per origin, holding everything kept for it
//! (its pool with the DNS answer and learned state, and its metric series),
//! bounded in time and in number. An entry expires after `--origin-idle-ttl`
//! without a request, once no request holds it; past `--max-origins` a new
//! origin takes the place of the least recently used idle entry, and when
//! every entry is in use the new origin is refused (503).
//!
//! "In use" is "a request holds an [`InUse`] of the entry": from checkout
//! until the request is accounted for (metrics and log line). New holders
//! only come through the table, under its lock, so a count of zero cannot
//! grow while the table looks at it; anything else (a scrape, the sweep) may
//! hold the entry's `Arc` without keeping it from being removed.
//!
//! Synchronous and I/O-free, `now` passed in; `Upstream` wraps it in a mutex,
//! runs the sweep and drops removed entries outside the lock.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::route::Origin;

/// One entry: the value, how many requests hold it, and when one last
/// checked it out or finished with it.
pub(super) struct Slot<T> {
    value: T,
    users: AtomicUsize,
    last_used: Mutex<Instant>,
}

impl<T> Slot<T> {
    pub(super) fn value(&self) -> &T {
        &self.value
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the entry used at `now` (never earlier than it was).
    fn touch(&self, now: Instant) {
        let mut last = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        *last = (*last).max(now);
    }

    fn is_idle(&self) -> bool {
        self.users.load(Ordering::Acquire) == 0
    }
}

/// A request's hold on its origin's entry: the entry is not removed while
/// held, and its last use is stamped again when the hold ends (a long
/// request's origin counts as used until it finishes).
pub struct InUse<T> {
    slot: Arc<Slot<T>>,
}

impl<T> InUse<T> {
    fn new(slot: Arc<Slot<T>>) -> Self {
        slot.users.fetch_add(1, Ordering::AcqRel);
        InUse { slot }
    }
}

impl<T> Deref for InUse<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.slot.value
    }
}

impl<T> Drop for InUse<T> {
    fn drop(&mut self) {
        self.slot.touch(Instant::now());
        self.slot.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Origin → entry, at most `max` of them.
pub(super) struct Table<T> {
    map: HashMap<Origin, Arc<Slot<T>>>,
    max: usize,
}

/// A new origin found every entry in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// Entries taken out of the table; drop them outside its lock.
pub(super) type Removed<T> = Vec<(Origin, Arc<Slot<T>>)>;

impl<T> Table<T> {
    pub(super) fn new(max: usize) -> Self {
        Table {
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The entry of `origin`, held and marked used at `now`; made by `make`
    /// when new. A new origin past the cap first removes the least recently
    /// used idle entry (returned), or fails when none is idle.
    pub(super) fn get(
        &mut self,
        origin: &Origin,
        now: Instant,
        make: impl FnOnce() -> T,
    ) -> Result<(InUse<T>, Removed<T>), Full> {
        if let Some(slot) = self.map.get(origin) {
            slot.touch(now);
            return Ok((InUse::new(slot.clone()), Vec::new()));
        }
        let mut removed = Vec::new();
        if self.map.len() >= self.max {
            let lru = self
                .map
                .iter()
                .filter(|(_, s)| s.is_idle())
                .min_by_key(|(_, s)| s.last_used())
                .map(|(o, _)| o.clone())
                .ok_or(Full)?;
            if let Some(slot) = self.map.remove(&lru) {
                removed.push((lru, slot));
            }
        }
        let slot = Arc::new(Slot {
            value: make(),
            users: AtomicUsize::new(0),
            last_used: Mutex::new(now),
        });
        self.map.insert(origin.clone(), slot.clone());
        Ok((InUse::new(slot), removed))
    }

    /// Removes entries unused for `ttl` and idle, except `keep`.
    pub(super) fn expire(&mut self, now: Instant, ttl: Duration, keep: &[Origin]) -> Removed<T> {
        let expired: Vec<Origin> = self
            .map
            .iter()
            .filter(|(o, s)| {
                s.is_idle() && now.duration_since(s.last_used()) >= ttl && !keep.contains(o)
            })
            .map(|(o, _)| o.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|o| self.map.remove(&o).map(|s| (o, s)))
            .collect()
    }

    /// The entry of `origin`, if any, neither held nor marked used.
    pub(super) fn peek(&self, origin: &Origin) -> Option<Arc<Slot<T>>> {
        self.map.get(origin).cloned()
    }

    /// Every entry now (holding them does not make them in use).
    pub(super) fn entries(&self) -> Vec<Arc<Slot<T>>> {
        self.map.values().cloned().collect()
    }

    /// Entries now.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Scheme;

    fn o(host: &str) -> Origin {
        Origin::new(Scheme::Https, host, 443)
    }

    /// A start ahead of the clock: a hold ending now (stamped with the real
    /// clock) then leaves the explicit times of a test as they are.
    fn ahead() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn names<T>(removed: &Removed<T>) -> Vec<String> {
        removed.iter().map(|(o, _)| o.host.to_string()).collect()
    }

    #[test]
    fn the_least_recently_used_idle_entry_makes_room() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2);
        let (a, _) = table.get(&o("a"), t0, || "a").expect("room");
        drop(a);
        let (b, _) = table
            .get(&o("b"), t0 + Duration::from_secs(1), || "b")
            .expect("room");
        drop(b);
        // `a` is used again: `b` is now the least recently used.
        drop(
            table
                .get(&o("a"), t0 + Duration::from_secs(2), || "a")
                .expect("hit"),
        );
        let (_c, removed) = table
            .get(&o("c"), t0 + Duration::from_secs(3), || "c")
            .expect("evicts");
        assert_eq!(names(&removed), ["b"]);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn entries_in_use_are_never_removed() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2);
        let (a, _) = table.get(&o("a"), t0, || "a").expect("room");
        let (b, _) = table.get(&o("b"), t0, || "b").expect("room");
        let later = t0 + Duration::from_secs(3600);
        assert!(
            table.get(&o("c"), later, || "c").is_err(),
            "both in use: refused"
        );
        assert!(table.expire(later, Duration::from_secs(1), &[]).is_empty());
        drop(b);
        let (_c, removed) = table.get(&o("c"), later, || "c").expect("b is idle now");
        assert_eq!(names(&removed), ["b"]);
        drop(a);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn holding_every_entry_does_not_make_them_in_use() {
        // The sweep and every `/metrics` scrape walk all entries; while they
        // do, a new origin must still find an idle one to evict.
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2);
        drop(table.get(&o("a"), t0, || "a").expect("room"));
        drop(table.get(&o("b"), t0, || "b").expect("room"));
        let snapshot = table.entries();
        let (_c, removed) = table
            .get(&o("c"), t0 + Duration::from_secs(1), || "c")
            .expect("an idle entry makes room while the snapshot is held");
        assert_eq!(removed.len(), 1);
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn a_hold_ending_marks_the_entry_used() {
        let ttl = Duration::from_secs(60);
        let now = Instant::now();
        let checked_out = now
            .checked_sub(Duration::from_secs(100))
            .expect("the clock started a while ago");
        let mut table: Table<&str> = Table::new(10);
        let (held, _) = table.get(&o("a"), checked_out, || "a").expect("room");
        // Finished long after it checked out: its TTL runs from the end.
        drop(held);
        let finished = Instant::now();
        assert!(
            table
                .expire(now + Duration::from_secs(59), ttl, &[])
                .is_empty()
        );
        assert_eq!(names(&table.expire(finished + ttl, ttl, &[])), ["a"]);
    }

    #[test]
    fn idle_entries_expire_after_the_ttl_except_kept_ones() {
        let t0 = ahead();
        let ttl = Duration::from_secs(60);
        let mut table: Table<&str> = Table::new(10);
        for (i, host) in ["a", "b", "keep"].into_iter().enumerate() {
            drop(
                table
                    .get(&o(host), t0 + Duration::from_secs(i as u64), || "x")
                    .expect("room"),
            );
        }
        let keep = [o("keep")];
        assert!(
            table
                .expire(t0 + Duration::from_secs(59), ttl, &keep)
                .is_empty()
        );
        let removed = table.expire(t0 + Duration::from_secs(60), ttl, &keep);
        assert_eq!(names(&removed), ["a"]);
        let removed = table.expire(t0 + Duration::from_secs(3600), ttl, &keep);
        assert_eq!(names(&removed), ["b"]);
        assert_eq!(table.len(), 1);
        assert!(table.peek(&o("keep")).is_some());
    }
}
