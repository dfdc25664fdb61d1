//! The bounded priority queue of requests waiting for a healthy endpoint:
//! higher priority first, first-in first-out within a priority, and its
//! overflow policy, *shed lowest* (a full queue displaces the newest of the
//! lowest waiting requests for one of higher priority, or refuses).
//!
//! Not here: the waiting itself (timeouts, cancellation, granting an endpoint),
//! which the pool does around this queue.

use std::cmp::Reverse;
use std::collections::BTreeMap;

#[cfg(doc)]
use super::Pool;

/// The priority of `publish`, `command` and `subscribe`: the middle, so that
/// [`Pool::send`] can go ahead of them or behind them.
pub const DEFAULT_REQUEST_PRIORITY: u8 = 128;

/// Position in the wait queue: higher priority first, then arrival order.
pub(super) type Key = (Reverse<u8>, u64);

/// The bounded priority queue of waiting requests (see the module docs).
pub(super) struct WaitQueue<T> {
    capacity: usize,
    next: u64,
    items: BTreeMap<Key, T>,
}

impl<T> WaitQueue<T> {
    pub(super) fn new(capacity: usize) -> WaitQueue<T> {
        WaitQueue {
            capacity,
            next: 0,
            items: BTreeMap::new(),
        }
    }

    /// Queues `item`; on overflow either returns it (refused) or queues it and
    /// hands back the displaced one.
    pub(super) fn push(&mut self, priority: u8, item: T) -> Result<(Key, Option<T>), T> {
        let mut displaced = None;
        if self.items.len() >= self.capacity {
            let lowest = *self.items.keys().next_back().expect("full queue has items");
            if priority <= lowest.0 .0 {
                return Err(item);
            }
            displaced = self.items.remove(&lowest);
        }
        let key = (Reverse(priority), self.next);
        self.next += 1;
        self.items.insert(key, item);
        Ok((key, displaced))
    }

    pub(super) fn pop(&mut self) -> Option<T> {
        self.items.pop_first().map(|(_, v)| v)
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<T> {
        self.items.remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_releases_higher_priority_first_then_fifo() {
        let mut q = WaitQueue::new(10);
        for (p, v) in [(1, "low"), (9, "high-1"), (5, "mid"), (9, "high-2")] {
            assert!(q.push(p, v).is_ok());
        }
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["high-1", "high-2", "mid", "low"]);
    }

    #[test]
    fn a_full_queue_sheds_the_newest_lowest_or_refuses() {
        let mut q = WaitQueue::new(3);
        q.push(5, "a").expect("room");
        let (b, _) = q.push(1, "b").expect("room");
        q.push(1, "c").expect("room");
        // Not above the lowest waiting (1): refused.
        assert_eq!(q.push(1, "d"), Err("d"));
        assert_eq!(q.push(0, "e"), Err("e"));
        // Above it: the newest of the lowest ("c") is displaced.
        let (_, displaced) = q.push(2, "f").expect("displaces");
        assert_eq!(displaced, Some("c"));
        assert_eq!(q.len(), 3);
        assert_eq!(q.remove(&b), Some("b"));
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["a", "f"]);
    }
}
