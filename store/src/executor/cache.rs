//! Folded aggregate states, kept between commands so a long stream (a member
//! who earned points a thousand times) costs no more to command than a new
//! one. A cached state is only a starting point: the handler always reads the
//! stream from the cached version on before deciding, and the append's
//! expected version still guards it, so the cache is correct with any number
//! of writers and replicas. Bounded: least recently used streams are dropped.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use mileage_domain::Aggregate;

type Entry = (Arc<dyn Any + Send + Sync>, Option<u64>);

/// The cache of one process.
pub struct StateCache {
    entries: Mutex<LruCache<String, Entry>>,
}

impl StateCache {
    /// A cache of at most `capacity` streams.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The cached state of `stream` and its version, if any.
    pub fn get<A: Aggregate + Send + Sync + 'static>(
        &self,
        stream: &str,
    ) -> Option<(A, Option<u64>)> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (state, version) = entries.get(stream)?;
        state.downcast_ref::<A>().map(|s| (s.clone(), *version))
    }

    /// Remembers `state` at `version` unless a newer one is cached.
    pub fn put<A: Aggregate + Send + Sync + 'static>(
        &self,
        stream: &str,
        state: A,
        version: Option<u64>,
    ) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, cached)) = entries.peek(stream)
            && *cached > version
        {
            return;
        }
        entries.put(stream.to_owned(), (Arc::new(state), version));
    }
}

#[cfg(test)]
mod tests {
    use mileage_domain::member::Member;
    use mileage_domain::phone_registry::PhoneRegistry;

    use super::*;

    #[test]
    fn keeps_the_newest_state_and_forgets_the_least_used() {
        let cache = StateCache::new(NonZeroUsize::new(2).unwrap());
        cache.put("member-1", Member::default(), Some(5));
        cache.put("member-1", Member::default(), Some(3));
        assert_eq!(
            cache.get::<Member>("member-1").map(|(_, v)| v),
            Some(Some(5)),
            "older never replaces newer"
        );
        assert!(
            cache.get::<PhoneRegistry>("member-1").is_none(),
            "a stream is read as its own aggregate only"
        );
        cache.put("member-2", Member::default(), Some(1));
        cache.put("member-3", Member::default(), Some(1));
        assert!(
            cache.get::<Member>("member-1").is_none(),
            "least recently used dropped"
        );
    }
}
