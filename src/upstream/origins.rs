//! The origin table: one entry per origin, holding everything kept for it
//! (its pool with the DNS answer and learned state, and its metric series),
//! bounded in time and in number. An entry expires after `--origin-idle-ttl`
//! without a request, once no request holds it. Past `--max-origins` a new
//! origin may take the place of an entry only if that entry has also gone
//! `--origin-idle-ttl` without a request and no request holds it (the
//! least recently used such one); otherwise the new origin is refused
//! (503). An origin that served a request within its TTL is never pushed
//! out by new names, so a flood of names cannot flush the warm pools other
//! clients use: it fills only the free places, and the rest of it is
//! refused until entries expire.
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
    /// `--origin-idle-ttl`: an entry used more recently stays.
    ttl: Duration,
    /// Prewarm origins: never removed.
    keep: Vec<Origin>,
}

/// A new origin found every entry held or used within the TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// Entries taken out of the table; drop them outside its lock.
pub(super) type Removed<T> = Vec<(Origin, Arc<Slot<T>>)>;

impl<T> Table<T> {
    /// At most `max` entries, each kept while used within `ttl`, and the
    /// origins of `keep` for ever.
    pub(super) fn new(max: usize, ttl: Duration, keep: Vec<Origin>) -> Self {
        Table {
            map: HashMap::new(),
            max: max.max(1),
            ttl,
            keep,
        }
    }

    /// Whether the entry of `origin` may go at `now`: nobody holds it, it
    /// has not been used for the TTL, and it is not kept.
    fn removable(&self, origin: &Origin, slot: &Slot<T>, now: Instant) -> bool {
        slot.is_idle()
            && now.saturating_duration_since(slot.last_used()) >= self.ttl
            && !self.keep.contains(origin)
    }

    /// The entry of `origin`, held and marked used at `now`; made by `make`
    /// when new. A new origin past the cap first removes the least recently
    /// used removable entry (returned), or fails when none is.
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
                .filter(|(o, s)| self.removable(o, s, now))
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

    /// Removes every removable entry (idle, unused for the TTL, not kept).
    pub(super) fn expire(&mut self, now: Instant) -> Removed<T> {
        let expired: Vec<Origin> = self
            .map
            .iter()
            .filter(|(o, s)| self.removable(o, s, now))
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

    const TTL: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_least_recently_used_expired_entry_makes_room() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2, TTL, Vec::new());
        drop(table.get(&o("a"), t0, || "a").expect("room"));
        drop(table.get(&o("b"), t0 + secs(1), || "b").expect("room"));
        // `a` is used again: `b` is now the least recently used.
        drop(table.get(&o("a"), t0 + secs(2), || "a").expect("hit"));
        assert!(
            table.get(&o("c"), t0 + secs(3), || "c").is_err(),
            "both used within the TTL: refused"
        );
        let (_c, removed) = table
            .get(&o("c"), t0 + secs(70), || "c")
            .expect("both unused for the TTL");
        assert_eq!(names(&removed), ["b"]);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_flood_of_names_fills_free_places_only() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(3, TTL, Vec::new());
        for host in ["steady-a", "steady-b"] {
            drop(table.get(&o(host), t0, || "steady").expect("room"));
        }
        let mut admitted = Vec::new();
        for i in 0..50u64 {
            let name = format!("flood-{i}");
            if let Ok((entry, removed)) = table.get(&o(&name), t0 + secs(1 + i), || "flood") {
                assert!(
                    removed.is_empty(),
                    "{name} pushed out {:?}",
                    names(&removed)
                );
                drop(entry);
                admitted.push(name);
            }
        }
        assert_eq!(admitted, ["flood-0"], "one free place");
        assert!(table.peek(&o("steady-a")).is_some() && table.peek(&o("steady-b")).is_some());
        // Past the TTL the entries that are not used again go.
        drop(
            table
                .get(&o("steady-a"), t0 + secs(59), || "steady")
                .expect("hit"),
        );
        let removed = table.expire(t0 + secs(61));
        assert_eq!(names(&removed).len(), 2);
        assert!(table.peek(&o("steady-a")).is_some());
    }

    #[test]
    fn entries_in_use_are_never_removed() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2, secs(1), Vec::new());
        let (a, _) = table.get(&o("a"), t0, || "a").expect("room");
        let (b, _) = table.get(&o("b"), t0, || "b").expect("room");
        let later = t0 + secs(3600);
        assert!(
            table.get(&o("c"), later, || "c").is_err(),
            "both in use: refused"
        );
        assert!(table.expire(later).is_empty());
        drop(b);
        let (_c, removed) = table.get(&o("c"), later, || "c").expect("b is idle now");
        assert_eq!(names(&removed), ["b"]);
        drop(a);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn holding_every_entry_does_not_make_them_in_use() {
        // The sweep and every `/metrics` scrape walk all entries; while they
        // do, a new origin must still find an expired one to evict.
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(2, TTL, Vec::new());
        drop(table.get(&o("a"), t0, || "a").expect("room"));
        drop(table.get(&o("b"), t0, || "b").expect("room"));
        let snapshot = table.entries();
        let (_c, removed) = table
            .get(&o("c"), t0 + TTL, || "c")
            .expect("an expired entry makes room while the snapshot is held");
        assert_eq!(removed.len(), 1);
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn a_hold_ending_marks_the_entry_used() {
        let now = Instant::now();
        let checked_out = now
            .checked_sub(secs(100))
            .expect("the clock started a while ago");
        let mut table: Table<&str> = Table::new(10, TTL, Vec::new());
        let (held, _) = table.get(&o("a"), checked_out, || "a").expect("room");
        // Finished long after it checked out: its TTL runs from the end.
        drop(held);
        let finished = Instant::now();
        assert!(table.expire(now + secs(59)).is_empty());
        assert_eq!(names(&table.expire(finished + TTL)), ["a"]);
    }

    #[test]
    fn idle_entries_expire_after_the_ttl_except_kept_ones() {
        let t0 = ahead();
        let mut table: Table<&str> = Table::new(10, TTL, vec![o("keep")]);
        for (i, host) in ["a", "b", "keep"].into_iter().enumerate() {
            drop(
                table
                    .get(&o(host), t0 + secs(i as u64), || "x")
                    .expect("room"),
            );
        }
        assert!(table.expire(t0 + secs(59)).is_empty());
        assert_eq!(names(&table.expire(t0 + secs(60))), ["a"]);
        assert_eq!(names(&table.expire(t0 + secs(3600))), ["b"]);
        assert_eq!(table.len(), 1);
        assert!(table.peek(&o("keep")).is_some());
    }
}
