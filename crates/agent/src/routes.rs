//! A shard's Call-ID routes: which endpoint a message with a given Call-ID is for.
//!
//! Responses (and in-dialog requests) find their endpoint by Call-ID. A route is made when a
//! Call-ID is first seen and was kept for the whole run: ~100 bytes per call, 720 MB after an
//! hour at 2,000 calls/s. A call's route now retires when the call has ended, and goes once
//! its last transaction can have ended too (64 × T1, RFC 3261 Timers B/F/H/J and RFC 6026's
//! Timer M): stragglers (a retransmitted final response) still reach the endpoint and its
//! trace until then, and nothing can arrive for the call after.
//!
//! The map hashes with foldhash keyed per run ([`RouteHasher`]), not with the unkeyed Fx hash
//! of `fasthash`: the Call-IDs of incoming calls are the server's, and with a hash an outsider
//! can compute, Call-IDs made to collide would pile up in one probe chain (every lookup of the
//! shard would then compare against all of them). foldhash is also a little cheaper than Fx
//! with its finaliser: ~133 instructions per lookup against ~165 (callgrind, `cps.sh 1000
//! 200`; see docs/notes-callroute.md).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

/// The Call-ID map's hasher: foldhash with keys from the operating system's random source
/// (through std's `RandomState`), one shared key per process and one of its own per map.
#[derive(Debug, Clone)]
pub struct RouteHasher(SeedableRandomState);

impl Default for RouteHasher {
    fn default() -> Self {
        static SHARED: OnceLock<SharedSeed> = OnceLock::new();
        let shared = SHARED.get_or_init(|| SharedSeed::from_u64(os_random()));
        Self(SeedableRandomState::with_seed(os_random(), shared))
    }
}

impl BuildHasher for RouteHasher {
    type Hasher = <SeedableRandomState as BuildHasher>::Hasher;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// 64 random bits: std's `RandomState` takes its keys from the system's random source
/// (`getrandom`), once per thread, and each new one differs from the last.
fn os_random() -> u64 {
    RandomState::new().hash_one(0x5eed_u64)
}

/// Call-ID → endpoint index, with the routes of ended calls retiring in order.
#[derive(Debug, Default)]
pub struct CallRoutes {
    /// `Box<str>` keys: 16 bytes a slot instead of `String`'s 24 (the table holds ~32 s of
    /// calls, ~100,000 routes at 3,000 calls/s).
    map: HashMap<Box<str>, usize, RouteHasher>,
    /// Ended calls' Call-IDs and when their routes go, oldest first.
    retired: VecDeque<(Instant, Box<str>)>,
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
        self.map.entry(call_id.into_boxed_str()).or_insert(idx);
    }

    /// The call of `call_id` ended at `now`: its route goes `linger` later (64 × T1).
    pub fn retire(&mut self, call_id: String, now: Instant, linger: Duration) {
        self.retired
            .push_back((now + linger, call_id.into_boxed_str()));
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

    /// The low `bits` of `s`'s hash: the bucket it goes to in a table of 2^bits.
    fn bucket(h: &RouteHasher, s: &str, bits: u32) -> u64 {
        h.hash_one(s) & ((1 << bits) - 1)
    }

    #[test]
    fn call_ids_made_to_share_a_bucket_under_one_key_spread_under_another() {
        // What a server would do against a hash it can compute: search for Call-IDs that all
        // land in one bucket (here of 1,024). Each route table has a key of its own, so the
        // same Call-IDs, in the next run's (or the next shard's) table, land where chance puts
        // them: 64 random values in 1,024 buckets take ~62 distinct ones.
        let known = RouteHasher::default();
        let target = bucket(&known, "probe@10.0.0.1", 10);
        let chosen: Vec<String> = (0u64..)
            .map(|i| format!("{i:016x}@10.0.0.1"))
            .filter(|c| bucket(&known, c, 10) == target)
            .take(64)
            .collect();
        assert_eq!(chosen.len(), 64);
        let other = RouteHasher::default();
        let spread: std::collections::HashSet<u64> =
            chosen.iter().map(|c| bucket(&other, c, 10)).collect();
        assert!(
            spread.len() >= 40,
            "{} distinct buckets of 64 keys",
            spread.len()
        );
        assert_ne!(known.hash_one("a@b"), other.hash_one("a@b"));

        // And the table finds each route, the colliding ones among 10,000 others.
        let mut r = CallRoutes::default();
        for i in 0..10_000 {
            r.insert(format!("{:016x}@127.0.0.1", i * 7919), i as usize);
        }
        for (n, c) in chosen.iter().enumerate() {
            r.insert(c.clone(), 20_000 + n);
        }
        for i in 0..10_000 {
            assert_eq!(
                r.get(&format!("{:016x}@127.0.0.1", i * 7919)),
                Some(i as usize)
            );
        }
        for (n, c) in chosen.iter().enumerate() {
            assert_eq!(r.get(c), Some(20_000 + n));
        }
        assert_eq!(r.get("0000000000000001@127.0.0.1"), None);
        assert_eq!(r.len(), 10_064);
    }

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
