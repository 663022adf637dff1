//! The origin table: one entry (a pool, with its DNS answer) per origin,
//! bounded in time and in number. An entry expires after `--origin-idle-ttl`
//! without a request, once no request holds it; past `--max-origins` a new
//! origin takes the place of the least recently used idle entry, and when
//! every entry is in use the new origin is refused (503).
//!
//! "In use" is "someone besides the table holds the entry's `Arc`": a request
//! holds its pool from checkout until its response body ends. New holders
//! only come through the table, under its lock, so a count of one cannot
//! grow while the table looks at it.
//!
//! Synchronous and I/O-free, `now` passed in; `Upstream` wraps it in a mutex,
//! runs the sweep and drops removed pools outside the lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::route::Origin;

struct Entry<T> {
    value: Arc<T>,
    last_used: Instant,
}

/// Origin → entry, at most `max` of them.
pub(super) struct Table<T> {
    map: HashMap<Origin, Entry<T>>,
    max: usize,
}

/// A new origin found every entry in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// Entries taken out of the table; drop them outside its lock.
pub(super) type Removed<T> = Vec<(Origin, Arc<T>)>;

impl<T> Table<T> {
    pub(super) fn new(max: usize) -> Self {
        Table {
            map: HashMap::new(),
            max: max.max(1),
        }
    }

    /// The entry of `origin`, marked used at `now`; made by `make` when new.
    /// A new origin past the cap first removes the least recently used idle
    /// entry (returned), or fails when none is idle.
    pub(super) fn get(
        &mut self,
        origin: &Origin,
        now: Instant,
        make: impl FnOnce() -> T,
    ) -> Result<(Arc<T>, Removed<T>), Full> {
        if let Some(e) = self.map.get_mut(origin) {
            e.last_used = now;
            return Ok((e.value.clone(), Vec::new()));
        }
        let mut removed = Vec::new();
        if self.map.len() >= self.max {
            let lru = self
                .map
                .iter()
                .filter(|(_, e)| is_idle(e))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(o, _)| o.clone())
                .ok_or(Full)?;
            #[allow(
                clippy::expect_used,
                reason = "the key was just found in the same map under the same borrow"
            )]
            let e = self.map.remove(&lru).expect("found above");
            removed.push((lru, e.value));
        }
        let value = Arc::new(make());
        self.map.insert(
            origin.clone(),
            Entry {
                value: value.clone(),
                last_used: now,
            },
        );
        Ok((value, removed))
    }

    /// Removes entries unused for `ttl` and idle, except `keep`.
    pub(super) fn expire(&mut self, now: Instant, ttl: Duration, keep: &[Origin]) -> Removed<T> {
        let expired: Vec<Origin> = self
            .map
            .iter()
            .filter(|(o, e)| {
                is_idle(e) && now.duration_since(e.last_used) >= ttl && !keep.contains(o)
            })
            .map(|(o, _)| o.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|o| self.map.remove(&o).map(|e| (o, e.value)))
            .collect()
    }

    /// The entry of `origin`, if any, without marking it used.
    pub(super) fn peek(&self, origin: &Origin) -> Option<Arc<T>> {
        self.map.get(origin).map(|e| e.value.clone())
    }

    /// Every entry's value, held weakly: a snapshot of strong references
    /// would make every entry look in use (`is_idle`) for as long as the
    /// snapshot lives, and an origin that needed room would get 503.
    pub(super) fn values(&self) -> Vec<std::sync::Weak<T>> {
        self.map
            .values()
            .map(|e| Arc::downgrade(&e.value))
            .collect()
    }

    /// Entries now.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

fn is_idle<T>(e: &Entry<T>) -> bool {
    Arc::strong_count(&e.value) == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Scheme;

    fn o(host: &str) -> Origin {
        Origin::new(Scheme::Https, host, 443)
    }

    fn names<T>(removed: &Removed<T>) -> Vec<String> {
        removed.iter().map(|(o, _)| o.host.to_string()).collect()
    }

    #[test]
    fn the_least_recently_used_idle_entry_makes_room() {
        let t0 = Instant::now();
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
        let t0 = Instant::now();
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
    fn a_snapshot_of_every_entry_does_not_make_them_in_use() {
        // The sweep and every `/metrics` scrape walk all pools; while they
        // do, a new origin must still find an idle one to evict.
        let t0 = Instant::now();
        let mut table: Table<&str> = Table::new(2);
        drop(table.get(&o("a"), t0, || "a").expect("room"));
        drop(table.get(&o("b"), t0, || "b").expect("room"));
        let snapshot = table.values();
        let (_c, removed) = table
            .get(&o("c"), t0 + Duration::from_secs(1), || "c")
            .expect("an idle entry makes room while the snapshot is held");
        assert_eq!(removed.len(), 1);
        drop(removed);
        assert_eq!(snapshot.iter().filter(|w| w.upgrade().is_some()).count(), 1);
    }

    #[test]
    fn idle_entries_expire_after_the_ttl_except_kept_ones() {
        let t0 = Instant::now();
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
