//! A shard's Call-ID routes: which endpoint a message with a given Call-ID is for.
//!
//! Responses (and in-dialog requests) find their endpoint by Call-ID. A route is made when a
//! Call-ID is first seen and was kept for the whole run: ~100 bytes per call, 720 MB after an
//! hour at 2,000 calls/s. A call's route now retires when the call has ended, and goes once
//! its last transaction can have ended too (64 × T1, RFC 3261 Timers B/F/H/J and RFC 6026's
//! Timer M): stragglers (a retransmitted final response) still reach the endpoint and its
//! trace until then, and nothing can arrive for the call after.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::fasthash::FastMap;

/// Call-ID → endpoint index, with the routes of ended calls retiring in order.
#[derive(Debug, Default)]
pub struct CallRoutes {
    map: FastMap<String, usize>,
    /// Ended calls' Call-IDs and when their routes go, oldest first.
    retired: VecDeque<(Instant, String)>,
}

impl CallRoutes {
    /// The endpoint of `call_id`.
    pub fn get(&self, call_id: &str) -> Option<usize> {
        self.map.get(call_id).copied()
    }

    /// A route for `call_id` exists.
    pub fn contains(&self, call_id: &str) -> bool {
        self.map.contains_key(call_id)
    }

    /// Routes `call_id` to endpoint `idx` (a route already there stays as it is).
    pub fn insert(&mut self, call_id: String, idx: usize) {
        self.map.entry(call_id).or_insert(idx);
    }

    /// The call of `call_id` ended at `now`: its route goes `linger` later (64 × T1).
    pub fn retire(&mut self, call_id: String, now: Instant, linger: Duration) {
        self.retired.push_back((now + linger, call_id));
    }

    /// Drops the routes whose time has come.
    pub fn expire(&mut self, now: Instant) {
        while self.retired.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, cid)) = self.retired.pop_front() {
                self.map.remove(&cid);
            }
        }
    }

    /// Routes held (calls in progress, registrations, ended calls not yet gone).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No route held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_calls_route_lasts_its_linger_and_others_stay() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(32);
        let mut r = CallRoutes::default();
        r.insert("reg-1".into(), 0);
        r.insert("call-1".into(), 0);
        r.insert("call-2".into(), 1);
        r.insert("call-1".into(), 7); // a second sighting does not move the route
        assert_eq!(r.get("call-1"), Some(0));
        r.retire("call-1".into(), t0, linger);
        r.retire("call-2".into(), t0 + Duration::from_secs(1), linger);
        r.expire(t0 + linger - Duration::from_millis(1));
        assert_eq!(r.len(), 3, "a straggler still finds its endpoint");
        r.expire(t0 + linger);
        assert_eq!(r.get("call-1"), None);
        assert_eq!(r.get("call-2"), Some(1));
        r.expire(t0 + linger + Duration::from_secs(1));
        assert!(!r.contains("call-2"));
        assert_eq!(r.get("reg-1"), Some(0), "routes not retired stay");
        assert!(!r.is_empty());
    }
}
