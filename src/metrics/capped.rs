//! A label value → series map with a cardinality cap: the first `max`
//! distinct values get series of their own, every later one shares the
//! `other` series. Values are kept until `remove` (the origin table removes
//! an origin's state, and its series with it), so memory is bounded by the
//! cap.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// The label value shared by everything past the cap.
pub const OTHER: &str = "other";

/// Series per label value, at most `max` of them plus `other`.
pub(crate) struct Capped<T> {
    max: usize,
    map: RwLock<HashMap<Arc<str>, Arc<T>>>,
    other: OnceLock<Arc<T>>,
}

impl<T> Capped<T> {
    /// Tracks at most `max` distinct values (0: everything is `other`).
    pub(crate) fn new(max: usize) -> Self {
        Capped {
            max,
            map: RwLock::new(HashMap::new()),
            other: OnceLock::new(),
        }
    }

    /// The series of `key`, made by `make` on first sight (or `other`'s,
    /// made once, when the cap is reached). `make` runs under the write lock,
    /// at most once per key.
    pub(crate) fn get(&self, key: &str, make: impl FnOnce(Arc<str>) -> T) -> Arc<T> {
        if let Some(found) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return found.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = map.get(key) {
            return found.clone();
        }
        if map.len() >= self.max {
            drop(map);
            return self
                .other
                .get_or_init(|| Arc::new(make(Arc::from(OTHER))))
                .clone();
        }
        let key: Arc<str> = Arc::from(key);
        let series = Arc::new(make(key.clone()));
        map.insert(key, series.clone());
        series
    }
}

impl<T> Capped<T> {
    /// Forgets `key`, freeing its place for another value.
    pub(crate) fn remove(&self, key: &str) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_share_other() {
        let capped: Capped<String> = Capped::new(2);
        let mut made = Vec::new();
        let mut get = |k: &str| {
            capped
                .get(k, |label| {
                    made.push(label.to_string());
                    label.to_string()
                })
                .to_string()
        };
        assert_eq!(get("a"), "a");
        assert_eq!(get("b"), "b");
        assert_eq!(get("c"), OTHER);
        assert_eq!(get("d"), OTHER);
        assert_eq!(
            get("a"),
            "a",
            "a value seen before the cap keeps its series"
        );
        assert_eq!(made, ["a", "b", OTHER], "each series is made once");
    }

    #[test]
    fn a_removed_value_frees_its_place() {
        let capped: Capped<String> = Capped::new(1);
        assert_eq!(*capped.get("a", |l| l.to_string()), "a");
        assert_eq!(*capped.get("b", |l| l.to_string()), OTHER);
        assert_eq!(capped.remove("a").as_deref().map(String::as_str), Some("a"));
        assert!(capped.remove("a").is_none());
        assert_eq!(*capped.get("b", |l| l.to_string()), "b");
    }

    #[test]
    fn zero_cap_counts_everything_as_other() {
        let capped: Capped<String> = Capped::new(0);
        assert_eq!(*capped.get("a", |l| l.to_string()), OTHER);
        assert_eq!(*capped.get("b", |_| unreachable!("other exists")), OTHER);
    }
}
