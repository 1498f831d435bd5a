//! Desired state against observed state: the one way the cores change the
//! system. Each core computes what it wants from facts, compares it with
//! what it observed and emits only the difference, so every apply is
//! idempotent and a restart changes nothing. What it emitted is remembered
//! here, by a typed key, until an observation shows it took effect: the
//! same action is not sent again before `retry_ms` (the system may simply
//! not have caught up yet), and after that it is a retry, which the cores
//! log as a warning. The roam's routes and the relay's routes, sysctls and
//! NDP targets all go through an [`InFlight`].

use std::collections::BTreeMap;

/// Whether an action is sent for the first time or again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    First,
    /// Sent before, `retry_ms` or more ago, and still not observed.
    Retry,
}

impl Attempt {
    pub fn is_retry(self) -> bool {
        self == Attempt::Retry
    }
}

/// Actions sent and not yet observed to have taken effect, by key, with the
/// monotonic ms they were (last) sent at.
#[derive(Debug, Clone)]
pub struct InFlight<K: Ord> {
    sent: BTreeMap<K, u64>,
    retry_ms: u64,
}

impl<K: Ord + Clone> InFlight<K> {
    pub fn new(retry_ms: u64) -> Self {
        Self {
            sent: BTreeMap::new(),
            retry_ms,
        }
    }

    /// May the action `key` be sent at `now_ms`? `None` while it waits for
    /// its effect; otherwise it is recorded as sent now.
    pub fn send(&mut self, now_ms: u64, key: K) -> Option<Attempt> {
        if self.waiting(now_ms, &key) {
            return None;
        }
        let attempt = match self.sent.insert(key, now_ms) {
            Some(_) => Attempt::Retry,
            None => Attempt::First,
        };
        Some(attempt)
    }

    /// `key` was sent less than `retry_ms` before `now_ms`.
    pub fn waiting(&self, now_ms: u64, key: &K) -> bool {
        self.sent
            .get(key)
            .is_some_and(|t| now_ms.saturating_sub(*t) < self.retry_ms)
    }

    /// The action failed at `now_ms` (or was sent some other way): not again
    /// before `retry_ms`.
    pub fn hold(&mut self, now_ms: u64, key: K) {
        self.sent.insert(key, now_ms);
    }

    /// Observed done, or superseded: forget it.
    pub fn settle(&mut self, key: &K) {
        self.sent.remove(key);
    }

    /// Keeps the keys `keep` accepts (the others took effect).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.sent.retain(|k, _| keep(k));
    }

    /// Forgets what was last sent `after_ms` or longer ago: carried out long
    /// ago, or no longer wanted (what keeps failing is re-sent, and
    /// re-recorded, every `retry_ms`).
    pub fn expire(&mut self, now_ms: u64, after_ms: u64) {
        self.sent
            .retain(|_, t| now_ms.saturating_sub(*t) < after_ms);
    }

    /// How many actions wait.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// When the earliest waiting action may be sent again.
    pub fn poll_at(&self) -> Option<u64> {
        self.sent.values().map(|t| t + self.retry_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_waits_for_its_effect_then_is_a_retry() {
        let mut f = InFlight::new(10_000);
        assert_eq!(f.send(0, "add a"), Some(Attempt::First));
        assert_eq!(f.send(9_999, "add a"), None, "not again while it may land");
        assert_eq!(f.poll_at(), Some(10_000));
        assert_eq!(f.send(10_000, "add a"), Some(Attempt::Retry));
        assert_eq!(f.send(10_001, "add b"), Some(Attempt::First), "by key");
        f.settle(&"add a");
        assert_eq!(f.send(10_002, "add a"), Some(Attempt::First));
    }

    #[test]
    fn held_retained_and_expired_keys() {
        let mut f = InFlight::new(100);
        f.hold(50, 1);
        assert!(f.waiting(149, &1) && !f.waiting(150, &1));
        f.send(60, 2);
        f.send(60, 3);
        f.retain(|k| *k != 2);
        assert_eq!(f.send(61, 2), Some(Attempt::First));
        f.expire(255, 200);
        assert_eq!(f.send(255, 1), Some(Attempt::First), "forgotten after 200");
        assert_eq!(f.send(255, 3), Some(Attempt::Retry), "sent at 60: kept");
        f.clear();
        assert_eq!(f.poll_at(), None);
    }
}
