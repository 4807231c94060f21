//! The last good answer of each product read, served (marked stale) when the catalog
//! fails, so reads degrade instead of failing.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// The header that marks an answer served from the fallback cache.
pub const STALE_HEADER: &str = "x-gauntlet-stale";

/// A bounded map from request path to the last good body.
pub struct StaleCache {
    entries: Mutex<HashMap<String, Bytes>>,
    capacity: usize,
}

impl StaleCache {
    /// A cache of at most `capacity` paths.
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// Remembers a good answer for `key`. When full, an arbitrary entry makes room:
    /// the cache is a safety net, not a performance cache.
    pub fn put(&self, key: &str, body: Bytes) {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.capacity && !m.contains_key(key) {
            if let Some(victim) = m.keys().next().cloned() {
                m.remove(&victim);
            }
        }
        m.insert(key.to_string(), body);
    }

    /// The last good answer for `key`, if any.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_latest_wins() {
        let c = StaleCache::new(2);
        c.put("a", Bytes::from_static(b"1"));
        c.put("a", Bytes::from_static(b"2"));
        c.put("b", Bytes::from_static(b"3"));
        c.put("c", Bytes::from_static(b"4"));
        let held = ["a", "b", "c"].iter().filter(|k| c.get(k).is_some()).count();
        assert_eq!(held, 2);
        assert_eq!(c.get("c").unwrap(), "4");
    }
}
