//! Receive statistics per RFC 3550 Appendix A: sequence validation (A.1), expected and lost
//! counts (A.3), interarrival jitter (A.8), plus what a test instrument needs on top:
//! duplicates, reordering, gaps, jumps, resets, SSRC switches, timestamp jumps, packet spacing
//! and the loss pattern (a 2-state Markov estimate for the E-model's BurstR).
//!
//! Feed every received RTP packet of one stream to [`ReceiveStats::on_packet`]; read cumulative
//! figures with [`ReceiveStats::totals`] and take per-interval figures with
//! [`ReceiveStats::take_interval`] (each call closes the interval, RFC 3550 A.3).

use std::time::Instant;

use crate::gaps::{AUDIO_GAP_MIN, AudioGaps, GapWatch};

/// RFC 3550 A.1: a jump of this many packets or more is not taken as loss.
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: packets this far behind the highest are late, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: sequential packets needed before a source is valid.
pub const MIN_SEQUENTIAL: u8 = 2;
const SEQ_MOD: u32 = 1 << 16;

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In order (possibly after a gap).
    InOrder,
    /// Behind the highest sequence number, not seen before.
    Late,
    /// Seen before.
    Duplicate,
    /// The source is on probation (A.1), not counted yet.
    Probation,
    /// A very large jump, held until the next packet confirms a restart (A.1 `bad_seq`).
    Jump,
}

/// Cumulative figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// RTP packets that arrived (all of them, duplicates included).
    pub packets: u64,
    /// Bytes of those packets (the whole RTP packet, header included).
    pub bytes: u64,
    /// Packets counted as received by A.1 (validated, duplicates excluded).
    pub received: u64,
    /// Expected packets: extended highest − base + 1 (A.3).
    pub expected: u64,
    /// Cumulative lost: expected − received (A.3; can only go negative if a peer repeats
    /// sequence numbers across a restart).
    pub lost: i64,
    /// Duplicates.
    pub duplicates: u64,
    /// Late (out-of-order) packets.
    pub out_of_order: u64,
    /// Restarts accepted by A.1 (two sequential packets after a large jump).
    pub seq_resets: u64,
    /// Large jumps seen (A.1 `udelta` ≥ MAX_DROPOUT and not misordering).
    pub seq_jumps: u64,
    /// Largest forward gap: packets missing in one go.
    pub largest_gap: u64,
    /// SSRC changes after the first.
    pub ssrc_switches: u64,
    /// Timestamp jumps (see [`ReceiveStats`]).
    pub ts_jumps: u64,
    /// Extended highest sequence number (A.1 `cycles + max_seq`).
    pub ext_highest_seq: u32,
    /// Interarrival jitter (A.8) in timestamp units.
    pub jitter: f64,
    /// Largest jitter seen, in timestamp units.
    pub max_jitter: f64,
    /// The sender's media clock against ours, ppm (positive: theirs runs fast); a
    /// least-squares fit of RTP timestamps on arrival times, after 1 s of packets.
    pub clock_skew_ppm: Option<f64>,
    /// What that skew has accumulated to over the stream, ms.
    pub clock_drift_ms: Option<f64>,
}

/// Figures for the interval closed by [`ReceiveStats::take_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Interval {
    /// Packets that arrived in the interval.
    pub packets: u64,
    /// Bytes that arrived in the interval.
    pub bytes: u64,
    /// Expected in the interval (A.3).
    pub expected: u64,
    /// Lost in the interval (A.3, may be negative when late packets fill older gaps).
    pub lost: i64,
    /// A.3 fraction lost, 8-bit fixed point (lost/expected × 256), as in RTCP.
    pub fraction_lost: u8,
    /// Smallest spacing between arrivals, ms.
    pub spacing_min_ms: Option<f64>,
    /// Mean spacing, ms.
    pub spacing_avg_ms: Option<f64>,
    /// Largest spacing, ms.
    pub spacing_max_ms: Option<f64>,
}

/// Transition counts of the loss process, for a 2-state Markov (Gilbert) estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossPattern {
    /// received → received.
    pub rr: u64,
    /// received → lost.
    pub rl: u64,
    /// lost → lost.
    pub ll: u64,
    /// lost → received.
    pub lr: u64,
    /// The same process seen through RFC 3611's burst/gap model (for RTCP XR).
    pub burst_gap: crate::xr::BurstGap,
}

impl LossPattern {
    fn count(&mut self, from: bool, to: bool, k: u64) {
        match (from, to) {
            (true, true) => self.rr += k,
            (true, false) => self.rl += k,
            (false, false) => self.ll += k,
            (false, true) => self.lr += k,
        }
    }

    /// Appends `n` packets of one state (received or lost) to the process.
    fn feed(&mut self, last: &mut Option<bool>, received: bool, n: u64) {
        if n == 0 {
            return;
        }
        if received {
            self.burst_gap.received(n);
        } else {
            self.burst_gap.lost(n);
        }
        match *last {
            Some(prev) => {
                self.count(prev, received, 1);
                self.count(received, received, n - 1);
            }
            None => self.count(received, received, n - 1),
        }
        *last = Some(received);
    }

    /// Loss ratio implied by the transitions (lost packets / all packets).
    pub fn loss_ratio(&self) -> f64 {
        let lost = self.rl + self.ll;
        let all = lost + self.rr + self.lr;
        if all == 0 {
            0.0
        } else {
            lost as f64 / all as f64
        }
    }

    /// G.107 §3.8 BurstR = 1 / (p + q) with p = P(lost | received), q = P(received | lost);
    /// 1 for random loss, > 1 for bursty loss. 1 when nothing was lost.
    pub fn burst_ratio(&self) -> f64 {
        let from_r = self.rr + self.rl;
        let from_l = self.ll + self.lr;
        if from_r == 0 || from_l == 0 {
            return 1.0;
        }
        let p = self.rl as f64 / from_r as f64;
        let q = self.lr as f64 / from_l as f64;
        1.0 / (p + q)
    }
}

/// A least-squares fit of the sender's media clock against our arrival clock (Welford's
/// online covariance, numerically stable over long calls).
#[derive(Debug, Clone, Copy, Default)]
struct SkewFit {
    n: f64,
    mean_x: f64,
    mean_y: f64,
    c_xy: f64,
    m2_x: f64,
    first_x: f64,
    last_x: f64,
    /// Last raw timestamp and its extension (relative to the first), in timestamp units.
    ts: Option<(u32, i64)>,
}

impl SkewFit {
    /// Adds one packet: `x` arrival in s, `timestamp` on the sender's clock.
    fn add(&mut self, x: f64, timestamp: u32, clock_rate: f64) {
        let ext = match self.ts {
            None => 0,
            Some((last, ext)) => ext + i64::from(timestamp.wrapping_sub(last) as i32),
        };
        if self.ts.is_none_or(|(_, e)| ext > e) {
            self.ts = Some((timestamp, ext));
        }
        if self.n == 0.0 {
            self.first_x = x;
        }
        self.last_x = self.last_x.max(x);
        let y = ext as f64 / clock_rate;
        self.n += 1.0;
        let dx = x - self.mean_x;
        self.mean_x += dx / self.n;
        self.mean_y += (y - self.mean_y) / self.n;
        self.c_xy += dx * (y - self.mean_y);
        self.m2_x += dx * (x - self.mean_x);
    }

    /// (skew in ppm, accumulated drift in ms) once a second of arrivals has been seen.
    fn estimate(&self) -> Option<(f64, f64)> {
        let span = self.last_x - self.first_x;
        if span < 1.0 || self.m2_x <= 0.0 {
            return None;
        }
        let slope = self.c_xy / self.m2_x;
        Some(((slope - 1.0) * 1e6, (slope - 1.0) * span * 1000.0))
    }
}

/// RFC 3550 A.1 source state.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    /// Bit i set: extended sequence `ext_max - i` was received (duplicate detection, and the
    /// loss pattern: a bit is final once it leaves the window, since MAX_MISORDER < 128).
    window: u128,
    /// How many bits of `window` are sequence numbers at or after the base.
    win_len: u32,
    last_ts: u32,
    /// `last_ts` is from a media packet.
    has_ts: bool,
    /// Sequence steps taken by non-media packets since `last_ts`.
    skipped: u32,
    transit: Option<f64>,
    skew: SkewFit,
}

impl Source {
    fn new(ssrc: u32, seq: u16) -> Self {
        let mut s = Source {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            window: 0,
            win_len: 0,
            last_ts: 0,
            has_ts: false,
            skipped: 0,
            transit: None,
            skew: SkewFit::default(),
        };
        s.init_seq(seq);
        // A.1: "max_seq = seq - 1" so the first packet looks in-sequence.
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.window = 1;
        self.win_len = 1;
    }

    /// Feeds the window's bits, oldest first, into a loss pattern.
    fn drain_into(&self, pattern: &mut LossPattern, last: &mut Option<bool>, from: u32) {
        for i in (from..self.win_len).rev() {
            pattern.feed(last, (self.window >> i) & 1 == 1, 1);
        }
    }

    /// Moves the window `d` packets forward; bits that fall out are final.
    fn advance(&mut self, d: u32, pattern: &mut LossPattern, last: &mut Option<bool>) {
        self.drain_into(pattern, last, 128u32.saturating_sub(d));
        if d > 128 {
            pattern.feed(last, false, u64::from(d - 128));
        }
        self.window = if d >= 128 { 1 } else { (self.window << d) | 1 };
        self.win_len = (self.win_len + d).min(128);
    }

    fn ext_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.ext_max().wrapping_sub(self.base_seq)).wrapping_add(1)
    }
}

/// Receive statistics of one direction of one call.
///
/// Timestamp jumps: a forward step whose RTP timestamp moved by something other than the
/// sequence step × samples per packet (without the marker bit that announces a new talk spurt).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    samples_per_packet: u32,
    origin: Option<Instant>,
    src: Option<Source>,
    totals: Totals,
    interval: Interval,
    spacing_sum_ms: f64,
    spacing_n: u64,
    last_arrival: Option<Instant>,
    /// Transitions of packets that left the window (final).
    pattern: LossPattern,
    /// State of the last packet fed into `pattern`.
    pattern_last: Option<bool>,
    /// Expected packets of earlier sources and of epochs before a restart.
    folded_expected: u64,
    /// Cumulative expected and received at the end of the previous interval (A.3).
    prior: (u64, u64),
    /// Stretches without RTP while the far end was to send, once watched
    /// ([`ReceiveStats::watch_gaps`]).
    gaps: Option<GapWatch>,
}

/// [`AUDIO_GAP_MIN`] in the unit of the spacing measured per packet.
const GAP_MIN_MS: f64 = AUDIO_GAP_MIN.as_millis() as f64;

impl ReceiveStats {
    /// New statistics for a stream with this RTP clock and packetisation.
    pub fn new(clock_rate: u32, samples_per_packet: u32) -> Self {
        ReceiveStats {
            clock_rate: clock_rate.max(1),
            samples_per_packet,
            origin: None,
            src: None,
            totals: Totals::default(),
            interval: Interval::default(),
            spacing_sum_ms: 0.0,
            spacing_n: 0,
            last_arrival: None,
            pattern: LossPattern::default(),
            pattern_last: None,
            folded_expected: 0,
            prior: (0, 0),
            gaps: None,
        }
    }

    /// Watches for audio gaps ([`crate::gaps`]) from `start`, the far end to send from then
    /// if `expected`.
    pub fn watch_gaps(&mut self, start: Instant, expected: bool) {
        self.gaps = Some(GapWatch::new(start, expected));
    }

    /// From `now` on the far end is (`true`) or is not to send ([`GapWatch::set_expected`]).
    pub fn expect_rtp(&mut self, now: Instant, expected: bool) {
        let (last, received) = (self.last_arrival, self.totals.packets);
        if let Some(g) = self.gaps.as_mut() {
            g.set_expected(now, expected, last, received);
        }
    }

    /// The far end's media moved at `now` ([`GapWatch::restart`]).
    pub fn rtp_source_moved(&mut self, now: Instant) {
        let (last, received) = (self.last_arrival, self.totals.packets);
        if let Some(g) = self.gaps.as_mut() {
            g.restart(now, last, received);
        }
    }

    /// The audio gaps up to `end` (none when not watched).
    pub fn gaps(&self, end: Instant) -> AudioGaps {
        self.gaps.as_ref().map_or_else(AudioGaps::default, |g| {
            g.gaps_until(end, self.last_arrival, self.totals.packets)
        })
    }

    /// The first packet, or one [`AUDIO_GAP_MIN`] or more after the one before it (`last`),
    /// arrived at `now`: it may end a gap.
    #[cold]
    fn after_silence(&mut self, now: Instant, last: Option<Instant>) {
        // `totals.packets` counts this packet already.
        let received = self.totals.packets.saturating_sub(1);
        if let Some(g) = self.gaps.as_mut() {
            g.on_rtp_after_silence(now, last, received);
        }
    }

    /// The stream's RTP clock and packetisation changed (a new codec inside the call, RFC
    /// 3264 §8.3.2). The jitter estimate, kept in timestamp units, is rescaled to the new
    /// clock, so its value in milliseconds goes on; the transit time of the next packet
    /// starts a new origin (it is measured on the new clock). The sequence bookkeeping
    /// goes on: the SSRC and sequence line stay.
    pub fn set_clock(&mut self, clock_rate: u32, samples_per_packet: u32) {
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            let scale = f64::from(clock_rate) / f64::from(self.clock_rate);
            self.totals.jitter *= scale;
            self.totals.max_jitter *= scale;
            if let Some(s) = self.src.as_mut() {
                s.transit = None;
                s.skew = SkewFit::default();
                s.has_ts = false;
            }
            self.clock_rate = clock_rate;
        }
        self.samples_per_packet = samples_per_packet;
    }

    /// The current SSRC, if a packet was seen.
    pub fn ssrc(&self) -> Option<u32> {
        self.src.map(|s| s.ssrc)
    }

    /// Cumulative figures.
    pub fn totals(&self) -> Totals {
        let mut t = self.totals;
        t.expected = self.folded_expected;
        if let Some(s) = self.src.as_ref().filter(|s| s.probation == 0) {
            t.expected += s.expected();
            t.ext_highest_seq = s.ext_max();
            if let Some((skew, drift)) = s.skew.estimate() {
                t.clock_skew_ppm = Some(skew);
                t.clock_drift_ms = Some(drift);
            }
        }
        t.lost = t.expected as i64 - t.received as i64;
        t
    }

    /// Loss-process transitions so far.
    pub fn loss_pattern(&self) -> LossPattern {
        let mut p = self.pattern;
        let mut last = self.pattern_last;
        if let Some(s) = self.src.as_ref().filter(|s| s.probation == 0) {
            s.drain_into(&mut p, &mut last, 0);
        }
        p
    }

    /// Commits the current window to the pattern and starts a new epoch (restart, switch).
    fn close_pattern_epoch(&mut self) {
        if let Some(s) = self.src.as_ref().filter(|s| s.probation == 0) {
            s.drain_into(&mut self.pattern, &mut self.pattern_last, 0);
        }
        self.pattern_last = None;
    }

    /// Jitter in ms.
    pub fn jitter_ms(&self) -> f64 {
        self.totals.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// Counts one arriving RTP media packet (`len` is the whole packet).
    pub fn on_packet(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        marker: bool,
        len: usize,
    ) -> Verdict {
        self.count(now, seq, timestamp, ssrc, marker, len, true)
    }

    /// Counts a packet of the same stream whose timestamp does not follow the media clock
    /// (RFC 4733 events keep the event's start time): sequence and volume figures only, no
    /// jitter or timestamp-jump check.
    pub fn on_other_packet(&mut self, now: Instant, seq: u16, ssrc: u32, len: usize) -> Verdict {
        self.count(now, seq, 0, ssrc, false, len, false)
    }

    #[allow(clippy::too_many_arguments)] // reason: private; the two public doors name them
    fn count(
        &mut self,
        now: Instant,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        marker: bool,
        len: usize,
        media: bool,
    ) -> Verdict {
        self.totals.packets += 1;
        self.totals.bytes += len as u64;
        self.interval.packets += 1;
        self.interval.bytes += len as u64;
        if let Some(prev) = self.last_arrival {
            let ms = now.saturating_duration_since(prev).as_nanos() as f64 / 1e6;
            let i = &mut self.interval;
            i.spacing_min_ms = Some(i.spacing_min_ms.map_or(ms, |m| m.min(ms)));
            i.spacing_max_ms = Some(i.spacing_max_ms.map_or(ms, |m| m.max(ms)));
            self.spacing_sum_ms += ms;
            self.spacing_n += 1;
            // The one comparison per packet that audio gaps cost.
            if ms >= GAP_MIN_MS {
                self.after_silence(now, Some(prev));
            }
        } else {
            self.after_silence(now, None);
        }
        self.last_arrival = Some(now);
        let origin = *self.origin.get_or_insert(now);

        let mut fresh = false;
        match &self.src {
            Some(s) if s.ssrc != ssrc => {
                self.totals.ssrc_switches += 1;
                self.fold_source();
                fresh = true;
            }
            None => fresh = true,
            _ => {}
        }
        if fresh {
            self.src = Some(Source::new(ssrc, seq));
        }
        let verdict = self.update_seq(seq, timestamp, marker, media);
        if media && matches!(verdict, Verdict::InOrder | Verdict::Late) {
            self.update_jitter(now, origin, timestamp);
        }
        verdict
    }

    /// Keeps the counts of a source that went away (SSRC switch) in the totals.
    fn fold_source(&mut self) {
        self.close_pattern_epoch();
        if let Some(s) = self.src.as_ref().filter(|s| s.probation == 0) {
            self.folded_expected += s.expected();
        }
    }

    /// RFC 3550 A.8: J += (|D(i-1,i)| − J) / 16, D from transit-time differences.
    fn update_jitter(&mut self, now: Instant, origin: Instant, timestamp: u32) {
        let Some(s) = self.src.as_mut() else { return };
        // Integer nanoseconds × rate first, so whole timestamp units come out exact.
        let ns = now.saturating_duration_since(origin).as_nanos();
        let arrival = (ns * u128::from(self.clock_rate)) as f64 / 1e9;
        let transit = arrival - f64::from(timestamp);
        if let Some(prev) = s.transit {
            // Timestamps wrap at 2^32: take the difference modulo 2^32 around zero.
            let mut d = transit - prev;
            let m = 4_294_967_296.0;
            d -= m * (d / m).round();
            self.totals.jitter += (d.abs() - self.totals.jitter) / 16.0;
            self.totals.max_jitter = self.totals.max_jitter.max(self.totals.jitter);
        }
        s.transit = Some(transit);
        s.skew
            .add(ns as f64 / 1e9, timestamp, f64::from(self.clock_rate));
    }

    /// RFC 3550 A.1 `update_seq`, extended with duplicate/late/gap bookkeeping.
    fn update_seq(&mut self, seq: u16, timestamp: u32, marker: bool, media: bool) -> Verdict {
        let spp = self.samples_per_packet;
        // `src` is set by the caller just before.
        let Some(s) = self.src.as_mut() else {
            return Verdict::Probation;
        };
        let udelta = seq.wrapping_sub(s.max_seq);
        if s.probation > 0 {
            // A.1: the source is valid after MIN_SEQUENTIAL packets in sequence.
            if seq == s.max_seq.wrapping_add(1) {
                s.probation -= 1;
                s.max_seq = seq;
                if s.probation == 0 {
                    s.init_seq(seq);
                    s.last_ts = timestamp;
                    s.has_ts = media;
                    self.totals.received += 1;
                    return Verdict::InOrder;
                }
            } else {
                s.probation = MIN_SEQUENTIAL - 1;
                s.max_seq = seq;
            }
            return Verdict::Probation;
        }
        if udelta == 0 {
            self.totals.duplicates += 1;
            return Verdict::Duplicate;
        }
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < s.max_seq {
                s.cycles = s.cycles.wrapping_add(SEQ_MOD);
            }
            let gap = u64::from(udelta) - 1;
            self.totals.largest_gap = self.totals.largest_gap.max(gap);
            let ts_step = timestamp.wrapping_sub(s.last_ts);
            if media {
                // The step is counted from the last media packet, across event packets.
                let want = u32::from(udelta).wrapping_add(s.skipped).wrapping_mul(spp);
                if spp > 0 && !marker && s.has_ts && ts_step != want {
                    self.totals.ts_jumps += 1;
                }
                s.last_ts = timestamp;
                s.has_ts = true;
                s.skipped = 0;
            } else {
                s.skipped = s.skipped.wrapping_add(u32::from(udelta));
            }
            s.advance(u32::from(udelta), &mut self.pattern, &mut self.pattern_last);
            s.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump.
            if u32::from(seq) == s.bad_seq {
                // Two sequential packets: assume the other side restarted without telling us.
                // The packets expected before the restart stay in the totals.
                self.folded_expected += s.expected();
                s.drain_into(&mut self.pattern, &mut self.pattern_last, 0);
                self.pattern_last = None;
                s.init_seq(seq);
                s.last_ts = timestamp;
                s.has_ts = media;
                s.skipped = 0;
                s.transit = None;
                s.skew = SkewFit::default();
                self.totals.seq_resets += 1;
            } else {
                self.totals.seq_jumps += 1;
                s.bad_seq = u32::from(seq.wrapping_add(1));
                return Verdict::Jump;
            }
        } else {
            // Behind the highest: duplicate or reordered (A.1's last branch).
            let behind = u32::from(s.max_seq.wrapping_sub(seq));
            if behind < 128 && s.window & (1u128 << behind) != 0 {
                self.totals.duplicates += 1;
                return Verdict::Duplicate;
            }
            if behind < 128 {
                s.window |= 1u128 << behind;
            }
            self.totals.received += 1;
            self.totals.out_of_order += 1;
            return Verdict::Late;
        }
        self.totals.received += 1;
        Verdict::InOrder
    }

    /// Closes the current interval (RFC 3550 A.3) and returns its figures.
    pub fn take_interval(&mut self) -> Interval {
        let mut i = std::mem::take(&mut self.interval);
        if self.spacing_n > 0 {
            i.spacing_avg_ms = Some(self.spacing_sum_ms / self.spacing_n as f64);
        }
        self.spacing_sum_ms = 0.0;
        self.spacing_n = 0;
        // A.3 on the cumulative counts, so restarts and SSRC switches do not lose packets.
        let t = self.totals();
        let expected_interval = t.expected.saturating_sub(self.prior.0);
        let received_interval = t.received.saturating_sub(self.prior.1);
        self.prior = (t.expected, t.received);
        let lost_interval = expected_interval as i64 - received_interval as i64;
        i.expected = expected_interval;
        i.lost = lost_interval;
        i.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        i
    }
}

/// Tracks the RTCP A.3 interval separately from the per-second one (RTCP intervals are ~5 s,
/// sample intervals 1 s).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportInterval {
    expected_prior: u64,
    received_prior: u64,
}

impl ReportInterval {
    /// Fraction lost (8-bit) since the previous call, from cumulative expected and received.
    pub fn fraction(&mut self, expected: u64, received: u64) -> u8 {
        let e = expected.saturating_sub(self.expected_prior);
        let r = received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = received;
        let lost = e as i64 - r as i64;
        if e == 0 || lost <= 0 {
            0
        } else {
            ((lost << 8) / e as i64).min(255) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SPP: u32 = 160;

    /// Feeds packets `(seq, arrival ms)`, timestamps following the sequence at 160 per packet.
    fn feed(stats: &mut ReceiveStats, t0: Instant, pkts: &[(u16, u64)]) -> Vec<Verdict> {
        pkts.iter()
            .map(|&(seq, ms)| {
                let ts = u32::from(seq).wrapping_mul(SPP);
                stats.on_packet(t0 + Duration::from_millis(ms), seq, ts, 7, false, 172)
            })
            .collect()
    }

    fn in_order(from: u16, n: u16) -> Vec<(u16, u64)> {
        (0..n)
            .map(|i| (from.wrapping_add(i), 20 * u64::from(i)))
            .collect()
    }

    #[test]
    fn clean_stream_with_wraparound() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        // Timestamps keep counting across the sequence wrap, as a real sender's do.
        let v: Vec<_> = (0..100u32)
            .map(|i| {
                let at = t0 + Duration::from_millis(20 * u64::from(i));
                s.on_packet(at, (65_500 + i) as u16, 7_000 + i * SPP, 7, false, 172)
            })
            .collect();
        assert_eq!(v[0], Verdict::Probation);
        assert!(v[1..].iter().all(|v| *v == Verdict::InOrder));
        let t = s.totals();
        // The probation packet is not counted (A.1): base is the second packet.
        assert_eq!((t.expected, t.received, t.lost), (99, 99, 0));
        assert_eq!(t.ext_highest_seq, 65_536 + 63);
        assert_eq!((t.packets, t.bytes), (100, 17_200));
        assert_eq!(t.jitter, 0.0);
        assert_eq!(
            (t.duplicates, t.out_of_order, t.ts_jumps, t.largest_gap),
            (0, 0, 0, 0)
        );
        let i = s.take_interval();
        assert_eq!((i.expected, i.lost, i.fraction_lost), (99, 0, 0));
        assert_eq!(i.spacing_min_ms, Some(20.0));
        assert_eq!(i.spacing_max_ms, Some(20.0));
        assert_eq!(i.spacing_avg_ms, Some(20.0));
        assert_eq!(s.loss_pattern().burst_ratio(), 1.0);
    }

    #[test]
    fn loss_bursts_and_fraction_lost() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        // 0..=99 minus {10}, {20,21,22}, {50..=59}: 14 lost of 100.
        let pkts: Vec<_> = in_order(0, 100)
            .into_iter()
            .filter(|(q, _)| *q != 10 && !(20..=22).contains(q) && !(50..=59).contains(q))
            .collect();
        let v = feed(&mut s, t0, &pkts);
        assert!(v[1..].iter().all(|v| *v == Verdict::InOrder));
        let t = s.totals();
        // Base is seq 1 (seq 0 was on probation): expected 99, received 85.
        assert_eq!((t.expected, t.received, t.lost), (99, 85, 14));
        assert_eq!(t.largest_gap, 10);
        let i = s.take_interval();
        assert_eq!(i.lost, 14);
        // A.3: (14 << 8) / 99 = 36.
        assert_eq!(i.fraction_lost, 36);
        // Gaps are 20 ms apart except across a hole: min 20, max 11 × 20 = 220.
        assert_eq!(i.spacing_max_ms, Some(220.0));
        // The process over seqs 1..=99: R×9 L×1 R×9 L×3 R×27 L×10 R×40, 98 transitions:
        // rl 3, lr 3, ll 0+2+9 = 11, rr 8+8+26+39 = 81.
        let p = s.loss_pattern();
        assert_eq!((p.rr, p.rl, p.ll, p.lr), (81, 3, 11, 3));
        // p = 3/84, q = 3/14 → BurstR = 1 / (0.035714 + 0.214286) = 4.0.
        assert!((p.burst_ratio() - 4.0).abs() < 1e-12);
        // Timestamps follow the sequence, so gaps are not timestamp jumps.
        assert_eq!(t.ts_jumps, 0);
        // Next interval: 10 more, none lost.
        feed(
            &mut s,
            t0,
            &(100..110)
                .map(|q| (q, 2000 + u64::from(q)))
                .collect::<Vec<_>>(),
        );
        let i = s.take_interval();
        assert_eq!((i.expected, i.lost, i.fraction_lost), (10, 0, 0));
    }

    #[test]
    fn long_outage_in_the_loss_pattern() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        // 0..=9, then 210..=219: 200 lost in one go (more than the 128-packet window).
        let mut pkts = in_order(0, 10);
        pkts.extend((210..220).map(|q| (q, 20 * u64::from(q))));
        feed(&mut s, t0, &pkts);
        let t = s.totals();
        assert_eq!(
            (t.expected, t.received, t.lost, t.largest_gap),
            (219, 19, 200, 200)
        );
        // R×9 (seqs 1..=9) L×200 R×10: rr 8+9, rl 1, ll 199, lr 1.
        let p = s.loss_pattern();
        assert_eq!((p.rr, p.rl, p.ll, p.lr), (17, 1, 199, 1));
        assert!((p.loss_ratio() - 200.0 / 218.0).abs() < 1e-12);
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        let order = [0u16, 1, 2, 4, 3, 5, 5, 6, 3, 9, 7, 8, 10, 1];
        let pkts: Vec<_> = order
            .iter()
            .enumerate()
            .map(|(i, q)| (*q, 20 * i as u64))
            .collect();
        let v = feed(&mut s, t0, &pkts);
        use Verdict::*;
        assert_eq!(
            v,
            vec![
                Probation, InOrder, InOrder, InOrder, Late, InOrder, Duplicate, InOrder, Duplicate,
                InOrder, Late, Late, InOrder, Duplicate
            ]
        );
        let t = s.totals();
        // Base 1, highest 10: expected 10, received 10 (dups excluded), nothing lost.
        assert_eq!((t.expected, t.received, t.lost), (10, 10, 0));
        assert_eq!((t.duplicates, t.out_of_order), (3, 3));
        assert_eq!(t.packets, 14);
        assert_eq!(t.largest_gap, 2);
        // Late packets filled their gaps: the loss process saw no loss at all.
        let p = s.loss_pattern();
        assert_eq!((p.rr, p.rl, p.ll, p.lr), (9, 0, 0, 0));
        let i = s.take_interval();
        assert_eq!((i.lost, i.fraction_lost), (0, 0));
    }

    #[test]
    fn jump_restart_and_ssrc_switch() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        feed(&mut s, t0, &in_order(100, 11)); // 100..=110, counted 101..=110
        // One stray packet far ahead: a jump, not counted.
        assert_eq!(feed(&mut s, t0, &[(40_000, 300)]), vec![Verdict::Jump]);
        // The stream continues where it was.
        feed(&mut s, t0, &[(111, 320), (112, 340)]);
        let t = s.totals();
        assert_eq!(
            (t.expected, t.received, t.seq_jumps, t.seq_resets),
            (12, 12, 1, 0)
        );
        // A restart: two sequential packets at a new place.
        assert_eq!(
            feed(&mut s, t0, &[(9_000, 360), (9_001, 380), (9_002, 400)]),
            vec![Verdict::Jump, Verdict::InOrder, Verdict::InOrder]
        );
        let t = s.totals();
        assert_eq!((t.seq_jumps, t.seq_resets), (2, 1));
        // 12 before + 2 after (9001 re-bases at 9001, 9002) = 14 expected and received.
        assert_eq!((t.expected, t.received, t.lost), (14, 14, 0));
        // A new SSRC: probation again, the old source's counts kept.
        s.on_packet(t0 + Duration::from_millis(420), 5, 800, 8, false, 172);
        s.on_packet(t0 + Duration::from_millis(440), 6, 960, 8, false, 172);
        let t = s.totals();
        assert_eq!(t.ssrc_switches, 1);
        assert_eq!((t.expected, t.received, t.lost), (15, 15, 0));
        assert_eq!(s.ssrc(), Some(8));
    }

    #[test]
    fn timestamp_jumps() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        let mut ts = 1000u32;
        for (i, (step, marker)) in [
            (0, false),
            (160, false),
            (160, false),
            (8000, false),
            (160, false),
            (4000, true),
        ]
        .into_iter()
        .enumerate()
        {
            ts = ts.wrapping_add(step);
            s.on_packet(
                t0 + Duration::from_millis(20 * i as u64),
                i as u16,
                ts,
                1,
                marker,
                100,
            );
        }
        // The 8000 step without marker is a jump; the 4000 step with marker is a new talk spurt.
        assert_eq!(s.totals().ts_jumps, 1);
        // Three RFC 4733 packets in between, then media 4 steps on: no jump.
        for q in 6..9 {
            s.on_other_packet(t0 + Duration::from_millis(20 * q), q as u16, 1, 16);
        }
        s.on_packet(
            t0 + Duration::from_millis(180),
            9,
            ts.wrapping_add(4 * SPP),
            1,
            false,
            100,
        );
        assert_eq!(s.totals().ts_jumps, 1);
        assert_eq!(s.totals().received, 9);
    }

    /// `n` packets every 20 ms from `t0`, every other one 5 ms late.
    fn alternating(s: &mut ReceiveStats, t0: Instant, n: u16) {
        for q in 0..n {
            let us = 20_000 * u64::from(q) + if q % 2 == 1 { 5_000 } else { 0 };
            let ts = u32::from(q) * SPP;
            s.on_packet(t0 + Duration::from_micros(us), q, ts, 1, false, 172);
        }
    }

    /// A new codec with another RTP clock inside the call (RFC 3264 §8.3.2): the jitter in
    /// milliseconds is the same on the new clock, the next packet starts a new transit
    /// origin (no jump of the estimate from the clock change), and the sequence goes on.
    #[test]
    fn a_new_clock_rate_keeps_the_jitter_in_milliseconds() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        alternating(&mut s, t0, 200);
        let before = s.jitter_ms();
        assert!((before - 5.0).abs() < 0.01, "{before}");
        s.set_clock(48_000, 960);
        assert!((s.jitter_ms() - before).abs() < 1e-9, "{}", s.jitter_ms());
        // The same stream on with 48 kHz timestamps (another origin), on time: the
        // estimate decays, with no step from the changed clock.
        let base = 7_000_000u32;
        for q in 200..220u16 {
            let us = 20_000 * u64::from(q);
            let ts = base.wrapping_add(u32::from(q - 200) * 960);
            s.on_packet(t0 + Duration::from_micros(us), q, ts, 1, false, 172);
        }
        let after = s.jitter_ms();
        assert!(after < before && after > 0.5, "{after}");
        assert_eq!(s.totals().lost, 0);
    }

    #[test]
    fn jitter_converges_to_alternating_offset() {
        // Packets every 20 ms, every other one delayed by 5 ms: |D| = 5 ms = 40 timestamp
        // units for every pair, so A.8's J → 40 (J_n = 40 (1 − (15/16)^n)).
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        let n = 400u16;
        alternating(&mut s, t0, n);
        // Jitter updates start with the second counted packet: n − 2 updates of |D| = 40.
        let expect = 40.0 * (1.0 - (15.0f64 / 16.0).powi(i32::from(n) - 2));
        let t = s.totals();
        assert!((t.jitter - expect).abs() < 1e-9, "{} vs {expect}", t.jitter);
        assert!((s.jitter_ms() - 5.0).abs() < 1e-9);
        // Spacing alternates 25 / 15 ms.
        let i = s.take_interval();
        assert_eq!(i.spacing_min_ms, Some(15.0));
        assert_eq!(i.spacing_max_ms, Some(25.0));
        let avg = i.spacing_avg_ms.unwrap();
        assert!((avg - (20.0 * 399.0 + 5.0) / 399.0).abs() < 1e-9, "{avg}");
    }

    #[test]
    fn clock_skew_of_a_fast_sender() {
        // The sender's 8 kHz clock runs 100 ppm fast: its 160-sample packets leave every
        // 20 ms / 1.0001 of our time. Over 60 s that is 6 ms of drift.
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        for q in 0..3000u32 {
            let at = t0 + Duration::from_secs_f64(f64::from(q) * 0.020 / 1.0001);
            s.on_packet(at, q as u16, 5_000 + q * SPP, 3, false, 172);
        }
        let t = s.totals();
        let skew = t.clock_skew_ppm.unwrap();
        assert!((skew - 100.0).abs() < 0.5, "{skew}");
        let drift = t.clock_drift_ms.unwrap();
        // 100 ppm × (2998 × 20 ms / 1.0001) ≈ 6.0 ms.
        assert!((drift - 5.995).abs() < 0.01, "{drift}");
        // A steady sender shows no skew.
        let mut s = ReceiveStats::new(8000, SPP);
        for q in 0..500u32 {
            s.on_packet(
                t0 + Duration::from_millis(u64::from(q) * 20),
                q as u16,
                q * SPP,
                3,
                false,
                172,
            );
        }
        assert!(s.totals().clock_skew_ppm.unwrap().abs() < 1e-6);
    }

    /// RFC 3550 A.8 by hand, on an uneven stream whose RTP timestamps wrap at 2^32: arrivals
    /// 0, 20, 45, 60, 80 ms, timestamps 160 apart (8 kHz) from 2^32 − 320. Packet 0 is on
    /// probation; from packet 1 on the transits (arrival − timestamp, in 1/8000 s, relative)
    /// are 0, 40, 0, 0: |D| = 40, 40, 0 → J = 2.5, 2.5 + 37.5/16 = 4.84375,
    /// 4.84375 − 4.84375/16 = 4.541015625.
    #[test]
    fn a8_jitter_by_hand_across_the_timestamp_wrap() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        let base = 0u32.wrapping_sub(320);
        for (i, ms) in [0u64, 20, 45, 60, 80].into_iter().enumerate() {
            let ts = base.wrapping_add(i as u32 * SPP);
            s.on_packet(t0 + Duration::from_millis(ms), i as u16, ts, 1, false, 172);
        }
        let t = s.totals();
        assert!((t.jitter - 4.541_015_625).abs() < 1e-9, "{}", t.jitter);
        assert!((t.max_jitter - 4.843_75).abs() < 1e-9, "{}", t.max_jitter);
        assert_eq!(t.ts_jumps, 0);
    }

    /// RFC 3550 A.1 around the 16-bit wrap: a late packet from before the wrap is late (not a
    /// jump), a second copy of it a duplicate; the extended highest counts the cycle.
    #[test]
    fn late_and_duplicate_across_the_sequence_wrap() {
        let mut s = ReceiveStats::new(8000, SPP);
        let t0 = Instant::now();
        let order = [65_533u16, 65_534, 0, 65_535, 1, 65_535, 2];
        let pkts: Vec<_> = order
            .iter()
            .enumerate()
            .map(|(i, q)| (*q, 20 * i as u64))
            .collect();
        use Verdict::*;
        assert_eq!(
            feed(&mut s, t0, &pkts),
            vec![
                Probation, InOrder, InOrder, Late, InOrder, Duplicate, InOrder
            ]
        );
        let t = s.totals();
        // Base 65534, highest 65536 + 2: expected 5, received 5.
        assert_eq!((t.expected, t.received, t.lost), (5, 5, 0));
        assert_eq!(t.ext_highest_seq, 65_536 + 2);
        assert_eq!((t.duplicates, t.out_of_order, t.seq_jumps), (1, 1, 0));
    }

    #[test]
    fn report_interval_fraction() {
        let mut r = ReportInterval::default();
        assert_eq!(r.fraction(100, 90), 25); // (10 << 8) / 100 = 25.6 → 25
        assert_eq!(r.fraction(200, 180), 25);
        assert_eq!(r.fraction(300, 300), 0); // late packets filled old gaps: negative → 0
        assert_eq!(r.fraction(300, 300), 0);
    }
}
