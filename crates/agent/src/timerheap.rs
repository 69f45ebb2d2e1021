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

use std::time::Instant;

/// `pos` of an endpoint without a deadline.
const NONE: u32 = u32::MAX;

/// Deadlines keyed by endpoint index (`0..n`, grown on demand).
#[derive(Debug, Default)]
pub struct TimerHeap {
    /// The binary heap, earliest `(deadline, endpoint)` first.
    heap: Vec<(Instant, usize)>,
    /// Each endpoint's slot in `heap`, or `NONE`.
    pos: Vec<u32>,
}

impl TimerHeap {
    /// A queue for endpoints `0..endpoints` (more grow it).
    pub fn with_capacity(endpoints: usize) -> Self {
        TimerHeap {
            heap: Vec::with_capacity(endpoints),
            pos: vec![NONE; endpoints],
        }
    }

    /// Endpoint `idx`'s deadline.
    pub fn get(&self, idx: usize) -> Option<Instant> {
        let p = *self.pos.get(idx)?;
        (p != NONE).then(|| self.heap[p as usize].0)
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
                self.heap.push((at, idx));
                self.pos[idx] = slot(i);
                self.sift_up(i);
            }
            (p, None) => {
                self.remove_at(p as usize);
            }
            (p, Some(at)) => {
                let i = p as usize;
                let old = self.heap[i].0;
                if at == old {
                    return;
                }
                self.heap[i].0 = at;
                if at < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.0)
    }

    /// The endpoint whose deadline is earliest, if it is at or before `now`, with that
    /// deadline (removed: set the next one after handling it).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let &(at, idx) = self.heap.first()?;
        if at > now {
            return None;
        }
        self.remove_at(0);
        Some((idx, at))
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
        let (_, idx) = self.heap.swap_remove(i);
        self.pos[idx] = NONE;
        if i < self.heap.len() {
            self.pos[self.heap[i].1] = slot(i);
            // The entry moved in from the end may belong above or below `i`.
            if i > 0 && self.heap[i] < self.heap[(i - 1) / 2] {
                self.sift_up(i);
            } else {
                self.sift_down(i);
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            let p = self.heap[parent];
            if e >= p {
                break;
            }
            self.heap[i] = p;
            self.pos[p.1] = slot(i);
            i = parent;
        }
        self.heap[i] = e;
        self.pos[e.1] = slot(i);
    }

    fn sift_down(&mut self, mut i: usize) {
        let e = self.heap[i];
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.heap[right] < self.heap[left] {
                right
            } else {
                left
            };
            let c = self.heap[child];
            if c >= e {
                break;
            }
            self.heap[i] = c;
            self.pos[c.1] = slot(i);
            i = child;
        }
        self.heap[i] = e;
        self.pos[e.1] = slot(i);
    }
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
}
