//! What the far end's audio sounds like over time, as a listener waiting for a prompt to end
//! hears it: when sound starts and when it stops, from the decoded frames' levels (the level
//! meter's own frames, [`crate::audio::LevelMeter`]; nothing is decoded twice).
//!
//! Drive it with [`SoundWatch::handle_frame`] for each decoded frame (its arrival time, its
//! level in dBov, its length) and [`SoundWatch::handle_timeout`] when
//! [`SoundWatch::poll_timeout`] is due; drain [`SoundWatch::poll_event`] after each.
//!
//! - A frame is *loud* when its RMS level is at or above the threshold; it is heard from its
//!   arrival for its length.
//! - Sound *starts* when loud frames follow each other for at least `min_sound` of audio
//!   (a click or a single loud frame is not sound); the start is the first of them.
//! - After sound, the time since the last loud frame ended is *quiet*
//!   ([`SoundWatch::quiet_since`]). Frames below the threshold, comfort noise (RFC 3389 CN
//!   packets are not audio the meter decodes) and no packets at all are all quiet alike.
//! - A sound *stops* once it has been quiet for `gap`; it stopped when its last loud frame
//!   ended. Sound after a shorter pause is the same sound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a [`SoundWatch`] tells sound from silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoundConfig {
    /// Frames at or above this RMS level (dBov) are loud.
    pub threshold_dbov: f64,
    /// Loud audio, in a row, that makes sound (a shorter burst is not).
    pub min_sound: Duration,
    /// Quiet that ends a sound.
    pub gap: Duration,
}

impl Default for SoundConfig {
    /// −45 dBov (the level meter's speech threshold), 60 ms, 1 s.
    fn default() -> Self {
        Self {
            threshold_dbov: crate::audio::VAD_THRESHOLD_DBOV,
            min_sound: Duration::from_millis(60),
            gap: Duration::from_secs(1),
        }
    }
}

/// A change [`SoundWatch`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SoundEvent {
    /// Sound started at `at` (its first loud frame's arrival); `level_dbov` is the loudest
    /// frame of the run that made it sound.
    Started { at: Instant, level_dbov: f64 },
    /// The sound stopped at `at` (when its last loud frame ended), known `gap` later;
    /// `level_dbov` is its loudest frame.
    Stopped { at: Instant, level_dbov: f64 },
}

/// Sound and silence in one received stream; see the module doc.
#[derive(Debug, Clone)]
pub struct SoundWatch {
    cfg: SoundConfig,
    /// The current run of loud frames: its first frame's arrival, its audio so far, its
    /// loudest frame.
    run: Option<(Instant, Duration, f64)>,
    /// When the last loud frame ended (arrival + length).
    last_loud_end: Option<Instant>,
    /// A sound is going on (started, not stopped): its loudest frame.
    sound: Option<f64>,
    /// Runs of loud frames that reached `min_sound` (sounds, and sound again after a pause
    /// shorter than `gap`).
    runs: u32,
    events: VecDeque<SoundEvent>,
}

impl SoundWatch {
    /// A watch with nothing heard yet.
    pub fn new(cfg: SoundConfig) -> Self {
        Self {
            cfg,
            run: None,
            last_loud_end: None,
            sound: None,
            runs: 0,
            events: VecDeque::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SoundConfig {
        &self.cfg
    }

    /// One decoded frame of `len` arrived at `now`, at `level_dbov` RMS.
    pub fn handle_frame(&mut self, now: Instant, level_dbov: f64, len: Duration) {
        self.handle_timeout(now);
        if level_dbov < self.cfg.threshold_dbov {
            self.run = None;
            return;
        }
        // A loud frame after a stretch without packets starts a new run: the run is audio
        // heard in a row, and nothing was heard in between.
        let slack = len.max(Duration::from_millis(10));
        let joins = self.last_loud_end.is_some_and(|end| now <= end + slack);
        let (start, heard, loudest) = match self.run {
            Some((start, heard, loudest)) if joins => (start, heard + len, loudest.max(level_dbov)),
            _ => (now, len, level_dbov),
        };
        let was_short = self.run.is_none_or(|(_, h, _)| h < self.cfg.min_sound) || !joins;
        self.run = Some((start, heard, loudest));
        self.last_loud_end = Some(now + len);
        if heard >= self.cfg.min_sound && was_short {
            self.runs += 1;
            match &mut self.sound {
                Some(l) => *l = l.max(loudest),
                None => {
                    self.sound = Some(loudest);
                    self.events.push_back(SoundEvent::Started {
                        at: start,
                        level_dbov: loudest,
                    });
                }
            }
        } else if let (Some(l), true) = (&mut self.sound, heard >= self.cfg.min_sound) {
            *l = l.max(level_dbov);
        }
    }

    /// Time passed to `now` (the sound may have stopped).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some(level), Some(end)) = (self.sound, self.last_loud_end)
            && now >= end + self.cfg.gap
        {
            self.sound = None;
            self.run = None;
            self.events.push_back(SoundEvent::Stopped {
                at: end,
                level_dbov: level,
            });
        }
    }

    /// When the current sound stops unless a loud frame comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sound?;
        Some(self.last_loud_end? + self.cfg.gap)
    }

    /// The next change seen.
    pub fn poll_event(&mut self) -> Option<SoundEvent> {
        self.events.pop_front()
    }

    /// Since when it has been quiet after sound (when the last loud frame ended), if sound
    /// was heard; `None` while a loud frame was heard after that sound but is too recent to
    /// say (it ends in the future) or before any sound.
    pub fn quiet_since(&self) -> Option<Instant> {
        (self.runs > 0).then_some(self.last_loud_end).flatten()
    }

    /// Runs of loud audio that made sound so far (each sound, and each return of sound after
    /// a pause shorter than `gap`).
    pub fn runs(&self) -> u32 {
        self.runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Duration = Duration::from_millis(20);

    /// Feeds `n` frames at `level` from `*t` on, 20 ms apart.
    fn frames(w: &mut SoundWatch, t: &mut Instant, n: u32, level: f64) {
        for _ in 0..n {
            w.handle_frame(*t, level, F);
            *t += F;
        }
    }

    fn drain(w: &mut SoundWatch) -> Vec<SoundEvent> {
        std::iter::from_fn(|| w.poll_event()).collect()
    }

    #[test]
    fn a_tone_then_silence_starts_and_stops() {
        let t0 = Instant::now();
        let mut t = t0;
        let mut w = SoundWatch::new(SoundConfig::default());
        frames(&mut w, &mut t, 5, -80.0);
        assert!(drain(&mut w).is_empty());
        assert_eq!(w.quiet_since(), None, "no sound yet");
        // Two loud frames are 40 ms: not sound yet; the third makes it.
        frames(&mut w, &mut t, 2, -20.0);
        assert!(drain(&mut w).is_empty());
        frames(&mut w, &mut t, 48, -20.0);
        let started = t0 + F * 5;
        assert_eq!(
            drain(&mut w),
            [SoundEvent::Started {
                at: started,
                level_dbov: -20.0
            }]
        );
        // 1 s of tone from 100 ms: it ends at 1.1 s.
        let end = t0 + Duration::from_millis(1100);
        assert_eq!(w.quiet_since(), Some(end));
        assert_eq!(w.poll_timeout(), Some(end + Duration::from_secs(1)));
        // Comfort noise or low noise is quiet alike.
        frames(&mut w, &mut t, 40, -60.0);
        assert!(drain(&mut w).is_empty());
        w.handle_timeout(end + Duration::from_millis(999));
        assert!(drain(&mut w).is_empty());
        w.handle_timeout(end + Duration::from_secs(1));
        assert_eq!(
            drain(&mut w),
            [SoundEvent::Stopped {
                at: end,
                level_dbov: -20.0
            }]
        );
        assert_eq!(w.poll_timeout(), None);
        assert_eq!(w.runs(), 1);
    }

    #[test]
    fn clicks_are_not_sound_and_short_pauses_do_not_end_it() {
        let t0 = Instant::now();
        let mut t = t0;
        let mut w = SoundWatch::new(SoundConfig::default());
        // Loud, quiet, loud: never 60 ms in a row.
        for _ in 0..10 {
            frames(&mut w, &mut t, 2, -10.0);
            frames(&mut w, &mut t, 1, -90.0);
        }
        assert!(drain(&mut w).is_empty());
        assert_eq!(w.runs(), 0);
        frames(&mut w, &mut t, 10, -30.0);
        assert_eq!(drain(&mut w).len(), 1);
        // A 500 ms pause, then more: the same sound (a second run).
        frames(&mut w, &mut t, 25, -70.0);
        frames(&mut w, &mut t, 10, -25.0);
        assert!(drain(&mut w).is_empty());
        assert_eq!(w.runs(), 2);
        // No packets at all for 1 s: stopped, when the last frame ended.
        let end = t;
        w.handle_timeout(t + Duration::from_secs(1));
        assert_eq!(
            drain(&mut w),
            [SoundEvent::Stopped {
                at: end,
                level_dbov: -25.0
            }]
        );
        // A loud run after a stretch without packets is a new sound.
        t += Duration::from_secs(3);
        frames(&mut w, &mut t, 3, -20.0);
        assert!(matches!(
            drain(&mut w)[..],
            [SoundEvent::Started { level_dbov, .. }] if level_dbov == -20.0
        ));
    }
}
