//! The media deadlines of a shard's calls, on a timing wheel of the media grid.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::MEDIA_GRID;

/// Slots of the wheel, one per [`MEDIA_GRID`] step: a call's next media deadline is at most
/// a packet time away (its next send or read, ≤ 20 ms with the usual ptime); farther ones
/// (a long ptime, a call on hold waiting for its second's sample) wait in a heap and move
/// onto the wheel as it turns.
const WHEEL: u64 = 64;

/// The media deadlines of a shard's calls (next RTP/RTCP send, RTP read, per-second sample),
/// apart from the SIP timer heap: a paced send needs none of the endpoint's SIP work (UA
/// timers, script, actions), so the shard pops every deadline due in a pass and runs only
/// the call's media ([`super::CallMedia::on_timeout`]). One entry per endpoint is live;
/// re-arming leaves the old entry behind, skipped when it comes up.
///
/// The deadlines are on the media grid (1 ms), so they sit in a wheel of one slot per grid
/// step: setting one is a push onto its slot's list, and a pass takes whole slots. A binary
/// heap of 1,500 calls per shard cost ≈ 3.5 % of a shard at 3,000 calls (its sift-downs
/// miss the cache at every level; docs/notes-rtpsched.md). Deadlines off the grid go in
/// the slot of the grid step after them and are handed out when due, as before.
#[derive(Debug, Default)]
pub struct MediaPacer {
    /// The instant of tick 0 (the first deadline set: later grid deadlines are whole ticks
    /// after it).
    origin: Option<Instant>,
    /// `slots[t % WHEEL]`: the entries of tick `t`, for `cursor <= t < cursor + WHEEL`.
    slots: Vec<Vec<(Instant, u32)>>,
    /// Entries in `slots` (stale ones included).
    in_wheel: usize,
    /// Every tick before this one is taken.
    cursor: u64,
    /// Deadlines past the wheel's end when they were set.
    far: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Each endpoint's live deadline.
    armed: Vec<Option<Instant>>,
    /// Endpoints with a live deadline (calls whose media runs).
    live: usize,
    /// The earliest live deadline, while nothing changed since it was found.
    next: Option<Option<Instant>>,
}

impl MediaPacer {
    /// Sets endpoint `idx`'s next media deadline (`None`: no media running).
    pub fn set(&mut self, idx: usize, at: Option<Instant>) {
        if self.armed.len() <= idx {
            self.armed.resize(idx + 1, None);
        }
        let slot = &mut self.armed[idx];
        if *slot == at {
            return;
        }
        match (slot.is_some(), at.is_some()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        *slot = at;
        self.next = None;
        if let Some(at) = at {
            self.insert(at, idx as u32);
        }
    }

    /// The wheel's tick of `at`: the first grid step at or after it, not before the cursor.
    fn tick(&mut self, at: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(at);
        let step = MEDIA_GRID.as_nanos();
        let since = at.saturating_duration_since(origin).as_nanos();
        u64::try_from(since.div_ceil(step))
            .unwrap_or(u64::MAX)
            .max(self.cursor)
    }

    /// The tick whose grid step has begun by `now` (deadlines of earlier ticks are due).
    fn tick_of_now(&self, now: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let since = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(since / MEDIA_GRID.as_nanos()).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, at: Instant, idx: u32) {
        let t = self.tick(at);
        if t >= self.cursor.saturating_add(WHEEL) {
            self.far.push(Reverse((at, idx)));
            return;
        }
        if self.slots.is_empty() {
            self.slots = (0..WHEEL).map(|_| Vec::new()).collect();
        }
        self.slots[(t % WHEEL) as usize].push((at, idx));
        self.in_wheel += 1;
    }

    fn is_live(&self, at: Instant, idx: u32) -> bool {
        self.armed.get(idx as usize).copied().flatten() == Some(at)
    }

    /// Moves the far deadlines that the wheel now reaches onto it (stale ones are dropped).
    fn refill(&mut self) {
        while let Some(&Reverse((at, idx))) = self.far.peek() {
            if !self.is_live(at, idx) {
                self.far.pop();
                continue;
            }
            if self.tick(at) >= self.cursor.saturating_add(WHEEL) {
                return;
            }
            self.far.pop();
            self.insert(at, idx);
        }
    }

    /// Moves the cursor to `to`; the slots passed must be empty. An empty wheel jumps.
    fn advance(&mut self, to: u64) {
        if to > self.cursor {
            self.cursor = to;
            self.refill();
        }
    }

    /// The earliest live deadline (stale entries met on the way are dropped).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        if let Some(next) = self.next {
            return next;
        }
        let next = self.find_next();
        self.next = Some(next);
        next
    }

    fn find_next(&mut self) -> Option<Instant> {
        self.refill();
        for t in self.cursor..self.cursor.saturating_add(WHEEL) {
            if self.in_wheel == 0 {
                break;
            }
            let k = (t % WHEEL) as usize;
            let mut slot = std::mem::take(&mut self.slots[k]);
            let before = slot.len();
            slot.retain(|&(at, idx)| self.is_live(at, idx));
            self.in_wheel -= before - slot.len();
            // Ticks are the grid steps at or after each deadline: an earlier slot's
            // deadlines are all earlier than a later slot's.
            let min = slot.iter().map(|e| e.0).min();
            self.slots[k] = slot;
            if min.is_some() {
                return min;
            }
        }
        while let Some(&Reverse((at, idx))) = self.far.peek() {
            if self.is_live(at, idx) {
                return Some(at);
            }
            self.far.pop();
        }
        None
    }

    /// The next endpoint whose deadline is at or before `now`, and that deadline (it is
    /// cleared: set the next one after running its media).
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        let now_tick = self.tick_of_now(now);
        loop {
            if self.in_wheel == 0 {
                // Nothing on the wheel: jump to now (far deadlines move on as it reaches them).
                self.advance(now_tick);
                if self.in_wheel == 0 {
                    return None;
                }
            }
            if self.cursor > now_tick {
                break;
            }
            let k = (self.cursor % WHEEL) as usize;
            match self.slots[k].pop() {
                Some((at, idx)) => {
                    self.in_wheel -= 1;
                    if self.is_live(at, idx) && at <= now {
                        return Some(self.take(idx, at));
                    }
                    // A stale entry (re-armed or ended since); a live one not yet due cannot
                    // be in a tick that has begun (its tick is the grid step after it), but
                    // kept for safety.
                    if self.is_live(at, idx) {
                        self.slots[k].push((at, idx));
                        self.in_wheel += 1;
                        break;
                    }
                }
                None => self.advance(self.cursor + 1),
            }
        }
        // The tick that begins next may hold deadlines off the grid that are due already.
        let k = (self.cursor % WHEEL) as usize;
        let slot = self.slots.get(k)?;
        let i = slot
            .iter()
            .position(|&(at, idx)| at <= now && self.is_live(at, idx))?;
        let (at, idx) = self.slots[k].swap_remove(i);
        self.in_wheel -= 1;
        Some(self.take(idx, at))
    }

    fn take(&mut self, idx: u32, at: Instant) -> (usize, Instant) {
        let idx = idx as usize;
        self.armed[idx] = None;
        self.live -= 1;
        self.next = None;
        (idx, at)
    }

    /// True while some call's media runs.
    pub fn active(&self) -> bool {
        self.live > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// A step of the grid.
    const STEP: Duration = MEDIA_GRID;

    #[test]
    fn pacer_hands_out_each_live_deadline_once_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = MediaPacer::default();
        assert!(!p.active());
        p.set(3, Some(ms(20)));
        p.set(1, Some(ms(10)));
        p.set(1, Some(ms(30))); // re-armed: the 10 ms entry is stale
        p.set(5, Some(ms(5)));
        p.set(5, None); // media ended
        assert!(p.active());
        assert_eq!(p.next_deadline(), Some(ms(20)));
        assert_eq!(p.pop_due(ms(19)), None);
        assert_eq!(p.pop_due(ms(40)), Some((3, ms(20))));
        assert_eq!(p.pop_due(ms(40)), Some((1, ms(30))));
        assert_eq!(p.pop_due(ms(40)), None);
        assert!(!p.active());
        // Same deadline twice: one entry handed out.
        p.set(2, Some(ms(50)));
        p.set(2, Some(ms(50)));
        assert_eq!(p.pop_due(ms(60)), Some((2, ms(50))));
        assert_eq!((p.pop_due(ms(60)), p.next_deadline()), (None, None));
    }

    /// A small deterministic generator (xorshift), so the test is the same every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The wheel hands out the same deadlines as a plain ordered set of the live ones, at
    /// the same passes: on the grid and off it, near and past the wheel's end (far), stale
    /// and ended entries, passes late by up to 200 ms.
    #[test]
    fn the_wheel_agrees_with_an_ordered_set() {
        let t0 = Instant::now();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut p = MediaPacer::default();
        let mut live: Vec<Option<Instant>> = vec![None; 64];
        let mut now = t0;
        for round in 0..20_000 {
            // Some endpoints get a new deadline (or none) ahead of now.
            for _ in 0..rng.next(4) {
                let idx = rng.next(64) as usize;
                let at = match rng.next(10) {
                    0 => None,
                    1 => Some(now + Duration::from_micros(rng.next(300_000))),
                    2 => Some(now + Duration::from_micros(rng.next(30_000))),
                    _ => Some(now + STEP * (1 + rng.next(25) as u32)),
                };
                p.set(idx, at);
                live[idx] = at;
            }
            let want_next = live.iter().flatten().min().copied();
            assert_eq!(p.next_deadline(), want_next, "round {round}");
            assert_eq!(p.active(), want_next.is_some());
            // A pass: now moves on by up to a few steps (sometimes far), every due one out.
            now += match rng.next(50) {
                0 => Duration::from_millis(200),
                _ => Duration::from_micros(rng.next(3_000)),
            };
            let mut due: BTreeSet<(Instant, usize)> = live
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.filter(|a| *a <= now).map(|a| (a, i)))
                .collect();
            while let Some((idx, at)) = p.pop_due(now) {
                assert!(due.remove(&(at, idx)), "round {round}: {idx} at {at:?}");
                live[idx] = None;
            }
            assert!(due.is_empty(), "round {round}: not handed out {due:?}");
        }
    }
}
