//! RFC 3261 §17 transaction timers as data: a named enum indexing a fixed table of deadlines.
//!
//! # Driving it
//!
//! A transaction owns one [`TimerTable`]. It [`set`](TimerTable::set)s a timer to `now +
//! duration` (durations from [`TimerConfig`]), [`stop`](TimerTable::stop)s it on a state
//! change, and reports [`next_timeout`](TimerTable::next_timeout) (a `min()`) to its owner,
//! which sleeps until then and calls the transaction's `handle_timeout(now)`; that drains
//! [`expired`](TimerTable::expired). No task and no clock read: `now` is always a parameter.
//!
//! Timer C (proxy INVITE, RFC 3261 §16.6 step 11) belongs to a proxy, not a transaction, and is
//! not here.

use std::time::{Duration, Instant};

/// RFC 3261 §17.1.1.1 and Table 4: the base intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum time a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The named timers of RFC 3261 §17 (Table 4) and RFC 6026 (L, M).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmit (client, unreliable).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait for response retransmits (client INVITE, Completed).
    D,
    /// Non-INVITE request retransmit (client, unreliable).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE response retransmit (server, unreliable).
    G,
    /// Wait for ACK receipt (server INVITE).
    H,
    /// Wait for ACK retransmits (server INVITE, Confirmed).
    I,
    /// Wait for non-INVITE request retransmits (server).
    J,
    /// Wait for response retransmits (client non-INVITE).
    K,
    /// Wait for INVITE request retransmits after a 2xx (server, RFC 6026 Accepted).
    L,
    /// Wait for 2xx retransmits (client, RFC 6026 Accepted).
    M,
}

impl Timer {
    /// How many named timers there are (the table's size).
    pub const COUNT: usize = 12;

    /// Every timer, in table order.
    pub const ALL: [Timer; Timer::COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl TimerConfig {
    /// The value a timer is set to when started (for A, E, G: the first interval).
    ///
    /// `reliable` is the transport's reliability; timers that only absorb retransmissions are
    /// zero on reliable transports.
    pub fn initial(&self, timer: Timer, reliable: bool) -> Duration {
        let t1x64 = self.t1.saturating_mul(64);
        match timer {
            // RFC 3261 §17.1.1.2: Timer A starts at T1; §17.1.2.2: Timer E at T1;
            // §17.2.1: Timer G at T1. All three only run on unreliable transports.
            Timer::A | Timer::E | Timer::G => self.t1,
            // §17.1.1.2 Timer B, §17.1.2.2 Timer F, §17.2.1 Timer H: 64*T1 on every transport.
            Timer::B | Timer::F | Timer::H => t1x64,
            // RFC 6026 §8.4 Timer M and §8.7 Timer L: 64*T1.
            Timer::L | Timer::M => t1x64,
            // §17.1.1.2: Timer D at least 32 s for unreliable transports, zero for reliable.
            Timer::D if reliable => Duration::ZERO,
            Timer::D => Duration::from_secs(32),
            // §17.2.1 Timer I and §17.1.2.2 Timer K: T4 unreliable, zero reliable.
            Timer::I | Timer::K if reliable => Duration::ZERO,
            Timer::I | Timer::K => self.t4,
            // §17.2.2: Timer J 64*T1 unreliable, zero reliable.
            Timer::J if reliable => Duration::ZERO,
            Timer::J => t1x64,
        }
    }

    /// The interval after a retransmission timer that ran for `current` fires.
    ///
    /// Only A, E and G repeat; for the others this returns `current`.
    pub fn next_interval(&self, timer: Timer, current: Duration) -> Duration {
        match timer {
            // RFC 3261 §17.1.1.2: "the client transaction MUST reset the timer with a value
            // of 2*T1" … doubling each time; not capped by T2 (Timer B ends it at 64*T1).
            Timer::A => current.saturating_mul(2),
            // §17.1.2.2: "reset with a value of MIN(2*T1, T2)", doubling up to T2;
            // §17.2.1: Timer G "MIN(2*T1, T2)" likewise.
            Timer::E | Timer::G => current.saturating_mul(2).min(self.t2),
            _ => current,
        }
    }

    /// Timer E's interval once a provisional response moved the transaction to Proceeding.
    ///
    /// RFC 3261 §17.1.2.2: "If Timer E fires while in the Proceeding state … Timer E MUST be
    /// reset with a value of T2 seconds."
    pub fn proceeding_interval(&self) -> Duration {
        self.t2
    }
}

/// A fixed table of deadlines, one slot per named timer; the next wake-up is a `min()`,
/// kept beside the table (an owner asks for it far more often than it changes a timer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    slots: [Option<Instant>; Timer::COUNT],
    /// The earliest armed deadline of `slots`, updated on every change.
    next: Option<Instant>,
}

impl TimerTable {
    /// Arms `timer` to fire at `deadline` (replacing any earlier deadline).
    pub fn set(&mut self, timer: Timer, deadline: Instant) {
        self.put(timer, Some(deadline));
    }

    /// Arms `timer` to fire `after` from `now`; an overflowing deadline never fires.
    pub fn set_after(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.put(timer, now.checked_add(after));
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.put(timer, None);
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        *self = Self::default();
    }

    fn put(&mut self, timer: Timer, deadline: Option<Instant>) {
        let old = std::mem::replace(&mut self.slots[timer.index()], deadline);
        match (deadline, self.next) {
            // Earlier than every other armed timer (or the first one armed).
            (Some(d), next) if next.is_none_or(|n| d <= n) => self.next = Some(d),
            // Not the earliest, and the slot did not hold the earliest: the min stands.
            _ if old.is_none() || old > self.next => {}
            _ => self.next = self.slots.iter().flatten().min().copied(),
        }
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// True if `timer` is armed and its deadline is at or before `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.slots[timer.index()].is_some_and(|d| d <= now)
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        debug_assert_eq!(self.next, self.slots.iter().flatten().min().copied());
        self.next
    }

    /// The expired timers, earliest deadline first (ties in table order), disarmed.
    pub fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut fired: Vec<(Instant, Timer)> = Timer::ALL
            .iter()
            .filter_map(|&t| self.slots[t.index()].filter(|&d| d <= now).map(|d| (d, t)))
            .collect();
        fired.sort();
        for &(_, t) in &fired {
            self.stop(t);
        }
        fired.into_iter().map(|(_, t)| t).collect()
    }
}

/// The timer table of one transaction: room for the four timers a transaction of one kind
/// can use (client INVITE: A, B, D, M; client non-INVITE: E, F, K; server INVITE: G, H, I,
/// L; server non-INVITE: J), where [`TimerTable`] has a slot for each of the twelve.
///
/// Each timer has a fixed slot shared only with timers of other kinds (A, E, G, J; B, F, H;
/// D, K, I; M, L), so the timers of one transaction never meet in a slot. 72 bytes instead of
/// 208; the next wake-up is the `min()` of four slots, not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnTimers {
    deadlines: [Option<Instant>; TxnTimers::SLOTS],
    /// Which timer each armed slot holds (meaningless for an empty slot).
    names: [Timer; TxnTimers::SLOTS],
}

impl Default for TxnTimers {
    fn default() -> Self {
        Self {
            deadlines: [None; Self::SLOTS],
            names: [Timer::A; Self::SLOTS],
        }
    }
}

impl TxnTimers {
    const SLOTS: usize = 4;

    /// The slot of `timer`: distinct for the timers of each kind of transaction.
    fn slot(timer: Timer) -> usize {
        match timer {
            Timer::A | Timer::E | Timer::G | Timer::J => 0,
            Timer::B | Timer::F | Timer::H => 1,
            Timer::D | Timer::K | Timer::I => 2,
            Timer::M | Timer::L => 3,
        }
    }

    /// Arms `timer` to fire `after` from `now`; an overflowing deadline never fires.
    pub(crate) fn set_after(&mut self, timer: Timer, now: Instant, after: Duration) {
        let slot = Self::slot(timer);
        debug_assert!(
            self.deadlines[slot].is_none() || self.names[slot] == timer,
            "{timer:?} armed while {:?} holds its slot: timers of two kinds of transaction",
            self.names[slot]
        );
        self.deadlines[slot] = now.checked_add(after);
        self.names[slot] = timer;
    }

    /// Disarms `timer` (a no-op if it is not armed).
    pub(crate) fn stop(&mut self, timer: Timer) {
        let slot = Self::slot(timer);
        if self.names[slot] == timer {
            self.deadlines[slot] = None;
        }
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        *self = Self::default();
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        let slot = Self::slot(timer);
        self.deadlines[slot].filter(|_| self.names[slot] == timer)
    }

    /// The earliest armed deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The expired timers, earliest deadline first (ties in [`Timer`] order), disarmed. No
    /// allocation: at most four.
    pub(crate) fn expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> + use<> {
        let mut fired = [None::<(Instant, Timer)>; Self::SLOTS];
        for (slot, out) in fired.iter_mut().enumerate() {
            if let Some(d) = self.deadlines[slot].filter(|&d| d <= now) {
                *out = Some((d, self.names[slot]));
                self.deadlines[slot] = None;
            }
        }
        // `None` sorts first; the fired ones follow in (deadline, timer) order.
        fired.sort_unstable();
        fired.into_iter().flatten().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Firing times (from the start) of a retransmission timer until the timeout timer.
    fn schedule(c: &TimerConfig, timer: Timer, timeout: Timer) -> Vec<Duration> {
        let end = c.initial(timeout, false);
        let mut interval = c.initial(timer, false);
        let mut at = interval;
        let mut out = vec![];
        while at < end {
            out.push(at);
            interval = c.next_interval(timer, interval);
            at += interval;
        }
        out
    }

    #[test]
    fn defaults_are_table_4() {
        let c = TimerConfig::default();
        assert_eq!((c.t1, c.t2, c.t4), (ms(500), ms(4000), ms(5000)));
        for t in [Timer::B, Timer::F, Timer::H, Timer::L, Timer::M] {
            assert_eq!(c.initial(t, false), ms(32_000), "{t:?}");
            assert_eq!(c.initial(t, true), ms(32_000), "{t:?}");
        }
    }

    #[test]
    fn timer_a_doubles_without_cap() {
        // RFC 3261 §17.1.1.2: 500 ms, 1 s, 2 s, 4 s, 8 s, 16 s: retransmissions at 0.5, 1.5,
        // 3.5, 7.5, 15.5, 31.5 s; Timer B fires at 32 s (7 transmissions in all).
        let c = TimerConfig::default();
        assert_eq!(
            schedule(&c, Timer::A, Timer::B),
            [500, 1500, 3500, 7500, 15_500, 31_500].map(ms)
        );
        assert_eq!(
            c.next_interval(Timer::A, ms(4000)),
            ms(8000),
            "A is not capped by T2"
        );
    }

    #[test]
    fn timer_e_doubles_up_to_t2() {
        // RFC 3261 §17.1.2.2: 500 ms, 1 s, 2 s, then T2 = 4 s: 10 retransmissions, 11 sends.
        let c = TimerConfig::default();
        assert_eq!(
            schedule(&c, Timer::E, Timer::F),
            [
                500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
            .map(ms)
        );
        assert_eq!(c.proceeding_interval(), ms(4000));
    }

    #[test]
    fn timer_g_doubles_up_to_t2() {
        let c = TimerConfig::default();
        let g: Vec<Duration> = std::iter::successors(Some(c.initial(Timer::G, false)), |&i| {
            Some(c.next_interval(Timer::G, i))
        })
        .take(5)
        .collect();
        assert_eq!(g, [500, 1000, 2000, 4000, 4000].map(ms));
    }

    #[test]
    fn reliable_vs_unreliable() {
        let c = TimerConfig::default();
        assert_eq!(c.initial(Timer::D, false), ms(32_000));
        assert_eq!(c.initial(Timer::D, true), Duration::ZERO);
        assert_eq!(c.initial(Timer::I, false), ms(5000));
        assert_eq!(c.initial(Timer::I, true), Duration::ZERO);
        assert_eq!(c.initial(Timer::J, false), ms(32_000));
        assert_eq!(c.initial(Timer::J, true), Duration::ZERO);
        assert_eq!(c.initial(Timer::K, false), ms(5000));
        assert_eq!(c.initial(Timer::K, true), Duration::ZERO);
    }

    #[test]
    fn custom_t1_scales_timeouts() {
        let c = TimerConfig {
            t1: ms(100),
            ..TimerConfig::default()
        };
        assert_eq!(c.initial(Timer::F, true), ms(6400));
        assert_eq!(c.initial(Timer::J, false), ms(6400));
        let huge = TimerConfig {
            t1: Duration::MAX,
            ..TimerConfig::default()
        };
        assert_eq!(
            huge.initial(Timer::B, false),
            Duration::MAX,
            "saturates, never panics"
        );
    }

    #[test]
    fn table_set_stop_min_expired() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::F, t0 + ms(32_000));
        t.set(Timer::E, t0 + ms(500));
        t.set_after(Timer::K, t0, Duration::MAX);
        assert_eq!(t.get(Timer::K), None, "overflowing deadline never fires");
        assert_eq!(t.next_timeout(), Some(t0 + ms(500)));
        assert!(!t.is_expired(Timer::E, t0 + ms(499)));
        assert!(t.is_expired(Timer::E, t0 + ms(500)));
        assert_eq!(t.expired(t0 + ms(499)), vec![]);
        t.set(Timer::A, t0 + ms(500));
        assert_eq!(
            t.expired(t0 + ms(40_000)),
            vec![Timer::A, Timer::E, Timer::F]
        );
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::B, t0);
        t.stop(Timer::B);
        assert_eq!(t.next_timeout(), None);
        t.set(Timer::B, t0);
        t.stop_all();
        assert_eq!(t, TimerTable::default());
    }

    #[test]
    fn the_kept_earliest_deadline_follows_every_change() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::E, t0 + ms(500));
        t.set(Timer::F, t0 + ms(32_000));
        // The earliest timer re-armed later: the next one takes over.
        t.set(Timer::E, t0 + ms(40_000));
        assert_eq!(t.next_timeout(), Some(t0 + ms(32_000)));
        // Re-armed earlier again, and a tie with another timer.
        t.set(Timer::E, t0 + ms(1_000));
        t.set(Timer::K, t0 + ms(1_000));
        assert_eq!(t.next_timeout(), Some(t0 + ms(1_000)));
        t.stop(Timer::E);
        assert_eq!(t.next_timeout(), Some(t0 + ms(1_000)), "K still there");
        t.stop(Timer::K);
        assert_eq!(t.next_timeout(), Some(t0 + ms(32_000)));
        // A later timer stopped or armed leaves the earliest alone.
        t.set(Timer::D, t0 + ms(64_000));
        t.stop(Timer::D);
        assert_eq!(t.next_timeout(), Some(t0 + ms(32_000)));
        // An overflowing re-arm of the earliest disarms it.
        t.set_after(Timer::F, t0, Duration::MAX);
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn txn_timers_follow_the_full_table() {
        // Every kind's timers, set, re-armed, stopped and fired in many orders: the compact
        // table answers as the full one.
        let kinds: [&[Timer]; 4] = [
            &[Timer::A, Timer::B, Timer::D, Timer::M],
            &[Timer::E, Timer::F, Timer::K],
            &[Timer::G, Timer::H, Timer::I, Timer::L],
            &[Timer::J],
        ];
        let t0 = Instant::now();
        for kind in kinds {
            let mut seed = 0x9e37_79b9_u32;
            let mut full = TimerTable::default();
            let mut compact = TxnTimers::default();
            for step in 0..2000u32 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let timer = kind[seed as usize % kind.len()];
                let now = t0 + ms(u64::from(step) * 10);
                match (seed >> 8) % 4 {
                    0 | 1 => {
                        let after = ms(u64::from(seed >> 20) % 200);
                        full.set_after(timer, now, after);
                        compact.set_after(timer, now, after);
                    }
                    2 => {
                        full.stop(timer);
                        compact.stop(timer);
                    }
                    _ => assert_eq!(full.expired(now), compact.expired(now).collect::<Vec<_>>()),
                }
                for &t in kind {
                    assert_eq!(full.get(t), compact.get(t), "{t:?} at step {step}");
                }
                assert_eq!(full.next_timeout(), compact.next_timeout());
            }
            full.stop_all();
            compact.stop_all();
            assert_eq!(compact, TxnTimers::default());
            assert_eq!(compact.next_timeout(), None);
        }
        // Timers of other kinds share slots but never answer for one another.
        let mut t = TxnTimers::default();
        t.set_after(Timer::A, t0, ms(500));
        assert_eq!(t.get(Timer::E), None);
        t.stop(Timer::E);
        assert_eq!(t.get(Timer::A), Some(t0 + ms(500)));
        t.set_after(Timer::B, t0, Duration::MAX);
        assert_eq!(t.get(Timer::B), None, "overflowing deadline never fires");
        assert!(std::mem::size_of::<TxnTimers>() <= 72);
    }
}
