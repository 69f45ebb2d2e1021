//! Scenario actions on an event (`{ on = "dtmf:5", do = "hold", after = "1s" }`): what an
//! IVR, a PBX feature or an SBC is tested with — an action that answers what the peer did in
//! the call, beside the actions at a time after the answer ([`super::CallAction`]).
//!
//! The events ([`CallTrigger`]): the call answered; a DTMF digit received (RFC 4733 events in
//! the RTP, read from the media session as each digit ends, or SIP INFO `dtmf-relay`), any one
//! or a sequence; the peer putting us on hold or taking us off it (its offer inside the call
//! makes our direction recvonly/inactive, or parks the media on `c=0.0.0.0`, RFC 3264 §8.4),
//! and any offer of the peer's inside the call (re-INVITE or UPDATE); sound starting and
//! silence after it in the audio we receive (the media session's sound watch,
//! [`media::sound`]: what an IVR test waits for — "the prompt ended, press 1"); early media
//! (told at the answer); a SIP MESSAGE.
//!
//! Tones (a SIT, a cadence) and in-band digits: what [`media::tone`] hears.
//!
//! An event only counts while the call is up (answered, confirmed, not ending, the run not
//! stopping) — except what a caller hears in early media ([`CallTrigger::before_answer`]),
//! which counts from its INVITE on: a `hangup` on it CANCELs the call
//! ([`super::Script::EarlyHangup`]), any other action waits for the answer.
//!
//! An event queues its action's steps `after` it (an INFO DTMF of several digits is one
//! step per digit); the shard runs them with the timed actions, in time order and under the
//! same rule (no new offer while one is open, RFC 3264 §4). Each action fires once per call
//! unless it says `repeat = true`, or at its event's n-th time only (`nth`: each action
//! counts its event's times); steps not run when the call ends are dropped.
//!
//! The state lives in a box that only endpoints of a group with such actions get, made at
//! their first INVITE (a caller) or answer (a callee): other endpoints pay one pointer.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use sip_proto::ua::{CallId, CallState};

use media::sound::{SoundConfig, SoundEvent};
use media::tone::{Cadence, SitKind, Tone, ToneEvent};

use super::{ActionKind, CallAction, Endpoint, Phase, Script, Shard, ms};
use crate::callmedia::CallMedia;
use crate::trace::TraceEntry;

/// What an action waits for in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTrigger {
    /// The call was answered (the same as an action `at = "0s"`).
    Answered,
    /// A DTMF digit was received (RFC 4733 or SIP INFO): any digit (`None`), or the digits
    /// received since the answer (or since this action's last match) end with these.
    Dtmf(Option<String>),
    /// The peer put us on hold: its offer makes our direction recvonly or inactive (or parks
    /// the media on `c=0.0.0.0`).
    Held,
    /// The peer took us off hold: an offer that lets us send again after a hold.
    Resumed,
    /// The peer sent an offer inside the call (re-INVITE or UPDATE).
    Reinvite,
    /// Sound started in what we receive: the decoded level at or above the group's
    /// `speech_level` for its `speech_min` in a row ([`media::sound`]).
    Audio,
    /// After sound, quiet for this long (`None`: the group's `silence`, default 1 s): the
    /// level below `speech_level`, comfort noise or no packets at all — a prompt ended.
    Silence(Option<Duration>),
    /// Early media came: a 18x with the SDP answer, then an RTP packet, before the answer
    /// (its actions run from the answer on: none runs before it).
    EarlyMedia,
    /// A SIP MESSAGE came (RFC 3428), in the call or outside it while the call is up.
    Message,
    /// A SIP MESSAGE whose body contains this text (as written, case and all).
    MessageText(String),
    /// A tone was heard for its minimum duration (`None`: [`TONE_MIN`]) in what we receive
    /// ([`media::tone`]): a single frequency (`tone:2100`) or a pair (`tone:440+480`).
    Tone(Tone, Option<Duration>),
    /// An in-band DTMF digit was heard in what we receive (the audio, not RFC 4733 events
    /// nor INFO): any digit, or the in-band digits since the answer (or since this action's
    /// last match) end with these.
    InbandDtmf(Option<String>),
    /// A Special Information Tone was heard ([`media::tone`]): any (`tone:sit`), or of one
    /// kind (`sit:nc`: its code, [`SitKind::code`]).
    Sit(Option<&'static str>),
    /// A tone heard in a cadence ([`Cadence`]): two bursts about `on` long, about `off`
    /// apart (`busy`, `reorder`: North America's 480+620 Hz; `tone:425:500ms/500ms`).
    Cadence(Tone, Cadence),
}

/// How long a tone must be heard without its own length (`tone:425:1s`).
pub const TONE_MIN: Duration = Duration::from_millis(200);

/// Upper-case DTMF digits from `dtmf:…`'s text; the error in words.
fn digits_of(digits: &str, what: &str) -> Result<String, String> {
    if digits.is_empty() {
        return Err(format!(
            "`{what}:` names no digit (e.g. {what}:5, {what}:123#)"
        ));
    }
    if let Some(c) = digits
        .chars()
        .find(|c| !matches!(c.to_ascii_uppercase(), '0'..='9' | '*' | '#' | 'A'..='D'))
    {
        return Err(format!("`{c}` is not a DTMF digit (0-9 * # A-D)"));
    }
    Ok(digits.to_ascii_uppercase())
}

impl CallTrigger {
    /// Reads `dtmf`, `dtmf:123#`, `held`, `resumed`, `reinvite`, `answered`, `audio`,
    /// `silence`, `silence:1.5s`, `early_media`, `message`, `tone:2100`, `tone:440+480`,
    /// `tone:425:1s`, `inband_dtmf` or `inband_dtmf:123#`; the error in words.
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        if lower.starts_with("message:") {
            // The text as written: case counts in a message.
            let text = s.trim().get("message:".len()..).unwrap_or("");
            if text.is_empty() {
                return Err("`message:` names no text (e.g. message:hello)".into());
            }
            return Ok(Self::MessageText(text.to_owned()));
        }
        let sit = lower.strip_prefix("tone:").unwrap_or(&lower);
        if sit == "sit" {
            return Ok(Self::Sit(None));
        }
        if let Some(code) = sit.strip_prefix("sit:") {
            return match SitKind::parse_code(code) {
                Some(c) => Ok(Self::Sit(Some(c))),
                None => Err(format!(
                    "`{s}`: `{code}` is not a SIT kind (ic, vc, ro, nc, io, reserved, unassigned, generic)"
                )),
            };
        }
        let us = Tone::parse("480+620").ok();
        match (lower.as_str(), us) {
            ("busy", Some(t)) => return Ok(Self::Cadence(t, Cadence::US_BUSY)),
            ("reorder" | "fast_busy", Some(t)) => return Ok(Self::Cadence(t, Cadence::US_REORDER)),
            _ => {}
        }
        if let Some(t) = lower.strip_prefix("tone:")
            && let Some((f, c)) = t.split_once(':')
            && let Some((on, off)) = c.split_once('/')
        {
            let len = |d: &str, what: &str| -> Result<Duration, String> {
                let d = crate::testfile::parse_duration(d)
                    .map_err(|e| format!("`{s}`: the cadence's {what}: {e}"))?;
                if d < Duration::from_millis(100) || d > Duration::from_secs(10) {
                    return Err(format!(
                        "`{s}`: a cadence's {what} is 100 ms to 10 s (e.g. tone:425:500ms/500ms)"
                    ));
                }
                Ok(d)
            };
            let cadence = Cadence {
                on: len(on, "on time")?,
                off: len(off, "off time")?,
            };
            let tone = Tone::parse(f).map_err(|e| format!("`{s}`: {e}"))?;
            return Ok(Self::Cadence(tone, cadence));
        }
        if let Some(t) = lower.strip_prefix("tone:") {
            let (f, min) = match t.split_once(':') {
                Some((f, d)) => {
                    let d = crate::testfile::parse_duration(d)
                        .map_err(|e| format!("`{s}`: the tone's length: {e}"))?;
                    if d.is_zero() || d > Duration::from_secs(60) {
                        return Err(format!("`{s}`: a tone lasts more than 0 s, at most 60 s"));
                    }
                    (f, Some(d))
                }
                None => (t, None),
            };
            let tone = Tone::parse(f).map_err(|e| format!("`{s}`: {e}"))?;
            return Ok(Self::Tone(tone, min));
        }
        if let Some(d) = lower
            .strip_prefix("inband_dtmf:")
            .or_else(|| lower.strip_prefix("inband-dtmf:"))
        {
            return Ok(Self::InbandDtmf(Some(digits_of(d, "inband_dtmf")?)));
        }
        if let Some(d) = lower.strip_prefix("silence:") {
            let d = crate::testfile::parse_duration(d)
                .map_err(|e| format!("`{s}`: the silence's length: {e}"))?;
            if d.is_zero() {
                return Err(format!("`{s}`: a silence lasts more than 0 s"));
            }
            return Ok(Self::Silence(Some(d)));
        }
        Ok(match lower.as_str() {
            "answered" | "answer" => Self::Answered,
            "audio" | "sound" => Self::Audio,
            "silence" => Self::Silence(None),
            "early_media" | "early-media" => Self::EarlyMedia,
            "message" => Self::Message,
            "inband_dtmf" | "inband-dtmf" => Self::InbandDtmf(None),
            "dtmf" => Self::Dtmf(None),
            "held" | "hold" => Self::Held,
            "resumed" | "resume" => Self::Resumed,
            "reinvite" | "re-invite" => Self::Reinvite,
            _ => match lower.strip_prefix("dtmf:") {
                Some(digits) => Self::Dtmf(Some(digits_of(digits, "dtmf")?)),
                None => {
                    return Err(format!(
                        "`{s}`: expected an event: dtmf, dtmf:DIGITS, held, resumed, \
                         reinvite, answered, audio, silence, silence:DURATION, early_media, \
                         message, message:TEXT, tone:HZ[+HZ][:DURATION], tone:HZ[+HZ]:ON/OFF, busy, \
                         reorder, tone:sit, sit:KIND or inband_dtmf[:DIGITS]"
                    ));
                }
            },
        })
    }
}

impl CallTrigger {
    /// Whether it waits for something heard in the received audio (its calls then watch
    /// sound).
    pub fn hears(&self) -> bool {
        matches!(self, Self::Audio | Self::Silence(_))
    }

    /// Whether it waits for a tone or an in-band digit (its calls then watch tones).
    pub fn listens(&self) -> bool {
        matches!(
            self,
            Self::Tone(..) | Self::InbandDtmf(_) | Self::Sit(_) | Self::Cadence(..)
        )
    }

    /// Whether it counts before the answer too: what a caller hears in early media (a
    /// tone, a SIT, an in-band digit). Its `hangup` then CANCELs the call; its other
    /// actions wait for the answer.
    pub fn before_answer(&self) -> bool {
        self.listens()
    }
}

impl fmt::Display for CallTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Answered => f.write_str("answered"),
            Self::Dtmf(None) => f.write_str("dtmf"),
            Self::Dtmf(Some(d)) => write!(f, "dtmf:{d}"),
            Self::Held => f.write_str("held"),
            Self::Resumed => f.write_str("resumed"),
            Self::Reinvite => f.write_str("reinvite"),
            Self::Audio => f.write_str("audio"),
            Self::Silence(None) => f.write_str("silence"),
            Self::Silence(Some(d)) => write!(f, "silence:{}", Secs(*d)),
            Self::EarlyMedia => f.write_str("early_media"),
            Self::Message => f.write_str("message"),
            Self::MessageText(t) => write!(f, "message:{t}"),
            Self::Tone(t, None) => write!(f, "tone:{t}"),
            Self::Tone(t, Some(d)) => write!(f, "tone:{t}:{}", Secs(*d)),
            Self::InbandDtmf(None) => f.write_str("inband_dtmf"),
            Self::InbandDtmf(Some(d)) => write!(f, "inband_dtmf:{d}"),
            Self::Sit(None) => f.write_str("tone:sit"),
            Self::Sit(Some(c)) => write!(f, "sit:{c}"),
            Self::Cadence(t, c) => match (t.to_string().as_str(), *c) {
                ("480+620", Cadence::US_BUSY) => f.write_str("busy"),
                ("480+620", Cadence::US_REORDER) => f.write_str("reorder"),
                _ => write!(f, "tone:{t}:{}/{}", Secs(c.on), Secs(c.off)),
            },
        }
    }
}

/// A length as the test file writes it: `2s`, or `1500ms`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 && self.0.as_secs() > 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.0.as_millis())
        }
    }
}

/// Something an endpoint does in a call when an event happens in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAction {
    /// The event.
    pub on: CallTrigger,
    /// Fire each time the event comes (false: the first time in each call).
    pub repeat: bool,
    /// Fire at the event's n-th time in each call only (1: the first), not with `repeat`.
    pub nth: Option<u32>,
    /// The action as the test file names it (`hold`, `dtmf` …), for the report.
    pub name: String,
    /// What to do, each step `at` after the event (its `after`; an INFO DTMF of several
    /// digits is one step per digit).
    pub steps: Vec<CallAction>,
}

/// How often one action on an event ran, in an endpoint's report.
#[derive(Debug, Clone, Serialize)]
pub struct EventActionReport {
    /// The event (`dtmf:5`, `held` …).
    pub on: String,
    /// The action (`hold`, `dtmf` …).
    #[serde(rename = "do")]
    pub action: String,
    /// Its `nth` (the event's n-th time in a call), if it says one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nth: Option<u32>,
    /// Times it ran (its first step), over the endpoint's calls.
    pub fired: u32,
    /// When it first ran, ms after its call's answer.
    pub first_ms: Option<f64>,
    /// Of `fired`, the times it ran before its call's answer: a `hangup` on what was heard
    /// in early media, which CANCELled the call.
    #[serde(skip_serializing_if = "is_zero")]
    pub before_answer: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A sound heard in a call, in an endpoint's report (`sound_heard`): what an IVR test that
/// waited for a silence in vain is diagnosed with.
#[derive(Debug, Clone, Serialize)]
pub struct SoundSpan {
    /// The endpoint's call it was heard in (1: its first).
    pub call: u32,
    /// When it started, ms after the call's answer (negative: early media, before it); in
    /// a call never answered, ms after its INVITE (`unanswered`).
    pub start_ms: f64,
    /// When it stopped (its last loud frame ended), known once it had been quiet for the
    /// group's `silence`; `None`: still sounding, or quiet for less, when the call ended.
    pub end_ms: Option<f64>,
    /// Its loudest frame, dBov.
    pub level_dbov: f64,
    /// Heard in a call never answered (early media): its times count from the INVITE.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
}

/// A tone heard in a call, in an endpoint's report (`tones_heard`).
#[derive(Debug, Clone, Serialize)]
pub struct ToneSpan {
    /// The endpoint's call it was heard in (1: its first).
    pub call: u32,
    /// The tone (`2100`, `440+480`), Hz, or a Special Information Tone and its kind
    /// (`sit:nc`, [`SitKind::code`]).
    pub tone: String,
    /// When it started, ms after the call's answer (negative: early media, before it); in
    /// a call never answered, ms after its INVITE (`unanswered`).
    pub start_ms: f64,
    /// How long it lasted (to the end of its last 40 ms block with it); `None`: still
    /// heard when the call ended.
    pub duration_ms: Option<f64>,
    /// Heard in a call never answered (early media): `start_ms` counts from the INVITE.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unanswered: bool,
}

/// Sounds (and tones) kept per endpoint for its report (later ones are in the trace only).
const MAX_SPANS: usize = 100;

/// In-band digits kept per endpoint for its report (`dtmf_inband`).
const MAX_INBAND: usize = 1000;

/// What happened in a call (what [`CallTrigger`]s wait for).
#[derive(Debug, Clone, Copy)]
enum Happened {
    Answered,
    /// A digit came: in-band (heard in the audio), or RFC 4733 or INFO.
    Digit {
        inband: bool,
    },
    /// A tone was heard for `min`; it started at `at`.
    Tone {
        tone: Tone,
        min: Duration,
        at: Instant,
    },
    Offer {
        holds_us: Option<bool>,
    },
    /// A MESSAGE came.
    Message,
    /// Early media's first RTP packet came at `at` (told at the answer).
    EarlyMedia {
        at: Instant,
    },
    /// Sound started at `at`.
    Sound {
        at: Instant,
    },
    /// It has been quiet since `since`, after `runs` runs of sound (each re-arms a silence).
    Quiet {
        since: Instant,
        runs: u32,
    },
    /// A Special Information Tone of this kind ended at `end`.
    Sit {
        kind: SitKind,
        end: Instant,
    },
    /// A burst of a tone heard for `min` ended: from `start` to `end`.
    ToneEnded {
        tone: Tone,
        min: Duration,
        start: Instant,
        end: Instant,
    },
}

impl Happened {
    /// Whether it counts before the answer (see [`CallTrigger::before_answer`]).
    fn before_answer(self) -> bool {
        matches!(
            self,
            Self::Tone { .. }
                | Self::Sit { .. }
                | Self::ToneEnded { .. }
                | Self::Digit { inband: true }
        )
    }
}

/// One endpoint's actions on events: per action, and the current call's.
#[derive(Debug)]
pub(super) struct EventState {
    per: Vec<PerAction>,
    /// The call the state is of (a caller's from its INVITE on, a callee's from its answer).
    call: Option<CallId>,
    /// A `hangup` on what was heard in early media, due at this time (the endpoint's
    /// [`Script::EarlyHangup`]): its action, and why in words for the trace and the report.
    early_hangup: Option<(Instant, usize, String)>,
    /// Steps queued by events, in time order (equal times in queuing order).
    pending: Vec<Pending>,
    /// The digits received in the current call, upper case.
    digits: String,
    /// The in-band digits heard in the current call.
    inband: String,
    /// The body of the last MESSAGE that came (for `message:TEXT`).
    message: String,
    /// The in-band digits heard over the endpoint's calls (at most [`MAX_INBAND`]).
    inband_all: String,
    /// The tones heard, over the endpoint's calls (at most [`MAX_SPANS`]).
    tones: Vec<ToneSpan>,
    /// How many of the current call's RFC 4733 digits were seen (its media session's count).
    rtp_seen: usize,
    /// The peer holds us (its last offer), in the current call.
    held: bool,
    /// Steps run over the endpoint's calls (a signalling-only offer's SDP version counts them).
    steps_run: u32,
    /// Calls answered so far (the current one's number).
    calls: u32,
    /// The sounds heard, over the endpoint's calls (at most [`MAX_SPANS`]).
    spans: Vec<SoundSpan>,
    /// Quiet since when, after how many runs of sound, in the current call (its sound
    /// watch, as last read): when a `silence` comes due.
    quiet: Option<(Instant, u32)>,
}

#[derive(Debug, Default, Clone)]
struct PerAction {
    fired: u32,
    first_ms: Option<f64>,
    /// Fired in the current call (an action without `repeat` waits for the next call).
    this_call: bool,
    /// Where in the current call's digits its next `dtmf:DIGITS` match may start.
    from: usize,
    /// Times its event came in the current call (for `nth`).
    hits: u32,
    /// The runs of sound its last `silence` came after: the next needs sound again.
    runs_seen: u32,
    /// Of `fired`, the runs before the call's answer (an early `hangup`'s CANCEL).
    before_answer: u32,
    /// The last burst of its cadence's tone in the current call (start, end).
    burst: Option<(Instant, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Instant,
    action: usize,
    step: usize,
}

impl EventState {
    fn new(actions: usize) -> Self {
        Self {
            per: vec![PerAction::default(); actions],
            call: None,
            early_hangup: None,
            pending: Vec::new(),
            digits: String::new(),
            inband: String::new(),
            message: String::new(),
            inband_all: String::new(),
            tones: Vec::new(),
            rtp_seen: 0,
            held: false,
            steps_run: 0,
            calls: 0,
            spans: Vec::new(),
            quiet: None,
        }
    }

    /// A sound of the current call started or stopped: its span in the report (times by
    /// `into`, ms), at most [`MAX_SPANS`] over the endpoint's calls.
    fn sound_span(&mut self, ev: SoundEvent, into: impl Fn(Instant) -> f64, unanswered: bool) {
        match ev {
            SoundEvent::Started { at, level_dbov } if self.spans.len() < MAX_SPANS => {
                self.spans.push(SoundSpan {
                    call: self.calls,
                    start_ms: into(at),
                    end_ms: None,
                    level_dbov: (level_dbov * 10.0).round() / 10.0,
                    unanswered,
                });
            }
            SoundEvent::Started { .. } => {}
            SoundEvent::Stopped { at, .. } => {
                let call = self.calls;
                if let Some(s) = self
                    .spans
                    .last_mut()
                    .filter(|s| s.call == call && s.end_ms.is_none())
                {
                    s.end_ms = Some(into(at));
                }
            }
        }
    }

    /// A new call: nothing pending, no digit, not held, every action ready again.
    fn new_call(&mut self, call: CallId) {
        self.call = Some(call);
        self.early_hangup = None;
        self.pending.clear();
        self.digits.clear();
        self.inband.clear();
        self.rtp_seen = 0;
        self.held = false;
        self.calls += 1;
        self.quiet = None;
        for p in &mut self.per {
            p.this_call = false;
            p.from = 0;
            p.hits = 0;
            p.runs_seen = 0;
            p.burst = None;
        }
    }
}

/// The endpoint's call and its answer, if the call is up ([`call_up`]).
fn up_call(ep: &Endpoint, stopping: bool) -> Option<(CallId, Instant)> {
    let call = ep.active_call.filter(|c| call_up(ep, *c, stopping))?;
    Some((call, ep.answered_at?))
}

/// The endpoint's call while it is in early media: placed by it, not answered (nor
/// ending), in a run not stopping; with the time its INVITE went (what is heard then is
/// timed from).
fn early_call(ep: &Endpoint, stopping: bool) -> Option<(CallId, Instant)> {
    let call = ep.active_call?;
    (!stopping
        && ep.answered_at.is_none()
        && ep.ua.is_outgoing(call)
        && matches!(
            ep.ua.call_state(call),
            Some(CallState::Calling | CallState::Early)
        ))
    .then_some((call, ep.invite_sent?))
}

/// Ms from the call's answer to `t` (negative before it: early media).
fn since_answer(answered: Instant, t: Instant) -> f64 {
    if t >= answered {
        ms(t - answered)
    } else {
        -ms(answered - t)
    }
}

/// Whether the endpoint's `call` is its call, answered and up (not ending), in a run not
/// stopping: when scenario actions run and events count. A caller's phase stays
/// `Disconnecting` from its first hang-up on (phases only rise), so its later calls are up
/// from `Incall` on.
pub(super) fn call_up(ep: &Endpoint, call: CallId, stopping: bool) -> bool {
    !stopping
        && ep.phase >= Phase::Incall
        && ep.active_call == Some(call)
        && ep.ua.call_state(call) == Some(CallState::Confirmed)
}

/// Steps of actions on events run by this endpoint (see [`EventState::steps_run`]).
pub(super) fn steps_run(ep: &Endpoint) -> u64 {
    ep.events.as_ref().map_or(0, |e| u64::from(e.steps_run))
}

/// Whether the offer inside the call holds us: its direction (of its first audio stream)
/// sendonly or inactive, or its address `c=0.0.0.0` (RFC 3264 §8.4, RFC 2543's hold).
/// `None` for an offer we cannot read (no hold change then).
fn holds_us(offer: &[u8]) -> Option<bool> {
    use media::sdp::{Direction, SessionDescription};
    let sd = SessionDescription::parse(offer).ok()?;
    let m = sd
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio"))
        .or(sd.media.first())?;
    let parked = sd.connection_of(m).is_some_and(|ip| ip.is_unspecified());
    Some(
        parked
            || matches!(
                sd.direction_of(m),
                Direction::SendOnly | Direction::Inactive
            ),
    )
}

impl<'a> Shard<'a> {
    /// The call was answered: the endpoint's actions on events start afresh in it, and
    /// `answered` fires.
    pub(super) fn events_answered(&mut self, idx: usize, now: Instant, call: CallId) {
        let actions = self.plan.groups[self.endpoints[idx].group]
            .event_actions
            .len();
        if actions == 0 {
            return;
        }
        let ep = &mut self.endpoints[idx];
        let invite = ep.invite_sent;
        let e = ep
            .events
            .get_or_insert_with(|| Box::new(EventState::new(actions)));
        if e.call == Some(call) {
            // A call of ours, its events since its INVITE: what was heard in early media
            // is now timed from the answer, and a `hangup` not yet due runs after it (a BYE).
            if let Some(invite) = invite {
                let shift = ms(now.saturating_duration_since(invite));
                for t in e
                    .tones
                    .iter_mut()
                    .filter(|t| t.call == e.calls && t.unanswered)
                {
                    t.start_ms -= shift;
                    t.unanswered = false;
                }
            }
            if let Some((at, action, _)) = e.early_hangup.take() {
                let pos = e.pending.partition_point(|q| q.at <= at);
                e.pending.insert(
                    pos,
                    Pending {
                        at,
                        action,
                        step: 0,
                    },
                );
            }
            if matches!(ep.script, Script::EarlyHangup) {
                ep.script = Script::Idle;
                ep.script_at = None;
            }
        } else {
            e.new_call(call);
        }
        self.fire(idx, now, call, Happened::Answered);
    }

    /// The endpoint placed a call (its INVITE went): its actions on events start afresh in
    /// it, for what it hears in early media.
    pub(super) fn events_dialled(&mut self, idx: usize, call: CallId) {
        let actions = self.plan.groups[self.endpoints[idx].group]
            .event_actions
            .len();
        if actions == 0 {
            return;
        }
        self.endpoints[idx]
            .events
            .get_or_insert_with(|| Box::new(EventState::new(actions)))
            .new_call(call);
    }

    /// A `hangup` on what was heard in early media is due: the reason, counted as its
    /// action's run, if the call is still unanswered.
    pub(super) fn take_early_hangup(&mut self, idx: usize) -> Option<String> {
        let ep = &mut self.endpoints[idx];
        let e = ep.events.as_deref_mut()?;
        let (_, action, why) = e.early_hangup.take()?;
        if ep.answered_at.is_some() {
            return None;
        }
        e.steps_run += 1;
        if let Some(p) = e.per.get_mut(action) {
            p.fired += 1;
            p.before_answer += 1;
        }
        Some(why)
    }

    /// The call, just answered, had early media: its first RTP packet came at `at`.
    pub(super) fn events_early_media(
        &mut self,
        idx: usize,
        now: Instant,
        call: CallId,
        at: Instant,
    ) {
        let ep = &mut self.endpoints[idx];
        let before = ep
            .answered_at
            .map_or(0.0, |t| ms(t.saturating_duration_since(at)));
        ep.trace.push(TraceEntry::note(
            format!("early media: its first RTP packet came {before:.0} ms before the answer"),
            now - self.start,
        ));
        if ep.events.is_some() {
            self.fire(idx, now, call, Happened::EarlyMedia { at });
        }
    }

    /// A MESSAGE came (answered 200 by the user agent), in the call or outside any dialog:
    /// noted, and `message` fires for the endpoint's call if it is up.
    pub(super) fn events_message(
        &mut self,
        idx: usize,
        now: Instant,
        call: Option<CallId>,
        content_type: Option<&str>,
        body: &[u8],
        in_call: bool,
    ) {
        let len = body.len();
        let ep = &mut self.endpoints[idx];
        let place = if in_call {
            "in the call"
        } else {
            "outside a call"
        };
        ep.trace.push(TraceEntry::note(
            format!(
                "MESSAGE received {place} ({}, {len} bytes): answered 200",
                content_type.unwrap_or("no Content-Type")
            ),
            now - self.start,
        ));
        if let (Some(call), Some(e)) = (call, ep.events.as_deref_mut()) {
            e.message = String::from_utf8_lossy(body).into_owned();
            self.fire(idx, now, call, Happened::Message);
            self.schedule(idx);
        }
    }

    /// A DTMF digit received by SIP INFO.
    pub(super) fn events_digit(&mut self, idx: usize, now: Instant, call: CallId, digit: char) {
        if let Some(e) = self.endpoints[idx].events.as_deref_mut() {
            e.digits.push(digit.to_ascii_uppercase());
            self.fire(idx, now, call, Happened::Digit { inband: false });
        }
    }

    /// The peer's offer inside the call (re-INVITE or UPDATE), answered.
    pub(super) fn events_offer(&mut self, idx: usize, now: Instant, call: CallId, offer: &[u8]) {
        if self.endpoints[idx].events.is_some() {
            let holds_us = holds_us(offer);
            self.fire(idx, now, call, Happened::Offer { holds_us });
        }
    }

    /// What the call's media session heard since last looked: digits received as RFC 4733
    /// events, and sound starting and stopping.
    pub(super) fn events_media(&mut self, idx: usize, now: Instant) {
        if self.endpoints[idx].events.is_none() {
            return;
        }
        let digits = self.events_rtp_digits(idx, now);
        let sound = self.events_sound(idx, now);
        let tones = self.events_tones(idx, now);
        if digits || sound || tones {
            self.schedule(idx);
        }
    }

    /// Digits the call's media session received as RFC 4733 events since last looked; true
    /// if there were any.
    fn events_rtp_digits(&mut self, idx: usize, now: Instant) -> bool {
        let ep = &mut self.endpoints[idx];
        let (Some(e), Some(m), Some(call)) = (
            ep.events.as_deref_mut(),
            ep.media.as_deref(),
            ep.active_call,
        ) else {
            return false;
        };
        let got = m.dtmf_received();
        if got.len() <= e.rtp_seen {
            return false;
        }
        // Digits are ASCII (`media::dtmf::char_of`): byte offsets are char offsets.
        let new: Vec<char> = got.get(e.rtp_seen..).unwrap_or("").chars().collect();
        e.rtp_seen = got.len();
        for d in new {
            self.events_digit(idx, now, call, d);
        }
        true
    }

    /// Sound started or stopped in the call's received audio (its media session's sound
    /// watch, [`media::sound`]): notes in the trace, the report's sounds, `audio` at each
    /// start, `silence` once it has been quiet long enough after sound. True if an action
    /// fired or a silence was armed (the endpoint is to be scheduled again).
    fn events_sound(&mut self, idx: usize, now: Instant) -> bool {
        let start = self.start;
        let ep = &mut self.endpoints[idx];
        // Before the answer (early media) the watch keeps what it heard: told from the
        // answer on, in that call's times.
        let Some((call, answered)) = up_call(ep, self.stopping) else {
            return false;
        };
        let (Some(e), Some(w)) = (
            ep.events.as_deref_mut(),
            ep.media.as_deref_mut().and_then(CallMedia::sound_mut),
        ) else {
            return false;
        };
        w.handle_timeout(now);
        let gap = w.config().gap;
        let into = |t: Instant| since_answer(answered, t);
        let mut started = Vec::new();
        while let Some(ev) = w.poll_event() {
            let note = match ev {
                SoundEvent::Started { at, level_dbov } => {
                    e.sound_span(ev, into, false);
                    started.push(at);
                    format!(
                        "sound started {:.2} s into the call ({level_dbov:.1} dBov)",
                        into(at) / 1000.0
                    )
                }
                SoundEvent::Stopped { at, level_dbov } => {
                    e.sound_span(ev, into, false);
                    format!(
                        "sound stopped {:.2} s into the call (loudest {level_dbov:.1} dBov; \
                         quiet for {} ms since)",
                        into(at) / 1000.0,
                        gap.as_millis()
                    )
                }
            };
            ep.trace.push(TraceEntry::note(note, now - start));
        }
        let quiet = w.quiet_since().map(|q| (q, w.runs()));
        // New sound arms the silences: the endpoint's timer must know when one comes due
        // (later loud frames only move it later: the timer then finds nothing, and the
        // endpoint is scheduled again).
        let mut fired = quiet.map(|q| q.1) != e.quiet.map(|q| q.1);
        e.quiet = quiet;
        for at in started {
            fired |= self.fire(idx, now, call, Happened::Sound { at });
        }
        if let Some((since, runs)) = quiet {
            fired |= self.fire(idx, now, call, Happened::Quiet { since, runs });
        }
        fired
    }

    /// A caller's call ends unanswered: the sounds of its early media, which its sound watch
    /// kept to tell from the answer on, go into the trace and the report now, timed from its
    /// INVITE (`unanswered`).
    pub(super) fn events_unanswered_sounds(&mut self, idx: usize, now: Instant) {
        let start = self.start;
        let ep = &mut self.endpoints[idx];
        let (None, Some(invite)) = (ep.answered_at, ep.invite_sent) else {
            return;
        };
        let (Some(e), Some(w)) = (
            ep.events.as_deref_mut(),
            ep.media.as_deref_mut().and_then(CallMedia::sound_mut),
        ) else {
            return;
        };
        w.handle_timeout(now);
        let into = |t: Instant| ms(t.saturating_duration_since(invite));
        while let Some(ev) = w.poll_event() {
            e.sound_span(ev, into, true);
            let note = match ev {
                SoundEvent::Started { at, level_dbov } => format!(
                    "sound heard in early media from {:.2} s after the INVITE \
                     ({level_dbov:.1} dBov)",
                    into(at) / 1000.0
                ),
                SoundEvent::Stopped { at, level_dbov } => {
                    format!(
                        "sound in early media stopped {:.2} s after the INVITE (loudest \
                         {level_dbov:.1} dBov)",
                        into(at) / 1000.0
                    )
                }
            };
            ep.trace.push(TraceEntry::note(note, now - start));
        }
    }

    /// Tones and in-band digits heard in the call's received audio (its media session's
    /// tone watch, [`media::tone`]): notes in the trace, the report's tones and digits, and
    /// the actions on them. True if an action fired.
    fn events_tones(&mut self, idx: usize, now: Instant) -> bool {
        let plan = self.plan;
        let start = self.start;
        let ep = &mut self.endpoints[idx];
        let Some(listen) = plan.groups[ep.group]
            .media
            .as_ref()
            .and_then(|m| m.tones.as_deref())
        else {
            return false;
        };
        // Before the answer (early media) a caller hears tones too, timed from its INVITE
        // until the answer comes (then from the answer, [`Self::events_answered`]).
        let (call, answered, early) = match up_call(ep, self.stopping) {
            Some((call, answered)) => (call, answered, false),
            None => match early_call(ep, self.stopping) {
                Some((call, invite)) => (call, invite, true),
                None => return false,
            },
        };
        let (Some(e), Some(w)) = (
            ep.events.as_deref_mut(),
            ep.media.as_deref_mut().and_then(CallMedia::tones_mut),
        ) else {
            return false;
        };
        w.handle_timeout(now);
        let into = |t: Instant| since_answer(answered, t);
        let when = |t: Instant| {
            if early {
                format!("in early media, {:.2} s after the INVITE", into(t) / 1000.0)
            } else {
                format!("{:.2} s into the call", into(t) / 1000.0)
            }
        };
        let from = |t: Instant| {
            if early {
                format!(
                    "in early media from {:.2} s after the INVITE",
                    into(t) / 1000.0
                )
            } else {
                format!("from {:.2} s into the call", into(t) / 1000.0)
            }
        };
        // A tone's first entry (its shortest minimum) is the one reported.
        let reported = |i: usize| {
            listen
                .tones
                .get(i)
                .is_some_and(|(t, _)| listen.tones.iter().position(|(u, _)| u == t) == Some(i))
        };
        let mut happened = Vec::new();
        while let Some(ev) = w.poll_event() {
            let note =
                match ev {
                    ToneEvent::Heard { tone, at } => {
                        let Some(&(t, min)) = listen.tones.get(tone) else {
                            continue;
                        };
                        happened.push((Happened::Tone { tone: t, min, at }, None));
                        if !reported(tone) {
                            continue;
                        }
                        if e.tones.len() < MAX_SPANS {
                            e.tones.push(ToneSpan {
                                call: e.calls,
                                tone: t.to_string(),
                                start_ms: into(at),
                                duration_ms: None,
                                unanswered: early,
                            });
                        }
                        format!("tone {t} Hz heard {}", from(at))
                    }
                    ToneEvent::Ended { tone, start, end } => {
                        if let Some(&(t, min)) = listen.tones.get(tone) {
                            let burst = Happened::ToneEnded {
                                tone: t,
                                min,
                                start,
                                end,
                            };
                            happened.push((burst, None));
                        }
                        let Some((t, _)) = listen.tones.get(tone).filter(|_| reported(tone)) else {
                            continue;
                        };
                        let name = t.to_string();
                        if let Some(s) = e.tones.iter_mut().rev().find(|s| {
                            s.call == e.calls && s.tone == name && s.duration_ms.is_none()
                        }) {
                            s.duration_ms = Some(ms(end - start));
                        }
                        format!(
                            "tone {t} Hz ended {} (heard {} ms)",
                            when(end),
                            (end - start).as_millis()
                        )
                    }
                    ToneEvent::Digit { digit, at } => {
                        if e.inband_all.len() < MAX_INBAND {
                            e.inband_all.push(digit);
                        }
                        happened.push((Happened::Digit { inband: true }, Some(digit)));
                        format!("in-band DTMF {digit} heard {}", when(at))
                    }
                    ToneEvent::Sit { kind, start, end } => {
                        if !listen.sit {
                            continue;
                        }
                        if e.tones.len() < MAX_SPANS {
                            e.tones.push(ToneSpan {
                                call: e.calls,
                                tone: format!("sit:{}", kind.code()),
                                start_ms: into(start),
                                duration_ms: Some(ms(end - start)),
                                unanswered: early,
                            });
                        }
                        happened.push((Happened::Sit { kind, end }, None));
                        format!(
                            "SIT {kind} heard {} ({} ms)",
                            from(start),
                            (end - start).as_millis()
                        )
                    }
                };
            ep.trace.push(TraceEntry::note(note, now - start));
        }
        let mut fired = false;
        for (what, digit) in happened {
            if let (Some(d), Some(e)) = (digit, self.endpoints[idx].events.as_deref_mut()) {
                e.inband.push(d);
            }
            fired |= self.fire(idx, now, call, what);
        }
        fired
    }

    /// The group's `silence` (the length of a `silence` without its own).
    fn silence_of(&self, group: usize) -> Duration {
        self.plan.groups[group]
            .media
            .as_ref()
            .and_then(|m| m.sound)
            .map_or(SoundConfig::default().gap, |c| c.gap)
    }

    /// When the endpoint's next `silence` comes due unless sound comes first (to wake it
    /// then: no packets at all is quiet too).
    pub(super) fn silence_due(&self, idx: usize) -> Option<Instant> {
        let ep = &self.endpoints[idx];
        let e = ep.events.as_deref()?;
        let (since, runs) = e.quiet?;
        let default = self.silence_of(ep.group);
        self.plan.groups[ep.group]
            .event_actions
            .iter()
            .zip(&e.per)
            .filter_map(|(a, p)| match a.on {
                CallTrigger::Silence(d) if runs > p.runs_seen => Some(since + d.unwrap_or(default)),
                _ => None,
            })
            .min()
    }

    /// Queues the steps of the actions `what` fires, while the call is up; true if any.
    fn fire(&mut self, idx: usize, now: Instant, call: CallId, what: Happened) -> bool {
        let plan = self.plan;
        let start = self.start;
        let stopping = self.stopping;
        let silence = self.silence_of(self.endpoints[idx].group);
        let ep = &mut self.endpoints[idx];
        let up = call_up(ep, call, stopping);
        // What a caller hears in early media counts before the answer.
        let early =
            !up && what.before_answer() && early_call(ep, stopping).is_some_and(|(c, _)| c == call);
        let answered = ep.answered_at;
        let Some(e) = ep.events.as_deref_mut() else {
            return false;
        };
        let (held, resumed) = match what {
            Happened::Offer {
                holds_us: Some(h), ..
            } => {
                let was = std::mem::replace(&mut e.held, h);
                (h && !was, was && !h)
            }
            _ => (false, false),
        };
        if !up && !early {
            return false;
        }
        let mut notes = Vec::new();
        let mut hangup_at: Option<Instant> = None;
        for (i, a) in plan.groups[ep.group].event_actions.iter().enumerate() {
            let p = &mut e.per[i];
            // When the event came: a silence came when it had lasted long enough.
            let mut when = now;
            let hit = match (&a.on, what) {
                (CallTrigger::Answered, Happened::Answered) => true,
                (CallTrigger::Dtmf(None), Happened::Digit { inband: false })
                | (CallTrigger::InbandDtmf(None), Happened::Digit { inband: true }) => true,
                (CallTrigger::Dtmf(Some(seq)), Happened::Digit { inband: false })
                | (CallTrigger::InbandDtmf(Some(seq)), Happened::Digit { inband: true }) => {
                    let digits = if matches!(a.on, CallTrigger::Dtmf(_)) {
                        &e.digits
                    } else {
                        &e.inband
                    };
                    let hit = digits
                        .get(p.from..)
                        .is_some_and(|d| d.ends_with(seq.as_str()));
                    if hit {
                        // The next match starts after this one ("11" in "111" once, not twice).
                        p.from = digits.len();
                    }
                    hit
                }
                (CallTrigger::Tone(t, d), Happened::Tone { tone, min, at })
                    if *t == tone && d.unwrap_or(TONE_MIN) == min =>
                {
                    // It was heard once it had lasted its minimum (from the answer on).
                    when = (at + min).max(answered.unwrap_or(at));
                    true
                }
                (CallTrigger::Sit(code), Happened::Sit { kind, end })
                    if code.is_none_or(|c| c == kind.code()) =>
                {
                    when = end.max(answered.unwrap_or(end));
                    true
                }
                (
                    CallTrigger::Cadence(t, c),
                    Happened::ToneEnded {
                        tone,
                        min,
                        start,
                        end,
                    },
                ) if *t == tone && c.min_burst() == min => {
                    // The burst before it, then this one, in the cadence. The next match
                    // may start from this burst (a repeating action fires each cycle).
                    let hit = p.burst.is_some_and(|a| c.follows(a, (start, end)));
                    p.burst = Some((start, end));
                    when = end.max(answered.unwrap_or(end));
                    hit
                }
                (CallTrigger::Held, Happened::Offer { .. }) => held,
                (CallTrigger::Resumed, Happened::Offer { .. }) => resumed,
                (CallTrigger::Reinvite, Happened::Offer { .. }) => true,
                (CallTrigger::Message, Happened::Message) => true,
                (CallTrigger::MessageText(t), Happened::Message) => e.message.contains(t.as_str()),
                (CallTrigger::EarlyMedia, Happened::EarlyMedia { at })
                | (CallTrigger::Audio, Happened::Sound { at }) => {
                    when = at;
                    true
                }
                (CallTrigger::Silence(d), Happened::Quiet { since, runs }) => {
                    let due = since + d.unwrap_or(silence);
                    // Sound since its last silence, and quiet long enough (from the call's
                    // answer: the quiet of early media before it does not count).
                    let hit = runs > p.runs_seen && due <= now;
                    if hit {
                        p.runs_seen = runs;
                        when = due.max(answered.unwrap_or(due));
                    }
                    hit
                }
                _ => false,
            };
            if !hit {
                continue;
            }
            p.hits += 1;
            let fires = match a.nth {
                Some(n) => p.hits == n,
                None => a.repeat || !p.this_call,
            };
            if !fires {
                continue;
            }
            p.this_call = true;
            let after = a.steps.first().map_or(Duration::ZERO, |s| s.at);
            let nth = a.nth.map_or(String::new(), |n| format!(" (its #{n})"));
            if early {
                // Before the answer only a `hangup` runs (a CANCEL, at its time unless the
                // answer comes first); the other actions wait for the answer, as the
                // steps of `early_media` do (a step already due then runs at once).
                let hangup = matches!(a.steps.first().map(|s| &s.kind), Some(ActionKind::Hangup));
                if hangup && e.early_hangup.is_none() {
                    let at = when + after;
                    let heard = match what {
                        Happened::Sit { kind, .. } => format!("SIT {kind} heard"),
                        Happened::Tone { tone, .. } => format!("tone {tone} Hz heard"),
                        Happened::ToneEnded { tone, .. } => match &a.on {
                            CallTrigger::Cadence(_, c) => format!(
                                "tone {tone} Hz heard in its cadence ({} ms on, {} ms off)",
                                c.on.as_millis(),
                                c.off.as_millis()
                            ),
                            _ => format!("tone {tone} Hz heard"),
                        },
                        _ => format!("in-band DTMF {} heard", e.inband),
                    };
                    e.early_hangup = Some((
                        at,
                        i,
                        format!("{heard} in early media: cancelled (on {}: hangup)", a.on),
                    ));
                    hangup_at = Some(at);
                    notes.push(if after.is_zero() {
                        format!("event {}{nth}: hangup before the answer (CANCEL)", a.on)
                    } else {
                        format!(
                            "event {}{nth}: hangup in {} ms (a CANCEL if still unanswered)",
                            a.on,
                            after.as_millis()
                        )
                    });
                    continue;
                }
                notes.push(format!(
                    "event {}{nth}: {} waits for the answer (heard in early media)",
                    a.on, a.name
                ));
            }
            for (step, s) in a.steps.iter().enumerate() {
                let at = when + s.at;
                // After the last step due no later (stable: queuing order at equal times).
                let pos = e.pending.partition_point(|q| q.at <= at);
                e.pending.insert(
                    pos,
                    Pending {
                        at,
                        action: i,
                        step,
                    },
                );
            }
            if early {
                continue;
            }
            let quiet = match what {
                Happened::Quiet { since, .. } => format!(
                    ", quiet since {:.2} s into the call",
                    answered.map_or(0.0, |t| ms(since.saturating_duration_since(t)) / 1000.0)
                ),
                _ => String::new(),
            };
            notes.push(if after.is_zero() {
                format!("event {}{nth}: {}{quiet}", a.on, a.name)
            } else {
                format!(
                    "event {}{nth}: {} in {} ms{quiet}",
                    a.on,
                    a.name,
                    after.as_millis()
                )
            });
        }
        let fired = !notes.is_empty();
        for n in notes {
            ep.trace.push(TraceEntry::note(n, now - start));
        }
        // The CANCEL's time, unless the ring_timeout gives up first.
        if let Some(at) = hangup_at {
            let keep = match ep.script {
                Script::GiveUp => ep.script_at.is_some_and(|t| t <= at),
                Script::Idle => false,
                _ => ep.script_at.is_some(),
            };
            if !keep {
                ep.script = Script::EarlyHangup;
                ep.script_at = Some(at);
            }
        }
        fired
    }

    /// When the endpoint's next step of an action on an event is due, and what it does.
    pub(super) fn next_event_step(&self, idx: usize) -> Option<(Instant, &'a ActionKind)> {
        let plan = self.plan;
        let ep = &self.endpoints[idx];
        let p = ep.events.as_deref()?.pending.first()?;
        let a = plan.groups[ep.group].event_actions.get(p.action)?;
        Some((p.at, &a.steps.get(p.step)?.kind))
    }

    /// Takes the next step of an action on an event if it is due at `at`, with its event;
    /// counts the action as fired at its first step.
    pub(super) fn take_event_step(
        &mut self,
        idx: usize,
        at: Instant,
    ) -> Option<(&'a ActionKind, &'a CallTrigger)> {
        let plan = self.plan;
        let ep = &mut self.endpoints[idx];
        let answered = ep.answered_at?;
        let e = ep.events.as_deref_mut()?;
        let p = *e.pending.first().filter(|p| p.at <= at)?;
        e.pending.remove(0);
        e.steps_run += 1;
        let a = plan.groups[ep.group].event_actions.get(p.action)?;
        if p.step == 0 {
            let per = &mut e.per[p.action];
            per.fired += 1;
            per.first_ms
                .get_or_insert(ms(p.at.saturating_duration_since(answered)));
        }
        Some((&a.steps.get(p.step)?.kind, &a.on))
    }
}

/// The endpoint's actions on events, for its report (empty when its group has none).
pub(super) fn report(actions: &[EventAction], ep: &Endpoint) -> Vec<EventActionReport> {
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let p = ep.events.as_ref().and_then(|e| e.per.get(i));
            EventActionReport {
                on: a.on.to_string(),
                action: a.name.clone(),
                nth: a.nth,
                fired: p.map_or(0, |p| p.fired),
                first_ms: p.and_then(|p| p.first_ms),
                before_answer: p.map_or(0, |p| p.before_answer),
            }
        })
        .collect()
}

/// What a group's calls listen for, from its actions on `tone:…` and `inband_dtmf` (`None`:
/// none): each tone with each minimum its actions wait for, shortest first.
pub(crate) fn tone_listen(actions: &[EventAction]) -> Option<crate::callmedia::ToneListen> {
    let mut tones: Vec<(Tone, Duration)> = Vec::new();
    let mut inband_dtmf = false;
    let mut sit = false;
    for a in actions {
        match &a.on {
            CallTrigger::Tone(..) | CallTrigger::Cadence(..) => {
                let (t, min) = match &a.on {
                    CallTrigger::Cadence(t, c) => (t, c.min_burst()),
                    CallTrigger::Tone(t, d) => (t, d.unwrap_or(TONE_MIN)),
                    _ => continue,
                };
                if !tones.contains(&(*t, min)) {
                    // After the tone's entries of a shorter minimum, before the rest.
                    let pos = tones
                        .iter()
                        .rposition(|(u, m)| u == t && *m < min)
                        .map_or_else(
                            || {
                                tones
                                    .iter()
                                    .position(|(u, _)| u == t)
                                    .unwrap_or(tones.len())
                            },
                            |i| i + 1,
                        );
                    tones.insert(pos, (*t, min));
                }
            }
            CallTrigger::InbandDtmf(_) => inband_dtmf = true,
            CallTrigger::Sit(_) => sit = true,
            _ => {}
        }
    }
    (!tones.is_empty() || inband_dtmf || sit).then_some(crate::callmedia::ToneListen {
        tones,
        inband_dtmf,
        sit,
    })
}

/// The tones and the in-band digits the endpoint heard, for its report (empty when its
/// group listens for none).
pub(super) fn tones(ep: &mut Endpoint) -> (Vec<ToneSpan>, String) {
    ep.events.as_deref_mut().map_or_else(Default::default, |e| {
        (
            std::mem::take(&mut e.tones),
            std::mem::take(&mut e.inband_all),
        )
    })
}

/// The sounds the endpoint heard, for its report (empty when its group watches none).
pub(super) fn sounds(ep: &mut Endpoint) -> Vec<SoundSpan> {
    ep.events
        .as_deref_mut()
        .map_or_else(Vec::new, |e| std::mem::take(&mut e.spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_and_print_back() {
        for (text, t) in [
            ("dtmf", CallTrigger::Dtmf(None)),
            ("DTMF:12a#", CallTrigger::Dtmf(Some("12A#".into()))),
            ("held", CallTrigger::Held),
            ("resumed", CallTrigger::Resumed),
            ("reinvite", CallTrigger::Reinvite),
            ("answered", CallTrigger::Answered),
            ("audio", CallTrigger::Audio),
            ("silence", CallTrigger::Silence(None)),
            (
                "silence:1500ms",
                CallTrigger::Silence(Some(Duration::from_millis(1500))),
            ),
            (
                "silence:2s",
                CallTrigger::Silence(Some(Duration::from_secs(2))),
            ),
            ("tone:2100", CallTrigger::Tone(tone("2100"), None)),
            ("tone:440+480", CallTrigger::Tone(tone("440+480"), None)),
            (
                "tone:425:1s",
                CallTrigger::Tone(tone("425"), Some(Duration::from_secs(1))),
            ),
            (
                "tone:1000:150ms",
                CallTrigger::Tone(tone("1000"), Some(Duration::from_millis(150))),
            ),
            ("inband_dtmf", CallTrigger::InbandDtmf(None)),
            ("message:bye", CallTrigger::MessageText("bye".into())),
            (
                "inband_dtmf:12a#",
                CallTrigger::InbandDtmf(Some("12A#".into())),
            ),
            ("tone:sit", CallTrigger::Sit(None)),
            ("sit:nc", CallTrigger::Sit(Some("nc"))),
            ("sit:ro", CallTrigger::Sit(Some("ro"))),
            (
                "busy",
                CallTrigger::Cadence(tone("480+620"), Cadence::US_BUSY),
            ),
            (
                "reorder",
                CallTrigger::Cadence(tone("480+620"), Cadence::US_REORDER),
            ),
            (
                "tone:425:500ms/1500ms",
                CallTrigger::Cadence(
                    tone("425"),
                    Cadence {
                        on: Duration::from_millis(500),
                        off: Duration::from_millis(1500),
                    },
                ),
            ),
            (
                "tone:425:1s/4s",
                CallTrigger::Cadence(
                    tone("425"),
                    Cadence {
                        on: Duration::from_secs(1),
                        off: Duration::from_secs(4),
                    },
                ),
            ),
        ] {
            let parsed = CallTrigger::parse(text).unwrap();
            assert_eq!(parsed, t, "{text}");
            assert_eq!(
                parsed.to_string(),
                text.to_ascii_lowercase().replace("12a", "12A")
            );
        }
        assert!(
            CallTrigger::parse("dtmf:")
                .unwrap_err()
                .contains("names no digit")
        );
        assert!(
            CallTrigger::parse("dtmf:5x")
                .unwrap_err()
                .contains("`x` is not a DTMF digit")
        );
        assert!(
            CallTrigger::parse("ringing")
                .unwrap_err()
                .contains("expected an event")
        );
        // SIT spellings: `sit` alone, `tone:sit:KIND`, any case.
        assert_eq!(CallTrigger::parse("SIT").unwrap(), CallTrigger::Sit(None));
        assert_eq!(
            CallTrigger::parse("tone:sit:IC").unwrap(),
            CallTrigger::Sit(Some("ic"))
        );
        // What a caller's early media counts for, and what it does not.
        for (on, early) in [
            ("tone:sit", true),
            ("sit:vc", true),
            ("tone:480+620", true),
            ("inband_dtmf:1", true),
            ("reorder", true),
            ("audio", false),
            ("silence", false),
            ("dtmf", false),
            ("early_media", false),
        ] {
            assert_eq!(
                CallTrigger::parse(on).unwrap().before_answer(),
                early,
                "{on}"
            );
        }
        // A message's text keeps its case.
        assert_eq!(
            CallTrigger::parse(" Message:Press 1 ").unwrap(),
            CallTrigger::MessageText("Press 1".into())
        );
        for (bad, what) in [
            ("tone:", "is not a frequency in Hz"),
            ("tone:busy", "`busy` is not a frequency in Hz"),
            ("tone:5000", "5000 Hz is outside 50–3900 Hz"),
            ("tone:350+440+480", "one frequency or a pair"),
            ("tone:440+440", "less than 25 Hz apart"),
            ("tone:425:0s", "more than 0 s"),
            ("tone:425:2m", "at most 60 s"),
            ("tone:425:soon", "the tone's length"),
            ("inband_dtmf:", "names no digit"),
            ("message:", "names no text"),
            ("inband_dtmf:5x", "`x` is not a DTMF digit"),
            ("sit:xx", "`xx` is not a SIT kind"),
            ("tone:425:50ms/500ms", "100 ms to 10 s"),
            ("tone:425:500ms/11s", "100 ms to 10 s"),
            ("tone:425:500ms/x", "the cadence's off time"),
            ("tone:busy:500ms/500ms", "`busy` is not a frequency"),
            ("tone:sit:", "`` is not a SIT kind"),
        ] {
            let e = CallTrigger::parse(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    fn tone(s: &str) -> Tone {
        Tone::parse(s).unwrap()
    }

    #[test]
    fn a_group_listens_for_each_tone_and_minimum_its_actions_wait_for() {
        let action = |on: &str| EventAction {
            on: CallTrigger::parse(on).unwrap(),
            repeat: false,
            nth: None,
            name: "hangup".into(),
            steps: Vec::new(),
        };
        let ms = Duration::from_millis;
        assert_eq!(tone_listen(&[action("silence"), action("dtmf:5")]), None);
        let l = tone_listen(&[
            action("tone:425:1s"),
            action("tone:440+480"),
            action("tone:425"),
            action("tone:425:1s"),
            action("tone:425:100ms"),
        ])
        .unwrap();
        // Each tone's shortest minimum first: the one reported.
        assert_eq!(
            l.tones,
            [
                (tone("425"), ms(100)),
                (tone("425"), ms(200)),
                (tone("425"), ms(1000)),
                (tone("440+480"), ms(200)),
            ]
        );
        assert!(!l.inband_dtmf);
        let l = tone_listen(&[action("inband_dtmf:1")]).unwrap();
        assert!(l.tones.is_empty() && l.inband_dtmf && !l.sit);
        let l = tone_listen(&[action("sit:nc")]).unwrap();
        assert!(l.tones.is_empty() && !l.inband_dtmf && l.sit);
        // A cadence listens for its tone's bursts: its `on` less two blocks.
        let l = tone_listen(&[action("busy"), action("reorder")]).unwrap();
        assert_eq!(
            l.tones,
            [(tone("480+620"), ms(170)), (tone("480+620"), ms(420))]
        );
    }

    #[test]
    fn offers_that_hold_us() {
        let sdp = |extra: &str, c: &str| {
            format!(
                "v=0\r\no=- 1 2 IN IP4 {c}\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n{extra}"
            )
        };
        assert_eq!(
            holds_us(sdp("a=sendonly\r\n", "10.0.0.1").as_bytes()),
            Some(true)
        );
        assert_eq!(
            holds_us(sdp("a=inactive\r\n", "10.0.0.1").as_bytes()),
            Some(true)
        );
        assert_eq!(holds_us(sdp("", "0.0.0.0").as_bytes()), Some(true));
        assert_eq!(
            holds_us(sdp("a=recvonly\r\n", "10.0.0.1").as_bytes()),
            Some(false)
        );
        assert_eq!(holds_us(sdp("", "10.0.0.1").as_bytes()), Some(false));
        assert_eq!(holds_us(b"not sdp"), None);
    }
}
