//! Audio gaps: stretches of [`AUDIO_GAP_MIN`] or more in which the far end was to send RTP
//! and none arrived.
//!
//! RFC 3550 loss (§6.4.1, A.3) counts the sequence numbers missing between the packets that
//! did arrive: a sender that stops (one-way audio after a re-INVITE, an SBC or NAT binding
//! that timed out, a media server that died) leaves no hole in the sequence it sent, and a
//! call that went silent half-way would still score a perfect MOS. A [`GapWatch`] looks at
//! arrival times instead: while the far end is to send (its direction sends, the call is not
//! held or parked with `c=0.0.0.0`), every stretch without an RTP arrival is measured from
//! the last packet (or from when the wait began: the media's start, a resume, a move).
//!
//! Cost per packet: none here. [`crate::stats::ReceiveStats`] already measures the spacing
//! of every arrival; one comparison there calls [`GapWatch::on_rtp_after_silence`] for the
//! first packet and for a packet [`AUDIO_GAP_MIN`] or more after the one before it.

use std::fmt;
use std::time::{Duration, Instant};

/// The shortest stretch without RTP that counts as a gap: 2 s, the same rule as a call
/// without any audio. It is far beyond what a jitter buffer hides (tens to a few hundred ms)
/// or what a packet-loss burst the E-model rates looks like, and it is what a listener
/// notices ("hello?"); shorter holes of a sender that keeps sending are counted by RFC 3550
/// loss already.
pub const AUDIO_GAP_MIN: Duration = Duration::from_secs(2);

/// What ended a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapEnd {
    /// RTP arrived again.
    AudioBack,
    /// The far end was no longer to send (held, or parked with `c=0.0.0.0`).
    Paused,
    /// The media moved to a new address: the wait began again there.
    Moved,
    /// The call's media ended.
    CallEnd,
}

/// One stretch without RTP while the far end was to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioGap {
    /// Its start (the last packet before it, or the start of the wait), since the media
    /// started.
    pub from: Duration,
    /// Its end, since the media started.
    pub to: Duration,
    /// RTP packets received before it.
    pub packets_before: u64,
    /// What ended it.
    pub ended: GapEnd,
}

impl AudioGap {
    /// How long it lasted.
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// `no RTP received from 12.4 s to the end of the call (17.6 s), after 620 packets`.
impl fmt::Display for AudioGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from.as_secs_f64(), self.to.as_secs_f64());
        let len = self.length().as_secs_f64();
        write!(f, "no RTP received from {from:.1} s ")?;
        match self.ended {
            GapEnd::CallEnd => write!(f, "to the end of the call ({to:.1} s)")?,
            GapEnd::AudioBack => write!(f, "to {to:.1} s ({len:.1} s, then audio came back)")?,
            GapEnd::Paused => write!(f, "to {to:.1} s ({len:.1} s, then the call was held)")?,
            GapEnd::Moved => write!(f, "to {to:.1} s ({len:.1} s, then the media moved)")?,
        }
        match self.packets_before {
            0 => write!(f, ", before any packet"),
            n => write!(f, ", after {n} packets"),
        }
    }
}

/// A call's gaps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AudioGaps {
    /// How many.
    pub count: u32,
    /// Their summed length.
    pub total: Duration,
    /// The longest one (the first of equals).
    pub longest: Option<AudioGap>,
}

impl AudioGaps {
    fn add(&mut self, gap: AudioGap) {
        self.count += 1;
        self.total += gap.length();
        if self.longest.is_none_or(|l| gap.length() > l.length()) {
            self.longest = Some(gap);
        }
    }
}

/// Watches one call's RTP arrivals for gaps. Sans-IO: every input takes `now`, and the
/// arrival before it (`last`: `None` before the first packet), which the receive statistics
/// keep anyway.
#[derive(Debug, Clone)]
pub struct GapWatch {
    start: Instant,
    /// When the current wait began: the start, a resume, a move.
    since: Instant,
    /// The far end is to send now.
    expected: bool,
    gaps: AudioGaps,
}

impl GapWatch {
    /// A watch for media that started at `start`, waiting for RTP from then if `expected`.
    pub fn new(start: Instant, expected: bool) -> Self {
        Self {
            start,
            since: start,
            expected,
            gaps: AudioGaps::default(),
        }
    }

    /// An RTP packet arrived at `now`, the first (`last` is `None`) or one at least
    /// [`AUDIO_GAP_MIN`] after the one before it (`last`); `received` arrived before it.
    /// The caller checks the spacing (any other packet cannot end a gap).
    #[cold]
    pub fn on_rtp_after_silence(&mut self, now: Instant, last: Option<Instant>, received: u64) {
        self.close(now, last, received, GapEnd::AudioBack);
    }

    /// From `now` on the far end is (`true`) or is not to send. A change from expected to
    /// not expected closes the open stretch (a gap if long enough); the other way starts a
    /// new wait at `now`.
    pub fn set_expected(
        &mut self,
        now: Instant,
        expected: bool,
        last: Option<Instant>,
        received: u64,
    ) {
        match (self.expected, expected) {
            (true, false) => self.close(now, last, received, GapEnd::Paused),
            (false, true) => self.since = now,
            _ => {}
        }
        self.expected = expected;
    }

    /// The media moved to a new address at `now`: the open stretch is closed there, and the
    /// new address gets a wait of its own from `now` (its first packet is still on its way).
    pub fn restart(&mut self, now: Instant, last: Option<Instant>, received: u64) {
        self.close(now, last, received, GapEnd::Moved);
        self.since = self.since.max(now);
    }

    /// The gaps so far, the open stretch included as one to the end of the call at `end`.
    pub fn gaps_until(&self, end: Instant, last: Option<Instant>, received: u64) -> AudioGaps {
        let mut gaps = self.gaps;
        if let Some(gap) = self.open_gap(end, last, received, GapEnd::CallEnd) {
            gaps.add(gap);
        }
        gaps
    }

    fn open_gap(
        &self,
        now: Instant,
        last: Option<Instant>,
        received: u64,
        ended: GapEnd,
    ) -> Option<AudioGap> {
        let from = last.map_or(self.since, |l| l.max(self.since));
        (self.expected && now.saturating_duration_since(from) >= AUDIO_GAP_MIN).then(|| AudioGap {
            from: from.saturating_duration_since(self.start),
            to: now.saturating_duration_since(self.start),
            packets_before: received,
            ended,
        })
    }

    fn close(&mut self, now: Instant, last: Option<Instant>, received: u64, ended: GapEnd) {
        if let Some(gap) = self.open_gap(now, last, received, ended) {
            self.gaps.add(gap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// A watch and its feed, as the receive statistics drive it: the last arrival and the
    /// count of packets.
    struct Feed {
        w: GapWatch,
        t0: Instant,
        last: Option<Instant>,
        n: u64,
    }

    impl Feed {
        fn new(expected: bool) -> Self {
            let t0 = Instant::now();
            Self {
                w: GapWatch::new(t0, expected),
                t0,
                last: None,
                n: 0,
            }
        }

        fn at(&self, secs: f64) -> Instant {
            self.t0 + s(secs)
        }

        /// Packets every 20 ms from `from` to `to` (seconds).
        fn packets(&mut self, from: f64, to: f64) {
            let mut t = from;
            while t < to {
                let now = self.at(t);
                if self.last.is_none_or(|l| now - l >= AUDIO_GAP_MIN) {
                    self.w.on_rtp_after_silence(now, self.last, self.n);
                }
                self.last = Some(now);
                self.n += 1;
                t += 0.02;
            }
        }

        fn set_expected(&mut self, secs: f64, expected: bool) {
            self.w
                .set_expected(self.at(secs), expected, self.last, self.n);
        }

        fn restart(&mut self, secs: f64) {
            self.w.restart(self.at(secs), self.last, self.n);
        }

        fn gaps(&self, end: f64) -> AudioGaps {
            self.w.gaps_until(self.at(end), self.last, self.n)
        }
    }

    #[test]
    fn a_sender_that_stops_leaves_a_gap_to_the_end() {
        let mut f = Feed::new(true);
        f.packets(0.0, 12.4);
        let g = f.gaps(17.6);
        assert_eq!(g.count, 1);
        let gap = g.longest.unwrap();
        assert_eq!((gap.ended, gap.packets_before), (GapEnd::CallEnd, f.n));
        assert_eq!(
            gap.to_string(),
            format!(
                "no RTP received from 12.4 s to the end of the call (17.6 s), after {} packets",
                f.n
            )
        );
        // Under the threshold: none.
        assert_eq!(f.gaps(14.0).count, 0);
    }

    #[test]
    fn a_hole_in_the_middle_is_a_gap_that_ends_when_audio_comes_back() {
        let mut f = Feed::new(true);
        f.packets(0.0, 3.0);
        let before = f.n;
        f.packets(6.5, 8.0);
        // A short hole (1.5 s) is not a gap.
        f.packets(9.5, 10.0);
        let g = f.gaps(10.0);
        assert_eq!(g.count, 1, "{g:?}");
        let gap = g.longest.unwrap();
        assert_eq!((gap.ended, gap.packets_before), (GapEnd::AudioBack, before));
        assert!((gap.length().as_secs_f64() - 3.52).abs() < 0.03, "{gap:?}");
        assert!(gap.to_string().contains("then audio came back"), "{gap}");
    }

    #[test]
    fn nothing_at_all_is_one_gap_before_any_packet() {
        let f = Feed::new(true);
        let g = f.gaps(3.0);
        assert_eq!(g.count, 1);
        assert_eq!(
            g.longest.unwrap().to_string(),
            "no RTP received from 0.0 s to the end of the call (3.0 s), before any packet"
        );
        // A first packet late by 2 s or more: a gap before it.
        let mut f = Feed::new(true);
        f.packets(2.5, 3.0);
        let gap = f.gaps(3.0).longest.unwrap();
        assert_eq!((gap.ended, gap.packets_before), (GapEnd::AudioBack, 0));
    }

    /// A hold (or `c=0.0.0.0`) ends the wait; a resume starts a new one at the resume: the
    /// time on hold is never a gap, and the far end gets the same grace after a resume as at
    /// the start.
    #[test]
    fn holds_are_not_gaps_and_a_resume_starts_a_new_wait() {
        let mut f = Feed::new(true);
        f.packets(0.0, 2.0);
        f.set_expected(2.5, false);
        f.set_expected(10.0, true);
        f.packets(11.0, 12.0);
        assert_eq!(f.gaps(12.0).count, 0);
        // Silent 3 s before the hold: a gap that the hold ends.
        f.set_expected(15.0, false);
        let g = f.gaps(20.0);
        assert_eq!(g.count, 1);
        assert_eq!(g.longest.unwrap().ended, GapEnd::Paused);
        // Not expected at the start (the far end holds from the first answer): none.
        assert_eq!(Feed::new(false).gaps(9.0).count, 0);
    }

    /// A move gives the new address its own wait; a stretch before it that was long enough
    /// is a gap the move ends.
    #[test]
    fn a_move_restarts_the_wait() {
        let mut f = Feed::new(true);
        f.packets(0.0, 1.0);
        f.restart(2.0);
        f.packets(3.5, 5.0);
        assert_eq!(f.gaps(5.0).count, 0);
        f.restart(8.0);
        let g = f.gaps(11.0);
        // ≈ 5.0–8.0 s (after the last packet), ended by the move, and 8.0–11.0 s at the new
        // address.
        assert_eq!(g.count, 2, "{g:?}");
        assert_eq!(g.longest.unwrap().ended, GapEnd::Moved);
        assert!((g.total.as_secs_f64() - 6.0).abs() < 0.03, "{g:?}");
    }
}
