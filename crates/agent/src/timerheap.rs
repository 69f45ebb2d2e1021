//! The shard's SIP timer queue: one deadline per endpoint, in an indexed binary heap.
//!
//! Each endpoint has at most one wake-up (the earliest of its UA timers, script step and
//! scenario action). Moving it is a decrease- or increase-key in place and clearing it
//! removes the entry, so the heap never holds stale entries: its size is the number of
//! endpoints with a wake-up, not the number of re-schedules since the oldest pending
//! deadline (Timer K/M keep deadlines pending for seconds, and a lazy heap then holds tens
//! of thousands of dead entries, out of cache).
//!
//! Order is by deadline, then endpoint index: the order a `BinaryHeap<Reverse<(Instant,
//! usize)>>` pops its live entries in, so timers fire in the same order as before.

use std::time::{Duration, Instant};

/// `pos` of an endpoint without a deadline.
const NONE: u32 = u32::MAX;

/// Deadlines keyed by endpoint index (`0..n`, grown on demand).
///
/// An entry is one `u128`: the deadline in nanoseconds since `base` in the high 64 bits,
/// the endpoint in the low 32 bits. Ordering entries is then one integer compare, and an
/// entry is 16 bytes.
#[derive(Debug)]
pub struct TimerHeap {
    /// The binary heap, earliest `(deadline, endpoint)` first.
    heap: Vec<u128>,
    /// Each endpoint's slot in `heap`, or `NONE`.
    pos: Vec<u32>,
    /// The time deadlines count from: an hour before the queue was made. A deadline
    /// before it (none is, in a run) counts as `base`: due at once, never early.
    base: Instant,
}

impl Default for TimerHeap {
    fn default() -> Self {
        TimerHeap::with_capacity(0)
    }
}

impl TimerHeap {
    /// A queue for endpoints `0..endpoints` (more grow it).
    pub fn with_capacity(endpoints: usize) -> Self {
        let now = Instant::now();
        TimerHeap {
            heap: Vec::with_capacity(endpoints),
            pos: vec![NONE; endpoints],
            base: now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
        }
    }

    fn entry(&self, at: Instant, idx: usize) -> u128 {
        let nanos =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let idx = u32::try_from(idx).expect("endpoint index fits u32");
        (u128::from(nanos) << 64) | u128::from(idx)
    }

    fn at(&self, e: u128) -> Instant {
        self.base + Duration::from_nanos((e >> 64) as u64)
    }

    /// Endpoint `idx`'s deadline.
    pub fn get(&self, idx: usize) -> Option<Instant> {
        let p = *self.pos.get(idx)?;
        (p != NONE).then(|| self.at(self.heap[p as usize]))
    }

    /// Sets endpoint `idx`'s deadline (`None` removes it).
    pub fn set(&mut self, idx: usize, at: Option<Instant>) {
        if self.pos.len() <= idx {
            self.pos.resize(idx + 1, NONE);
        }
        let p = self.pos[idx];
        match (p, at) {
            (NONE, None) => {}
            (NONE, Some(at)) => {
                let i = self.heap.len();
                let e = self.entry(at, idx);
                self.heap.push(e);
                self.sift_up(i);
            }
            (p, None) => {
                self.remove_at(p as usize);
            }
            (p, Some(at)) => {
                let i = p as usize;
                let old = self.heap[i];
                let e = self.entry(at, idx);
                if e == old {
                    return;
                }
                self.heap[i] = e;
                if e < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|&e| self.at(e))
    }

    /// The endpoint whose deadline is earliest, if it is at or before `now`, with that
    /// deadline (removed: set the next one after handling it).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let &e = self.heap.first()?;
        let at = self.at(e);
        if at > now {
            return None;
        }
        self.remove_at(0);
        Some((endpoint(e), at))
    }

    /// How many endpoints have a deadline.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no endpoint has a deadline.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    fn remove_at(&mut self, i: usize) {
        let Some(last) = self.heap.pop() else { return };
        let gone = if i < self.heap.len() {
            std::mem::replace(&mut self.heap[i], last)
        } else {
            last
        };
        self.pos[endpoint(gone)] = NONE;
        if i < self.heap.len() {
            if i == 0 {
                // The root: move the hole to the bottom (one compare a level), then the
                // entry from the end up from there; it usually belongs near the bottom.
                self.sift_down_to_bottom();
            } else if self.heap[i] < self.heap[(i - 1) / 2] {
                // The entry moved in from the end may belong above or below `i`.
                self.sift_up(i);
            } else {
                self.sift_down(i);
            }
        }
    }

    /// Puts entry `e` in slot `i` and records where its endpoint now is.
    fn put(&mut self, i: usize, e: u128) {
        self.heap[i] = e;
        self.pos[endpoint(e)] = slot(i);
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            let p = self.heap[parent];
            if e >= p {
                break;
            }
            self.put(i, p);
            i = parent;
        }
        self.put(i, e);
    }

    fn sift_down(&mut self, mut i: usize) {
        let e = self.heap[i];
        while let Some(child) = self.smaller_child(i) {
            let c = self.heap[child];
            if c >= e {
                break;
            }
            self.put(i, c);
            i = child;
        }
        self.put(i, e);
    }

    /// The child of slot `i` with the earlier entry, if `i` has children.
    fn smaller_child(&self, i: usize) -> Option<usize> {
        let left = 2 * i + 1;
        let right = left + 1;
        match self.heap.get(right) {
            Some(r) if *r < self.heap[left] => Some(right),
            _ => (left < self.heap.len()).then_some(left),
        }
    }

    fn sift_down_to_bottom(&mut self) {
        let mut i = 0;
        while let Some(child) = self.smaller_child(i) {
            self.heap.swap(i, child);
            self.pos[endpoint(self.heap[i])] = slot(i);
            i = child;
        }
        self.sift_up(i);
    }
}

fn endpoint(e: u128) -> usize {
    (e as u32) as usize
}

fn slot(i: usize) -> u32 {
    // Endpoints are counted in `usize` but a shard has far fewer than 2^32 - 1.
    u32::try_from(i).expect("timer heap slot fits u32")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Random set/clear/pop against a reference model (a sorted map of live deadlines):
    /// the heap pops the same `(deadline, endpoint)` sequence, never one not yet due.
    #[test]
    fn matches_a_sorted_model_under_random_updates() {
        let t0 = Instant::now();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut heap = TimerHeap::with_capacity(8);
        let mut model: BTreeMap<usize, Instant> = BTreeMap::new();
        let mut now = t0;
        for _ in 0..200_000 {
            match rnd(10) {
                0..=5 => {
                    let idx = rnd(300) as usize;
                    // Few distinct deadlines: ties are common and ordered by endpoint.
                    let at = now + Duration::from_millis(rnd(50));
                    heap.set(idx, Some(at));
                    model.insert(idx, at);
                }
                6 => {
                    let idx = rnd(300) as usize;
                    heap.set(idx, None);
                    model.remove(&idx);
                }
                _ => {
                    now += Duration::from_millis(rnd(5));
                    let want = model
                        .iter()
                        .map(|(&i, &at)| (at, i))
                        .min()
                        .filter(|(at, _)| *at <= now);
                    let got = heap.pop_due(now);
                    assert_eq!(got.map(|(i, at)| (at, i)), want);
                    if let Some((i, at)) = got {
                        assert!(at <= now, "fired early");
                        model.remove(&i);
                    }
                }
            }
            assert_eq!(heap.len(), model.len());
            assert_eq!(
                heap.next_deadline(),
                model.values().min().copied(),
                "earliest deadline"
            );
        }
        for (&i, &at) in &model {
            assert_eq!(heap.get(i), Some(at));
        }
    }

    #[test]
    fn moving_and_clearing_leaves_one_entry_per_endpoint() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::default();
        for k in 0..1000u64 {
            // Every endpoint re-scheduled many times: the heap stays at one entry each.
            heap.set(
                (k % 10) as usize,
                Some(t0 + Duration::from_millis(1000 - k)),
            );
        }
        assert_eq!(heap.len(), 10);
        assert_eq!(heap.next_deadline(), Some(t0 + Duration::from_millis(1)));
        assert_eq!(heap.pop_due(t0), None, "nothing is due before its deadline");
        assert_eq!(
            heap.pop_due(t0 + Duration::from_millis(1)),
            Some((9, t0 + Duration::from_millis(1)))
        );
        heap.set(3, None);
        heap.set(3, None);
        assert_eq!(heap.get(3), None);
        assert_eq!(heap.len(), 8);
        let mut fired = Vec::new();
        while let Some((i, _)) = heap.pop_due(t0 + Duration::from_secs(10)) {
            fired.push(i);
        }
        assert_eq!(fired, vec![8, 7, 6, 5, 4, 2, 1, 0]);
        assert!(heap.is_empty());
    }

    #[test]
    fn a_deadline_long_past_is_due_at_once() {
        let t0 = Instant::now();
        let mut heap = TimerHeap::default();
        let Some(past) = t0.checked_sub(Duration::from_secs(7200)) else {
            return; // the clock cannot go back that far on this machine
        };
        heap.set(1, Some(t0 + Duration::from_millis(1)));
        heap.set(0, Some(past));
        let (idx, at) = heap.pop_due(t0).expect("due");
        assert_eq!(idx, 0);
        assert!(at <= t0, "never later than asked for");
        assert_eq!(heap.pop_due(t0), None);
    }
}
