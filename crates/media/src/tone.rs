//! What tones the far end's audio carries, as an IVR or PBX test needs to know: a ringback or
//! busy tone (a single frequency such as Europe's 425 Hz, or a pair such as the US 440+480 Hz
//! ringback and 480+620 Hz busy), a fax CED (2100 Hz), a beep before a voicemail, and in-band
//! DTMF digits (phones and gateways that send no RFC 4733 events).
//!
//! Drive a [`ToneWatch`] with [`ToneWatch::handle_pcm`] for each decoded frame (its arrival
//! time, its samples, their rate) and [`ToneWatch::handle_timeout`] when
//! [`ToneWatch::poll_timeout`] is due; drain [`ToneWatch::poll_event`] after each. Nothing
//! here reads the clock.
//!
//! - The samples are cut into blocks of [`TONE_BLOCK`] (40 ms); in each, the Goertzel
//!   algorithm measures the energy at each watched frequency (at the frequency and 0.5 %
//!   either side, a tolerance of about ±1.5 %), as a share of the block's whole energy. A
//!   block *has* a tone when its level is at least [`MIN_LEVEL_DBOV`] and the tone's
//!   frequencies hold at least [`TONE_SHARE`] of its energy; for a pair, their levels are
//!   also within [`TWIST_DB`] of each other. So speech, noise, a neighbour frequency (425 Hz
//!   for a 440 Hz tone) and one tone of a pair are not the tone, and a pair is not either of
//!   its tones.
//! - A tone is *heard* once blocks in a row have it for the tone's minimum duration; it
//!   started at the first of them. It ends at the end of the last block that had it: at a
//!   block without it, at a stretch without packets (a frame more than [`LATE`] after the
//!   last one's end; less is jitter), or [`TONE_GAP`] after its last block with no audio
//!   since ([`ToneWatch::handle_timeout`]).
//! - In-band DTMF, in the manner of ITU-T Q.24 (if asked): blocks of [`DTMF_BLOCK`]
//!   (12.5 ms), the four row and four column frequencies, a digit when the strongest row and
//!   column hold [`DTMF_SHARE`] of the energy, the column within −8/+4 dB of the row (normal
//!   and reverse twist), in two blocks in a row (a tone of 37.5 ms or more is always caught;
//!   one of less than 25 ms never is). The same digit again needs a block without it between.
//! - Special Information Tones (if asked, [`ToneWatch::with_sit`]): the three-tone sequence
//!   a network plays before an announcement saying why a call failed (ANSI T1.401 /
//!   Telcordia SR-2275, within ITU-T E.180 §2.6's bands). Blocks of [`SIT_BLOCK`] (20 ms:
//!   the first nulls of its filters are 50 Hz away, so 913.8 Hz and 985.2 Hz, 1370.6 Hz and
//!   1428.5 Hz, 58–71 Hz apart, do not leak into each other); a block is one of the five
//!   SIT frequencies when it holds [`SIT_SHARE`] of the block's energy; runs of blocks of
//!   one segment's frequencies are segments (the frequency that won most of its blocks is
//!   the segment's), timed to a block. Segment 1 at 913.8 or 985.2 Hz, segment 2 at 1370.6
//!   or 1428.5 Hz, segment 3 at 1776.7 Hz, each short (274 ms) or long (380 ms), at most
//!   [`SIT_MAX_GAP`] between them: the frequencies and the durations of the first two give
//!   the kind ([`SitKind`]). ITU-T E.180's generic SIT (950, 1400, 1800 Hz, each 330 ± 70 ms)
//!   has filters of its own; a SIT whose first or second segment is at one of those is
//!   [`SitKind::Generic`] (not the third alone: 1800 Hz is 23 Hz from 1776.7 Hz, where a
//!   North American third a little high lands). Told when the third segment ends.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// The block over which tones are measured (40 ms: 25 Hz apart is told apart).
pub const TONE_BLOCK: Duration = Duration::from_millis(40);
/// The block over which DTMF is measured (12.5 ms, 100 samples at 8 kHz: the leakage of one
/// row or column into its neighbour is below −20 dB).
pub const DTMF_BLOCK: Duration = Duration::from_micros(12_500);
/// The share of a block's energy a tone's frequencies must hold (−0.5 dB): more than the
/// stronger tone of a pair within [`TWIST_DB`] holds (0.86), so such a pair is not its
/// stronger tone alone.
pub const TONE_SHARE: f64 = 0.9;
/// The share of a DTMF block's energy its row and column must hold (−1.5 dB).
pub const DTMF_SHARE: f64 = 0.7;
/// The most two tones of a pair may differ in level, dB.
pub const TWIST_DB: f64 = 8.0;
/// The least level of a block that may have a tone (the level meter's speech threshold:
/// −45 dBov, about −39 dBm0 — G.711's full-scale sine is +3.17 dBm0 and −3.01 dBov).
pub const MIN_LEVEL_DBOV: f64 = crate::audio::VAD_THRESHOLD_DBOV;
/// A heard tone ends this long after its last block when no audio came since.
pub const TONE_GAP: Duration = Duration::from_millis(200);
/// A frame that arrives this much later than the previous frame's end comes after a
/// stretch without packets (the tones end there); later by less is jitter, and the audio
/// goes on (a loaded sender or receiver delays packets by tens of ms).
pub const LATE: Duration = Duration::from_millis(100);
/// The lowest and highest frequency a tone may have (heard at 8 kHz, below its Nyquist).
pub const FREQ_RANGE: (f64, f64) = (50.0, 3900.0);

/// The block over which SIT segments are measured and timed.
pub const SIT_BLOCK: Duration = Duration::from_millis(20);
/// The share of a SIT block's energy its frequency must hold (−1.5 dB): a block half one
/// segment and half the next holds a quarter of each, and is neither.
pub const SIT_SHARE: f64 = 0.7;
/// The longest stretch between two SIT segments (ANSI T1.401 asks for at most 4 ms of
/// silence, ITU-T E.180 at most 30 ms; a block straddling the change is neither tone).
pub const SIT_MAX_GAP: Duration = Duration::from_millis(60);
/// A short SIT segment, as measured in whole blocks (nominal 274 ms ± 5 %).
const SIT_SHORT: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(310));
/// A long SIT segment, as measured in whole blocks (nominal 380 ms ± 5 %).
const SIT_LONG: (Duration, Duration) = (Duration::from_millis(320), Duration::from_millis(440));
/// The SIT frequencies (Hz): segment 1 low/high, segment 2 low/high, segment 3.
pub const SIT_FREQS: [f64; 5] = [913.8, 985.2, 1370.6, 1428.5, 1776.7];
/// ITU-T E.180 §2.6's nominal SIT frequencies (Hz), segments 1, 2 and 3 (950, 1400 and
/// 1800 Hz ± 50, each 330 ± 70 ms): the generic SIT of networks outside North America.
pub const SIT_ITU_FREQS: [f64; 3] = [950.0, 1400.0, 1800.0];
/// An ITU-T generic SIT segment, as measured in whole blocks (nominal 330 ± 70 ms).
const SIT_ITU: (Duration, Duration) = (Duration::from_millis(240), Duration::from_millis(420));

const DTMF_ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const DTMF_COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const DTMF_KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// A tone: one frequency, or a pair heard together (Hz), read by [`Tone::parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    f1: f64,
    f2: Option<f64>,
}

/// Its frequencies are finite (checked by [`Tone::parse`], the only way to make one), so
/// `==` is an equivalence.
impl Eq for Tone {}

/// Why a tone's text is not a tone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToneError {
    /// Not a frequency in Hz.
    #[error("`{0}` is not a frequency in Hz (e.g. 2100, 425, 440+480)")]
    NotAFrequency(String),
    /// Outside what a narrowband call carries.
    #[error("{0} Hz is outside 50–3900 Hz")]
    OutOfRange(f64),
    /// More than two frequencies.
    #[error("a tone has one frequency or a pair (440+480), not more")]
    TooMany,
    /// A pair of one frequency twice, or so close they cannot be told apart.
    #[error("the pair's frequencies are less than 25 Hz apart")]
    TooClose,
}

impl Tone {
    /// Reads `2100`, `425`, `440+480` (spaces and a trailing `Hz` allowed).
    pub fn parse(s: &str) -> Result<Self, ToneError> {
        let one = |p: &str| -> Result<f64, ToneError> {
            let t = p.trim();
            let t = t
                .strip_suffix("Hz")
                .or_else(|| t.strip_suffix("hz"))
                .unwrap_or(t)
                .trim();
            let f: f64 = t
                .parse()
                .map_err(|_| ToneError::NotAFrequency(p.trim().to_string()))?;
            if !f.is_finite() || !(FREQ_RANGE.0..=FREQ_RANGE.1).contains(&f) {
                return Err(if f.is_finite() {
                    ToneError::OutOfRange(f)
                } else {
                    ToneError::NotAFrequency(p.trim().to_string())
                });
            }
            Ok(f)
        };
        let mut parts = s.split('+');
        let f1 = one(parts.next().unwrap_or(""))?;
        let f2 = parts.next().map(one).transpose()?;
        if parts.next().is_some() {
            return Err(ToneError::TooMany);
        }
        if f2.is_some_and(|f2| (f2 - f1).abs() < 25.0) {
            return Err(ToneError::TooClose);
        }
        Ok(Self { f1, f2 })
    }

    /// The first (or only) frequency, Hz.
    pub fn f1(&self) -> f64 {
        self.f1
    }

    /// The second frequency of a pair, Hz.
    pub fn f2(&self) -> Option<f64> {
        self.f2
    }
}

impl fmt::Display for Tone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.f1)?;
        if let Some(f2) = self.f2 {
            write!(f, "+{f2}")?;
        }
        Ok(())
    }
}

/// A tone's cadence: bursts `on` long, `off` apart — a busy or reorder tone heard as one
/// thing rather than burst by burst. Matched on two bursts of a watched tone
/// ([`ToneEvent::Ended`]) and the gap between them ([`Cadence::follows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// How long each burst lasts.
    pub on: Duration,
    /// The silence between bursts.
    pub off: Duration,
}

impl Cadence {
    /// North America's busy tone (480+620 Hz): 0.5 s on, 0.5 s off (60 interruptions a
    /// minute, ANSI T1.401).
    pub const US_BUSY: Cadence = Cadence {
        on: Duration::from_millis(500),
        off: Duration::from_millis(500),
    };
    /// North America's reorder ("fast busy", 480+620 Hz): 0.25 s on, 0.25 s off (120 a
    /// minute).
    pub const US_REORDER: Cadence = Cadence {
        on: Duration::from_millis(250),
        off: Duration::from_millis(250),
    };

    /// The minimum duration its tone is to be watched with, so each burst is heard: its
    /// `on` less two blocks (a burst is measured in whole blocks), at least one block.
    pub fn min_burst(&self) -> Duration {
        self.on.saturating_sub(2 * TONE_BLOCK).max(TONE_BLOCK)
    }

    /// Whether burst `b` follows burst `a` (each its start and end, as
    /// [`ToneEvent::Ended`] tells them) in this cadence: both about `on` long, about `off`
    /// apart — within 25 % or 80 ms (two blocks), whichever is more.
    pub fn follows(&self, a: (Instant, Instant), b: (Instant, Instant)) -> bool {
        let near = |got: Duration, want: Duration| {
            let tol = (want / 4).max(Duration::from_millis(80));
            got + tol >= want && got <= want + tol
        };
        b.0 >= a.1
            && near(a.1 - a.0, self.on)
            && near(b.1 - b.0, self.on)
            && near(b.0 - a.1, self.off)
    }
}

/// What a Special Information Tone says (ANSI T1.401 / Telcordia SR-2275 encoding: the
/// frequency, low or high, and the duration, short or long, of its first two segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SitKind {
    /// IC, intercept (vacant number, changed number): 913.8 S, 1370.6 S.
    Intercept,
    /// VC, vacant code (an unassigned area or office code): 985.2 L, 1370.6 S.
    VacantCode,
    /// RO′, reorder within the local network (equipment irregularity): 913.8 S, 1428.5 L.
    ReorderIntra,
    /// RO″, reorder by an inter-exchange carrier: 985.2 S, 1370.6 L.
    ReorderInter,
    /// NC′, no circuit within the local network (trunk blockage, emergency): 985.2 L, 1428.5 L.
    NoCircuitIntra,
    /// NC″, no circuit at an inter-exchange carrier: 913.8 L, 1370.6 L.
    NoCircuitInter,
    /// IO, ineffective other (a call failure not otherwise classed): 913.8 L, 1428.5 S.
    IneffectiveOther,
    /// Reserved for future use: 985.2 S, 1428.5 S.
    Reserved,
    /// A combination of the first two segments the table assigns to no kind (8 of 16).
    Unassigned,
    /// ITU-T E.180's generic SIT (950, 1400, 1800 Hz, no code in its segments): the call
    /// could not be completed for a reason the announcement gives.
    Generic,
}

impl SitKind {
    /// Every kind.
    pub const ALL: [SitKind; 10] = [
        Self::Intercept,
        Self::VacantCode,
        Self::ReorderIntra,
        Self::ReorderInter,
        Self::NoCircuitIntra,
        Self::NoCircuitInter,
        Self::IneffectiveOther,
        Self::Reserved,
        Self::Unassigned,
        Self::Generic,
    ];

    /// Its code, lower case, as events and reports name it (`ic`, `vc`, `ro`, `nc`, `io`,
    /// `reserved`, `unassigned`): intra- and inter-network reorder (or no circuit) share theirs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Intercept => "ic",
            Self::VacantCode => "vc",
            Self::ReorderIntra | Self::ReorderInter => "ro",
            Self::NoCircuitIntra | Self::NoCircuitInter => "nc",
            Self::IneffectiveOther => "io",
            Self::Reserved => "reserved",
            Self::Unassigned => "unassigned",
            Self::Generic => "generic",
        }
    }

    /// In words (`no circuit`, `reorder, inter-exchange carrier` …).
    pub fn words(self) -> &'static str {
        match self {
            Self::Intercept => "intercept",
            Self::VacantCode => "vacant code",
            Self::ReorderIntra => "reorder",
            Self::ReorderInter => "reorder, inter-exchange carrier",
            Self::NoCircuitIntra => "no circuit",
            Self::NoCircuitInter => "no circuit, inter-exchange carrier",
            Self::IneffectiveOther => "ineffective other",
            Self::Reserved => "reserved code",
            Self::Unassigned => "unassigned code",
            Self::Generic => "ITU-T generic",
        }
    }

    /// The kind of a first segment (high frequency, long) and a second (high, long).
    fn of(first: (bool, bool), second: (bool, bool)) -> Self {
        match (first, second) {
            ((false, false), (false, false)) => Self::Intercept,
            ((true, true), (false, false)) => Self::VacantCode,
            ((false, false), (true, true)) => Self::ReorderIntra,
            ((true, false), (false, true)) => Self::ReorderInter,
            ((true, true), (true, true)) => Self::NoCircuitIntra,
            ((false, true), (false, true)) => Self::NoCircuitInter,
            ((false, true), (true, false)) => Self::IneffectiveOther,
            ((true, false), (true, false)) => Self::Reserved,
            _ => Self::Unassigned,
        }
    }

    /// Reads a code (`ic`, `vc`, `ro`, `nc`, `io`, `reserved`, `unassigned`, `generic`, any
    /// case), as
    /// [`Self::code`] spells it.
    pub fn parse_code(s: &str) -> Option<&'static str> {
        let l = s.trim().to_ascii_lowercase();
        Self::ALL.iter().map(|k| k.code()).find(|c| *c == l)
    }
}

impl fmt::Display for SitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code().to_ascii_uppercase(), self.words())
    }
}

/// A change [`ToneWatch`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ToneEvent {
    /// The watched tone number `tone` was heard for its minimum duration; it started at `at`.
    Heard { tone: usize, at: Instant },
    /// The heard tone `tone`, which started at `start`, ended at `end`.
    Ended {
        tone: usize,
        start: Instant,
        end: Instant,
    },
    /// An in-band DTMF digit started at `at`.
    Digit { digit: char, at: Instant },
    /// A Special Information Tone of this kind, from `start` (its first segment's) to `end`
    /// (its third segment's end, when it is told).
    Sit {
        kind: SitKind,
        start: Instant,
        end: Instant,
    },
}

/// One Goertzel filter: the energy at one frequency over a block.
#[derive(Debug, Clone, Copy)]
struct Goertzel {
    coeff: f64,
    s1: f64,
    s2: f64,
}

impl Goertzel {
    fn new(freq: f64, rate: u32) -> Self {
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate.max(1));
        Self {
            coeff: 2.0 * w.cos(),
            s1: 0.0,
            s2: 0.0,
        }
    }

    fn push(&mut self, x: f64) {
        let s = x + self.coeff * self.s1 - self.s2;
        self.s2 = self.s1;
        self.s1 = s;
    }

    /// |X(f)|² over the block so far; the filter starts afresh.
    fn take(&mut self) -> f64 {
        let p = self.s1 * self.s1 + self.s2 * self.s2 - self.coeff * self.s1 * self.s2;
        self.s1 = 0.0;
        self.s2 = 0.0;
        p.max(0.0)
    }
}

/// Filters over blocks of a fixed number of samples: each frequency's share of the block's
/// energy when a block completes.
#[derive(Debug, Clone)]
struct Bank {
    /// Per frequency, its filters (the frequency and its tolerance probes).
    filters: Vec<Vec<Goertzel>>,
    /// Samples per block.
    len: usize,
    n: usize,
    energy: f64,
    /// When the current block's first sample was heard.
    start: Option<Instant>,
}

impl Bank {
    fn new(freqs: &[f64], rate: u32, block: Duration, probes: &[f64]) -> Self {
        let len = ((f64::from(rate) * block.as_secs_f64()).round() as usize).max(1);
        Self {
            filters: freqs
                .iter()
                .map(|f| probes.iter().map(|p| Goertzel::new(f * p, rate)).collect())
                .collect(),
            len,
            n: 0,
            energy: 0.0,
            start: None,
        }
    }

    fn reset(&mut self) {
        for g in self.filters.iter_mut().flatten() {
            g.take();
        }
        self.n = 0;
        self.energy = 0.0;
        self.start = None;
    }

    /// Adds one sample heard at `at`; a completed block's start, level (dBov) and per
    /// frequency its share of the energy (the best of its probes).
    fn push(&mut self, at: Instant, x: f64, shares: &mut Vec<f64>) -> Option<(Instant, f64)> {
        self.start.get_or_insert(at);
        for g in self.filters.iter_mut().flatten() {
            g.push(x);
        }
        self.energy += x * x;
        self.n += 1;
        if self.n < self.len {
            return None;
        }
        let n = self.n as f64;
        let energy = self.energy;
        shares.clear();
        for probes in &mut self.filters {
            let best = probes.iter_mut().map(Goertzel::take).fold(0.0, f64::max);
            // A sine of amplitude A over N samples: |X|² = (AN/2)², energy A²N/2, so the
            // share is 2|X|²/(N·energy) = 1 for a pure tone at the frequency.
            shares.push(if energy > 0.0 {
                (2.0 * best / (n * energy)).min(1.0)
            } else {
                0.0
            });
        }
        let start = self.start.take()?;
        self.n = 0;
        self.energy = 0.0;
        Some((start, crate::audio::dbov(energy / n)))
    }
}

/// A watched tone's state.
#[derive(Debug, Clone)]
struct Watched {
    tone: Tone,
    min: Duration,
    /// Its block: [`TONE_BLOCK`], or for a pair the first whole number of its beat's periods
    /// from [`TONE_BLOCK`] on (so each tone leaks nothing into the other's filter, and the
    /// block's energy is the sum of theirs).
    block: Duration,
    bank: Bank,
    /// The current run of blocks with it: its start, the end of its last block.
    run: Option<(Instant, Instant)>,
    /// The run was heard (lasted `min`).
    heard: bool,
}

impl Watched {
    fn new(tone: Tone, min: Duration, rate: u32) -> Self {
        let block = match tone.f2 {
            None => TONE_BLOCK,
            Some(f2) => {
                let beat = 1.0 / (f2 - tone.f1).abs();
                Duration::from_secs_f64(beat * (TONE_BLOCK.as_secs_f64() / beat).ceil())
            }
        };
        let freqs: Vec<f64> = std::iter::once(tone.f1).chain(tone.f2).collect();
        Self {
            tone,
            min,
            block,
            bank: Bank::new(&freqs, rate, block, &[0.995, 1.0, 1.005]),
            run: None,
            heard: false,
        }
    }

    /// A block ended at `start` + its length: whether it has the tone.
    fn has(&self, level: f64, shares: &[f64]) -> bool {
        let twist = 10f64.powf(TWIST_DB / 10.0);
        level >= MIN_LEVEL_DBOV
            && match shares {
                [p1] => *p1 >= TONE_SHARE,
                [p1, p2] => {
                    p1 + p2 >= TONE_SHARE
                        && *p1 > 0.0
                        && *p2 > 0.0
                        && p1 / p2 <= twist
                        && p2 / p1 <= twist
                }
                _ => false,
            }
    }
}

/// The in-band DTMF detector's state.
#[derive(Debug, Clone)]
struct Dtmf {
    bank: Bank,
    /// The digit of the last block, and when its run started, and whether it was told.
    last: Option<(char, Instant, bool)>,
}

/// A SIT segment: the blocks won by each filter (index into [`SIT_FREQS`], then
/// [`SIT_ITU_FREQS`] from 5), all of one place ([`sit_place`]), its first block's start, the
/// end of its last block. A tone between two filters of a place may win one block and the
/// other the next: still one segment, whose frequency is the filter that won most.
#[derive(Debug, Clone, Copy)]
struct Segment {
    votes: [u16; SIT_FILTERS],
    start: Instant,
    end: Instant,
}

/// The SIT filters: North American then ITU-T.
const SIT_FILTERS: usize = SIT_FREQS.len() + SIT_ITU_FREQS.len();

impl Segment {
    /// A segment of one block won by filter `freq`.
    fn new(freq: usize, start: Instant, end: Instant) -> Self {
        let mut votes = [0; SIT_FILTERS];
        votes[freq] = 1;
        Self { votes, start, end }
    }

    /// The filter that won most of its blocks (the lower on a tie).
    fn freq(&self) -> usize {
        (0..SIT_FILTERS)
            .rev()
            .max_by_key(|&f| self.votes[f])
            .unwrap_or(0)
    }
}

/// Which segment of a SIT a filter's frequency can be: 1 (913.8, 985.2, 950 Hz), 2
/// (1370.6, 1428.5, 1400 Hz) or 3 (1776.7, 1800 Hz).
fn sit_place(freq: usize) -> u8 {
    match freq {
        0 | 1 | 5 => 1,
        2 | 3 | 6 => 2,
        _ => 3,
    }
}

/// The SIT detector's state.
#[derive(Debug, Clone)]
struct Sit {
    bank: Bank,
    /// The segment in progress.
    run: Option<Segment>,
    /// The segments before it, in order, each within [`SIT_MAX_GAP`] of the next (at most 2).
    done: Vec<Segment>,
}

impl Sit {
    fn new(rate: u32) -> Self {
        Self {
            bank: Bank::new(
                &[&SIT_FREQS[..], &SIT_ITU_FREQS].concat(),
                rate,
                SIT_BLOCK,
                &[1.0],
            ),
            run: None,
            done: Vec::new(),
        }
    }

    /// A block ended: the SIT frequency it has, if any.
    fn block(
        &mut self,
        start: Instant,
        level: f64,
        shares: &[f64],
        events: &mut VecDeque<ToneEvent>,
    ) {
        let best = shares
            .iter()
            .enumerate()
            .fold((0, 0.0), |b, (i, p)| if *p > b.1 { (i, *p) } else { b });
        let freq = (level >= MIN_LEVEL_DBOV && best.1 >= SIT_SHARE).then_some(best.0);
        let end = start + SIT_BLOCK;
        match (&mut self.run, freq) {
            (Some(r), Some(f)) if sit_place(r.freq()) == sit_place(f) => {
                r.votes[f] = r.votes[f].saturating_add(1);
                r.end = end;
                // A segment already too long for a SIT is no segment of one.
                if end - r.start > SIT_LONG.1 {
                    self.done.clear();
                }
            }
            (_, f) => {
                self.close(events);
                if let Some(freq) = f {
                    self.run = Some(Segment::new(freq, start, end));
                }
            }
        }
        // Too long without a segment: what came before is not followed by the next.
        if self.run.is_none()
            && let Some(last) = self.done.last()
            && end - last.end > SIT_MAX_GAP
        {
            self.done.clear();
        }
    }

    /// The segment in progress ended: a SIT if it is the third of one.
    fn close(&mut self, events: &mut VecDeque<ToneEvent>) {
        let Some(seg) = self.run.take() else {
            return;
        };
        let len = seg.end - seg.start;
        let long = |len: Duration| (SIT_LONG.0..=SIT_LONG.1).contains(&len);
        let itu = |s: &Segment| s.freq() >= SIT_FREQS.len();
        let timed = (SIT_SHORT.0..=SIT_SHORT.1).contains(&len)
            || long(len)
            || (itu(&seg) && (SIT_ITU.0..=SIT_ITU.1).contains(&len));
        if self
            .done
            .last()
            .is_some_and(|l| seg.start.saturating_duration_since(l.end) > SIT_MAX_GAP)
        {
            self.done.clear();
        }
        if !timed {
            self.done.clear();
            return;
        }
        let place = |s: &Segment| sit_place(s.freq());
        match (place(&seg), &self.done[..]) {
            // The third: 1776.7 Hz (long in every assigned code; a short one is taken too,
            // ITU-T E.180 allows it), or 1800 Hz.
            (3, [a, b]) if place(a) == 1 && place(b) == 2 => {
                // All three lie within E.180's bands. The code is read from the first two
                // segments when both are North American; either one nearest its ITU-T
                // frequency makes it the generic SIT. Not the third: 1776.7 and 1800 Hz
                // are 23 Hz apart, so a North American third a little high is nearer 1800
                // and must not lose its code.
                let kind = if itu(a) || itu(b) {
                    SitKind::Generic
                } else {
                    SitKind::of(
                        (a.freq() == 1, long(a.end - a.start)),
                        (b.freq() == 3, long(b.end - b.start)),
                    )
                };
                events.push_back(ToneEvent::Sit {
                    kind,
                    start: a.start,
                    end: seg.end,
                });
                self.done.clear();
            }
            (1, _) => self.done = vec![seg],
            (2, [a]) if place(a) == 1 => self.done.push(seg),
            _ => self.done.clear(),
        }
    }

    fn reset(&mut self, events: &mut VecDeque<ToneEvent>) {
        self.close(events);
        self.done.clear();
        self.bank.reset();
    }
}

/// Tones and in-band DTMF in one received stream; see the module doc.
#[derive(Debug, Clone)]
pub struct ToneWatch {
    rate: u32,
    watched: Vec<Watched>,
    dtmf: Option<Dtmf>,
    sit: Option<Sit>,
    /// When the last frame's samples end.
    heard_to: Option<Instant>,
    shares: Vec<f64>,
    events: VecDeque<ToneEvent>,
}

impl ToneWatch {
    /// A watch for these tones (each with its minimum duration), and in-band DTMF if `dtmf`.
    pub fn new(tones: &[(Tone, Duration)], dtmf: bool) -> Self {
        let rate = 8000;
        Self {
            rate,
            watched: tones
                .iter()
                .map(|(t, min)| Watched::new(*t, *min, rate))
                .collect(),
            dtmf: dtmf.then(|| Dtmf::new(rate)),
            sit: None,
            heard_to: None,
            shares: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Watches for Special Information Tones too (`on`), told as [`ToneEvent::Sit`].
    pub fn with_sit(mut self, on: bool) -> Self {
        self.sit = on.then(|| Sit::new(self.rate));
        self
    }

    /// Whether it watches for Special Information Tones.
    pub fn watches_sit(&self) -> bool {
        self.sit.is_some()
    }

    /// The watched tones, in the order given.
    pub fn tones(&self) -> impl Iterator<Item = Tone> + '_ {
        self.watched.iter().map(|w| w.tone)
    }

    /// One decoded frame arrived at `now`: `pcm` at `rate` samples per second.
    pub fn handle_pcm(&mut self, now: Instant, pcm: &[i16], rate: u32) {
        if pcm.is_empty() || rate == 0 {
            return;
        }
        if rate != self.rate {
            self.end_all(self.heard_to.unwrap_or(now));
            self.rate = rate;
            for w in &mut self.watched {
                *w = Watched::new(w.tone, w.min, rate);
            }
            if let Some(d) = &mut self.dtmf {
                *d = Dtmf::new(rate);
            }
            if let Some(s) = &mut self.sit {
                *s = Sit::new(rate);
            }
        }
        let len = Duration::from_nanos(pcm.len() as u64 * 1_000_000_000 / u64::from(rate));
        // A frame after a stretch without packets: the blocks in progress are not audio
        // heard in a row, and the tones heard end where the audio stopped.
        if let Some(to) = self.heard_to
            && now > to + LATE
        {
            self.end_all(to);
        }
        self.handle_timeout(now);
        let step = 1.0 / f64::from(rate);
        for (i, s) in pcm.iter().enumerate() {
            let at = now + Duration::from_secs_f64(i as f64 * step);
            let x = f64::from(*s);
            for (k, w) in self.watched.iter_mut().enumerate() {
                let Some((start, level)) = w.bank.push(at, x, &mut self.shares) else {
                    continue;
                };
                if !w.has(level, &self.shares) {
                    end_run(w, k, &mut self.events);
                    continue;
                }
                let end = start + w.block;
                let (from, _) = *w.run.get_or_insert((start, end));
                w.run = Some((from, end));
                if !w.heard && end - from >= w.min {
                    w.heard = true;
                    self.events
                        .push_back(ToneEvent::Heard { tone: k, at: from });
                }
            }
            if let Some(d) = &mut self.dtmf
                && let Some((start, level)) = d.bank.push(at, x, &mut self.shares)
            {
                d.block(start, level, &self.shares, &mut self.events);
            }
            if let Some(s) = &mut self.sit
                && let Some((start, level)) = s.bank.push(at, x, &mut self.shares)
            {
                s.block(start, level, &self.shares, &mut self.events);
            }
        }
        self.heard_to = Some(now + len);
    }

    fn end_all(&mut self, at: Instant) {
        for (i, w) in self.watched.iter_mut().enumerate() {
            if let Some((_, end)) = &mut w.run {
                *end = (*end).min(at);
            }
            end_run(w, i, &mut self.events);
            w.bank.reset();
        }
        if let Some(d) = &mut self.dtmf {
            d.bank.reset();
            d.last = None;
        }
        if let Some(s) = &mut self.sit {
            s.reset(&mut self.events);
        }
    }

    /// Time passed to `now`: a heard tone with no audio for [`TONE_GAP`] has ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(to) = self.heard_to
            && now >= to + TONE_GAP
            && (self.watched.iter().any(|w| w.run.is_some())
                || self.sit.as_ref().is_some_and(|s| s.run.is_some()))
        {
            self.end_all(to);
        }
    }

    /// When a heard tone ends unless audio comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.watched.iter().any(|w| w.heard) || self.sit.as_ref().is_some_and(|s| s.run.is_some()))
            .then_some(self.heard_to? + TONE_GAP)
    }

    /// The next change seen.
    pub fn poll_event(&mut self) -> Option<ToneEvent> {
        self.events.pop_front()
    }
}

impl Dtmf {
    fn new(rate: u32) -> Self {
        let all: Vec<f64> = DTMF_ROWS.iter().chain(&DTMF_COLS).copied().collect();
        Self {
            bank: Bank::new(&all, rate, DTMF_BLOCK, &[1.0]),
            last: None,
        }
    }

    /// A block ended: the digit it has, if any; a digit is told at its second block.
    fn block(
        &mut self,
        start: Instant,
        level: f64,
        shares: &[f64],
        events: &mut VecDeque<ToneEvent>,
    ) {
        let best = |s: &[f64]| {
            s.iter()
                .enumerate()
                .fold((0, 0.0), |b, (i, p)| if *p > b.1 { (i, *p) } else { b })
        };
        let (r, pr) = best(&shares[..4]);
        let (c, pc) = best(&shares[4..]);
        // Twist: the column (high group) 8 dB below the row at most (normal twist), 4 dB
        // above it at most (reverse twist).
        let ratio = if pr > 0.0 { pc / pr } else { 0.0 };
        let digit = (level >= MIN_LEVEL_DBOV
            && pr + pc >= DTMF_SHARE
            && (10f64.powf(-0.8)..=10f64.powf(0.4)).contains(&ratio))
        .then(|| DTMF_KEYS[r][c]);
        self.last = match (digit, self.last) {
            (None, _) => None,
            (Some(k), Some((l, from, told))) if k == l => {
                if !told {
                    events.push_back(ToneEvent::Digit { digit: k, at: from });
                }
                Some((k, from, true))
            }
            (Some(k), _) => Some((k, start, false)),
        };
    }
}

/// Ends a watched tone's run (told if it was heard).
fn end_run(w: &mut Watched, i: usize, events: &mut VecDeque<ToneEvent>) {
    if let (Some((start, end)), true) = (w.run.take(), w.heard) {
        events.push_back(ToneEvent::Ended {
            tone: i,
            start,
            end,
        });
    }
    w.heard = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{SourceConfig, SpeechSource};
    use crate::g711::Law;

    const F: Duration = Duration::from_millis(20);

    /// A sine's peak at `dbm0` (G.711: the full-scale sine is +3.17 dBm0).
    fn peak(dbm0: f64) -> f64 {
        32767.0 * 10f64.powf((dbm0 - 3.17) / 20.0)
    }

    /// `ms` of the sum of these sines (Hz, dBm0) at `rate`, from sample `n0` on, through
    /// µ-law when at 8 kHz (what a PCMU call carries).
    fn tones(parts: &[(f64, f64)], ms: u64, rate: u32, n0: u64) -> Vec<i16> {
        let n = ms * u64::from(rate) / 1000;
        let pcm: Vec<i16> = (n0..n0 + n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                parts
                    .iter()
                    .map(|(f, l)| peak(*l) * (2.0 * std::f64::consts::PI * f * t).sin())
                    .sum::<f64>()
                    .round()
                    .clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        through_ulaw(pcm, rate)
    }

    fn through_ulaw(pcm: Vec<i16>, rate: u32) -> Vec<i16> {
        if rate != 8000 {
            return pcm;
        }
        let mut bytes = Vec::new();
        Law::Ulaw.encode(&pcm, &mut bytes);
        let mut out = Vec::new();
        Law::Ulaw.decode(&bytes, &mut out);
        out
    }

    /// Feeds `pcm` in 20 ms frames from `*t` on.
    fn feed(w: &mut ToneWatch, t: &mut Instant, pcm: &[i16], rate: u32) {
        let per = (rate / 50) as usize;
        for f in pcm.chunks(per) {
            w.handle_pcm(*t, f, rate);
            *t += F;
        }
    }

    fn drain(w: &mut ToneWatch) -> Vec<ToneEvent> {
        std::iter::from_fn(|| w.poll_event()).collect()
    }

    fn tone(s: &str) -> Tone {
        Tone::parse(s).unwrap()
    }

    fn heard(w: &mut ToneWatch) -> Vec<usize> {
        drain(w)
            .into_iter()
            .filter_map(|e| match e {
                ToneEvent::Heard { tone, .. } => Some(tone),
                _ => None,
            })
            .collect()
    }

    const MIN: Duration = Duration::from_millis(200);

    #[test]
    fn a_fax_ced_is_heard_from_its_start_to_its_end() {
        let t0 = Instant::now();
        let mut t = t0;
        let mut w = ToneWatch::new(&[(tone("2100"), MIN), (tone("1000"), MIN)], false);
        feed(&mut w, &mut t, &tones(&[], 200, 8000, 0), 8000);
        feed(
            &mut w,
            &mut t,
            &tones(&[(2100.0, -30.0)], 1000, 8000, 0),
            8000,
        );
        let ev = drain(&mut w);
        let start = t0 + Duration::from_millis(200);
        assert_eq!(ev, [ToneEvent::Heard { tone: 0, at: start }]);
        // Silence after it: the block after the tone's last ends it.
        feed(&mut w, &mut t, &tones(&[], 200, 8000, 0), 8000);
        assert_eq!(
            drain(&mut w),
            [ToneEvent::Ended {
                tone: 0,
                start,
                end: start + Duration::from_secs(1)
            }]
        );
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn a_tone_ends_where_its_packets_stopped() {
        let t0 = Instant::now();
        let mut t = t0;
        let mut w = ToneWatch::new(&[(tone("425"), MIN)], false);
        // A frame 80 ms late (jitter) and a burst after it: the tone goes on.
        let pcm = tones(&[(425.0, -10.0)], 600, 8000, 0);
        for (k, f) in pcm.chunks(160).enumerate() {
            let late = match k {
                10 => Duration::from_millis(80),
                11..14 => Duration::from_millis(80 - 20 * (k as u64 - 10)),
                _ => Duration::ZERO,
            };
            w.handle_pcm(t + late, f, 8000);
            t += F;
        }
        assert_eq!(heard(&mut w), [0]);
        let end = t0 + Duration::from_millis(600);
        assert_eq!(w.poll_timeout(), Some(end + TONE_GAP));
        w.handle_timeout(end + TONE_GAP - Duration::from_millis(1));
        assert!(drain(&mut w).is_empty());
        w.handle_timeout(end + TONE_GAP);
        assert_eq!(
            drain(&mut w),
            [ToneEvent::Ended {
                tone: 0,
                start: t0,
                end
            }]
        );
        // A frame after a stretch of more than 100 ms without packets: the tone heard
        // before it ended where its packets stopped.
        let mut t = end + Duration::from_secs(1);
        let t1 = t;
        feed(
            &mut w,
            &mut t,
            &tones(&[(425.0, -10.0)], 300, 8000, 0),
            8000,
        );
        t += Duration::from_millis(101);
        feed(
            &mut w,
            &mut t,
            &tones(&[(425.0, -10.0)], 300, 8000, 0),
            8000,
        );
        let ev = drain(&mut w);
        assert!(
            matches!(ev[..], [
                ToneEvent::Heard { at: a, .. },
                ToneEvent::Ended { start, end: e, .. },
                ToneEvent::Heard { .. },
            ] if a == t1 && start == t1 && e == t1 + Duration::from_millis(280)),
            "{ev:?}"
        );
    }

    #[test]
    fn a_pair_is_not_either_of_its_tones_nor_a_neighbour() {
        let watched = [
            (tone("440"), MIN),
            (tone("480"), MIN),
            (tone("440+480"), MIN),
            (tone("350+440"), MIN),
            (tone("480+620"), MIN),
            (tone("425"), MIN),
        ];
        for (parts, want) in [
            (&[(440.0, -20.0), (480.0, -20.0)][..], &[2][..]),
            (&[(350.0, -13.0), (440.0, -13.0)][..], &[3][..]),
            (&[(480.0, -24.0), (620.0, -24.0)][..], &[4][..]),
            // A twist of 6 dB is still the pair; at 12 dB it is the stronger tone alone.
            (&[(480.0, -18.0), (620.0, -24.0)][..], &[4][..]),
            (&[(480.0, -18.0), (620.0, -30.0)][..], &[1][..]),
            (&[(440.0, -20.0)][..], &[0][..]),
            (&[(480.0, -20.0)][..], &[1][..]),
            (&[(425.0, -20.0)][..], &[5][..]),
            // Neighbours: 15 Hz off 440 and 425, 25 Hz off 480.
            (&[(455.0, -20.0)][..], &[][..]),
            (&[(410.0, -20.0)][..], &[][..]),
            (&[(505.0, -20.0)][..], &[][..]),
            // Within the tolerance (±1.5 %): 6 Hz off 425 and 440.
            (&[(431.0, -20.0)][..], &[5][..]),
            (&[(434.0, -20.0)][..], &[0][..]),
        ] {
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&watched, false);
            feed(&mut w, &mut t, &tones(parts, 1000, 8000, 0), 8000);
            assert_eq!(heard(&mut w), want, "{parts:?}");
        }
    }

    #[test]
    fn levels_down_to_minus_30_dbm0_are_heard_and_too_quiet_is_not() {
        for (level, want) in [(0.0, true), (-20.0, true), (-30.0, true), (-45.0, false)] {
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&[(tone("1000"), MIN), (tone("440+480"), MIN)], false);
            feed(
                &mut w,
                &mut t,
                &tones(&[(1000.0, level)], 500, 8000, 0),
                8000,
            );
            let mut t = Instant::now();
            feed(
                &mut w,
                &mut t,
                &tones(&[(440.0, level - 3.0), (480.0, level - 3.0)], 500, 8000, 0),
                8000,
            );
            let h = heard(&mut w);
            assert_eq!(h.len(), if want { 2 } else { 0 }, "{level} dBm0: {h:?}");
        }
    }

    #[test]
    fn speech_and_noise_are_no_tone_and_no_digit() {
        let watched: Vec<(Tone, Duration)> = [
            "440", "425", "350+440", "440+480", "480+620", "1000", "2100", "400", "950",
        ]
        .iter()
        .map(|s| (tone(s), Duration::from_millis(100)))
        .collect();
        for rate in [8000, 16000] {
            // The generator's talk spurts (a 140 Hz voiced complex) and pauses of noise, and
            // loud white noise.
            let mut speech = SpeechSource::new(SourceConfig::default(), rate);
            let mut pcm = vec![0; rate as usize * 10];
            speech.fill(&mut pcm);
            let noisy = SourceConfig {
                talk_ms: 0,
                pause_ms: 1000,
                noise_dbov: -15.0,
                ..SourceConfig::default()
            };
            let mut noise = vec![0; rate as usize * 5];
            SpeechSource::new(noisy, rate).fill(&mut noise);
            for pcm in [pcm, noise] {
                let mut t = Instant::now();
                let mut w = ToneWatch::new(&watched, true);
                feed(&mut w, &mut t, &through_ulaw(pcm, rate), rate);
                assert_eq!(drain(&mut w), [], "at {rate} Hz");
            }
        }
    }

    #[test]
    fn a_tone_shorter_than_its_minimum_is_not_heard_and_a_cadence_is_heard_each_time() {
        let mut t = Instant::now();
        let mut w = ToneWatch::new(
            &[
                (tone("1000"), Duration::from_millis(300)),
                (tone("1000"), Duration::from_millis(100)),
            ],
            false,
        );
        feed(
            &mut w,
            &mut t,
            &tones(&[(1000.0, -10.0)], 200, 8000, 0),
            8000,
        );
        feed(&mut w, &mut t, &tones(&[], 200, 8000, 0), 8000);
        assert_eq!(heard(&mut w), [1]);
        // US busy: 0.5 s on, 0.5 s off, three times.
        let mut w = ToneWatch::new(&[(tone("480+620"), MIN)], false);
        let t0 = t;
        for _ in 0..3 {
            feed(
                &mut w,
                &mut t,
                &tones(&[(480.0, -24.0), (620.0, -24.0)], 500, 8000, 0),
                8000,
            );
            feed(&mut w, &mut t, &tones(&[], 500, 8000, 0), 8000);
        }
        let ev = drain(&mut w);
        let spans: Vec<(u128, u128)> = ev
            .iter()
            .filter_map(|e| match e {
                ToneEvent::Ended { start, end, .. } => {
                    Some(((*start - t0).as_millis(), (*end - t0).as_millis()))
                }
                _ => None,
            })
            .collect();
        // Blocks of 40 ms from the first sample: each burst is seen whole or to 40 ms.
        assert_eq!(ev.len(), 6, "{ev:?}");
        for (k, (s, e)) in spans.iter().enumerate() {
            let on = k as u128 * 1000;
            assert!((on..on + 40).contains(s), "{spans:?}");
            assert!((on + 460..=on + 500).contains(e), "{spans:?}");
        }
    }

    #[test]
    fn wideband_audio_is_measured_at_its_own_rate() {
        for rate in [16000, 48000] {
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&[(tone("2100"), MIN), (tone("440+480"), MIN)], true);
            feed(
                &mut w,
                &mut t,
                &tones(&[(2100.0, -20.0)], 400, rate, 0),
                rate,
            );
            feed(
                &mut w,
                &mut t,
                &tones(&[(440.0, -20.0), (480.0, -20.0)], 400, rate, 0),
                rate,
            );
            assert_eq!(heard(&mut w), [0, 1], "at {rate} Hz");
        }
    }

    /// `digits`, each `on` ms of its row and column at −10/−12 dBm0 and `off` ms of silence.
    fn dtmf(digits: &str, on: u64, off: u64, rate: u32) -> Vec<i16> {
        let mut pcm = Vec::new();
        for d in digits.chars() {
            let (r, c) = (0..16)
                .map(|i| (i / 4, i % 4))
                .find(|(r, c)| DTMF_KEYS[*r][*c] == d)
                .unwrap();
            pcm.extend(tones(
                &[(DTMF_ROWS[r], -10.0), (DTMF_COLS[c], -12.0)],
                on,
                rate,
                0,
            ));
            pcm.extend(tones(&[], off, rate, 0));
        }
        pcm
    }

    fn digits(w: &mut ToneWatch) -> String {
        drain(w)
            .into_iter()
            .filter_map(|e| match e {
                ToneEvent::Digit { digit, .. } => Some(digit),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn inband_dtmf_digits_are_read_and_too_short_ones_are_not() {
        for rate in [8000, 16000] {
            let all = "1234567890*#ABCD";
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&[], true);
            feed(&mut w, &mut t, &dtmf(all, 60, 60, rate), rate);
            assert_eq!(digits(&mut w), all, "at {rate} Hz");
            // 40 ms tones and 40 ms pauses (Q.24's shortest), the same digit twice.
            let mut w = ToneWatch::new(&[], true);
            feed(&mut w, &mut t, &dtmf("5599", 40, 40, rate), rate);
            assert_eq!(digits(&mut w), "5599", "at {rate} Hz");
            // 20 ms: not a digit.
            let mut w = ToneWatch::new(&[], true);
            feed(&mut w, &mut t, &dtmf("123", 20, 80, rate), rate);
            assert_eq!(digits(&mut w), "", "at {rate} Hz");
        }
        // When it started: the first block with it.
        let t0 = Instant::now();
        let mut t = t0;
        let mut w = ToneWatch::new(&[], true);
        let mut pcm = tones(&[], 100, 8000, 0);
        pcm.extend(dtmf("7", 100, 0, 8000));
        feed(&mut w, &mut t, &pcm, 8000);
        assert_eq!(
            drain(&mut w),
            [ToneEvent::Digit {
                digit: '7',
                at: t0 + Duration::from_millis(100)
            }]
        );
    }

    /// A SIT's segments as (Hz, ms) with `gap` ms of silence between them, at `dbm0`.
    fn sit(segs: &[(f64, u64)], gap: u64, dbm0: f64, rate: u32) -> Vec<i16> {
        let mut pcm = Vec::new();
        for (k, (f, ms)) in segs.iter().enumerate() {
            if k > 0 && gap > 0 {
                pcm.extend(tones(&[], gap, rate, 0));
            }
            // Each segment's phase runs on from the signal's start, as a generator's does.
            let n0 = pcm.len() as u64;
            pcm.extend(tones(&[(*f, dbm0)], *ms, rate, n0));
        }
        pcm
    }

    /// The SIT segments of each assigned kind (ANSI T1.401 / Telcordia SR-2275; S 274 ms,
    /// L 380 ms), the third always 1776.7 Hz long.
    fn sit_table() -> Vec<(SitKind, [(f64, u64); 3])> {
        let (s, l) = (274, 380);
        let [lo1, hi1, lo2, hi2, third] = SIT_FREQS;
        vec![
            (SitKind::Intercept, [(lo1, s), (lo2, s), (third, l)]),
            (SitKind::VacantCode, [(hi1, l), (lo2, s), (third, l)]),
            (SitKind::ReorderIntra, [(lo1, s), (hi2, l), (third, l)]),
            (SitKind::ReorderInter, [(hi1, s), (lo2, l), (third, l)]),
            (SitKind::NoCircuitIntra, [(hi1, l), (hi2, l), (third, l)]),
            (SitKind::NoCircuitInter, [(lo1, l), (lo2, l), (third, l)]),
            (SitKind::IneffectiveOther, [(lo1, l), (hi2, s), (third, l)]),
            (SitKind::Reserved, [(hi1, s), (hi2, s), (third, l)]),
            (SitKind::Unassigned, [(lo1, s), (lo2, l), (third, l)]),
        ]
    }

    fn sits(w: &mut ToneWatch) -> Vec<(SitKind, Instant, Instant)> {
        drain(w)
            .into_iter()
            .filter_map(|e| match e {
                ToneEvent::Sit { kind, start, end } => Some((kind, start, end)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_sit_kind_is_told_from_its_segments() {
        for rate in [8000, 16000] {
            for (kind, segs) in sit_table() {
                let t0 = Instant::now();
                let mut t = t0;
                let mut w = ToneWatch::new(&[], false).with_sit(true);
                assert!(w.watches_sit());
                let mut pcm = tones(&[], 300, rate, 0);
                pcm.extend(sit(&segs, 0, -24.0, rate));
                pcm.extend(tones(&[], 400, rate, 0));
                feed(&mut w, &mut t, &pcm, rate);
                let got = sits(&mut w);
                let [(k, start, end)] = got[..] else {
                    panic!("{kind:?} at {rate} Hz: {got:?}")
                };
                assert_eq!(k, kind, "at {rate} Hz");
                // Timed to a block: from 300 ms, to the third segment's end.
                let total: u64 = segs.iter().map(|s| s.1).sum();
                let from = start - t0;
                let to = end - t0;
                assert!(
                    (280..=320).contains(&from.as_millis()),
                    "{kind:?}: {from:?}"
                );
                let want = 300 + total as u128;
                assert!(
                    (want - 40..=want + 20).contains(&to.as_millis()),
                    "{kind:?}: {to:?}, want {want} ms"
                );
            }
        }
        // Codes and words, for events and reports.
        assert_eq!(SitKind::NoCircuitIntra.to_string(), "NC (no circuit)");
        assert_eq!(SitKind::parse_code("RO"), Some("ro"));
        assert_eq!(SitKind::parse_code("xx"), None);
    }

    #[test]
    fn a_sit_with_short_gaps_quiet_or_followed_by_an_announcement_is_told() {
        let [lo1, _, lo2, _, third] = SIT_FREQS;
        let segs = [(lo1, 274), (lo2, 274), (third, 380)];
        // 4 ms (ANSI) and 30 ms (ITU-T E.180) between segments, at −12 and −32 dBm0.
        for (gap, level) in [(4, -12.0), (30, -32.0)] {
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&[], false).with_sit(true);
            feed(&mut w, &mut t, &sit(&segs, gap, level, 8000), 8000);
            // Then the announcement: the generator's speech.
            let mut speech = SpeechSource::new(SourceConfig::default(), 8000);
            let mut pcm = vec![0; 8000 * 3];
            speech.fill(&mut pcm);
            feed(&mut w, &mut t, &through_ulaw(pcm, 8000), 8000);
            let got: Vec<SitKind> = sits(&mut w).into_iter().map(|s| s.0).collect();
            assert_eq!(got, [SitKind::Intercept], "{gap} ms gaps at {level} dBm0");
        }
        // The packets stop with the third segment: told once the audio has been gone for
        // TONE_GAP.
        let mut t = Instant::now();
        let mut w = ToneWatch::new(&[], false).with_sit(true);
        feed(&mut w, &mut t, &sit(&segs, 0, -24.0, 8000), 8000);
        assert_eq!(sits(&mut w), []);
        let due = w.poll_timeout().expect("a segment in progress");
        w.handle_timeout(due);
        let got: Vec<SitKind> = sits(&mut w).into_iter().map(|s| s.0).collect();
        assert_eq!(got, [SitKind::Intercept]);
        assert_eq!(w.poll_timeout(), None);
    }

    /// ITU-T E.180 §2.6's SIT (950, 1400, 1800 Hz, 330 ± 70 ms each, up to 30 ms apart), as
    /// European networks and Asterisk's `info` indication play it (15 ms apart), is the
    /// generic kind; so is one mixing its frequencies with North American ones.
    #[test]
    fn the_itu_t_generic_sit_is_told() {
        let [f1, f2, f3] = SIT_ITU_FREQS;
        let cases: [(&[(f64, u64)], u64); 6] = [
            (&[(f1, 330), (f2, 330), (f3, 330)], 0),
            (&[(f1, 330), (f2, 330), (f3, 330)], 15),
            (&[(f1, 260), (f2, 400), (f3, 330)], 30),
            (&[(f1, 400), (f2, 260), (f3, 400)], 15),
            (&[(f1, 330), (SIT_FREQS[2], 274), (SIT_FREQS[4], 380)], 0),
            // A North American SIT 1.5 % high has no code, but is within E.180's bands.
            (
                &[
                    (913.8 * 1.015, 274),
                    (1370.6 * 1.015, 274),
                    (1776.7 * 1.015, 380),
                ],
                0,
            ),
        ];
        for rate in [8000, 16000] {
            for (segs, gap) in cases {
                let t0 = Instant::now();
                let mut t = t0;
                let mut w = ToneWatch::new(&[], false).with_sit(true);
                let mut pcm = tones(&[], 300, rate, 0);
                pcm.extend(sit(segs, gap, -24.0, rate));
                pcm.extend(tones(&[], 1000, rate, 0));
                feed(&mut w, &mut t, &pcm, rate);
                let got = sits(&mut w);
                let [(SitKind::Generic, start, _)] = got[..] else {
                    panic!("{segs:?} {gap} ms apart at {rate} Hz: {got:?}")
                };
                let from = (start - t0).as_millis();
                assert!((280..=320).contains(&from), "{from} ms");
            }
        }
        assert_eq!(SitKind::Generic.to_string(), "GENERIC (ITU-T generic)");
        assert_eq!(SitKind::parse_code("Generic"), Some("generic"));
    }

    /// Off-nominal North American SITs: a third segment 0.7 % high (1789 Hz, nearer the ITU-T
    /// 1800 Hz filter; the two filters are only 23 Hz apart, so blocks go to either) keeps its
    /// code; a second segment 1 % high (1384 Hz, 14 and 16 Hz from the 1370.6 and 1400 Hz
    /// filters), whose blocks too go to either, is still one segment.
    #[test]
    fn off_nominal_sits_keep_their_code_or_are_still_told() {
        let [lo1, hi1, lo2, _, third] = SIT_FREQS;
        let cases = [
            (
                vec![(hi1, 380), (lo2, 274), (third * 1.007, 380)],
                Some(SitKind::VacantCode),
            ),
            (
                vec![(lo1, 274), (lo2, 274), (third * 1.007, 380)],
                Some(SitKind::Intercept),
            ),
            // Any kind: between two filters, the vote decides it.
            (
                vec![(lo1 * 1.015, 274), (lo2 * 1.01, 274), (third * 1.007, 380)],
                None,
            ),
            // The third midway between its two filters: the code is kept all the same.
            (
                vec![(hi1, 380), (lo2, 274), ((third + 1800.0) / 2.0, 380)],
                Some(SitKind::VacantCode),
            ),
        ];
        for rate in [8000, 16000] {
            for (segs, want) in &cases {
                let mut t = Instant::now();
                let mut w = ToneWatch::new(&[], false).with_sit(true);
                let mut pcm = tones(&[], 300, rate, 0);
                pcm.extend(sit(segs, 0, -24.0, rate));
                pcm.extend(tones(&[], 1000, rate, 0));
                // Through G.711, as it arrives: its quantisation noise moves the shares.
                feed(&mut w, &mut t, &through_ulaw(pcm, rate), rate);
                let got: Vec<SitKind> = sits(&mut w).into_iter().map(|s| s.0).collect();
                assert_eq!(got.len(), 1, "{segs:?} at {rate} Hz: {got:?}");
                if let Some(kind) = want {
                    assert_eq!(got[0], *kind, "{segs:?} at {rate} Hz");
                }
            }
        }
    }

    #[test]
    fn wrong_durations_frequencies_or_order_are_no_sit() {
        let [lo1, hi1, lo2, hi2, third] = SIT_FREQS;
        let cases: [(&str, Vec<(f64, u64)>); 9] = [
            (
                "segments too short",
                vec![(lo1, 150), (lo2, 150), (third, 380)],
            ),
            (
                "a first segment too long",
                vec![(lo1, 600), (lo2, 274), (third, 380)],
            ),
            (
                "a third segment too short",
                vec![(hi1, 380), (hi2, 380), (third, 120)],
            ),
            (
                "a third segment too long",
                vec![(hi1, 380), (hi2, 380), (third, 900)],
            ),
            (
                "ITU-T frequencies, segments too long",
                vec![(950.0, 500), (1400.0, 500), (1800.0, 500)],
            ),
            (
                "a third segment outside E.180's 1800 ± 50 Hz",
                vec![(lo1, 274), (lo2, 274), (1900.0, 380)],
            ),
            (
                "the order reversed",
                vec![(third, 380), (lo2, 274), (lo1, 274)],
            ),
            (
                "two first segments",
                vec![(lo1, 274), (hi1, 274), (third, 380)],
            ),
            ("no second segment", vec![(lo1, 274), (third, 380)]),
        ];
        for (what, segs) in cases {
            let mut t = Instant::now();
            let mut w = ToneWatch::new(&[], false).with_sit(true);
            feed(&mut w, &mut t, &sit(&segs, 0, -24.0, 8000), 8000);
            feed(&mut w, &mut t, &tones(&[], 400, 8000, 0), 8000);
            assert_eq!(sits(&mut w), [], "{what}");
        }
        // Segments 200 ms apart are not one SIT.
        let mut t = Instant::now();
        let mut w = ToneWatch::new(&[], false).with_sit(true);
        feed(
            &mut w,
            &mut t,
            &sit(&[(lo1, 274), (lo2, 274), (third, 380)], 200, -24.0, 8000),
            8000,
        );
        feed(&mut w, &mut t, &tones(&[], 400, 8000, 0), 8000);
        assert_eq!(sits(&mut w), [], "200 ms gaps");
        // A DTMF digit's or a busy tone's frequencies are not SIT segments either.
        let mut t = Instant::now();
        let mut w = ToneWatch::new(&[], false).with_sit(true);
        feed(&mut w, &mut t, &dtmf("159#", 300, 100, 8000), 8000);
        feed(
            &mut w,
            &mut t,
            &tones(&[(480.0, -20.0), (620.0, -20.0)], 1000, 8000, 0),
            8000,
        );
        assert_eq!(sits(&mut w), [], "DTMF and busy");
    }

    #[test]
    fn speech_and_noise_are_no_sit() {
        for rate in [8000, 16000] {
            let mut speech = SpeechSource::new(SourceConfig::default(), rate);
            let mut pcm = vec![0; rate as usize * 20];
            speech.fill(&mut pcm);
            let noisy = SourceConfig {
                talk_ms: 0,
                pause_ms: 1000,
                noise_dbov: -15.0,
                ..SourceConfig::default()
            };
            let mut noise = vec![0; rate as usize * 5];
            SpeechSource::new(noisy, rate).fill(&mut noise);
            for pcm in [pcm, noise] {
                let mut t = Instant::now();
                let mut w = ToneWatch::new(&[], false).with_sit(true);
                feed(&mut w, &mut t, &through_ulaw(pcm, rate), rate);
                w.handle_timeout(t + Duration::from_secs(1));
                assert_eq!(sits(&mut w), [], "at {rate} Hz");
            }
        }
    }

    /// The bursts (start, end) of tone 0 heard in `pcm`.
    fn bursts(min: Duration, tone_: &str, pcm: &[i16]) -> Vec<(Instant, Instant)> {
        let mut t = Instant::now();
        let mut w = ToneWatch::new(&[(tone(tone_), min)], false);
        feed(&mut w, &mut t, pcm, 8000);
        w.handle_timeout(t + Duration::from_secs(1));
        drain(&mut w)
            .into_iter()
            .filter_map(|e| match e {
                ToneEvent::Ended { start, end, .. } => Some((start, end)),
                _ => None,
            })
            .collect()
    }

    /// `cycles` of a 480+620 Hz tone `on` ms on, `off` ms off.
    fn cadenced(on: u64, off: u64, cycles: usize) -> Vec<i16> {
        let mut pcm = Vec::new();
        for _ in 0..cycles {
            let n0 = pcm.len() as u64;
            pcm.extend(tones(&[(480.0, -20.0), (620.0, -20.0)], on, 8000, n0));
            pcm.extend(tones(&[], off, 8000, 0));
        }
        pcm
    }

    #[test]
    fn busy_and_reorder_cadences_are_told_apart() {
        let (busy, reorder) = (Cadence::US_BUSY, Cadence::US_REORDER);
        assert_eq!(busy.min_burst(), Duration::from_millis(420));
        assert_eq!(reorder.min_burst(), Duration::from_millis(170));
        let pairs = |c: &Cadence, b: &[(Instant, Instant)]| {
            b.windows(2).filter(|w| c.follows(w[0], w[1])).count()
        };
        // A busy tone, watched for either cadence's bursts: busy, not reorder.
        for min in [busy.min_burst(), reorder.min_burst()] {
            let b = bursts(min, "480+620", &cadenced(500, 500, 3));
            assert_eq!(b.len(), 3, "{min:?}");
            assert_eq!((pairs(&busy, &b), pairs(&reorder, &b)), (2, 0), "{min:?}");
        }
        // A reorder tone: its bursts are too short for the busy tone's watch; reorder.
        assert_eq!(
            bursts(busy.min_burst(), "480+620", &cadenced(250, 250, 4)),
            []
        );
        let b = bursts(reorder.min_burst(), "480+620", &cadenced(250, 250, 4));
        assert_eq!(b.len(), 4);
        assert_eq!((pairs(&busy, &b), pairs(&reorder, &b)), (0, 3));
        // Neither: a steady tone (one burst), bursts of the wrong length or gap.
        assert_eq!(
            bursts(reorder.min_burst(), "480+620", &cadenced(3000, 200, 1)).len(),
            1
        );
        let b = bursts(reorder.min_burst(), "480+620", &cadenced(500, 1500, 3));
        assert_eq!((pairs(&busy, &b), pairs(&reorder, &b)), (0, 0), "{b:?}");
        let b = bursts(reorder.min_burst(), "480+620", &cadenced(250, 700, 3));
        assert_eq!((pairs(&busy, &b), pairs(&reorder, &b)), (0, 0), "{b:?}");
    }

    #[test]
    fn tones_parse_and_print_back() {
        assert_eq!(tone("2100").to_string(), "2100");
        assert_eq!(tone(" 440 + 480 ").to_string(), "440+480");
        assert_eq!(tone("425Hz").to_string(), "425");
        assert_eq!(tone("1004.5").to_string(), "1004.5");
        for (bad, err) in [
            ("", ToneError::NotAFrequency(String::new())),
            ("abc", ToneError::NotAFrequency("abc".into())),
            ("inf", ToneError::NotAFrequency("inf".into())),
            ("4000", ToneError::OutOfRange(4000.0)),
            ("10", ToneError::OutOfRange(10.0)),
            ("350+440+480", ToneError::TooMany),
            ("440+450", ToneError::TooClose),
        ] {
            assert_eq!(Tone::parse(bad), Err(err), "{bad}");
        }
    }
}
