//! The two pieces of SDP the user agent writes itself: the direction of its answer to an
//! offer inside a call (hold and resume, RFC 3264 §8.4), and an answer that rejects every
//! stream of a late offer the call ends on before the application answered it.
//!
//! The agent answers a re-INVITE or UPDATE with an offer at once, with its current
//! description. RFC 3264 §6.1 wants the answer's direction to mirror the offer's: an offer
//! `a=sendonly` (the peer puts us on hold) is answered `a=recvonly`, `a=inactive` with
//! `a=inactive`, `a=recvonly` with `a=sendonly`, `a=sendrecv` (resume) with `a=sendrecv`; and
//! §8 a changed description with the `o=` version one higher. Everything else (codecs,
//! address, port) stays as the agent last described it. The rest of SDP is the media crate's.

use bytes::Bytes;

const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];

/// The direction attribute of `line` (`a=sendonly` …), if it is one.
fn direction_of(line: &str) -> Option<&'static str> {
    let attr = line.strip_prefix("a=")?;
    DIRECTIONS.iter().copied().find(|d| *d == attr)
}

/// The offer's direction for its first audio stream: the stream's attribute, else the
/// session's, else `sendrecv` (RFC 4566 §6); a stream offered with port 0 is `inactive`;
/// one whose connection address is `0.0.0.0` (or `::`) does not receive (RFC 3264 §8.4:
/// "neither RTP nor RTCP is to be sent to the peer"): `sendonly` at most.
fn offered_direction(offer: &str) -> &'static str {
    let (mut session, mut audio) = (None, None);
    // Whether the session's, and the audio stream's, `c=` is the unspecified address.
    let (mut session_held, mut audio_held) = (None, None);
    let mut in_audio = false;
    let mut seen_media = false;
    for line in offer.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            seen_media = true;
            let mut parts = m.split(' ');
            in_audio = parts.next() == Some("audio");
            if in_audio && parts.next() == Some("0") {
                return "inactive";
            }
            continue;
        }
        if let Some(c) = line.strip_prefix("c=") {
            let held = Some(matches!(c.rsplit(' ').next(), Some("0.0.0.0" | "::")));
            match (seen_media, in_audio) {
                (false, _) => session_held = held,
                (_, true) => audio_held = held,
                _ => {}
            }
            continue;
        }
        match (direction_of(line), seen_media, in_audio) {
            (Some(d), _, true) => audio = audio.or(Some(d)),
            (Some(d), false, _) => session = Some(d),
            _ => {}
        }
    }
    let direction = audio.or(session).unwrap_or("sendrecv");
    match (audio_held.or(session_held), direction) {
        (Some(true), "sendrecv" | "sendonly") => "sendonly",
        (Some(true), _) => "inactive",
        _ => direction,
    }
}

/// `sdp` with each direction attribute made `a=sendrecv`: a new call's offer from a held
/// call's description (the transferee's INVITE to its transfer target, RFC 5589 §6–7,
/// starts a conversation; the hold was of the first call, not of this one).
pub(crate) fn not_held(sdp: &Bytes) -> Bytes {
    let Ok(text) = std::str::from_utf8(sdp) else {
        return sdp.clone();
    };
    if !text
        .lines()
        .any(|l| matches!(direction_of(l.trim_end_matches('\r')), Some(d) if d != "sendrecv"))
    {
        return sdp.clone();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if direction_of(bare).is_some() {
            out.push_str("a=sendrecv");
            out.push_str(&line[bare.len()..]);
        } else {
            out.push_str(line);
        }
    }
    Bytes::from(out)
}

/// An answer to `offer` that rejects every stream, from `host` (our address as written in
/// Contact, brackets and all for IPv6). RFC 3264 §6: "the answer MUST contain exactly the
/// same number of "m=" lines as the offer"; "To reject an offered stream, the port number in
/// the corresponding stream in the answer MUST be set to zero. Any media formats listed are
/// ignored. At least one MUST be present": each of the offer's `m=` lines in order, its port
/// 0, its transport and formats as offered. The session lines are ours (RFC 4566 §5).
pub(crate) fn rejecting_answer(offer: &[u8], host: &str) -> Bytes {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let family = if host.contains(':') { "IP6" } else { "IP4" };
    let mut out =
        format!("v=0\r\no=- 0 0 IN {family} {host}\r\ns=-\r\nc=IN {family} {host}\r\nt=0 0\r\n");
    let offer = String::from_utf8_lossy(offer);
    for m in offer
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("m="))
    {
        let mut parts = m.split(' ').filter(|p| !p.is_empty());
        let (Some(media), Some(_port), Some(proto)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let formats: Vec<&str> = parts.collect();
        let formats = if formats.is_empty() {
            "0".to_owned()
        } else {
            formats.join(" ")
        };
        out.push_str(&format!("m={media} 0 {proto} {formats}\r\n"));
    }
    Bytes::from(out)
}

/// The first audio stream of an SDP text, as far as an answer inside the call reads it.
struct AudioStream<'a> {
    /// Its port is not 0.
    in_use: bool,
    /// Its payload types, in order.
    formats: Vec<&'a str>,
    /// `a=rtpmap:` (payload type, the rest) and `a=fmtp:` (payload type, the rest).
    rtpmaps: Vec<(&'a str, &'a str)>,
    fmtps: Vec<(&'a str, &'a str)>,
    /// `a=rtcp-mux` in the stream (RFC 5761 §5.1.1: a media-level attribute).
    rtcp_mux: bool,
}

/// Whether `line` is the `m=` line of an audio stream.
fn is_audio(line: &str) -> bool {
    line.starts_with("m=audio ")
}

fn audio_stream(sdp: &str) -> Option<AudioStream<'_>> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    let m = lines.find_map(|l| l.strip_prefix("m=audio "))?;
    let mut parts = m.split(' ').filter(|p| !p.is_empty());
    let in_use = parts.next() != Some("0");
    let mut stream = AudioStream {
        in_use,
        formats: parts.skip(1).collect(),
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        rtcp_mux: false,
    };
    for line in lines.take_while(|l| !l.starts_with("m=")) {
        if let Some(r) = line.strip_prefix("a=rtpmap:").and_then(pt_and_value) {
            stream.rtpmaps.push(r);
        } else if let Some(f) = line.strip_prefix("a=fmtp:").and_then(pt_and_value) {
            stream.fmtps.push(f);
        } else if line == "a=rtcp-mux" {
            stream.rtcp_mux = true;
        }
    }
    Some(stream)
}

/// `PT VALUE` of an `a=rtpmap:` or `a=fmtp:` line.
fn pt_and_value(rest: &str) -> Option<(&str, &str)> {
    rest.split_once(' ').map(|(pt, v)| (pt.trim(), v.trim()))
}

impl<'a> AudioStream<'a> {
    /// The codec (`NAME/RATE`, upper case) of payload type `pt`: its rtpmap, else RFC 3551
    /// §6's static assignment (an rtpmap is optional for those).
    fn codec(&self, pt: &str) -> Option<String> {
        let name = match self.rtpmaps.iter().find(|(p, _)| *p == pt) {
            // NAME/RATE[/CHANNELS]: the channels do not make another codec here.
            Some((_, enc)) => enc.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"),
            None => match pt {
                "0" => "PCMU/8000",
                "3" => "GSM/8000",
                "4" => "G723/8000",
                "8" => "PCMA/8000",
                "9" => "G722/8000",
                "18" => "G729/8000",
                _ => return None,
            }
            .to_owned(),
        };
        Some(name.to_ascii_uppercase())
    }

    /// The voice codecs (telephone-event and comfort noise carry no voice), with their
    /// payload types, in order.
    fn voice(&self) -> Vec<(&'a str, String)> {
        self.formats
            .iter()
            .filter_map(|pt| Some((*pt, self.codec(pt)?)))
            .filter(|(_, c)| !c.starts_with("TELEPHONE-EVENT/") && !c.starts_with("CN/"))
            .collect()
    }

    /// The telephone-event payload type at `rate` (RFC 4733 §2.1: the audio codec's clock).
    fn events_at(&self, rate: &str) -> Option<&'a str> {
        let want = format!("TELEPHONE-EVENT/{rate}");
        self.formats
            .iter()
            .copied()
            .find(|pt| self.codec(pt).is_some_and(|c| c == want))
    }
}

/// The voice codec in use when nothing else says so: the first of our description (the
/// answer we gave names just the one chosen).
fn first_voice(sdp: &str) -> Option<String> {
    audio_stream(sdp)?
        .voice()
        .into_iter()
        .next()
        .map(|(_, c)| c)
}

/// The voice codec (`NAME/RATE`) an answer settles on: its first one that our offer `ours`
/// lists too (RFC 3264 §6.1: the offerer may send any codec of the answer; we send its
/// first, as `media::sdp::apply_answer` does). `None` when the answer names none of ours,
/// has no audio stream in use, or either text cannot be read.
pub(crate) fn answered_codec(ours: &[u8], answer: &[u8]) -> Option<String> {
    let (Ok(ours), Ok(answer)) = (std::str::from_utf8(ours), std::str::from_utf8(answer)) else {
        return None;
    };
    let ours = audio_stream(ours)?.voice();
    let answer = audio_stream(answer).filter(|a| a.in_use)?;
    answer
        .voice()
        .into_iter()
        .map(|(_, c)| c)
        .find(|c| ours.iter().any(|(_, o)| o == c))
}

/// Whether the first format of `answer`'s audio stream (in use: its port is not 0) is the
/// first of `ours`' and a static payload type (RFC 3551 §6: the same number is the same
/// codec) that the answer does not map to another codec (an `a=rtpmap` for it, if any, says
/// what ours says): the answer keeps our first codec, as [`answered_codec`] would find. Our
/// own port does not matter, as it does not there: a call without media offers port 0, and
/// its answers are looked at here too. A scan of the audio sections, no allocation (every
/// call's answer is looked at).
pub(crate) fn keeps_our_first_codec(ours: &[u8], answer: &[u8]) -> bool {
    match (first_format(ours), first_format(answer)) {
        (Some((a, _, ours)), Some((b, false, answer))) => {
            a == b
                && std::str::from_utf8(a).is_ok_and(|pt| pt.parse::<u8>().is_ok_and(|n| n < 96))
                && section_rtpmap(answer, a).is_none_or(|m| {
                    section_rtpmap(ours, a).is_some_and(|o| o.eq_ignore_ascii_case(m))
                })
        }
        _ => false,
    }
}

/// The first format of `sdp`'s audio stream, whether its port is 0, and the stream's
/// section (its `m=` line up to the next one), as [`audio_stream`] finds them: the first
/// `m=audio` line.
fn first_format(sdp: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let at = if sdp.starts_with(b"m=audio ") {
        0
    } else {
        memchr::memmem::find(sdp, b"\nm=audio ")? + 1
    };
    let section = &sdp[at..];
    let section =
        memchr::memmem::find(&section[1..], b"\nm=").map_or(section, |end| &section[..=end]);
    let mut parts = section[8..]
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()?
        .split(|b| *b == b' ')
        .filter(|p| !p.is_empty());
    let (port, pt) = (parts.next()?, parts.nth(1)?);
    Some((pt, port == b"0", section))
}

/// The value of `section`'s `a=rtpmap:` line for payload type `pt` (`NAME/RATE[/…]`), as
/// [`pt_and_value`] reads it (trimmed).
fn section_rtpmap<'a>(section: &'a [u8], pt: &[u8]) -> Option<&'a [u8]> {
    memchr::memmem::find_iter(section, b"\na=rtpmap:").find_map(|at| {
        let line = section[at + 10..]
            .split(|b| *b == b'\r' || *b == b'\n')
            .next()?;
        let (p, value) = line.split_at(line.iter().position(|b| *b == b' ')?);
        (p.trim_ascii() == pt).then(|| value.trim_ascii())
    })
}

/// The first voice codec of `sdp`'s audio stream (`NAME/RATE`).
pub(crate) fn codec_in(sdp: &[u8]) -> Option<String> {
    first_voice(std::str::from_utf8(sdp).ok()?)
}

/// Whether `sdp`'s audio stream lists fewer voice codecs than `than`'s.
pub(crate) fn lists_fewer_codecs(sdp: &[u8], than: &[u8]) -> bool {
    let count = |t: &[u8]| {
        std::str::from_utf8(t)
            .ok()
            .and_then(audio_stream)
            .map_or(0, |a| a.voice().len())
    };
    count(sdp) < count(than)
}

/// How an offer inside the call is answered ([`answer_in_call`]).
#[derive(Debug, PartialEq)]
pub(crate) enum InCallAnswer {
    /// Our answer, and the voice codec it chose (`NAME/RATE`; `None` when the offer's audio
    /// is not in use or a text could not be read: the codec is unchanged then).
    Answer(Bytes, Option<String>),
    /// Refused with 488 and this Warning value (code, agent, quoted text; RFC 3261 §20.43),
    /// the session unchanged (§14.2): the offer's audio stream lists none of our codecs (RFC
    /// 3264 §6.1), or changes the media's security in a way the group does not allow
    /// ([`SrtpPolicy`]).
    Refused(&'static str),
}

/// The Warning of a refusal for want of a common codec.
pub(crate) const NO_CODEC: &str =
    "305 sipmeter \"Incompatible media format: none of our codecs offered\"";

/// What a group asks of its calls' media security (its test file's `srtp`), as the answer
/// to an offer inside a call applies it (RFC 3261 §14.2: an offer we refuse leaves the
/// session as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP: an `RTP/SAVP` or DTLS offer is refused, `a=crypto` in an `RTP/AVP` offer
    /// is ignored.
    #[default]
    Off,
    /// SRTP when the peer offers it, plain RTP when it does not: an offer that drops SRTP
    /// is followed (answered plain), one that brings SDES keys into a plain call is taken.
    Optional,
    /// SDES-keyed SRTP required: an offer that drops it is refused.
    Sdes,
    /// DTLS-SRTP required: an offer without DTLS is refused.
    Dtls,
}

/// The security of a call's media as the answer to an offer inside it reads it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallSrtp<'a> {
    /// The group's rule.
    pub policy: SrtpPolicy,
    /// Our description carries `a=crypto` lines the peer's answer did not take (an
    /// `"optional"` offer answered plain): the call is plain.
    pub unkeyed: bool,
    /// Our `a=crypto` lines for an SRTP offer while our description has none (fresh keys
    /// from the application, [`crate::ua::UserAgent::keep_srtp_keys`]).
    pub spare: Option<&'a [u8]>,
    /// DTLS-SRTP: the peer's `a=fingerprint` value as it gave it (`None`: unknown).
    pub peer_fingerprint: Option<&'a str>,
}

/// The first `a=fingerprint:` value of an SDP text (session or media level, RFC 8122 §5).
pub(crate) fn fingerprint_of(sdp: &[u8]) -> Option<&str> {
    attribute_of(std::str::from_utf8(sdp).ok()?, "a=fingerprint:")
}

/// The value of the first line of `sdp` starting with `prefix` (`a=NAME:`), trimmed.
fn attribute_of<'a>(sdp: &'a str, prefix: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(prefix))
        .map(str::trim)
}

/// How an SDP's first audio stream protects its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    /// SDES (RFC 4568): `RTP/SAVP` or an `a=crypto` line.
    Sdes,
    /// DTLS-SRTP (RFC 5763): a `UDP/TLS/…` transport or an `a=fingerprint`.
    Dtls,
}

/// The security an SDP text offers or describes (its first audio stream's transport and
/// lines, and a session-level fingerprint, RFC 8122 §5).
fn security_of(sdp: &str) -> Security {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    let mut fingerprint = false;
    let Some(m) = lines.find_map(|l| {
        fingerprint |= l.starts_with("a=fingerprint:");
        l.strip_prefix("m=audio ")
    }) else {
        return Security::Plain;
    };
    let proto = m.split(' ').filter(|p| !p.is_empty()).nth(1).unwrap_or("");
    let (mut crypto, mut fp) = (false, fingerprint);
    for l in lines.take_while(|l| !l.starts_with("m=")) {
        crypto |= l.starts_with("a=crypto:");
        fp |= l.starts_with("a=fingerprint:");
    }
    if proto.starts_with("UDP/TLS/") || fp {
        Security::Dtls
    } else if proto.starts_with("RTP/SAVP") || crypto {
        Security::Sdes
    } else {
        Security::Plain
    }
}

/// Whether `sdp`'s audio stream has an `a=crypto` line.
pub(crate) fn has_crypto(sdp: &[u8]) -> bool {
    std::str::from_utf8(sdp).is_ok_and(|t| !crypto_lines(t).is_empty())
}

/// What an offer does to the call's security, by the group's rule: `Err` refuses it (the
/// Warning), `Ok(Some(keys))` answers with SDES from `keys` (a text holding our `a=crypto`
/// lines), `Ok(None)` answers plain or, for DTLS, as before.
fn security_answer<'a>(
    offer: &str,
    current: &'a str,
    srtp: &CallSrtp<'a>,
) -> Result<Option<&'a str>, &'static str> {
    let ours = match security_of(current) {
        Security::Dtls => Security::Dtls,
        _ if srtp.unkeyed => Security::Plain,
        _ if crypto_lines(current).is_empty() => Security::Plain,
        _ => Security::Sdes,
    };
    let keys = || {
        if crypto_lines(current).is_empty() {
            srtp.spare.and_then(|s| std::str::from_utf8(s).ok())
        } else {
            Some(current)
        }
    };
    match (security_of(offer), srtp.policy) {
        // RFC 5763 §5: another certificate, or roles that clash with the association's
        // (the offer's `a=setup` the same as ours), would need a new handshake.
        (Security::Dtls, SrtpPolicy::Dtls)
            if srtp.peer_fingerprint.is_some_and(|fp| {
                fingerprint_of(offer.as_bytes()).is_some_and(|new| !new.eq_ignore_ascii_case(fp))
            }) =>
        {
            Err(NEW_ASSOCIATION)
        }
        (Security::Dtls, SrtpPolicy::Dtls)
            if matches!(
                (
                    attribute_of(offer, "a=setup:"),
                    attribute_of(current, "a=setup:")
                ),
                (Some("active"), Some("active")) | (Some("passive"), Some("passive"))
            ) =>
        {
            Err(NEW_ASSOCIATION)
        }
        (Security::Dtls, SrtpPolicy::Dtls) => Ok(None),
        // RFC 5763 §5 would have a new association; one inside a call is not done.
        (Security::Dtls, _) => Err(
            "305 sipmeter \"the peer's offer inside the call asks for DTLS-SRTP (a=fingerprint); \
             the group's srtp is not dtls\"",
        ),
        (_, SrtpPolicy::Dtls) => Err(
            "399 sipmeter \"the offer drops DTLS-SRTP (no a=fingerprint) and the group \
             requires it (srtp = dtls)\"",
        ),
        (Security::Sdes, SrtpPolicy::Off) if is_savp(offer) => Err(
            "305 sipmeter \"the peer asks for srtp (RTP/SAVP) inside the call and srtp is off\"",
        ),
        // RFC 4568 §7.1.2: `a=crypto` in an RTP/AVP offer may be ignored (plain RTP).
        (Security::Sdes, SrtpPolicy::Off) => Ok(None),
        (Security::Sdes, _) => match keys() {
            Some(k) => Ok(Some(k)),
            None => Err(
                "305 sipmeter \"the peer's offer inside the call brings SRTP keys and this \
                 call has none of its own to answer with\"",
            ),
        },
        (Security::Plain, SrtpPolicy::Sdes) if ours == Security::Sdes => Err(
            "399 sipmeter \"the offer drops SRTP (RTP/AVP without a=crypto) and the group \
             requires it (srtp = sdes)\"",
        ),
        (Security::Plain, _) => Ok(None),
    }
}

/// Whether the first audio stream of `sdp` has an `RTP/SAVP` or `RTP/SAVPF` transport.
fn is_savp(sdp: &str) -> bool {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').filter(|p| !p.is_empty()).nth(1))
        .is_some_and(|p| p.starts_with("RTP/SAVP"))
}

/// The transport our answer names: the offer's when the answer is SDES or plain and the
/// offer's is one of RTP/AVP, RTP/SAVP (RFC 3264 §6: the answer's transport is the offer's);
/// else ours as it is (DTLS).
fn answer_proto(offer: &str) -> Option<&str> {
    offer
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("m=audio "))
        .and_then(|m| m.split(' ').filter(|p| !p.is_empty()).nth(1))
        .filter(|p| matches!(*p, "RTP/AVP" | "RTP/SAVP"))
}

/// Our answer to an offer inside the call (re-INVITE, UPDATE, PRACK), from `current` (our
/// description as last sent: address, port, session lines), `codecs` (the description that
/// lists every codec of ours, when `current` lists fewer) and `in_use` (the codec in use,
/// `NAME/RATE`, when it is not `current`'s first).
///
/// - Codec, RFC 3264 §6.1: the formats of the answer come "from amongst those listed in the
///   offer". The one in use when the offer still lists it, else the offer's first that we
///   have; with the offer's payload type number ("that same payload type number SHOULD be
///   used") and the offer's telephone-event at that clock rate when we have it. One voice
///   codec, as the media crate answers a first offer.
/// - Direction, §6.1 and §8.4: the mirror of the offer's (hold → recvonly).
/// - RTCP multiplexing, RFC 5761 §5.1.1: `a=rtcp-mux` only when the offer has it (a new
///   offer without it stops the muxing, §5.1.3).
/// - Version, §8: one higher when the answer differs from `current`, else the same.
///
/// - Security, by the group's rule ([`SrtpPolicy`], [`security_answer`]): an offer that
///   drops SRTP is refused when SRTP is required (488, `Warning: 399`; RFC 3261 §14.2: the
///   session stays as it was) and answered plain (our `a=crypto` lines left out, `RTP/AVP`)
///   when it is optional; SDES keys in an offer are answered with one `a=crypto` line (RFC
///   4568 §7.1.2), from our description's keys, else the call's spare ones; a DTLS offer
///   outside a DTLS call, or an SRTP offer (`RTP/SAVP`) with srtp off, is refused (305).
///   The answer's transport is the offer's `RTP/AVP` or `RTP/SAVP` (RFC 3264 §6).
///
/// An offer with no audio stream in use, or texts that are not UTF-8, get `current` with
/// only its direction mirrored.
pub(crate) fn answer_in_call(
    current: &Bytes,
    codecs: Option<&[u8]>,
    in_use: Option<&str>,
    offer: &[u8],
    srtp: &CallSrtp<'_>,
) -> InCallAnswer {
    let (Ok(text), Ok(offer_text)) = (std::str::from_utf8(current), std::str::from_utf8(offer))
    else {
        return InCallAnswer::Answer(current.clone(), None);
    };
    let source = codecs
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or(text);
    let want = mirror(offered_direction(offer_text));
    let (Some(theirs), Some(ours)) = (
        audio_stream(offer_text).filter(|a| a.in_use),
        audio_stream(source),
    ) else {
        return InCallAnswer::Answer(with_direction(text, want, None), None);
    };
    let our_voice = ours.voice();
    if our_voice.is_empty() {
        return InCallAnswer::Answer(with_direction(text, want, None), None);
    }
    let offered = theirs.voice();
    let current_codec = in_use.map(str::to_owned).or_else(|| first_voice(text));
    let have = |c: &String| our_voice.iter().find(|(_, o)| o == c).map(|(pt, _)| *pt);
    let Some((pt, codec, our_pt)) = offered
        .iter()
        .find(|(_, c)| Some(c) == current_codec.as_ref() && have(c).is_some())
        .or_else(|| offered.iter().find(|(_, c)| have(c).is_some()))
        .and_then(|(pt, c)| Some((*pt, c.clone(), have(c)?)))
    else {
        return InCallAnswer::Refused(NO_CODEC);
    };
    let rate = codec.split('/').nth(1).unwrap_or("8000");
    let events = theirs.events_at(rate).zip(ours.events_at(rate));
    let keys = match security_answer(offer_text, text, srtp) {
        Ok(keys) => keys,
        Err(warning) => return InCallAnswer::Refused(warning),
    };
    let crypto = match keys.and_then(|k| answer_crypto(offer_text, k)) {
        Some(Some(line)) => Some(line),
        Some(None) => return InCallAnswer::Refused(NO_SUITE),
        None => None,
    };
    let proto = match security_of(offer_text) {
        Security::Dtls => None,
        _ => answer_proto(offer_text),
    };
    let mut lines: Vec<String> = rtpmap_of(&ours, our_pt, pt, &codec).into_iter().collect();
    if let Some((their_ev, our_ev)) = events {
        let event = format!("telephone-event/{rate}");
        lines.extend(rtpmap_of(&ours, our_ev, their_ev, &event));
    }
    let fmtp = |our: &str, their: &str| {
        ours.fmtps
            .iter()
            .find(|(p, _)| *p == our)
            .map(|(_, v)| format!("a=fmtp:{their} {v}"))
    };
    lines.extend(fmtp(our_pt, pt));
    if let Some((their_ev, our_ev)) = events {
        lines.extend(fmtp(our_ev, their_ev));
    }
    lines.extend(crypto);
    let formats = match events {
        Some((ev, _)) => format!("{pt} {ev}"),
        None => pt.to_owned(),
    };
    let audio = AudioRewrite {
        formats: &formats,
        lines,
        // Our codecs' list may mux where the call does not: muxing goes on or stops inside
        // the call, it does not start (the media keeps RTCP where it is).
        rtcp_mux: ours.rtcp_mux && theirs.rtcp_mux && muxes(text),
        // An answer: one line of ours (in `lines`) or none (plain).
        crypto: true,
        proto,
    };
    InCallAnswer::Answer(with_direction(text, want, Some(audio)), Some(codec))
}

/// The `a=rtpmap:` line for our payload type `ours_pt` under the offer's number `pt`: ours,
/// or one naming `codec` when we wrote none but the number changed (a static type we wrote
/// without rtpmap needs none under its own number).
fn rtpmap_of(ours: &AudioStream<'_>, ours_pt: &str, pt: &str, codec: &str) -> Option<String> {
    match ours.rtpmaps.iter().find(|(p, _)| *p == ours_pt) {
        Some((_, v)) => Some(format!("a=rtpmap:{pt} {v}")),
        None => (ours_pt != pt).then(|| format!("a=rtpmap:{pt} {codec}")),
    }
}

/// Our offer in the 2xx to a re-INVITE without one (RFC 3261 §14.2: "the UAS ... MUST
/// generate an offer in the 2xx"): `current` with every codec of `codecs` (when it lists
/// more: the peer may choose again, as CUCM does to re-anchor or resume a call) and our
/// wish as direction: `sendonly` when we hold the call (our description says so), else
/// `sendrecv` (a `recvonly` or `inactive` answer to the peer's hold is no wish of ours: the
/// offerless re-INVITE is how CUCM resumes). RFC 3264 §8: "The offer MAY be identical to
/// the last SDP provided to the other party"; then the `o=` version stays ("If the version
/// in the origin line does not increment, the SDP MUST be identical"), else it is one
/// higher.
pub(crate) fn offer_again(current: &Bytes, codecs: Option<&[u8]>) -> Bytes {
    let Ok(text) = std::str::from_utf8(current) else {
        return current.clone();
    };
    let want = match offered_direction(text) {
        "sendonly" => "sendonly",
        _ => "sendrecv",
    };
    let full = codecs
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| Some((audio_stream(c)?, c)))
        .filter(|(c, _)| c.in_use);
    let Some((full, _)) = full else {
        return with_direction(text, want, None);
    };
    let mut lines: Vec<String> = full
        .rtpmaps
        .iter()
        .map(|(pt, v)| format!("a=rtpmap:{pt} {v}"))
        .collect();
    lines.extend(full.fmtps.iter().map(|(pt, v)| format!("a=fmtp:{pt} {v}")));
    let formats = full.formats.join(" ");
    let audio = AudioRewrite {
        formats: &formats,
        lines,
        rtcp_mux: full.rtcp_mux && muxes(text),
        // An offer: our own crypto lines and transport, as they are.
        crypto: false,
        proto: None,
    };
    with_direction(text, want, Some(audio))
}

/// Whether the first audio stream of our description `text` muxes RTCP (RFC 5761).
fn muxes(text: &str) -> bool {
    audio_stream(text).is_some_and(|a| a.rtcp_mux)
}

/// A new format list for the first audio stream: its payload types, their `a=rtpmap`/`a=fmtp`
/// lines, and whether it muxes RTCP.
struct AudioRewrite<'a> {
    formats: &'a str,
    lines: Vec<String>,
    rtcp_mux: bool,
    /// `lines` holds the answer's one `a=crypto` line, or none: ours are left out.
    crypto: bool,
    /// The transport the stream's `m=` line names instead of ours.
    proto: Option<&'a str>,
}

/// The Warning of a refusal of a DTLS offer that would need a new association.
const NEW_ASSOCIATION: &str = "399 sipmeter \"the offer changes the DTLS association (another \
     a=fingerprint, or a=setup roles reversed): a new DTLS handshake inside a call (RFC 5763 \
     §5) is not done\"";

/// The Warning of a refusal of SDES keys in none of our suites.
const NO_SUITE: &str = "305 sipmeter \"the offer's a=crypto lines name none of our SRTP suites\"";

/// The SRTP suites the media crate runs (`media::srtp::Suite`), by their SDES names, with
/// their `key||salt` length in bytes (one key format per length: RFC 4568 §6.1, RFC 6188
/// §6, RFC 7714 §12).
const SUITES: [(&str, usize); 6] = [
    ("AEAD_AES_256_GCM", 44),
    ("AEAD_AES_128_GCM", 28),
    ("AES_256_CM_HMAC_SHA1_80", 46),
    ("AES_256_CM_HMAC_SHA1_32", 46),
    ("AES_CM_128_HMAC_SHA1_80", 30),
    ("AES_CM_128_HMAC_SHA1_32", 30),
];

/// The `key||salt` length of a suite we run.
fn master_len(suite: &str) -> Option<usize> {
    SUITES.iter().find(|(s, _)| *s == suite).map(|(_, n)| *n)
}

/// `(tag, suite, key parameters and the rest)` of each `a=crypto:` line of `sdp`'s audio
/// stream (RFC 4568 §9.1); of every line when `sdp` has no `m=` line (the bare lines of
/// [`CallSrtp::spare`]).
fn crypto_lines(sdp: &str) -> Vec<(&str, &str, &str)> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    let bare = !sdp.lines().any(|l| l.starts_with("m="));
    if !bare && !lines.any(is_audio) {
        return Vec::new();
    }
    lines
        .take_while(|l| !l.starts_with("m="))
        .filter_map(|l| {
            let mut parts = l.strip_prefix("a=crypto:")?.splitn(3, ' ');
            Some((parts.next()?, parts.next()?, parts.next()?.trim()))
        })
        .collect()
}

/// The answer's one `a=crypto` line to an in-call offer with keys (RFC 4568 §7.1.2): the
/// offer's first line of a suite we run and have a key for, under its tag, with our key
/// parameters of that suite, else of a suite of ours with the same key format (our answer as
/// the callee had one line: `_80` and `_32` of one cipher share it). `None` when the offer
/// or our description has no crypto line (the media decides about plain RTP); `Some(None)`
/// when we have no key for any of the offer's suites (the offer is refused).
fn answer_crypto(offer: &str, ours: &str) -> Option<Option<String>> {
    let (theirs, ours) = (crypto_lines(offer), crypto_lines(ours));
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let key_for = |suite: &str| {
        let len = master_len(suite)?;
        ours.iter()
            .find(|o| o.1 == suite)
            .or_else(|| ours.iter().find(|o| master_len(o.1) == Some(len)))
            .map(|o| o.2)
    };
    Some(theirs.iter().find_map(|(tag, suite, _)| {
        key_for(suite).map(|key| format!("a=crypto:{tag} {suite} {key}"))
    }))
}

/// Our answer's direction to an offer of `direction` (RFC 3264 §6.1).
fn mirror(direction: &str) -> &'static str {
    match direction {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

/// `text` with its direction attributes replaced by `want`, written once at the end of its
/// first audio stream, and that stream's formats replaced by `audio`'s when given; its `o=`
/// version one higher when that changed the description (RFC 3264 §8), `text` as it is
/// otherwise or when it has no audio stream (nothing to say then).
fn with_direction(text: &str, want: &str, audio: Option<AudioRewrite<'_>>) -> Bytes {
    if !text.lines().any(is_audio) {
        return Bytes::from(text.to_owned());
    }
    let mut out = String::with_capacity(text.len() + 16);
    let push = |out: &mut String, line: &str| {
        out.push_str(line);
        out.push_str("\r\n");
    };
    // A description without a direction attribute is sendrecv (RFC 4566 §6): it gets one
    // only when that is not what is wanted.
    let explicit = text
        .lines()
        .any(|l| direction_of(l.trim_end_matches('\r')).is_some());
    let write_direction = explicit || offered_direction(text) != want;
    let close = |out: &mut String| {
        if audio.as_ref().is_some_and(|a| a.rtcp_mux) {
            push(out, "a=rtcp-mux");
        }
        if write_direction {
            push(out, &format!("a={want}"));
        }
    };
    let (mut in_audio, mut written) = (false, false);
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            if in_audio && !written {
                close(&mut out);
                written = true;
            }
            in_audio = is_audio(line) && !written;
            if let (true, Some(a)) = (in_audio, &audio) {
                let mut parts = line.split(' ').filter(|p| !p.is_empty());
                let (port, proto) = (parts.nth(1).unwrap_or("0"), parts.next().unwrap_or(""));
                let proto = a.proto.unwrap_or(proto);
                push(&mut out, &format!("m=audio {port} {proto} {}", a.formats));
                for l in &a.lines {
                    push(&mut out, l);
                }
                continue;
            }
        }
        let rewritten = in_audio
            && audio.as_ref().is_some_and(|a| {
                line.starts_with("a=rtpmap:")
                    || line.starts_with("a=fmtp:")
                    || line == "a=rtcp-mux"
                    || (a.crypto && line.starts_with("a=crypto:"))
            });
        if direction_of(line).is_some() || rewritten {
            continue;
        }
        push(&mut out, line);
    }
    if in_audio && !written {
        close(&mut out);
    }
    let same = out.split("\r\n").filter(|l| !l.is_empty()).eq(text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty()));
    if same {
        return Bytes::from(text.to_owned());
    }
    let out: String = out
        .split_inclusive("\r\n")
        .map(|l| match l.strip_prefix("o=") {
            Some(o) => format!("o={}\r\n", bump_version(o.trim_end_matches("\r\n"))),
            None => l.to_owned(),
        })
        .collect();
    Bytes::from(out)
}

/// The session version of `sdp`'s `o=` line (its third field), if it has one.
fn version_of(sdp: &str) -> Option<u64> {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("o="))?
        .split(' ')
        .nth(2)?
        .parse()
        .ok()
}

/// Our `offer`, made before `last` (our description as sent since: an answer we gave to
/// the peer's offer while ours waited after a 491), sent now: RFC 3264 §8, "the version in
/// the origin field MUST increment by one from the previous SDP", so its `o=` version
/// becomes one above `last`'s when it is not above it already. As it is when it is `last`,
/// or either text has no readable version.
pub(crate) fn offer_after(last: &[u8], offer: &Bytes) -> Bytes {
    let (Ok(last), Ok(text)) = (std::str::from_utf8(last), std::str::from_utf8(offer)) else {
        return offer.clone();
    };
    match (version_of(last), version_of(text)) {
        (Some(l), Some(v)) if v <= l && text != last => {
            let out: String = text
                .split_inclusive('\n')
                .map(|line| match line.strip_prefix("o=") {
                    Some(o) => {
                        let end = &o[o.trim_end_matches(['\r', '\n']).len()..];
                        let mut fields: Vec<&str> =
                            o.trim_end_matches(['\r', '\n']).split(' ').collect();
                        let version = l.wrapping_add(1).to_string();
                        fields[2] = &version;
                        format!("o={}{end}", fields.join(" "))
                    }
                    None => line.to_owned(),
                })
                .collect();
            Bytes::from(out)
        }
        _ => offer.clone(),
    }
}

/// The `o=` value with its session version (the third field) one higher; as it is when that
/// field is not a number.
fn bump_version(o: &str) -> String {
    let fields: Vec<&str> = o.split(' ').collect();
    match fields.get(2).and_then(|v| v.parse::<u64>().ok()) {
        Some(v) => {
            let mut f: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
            f[2] = v.wrapping_add(1).to_string();
            f.join(" ")
        }
        None => o.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_description_offered_anew_is_sendrecv() {
        let held = Bytes::from_static(
            b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n",
        );
        let new = not_held(&held);
        assert!(
            new.ends_with(b"m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"),
            "{new:?}"
        );
        assert_eq!(
            offered_direction(std::str::from_utf8(&new).unwrap()),
            "sendrecv"
        );
        let plain = Bytes::from_static(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(not_held(&plain), plain);
    }

    const OURS: &str = "v=0\r\no=sipmeter 7 1 IN IP4 127.0.0.1\r\ns=sipmeter\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\na=sendrecv\r\n";

    /// An offer of PCMU alone.
    fn voice_only(direction: &str) -> String {
        format!(
            "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{direction}"
        )
    }

    /// An offer of PCMU and telephone-event (all that [`OURS`] has).
    fn offer(direction: &str) -> String {
        voice_only(direction).replace("RTP/AVP 0", "RTP/AVP 0 101")
            + "a=rtpmap:101 telephone-event/8000\r\n"
    }

    /// Our answer to `offer`, from `ours`, and the codec it chose (srtp optional: it
    /// follows every offer it can).
    fn answer_with(ours: &str, in_use: Option<&str>, offer: &str) -> (String, Option<String>) {
        let optional = CallSrtp {
            policy: SrtpPolicy::Optional,
            ..CallSrtp::default()
        };
        match under(&optional, ours, in_use, offer) {
            InCallAnswer::Answer(a, codec) => (String::from_utf8(a.to_vec()).unwrap(), codec),
            InCallAnswer::Refused(w) => panic!("refused ({w}): {offer}"),
        }
    }

    /// Our answer to `offer` from `ours` under the group's rule `srtp`.
    fn under(srtp: &CallSrtp<'_>, ours: &str, in_use: Option<&str>, offer: &str) -> InCallAnswer {
        let ours = Bytes::from(ours.to_owned());
        answer_in_call(&ours, None, in_use, offer.as_bytes(), srtp)
    }

    fn answer(offer: &str) -> String {
        answer_with(OURS, None, offer).0
    }

    fn refused(ours: &[u8], offer: &[u8]) -> bool {
        let srtp = CallSrtp {
            policy: SrtpPolicy::Optional,
            ..CallSrtp::default()
        };
        let ours = Bytes::from(ours.to_vec());
        matches!(
            answer_in_call(&ours, None, None, offer, &srtp),
            InCallAnswer::Refused(_)
        )
    }

    /// RFC 4568 §5.1.2 / §7.1.2: an answer carries exactly one `a=crypto` line, with the tag
    /// and suite of the offer's first line it accepts. Our description as the caller has two
    /// lines (tags 1 and 2, one per suite); a PBX's re-INVITE (hold) offering its own tag 7 for
    /// the _80 suite gets one line back: tag 7, _80, our _80 key; an offer of the _32 suite
    /// only gets our _32 line under its tag. An SRTP offer of suites we have none of is
    /// refused; a plain offer leaves our lines as they are. Before: both our lines went back
    /// unchanged (an answer with two crypto lines, neither with the offer's tag).
    #[test]
    fn an_in_call_answer_carries_one_crypto_line_with_the_offers_tag() {
        const K80: &str = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        const K32: &str = "inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";
        let ours = OURS.replace("RTP/AVP", "RTP/SAVP").replace(
            "a=ptime:20\r\n",
            &format!(
                "a=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {K80}\r\n\
                 a=crypto:2 AES_CM_128_HMAC_SHA1_32 {K32}\r\n"
            ),
        );
        let srtp_offer =
            |lines: &str| offer("a=sendonly\r\n").replace("RTP/AVP", "RTP/SAVP") + lines;
        let crypto = |a: &str| -> Vec<String> {
            a.lines()
                .filter(|l| l.starts_with("a=crypto:"))
                .map(str::to_owned)
                .collect()
        };
        let pbx80 = "a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        let (a, _) = answer_with(&ours, None, &srtp_offer(pbx80));
        assert_eq!(
            crypto(&a),
            [format!("a=crypto:7 AES_CM_128_HMAC_SHA1_80 {K80}")],
            "{a}"
        );
        assert!(a.contains("a=recvonly\r\n"), "{a}");
        let pbx32 = "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        let (a, _) = answer_with(&ours, None, &srtp_offer(&format!("{pbx32}{pbx80}")));
        assert_eq!(
            crypto(&a),
            [format!("a=crypto:3 AES_CM_128_HMAC_SHA1_32 {K32}")],
            "{a}"
        );
        // Our answer as the callee had one line (_80): an offer of _32 reuses its key.
        let callee = ours.replace(&format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 {K32}\r\n"), "");
        let (a, _) = answer_with(&callee, None, &srtp_offer(pbx32));
        assert_eq!(
            crypto(&a),
            [format!("a=crypto:3 AES_CM_128_HMAC_SHA1_32 {K80}")],
            "{a}"
        );
        // A suite we run but have no key of its format for (our lines are AES-CM-128): refused.
        let gcm = "a=crypto:1 AEAD_AES_128_GCM inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        assert!(refused(ours.as_bytes(), srtp_offer(gcm).as_bytes()));
        // With a GCM line of ours (the default offer has one per suite), the offer's GCM
        // line is answered with our key of it; a suite the media crate lacks is skipped.
        const KGCM: &str = "inline:R0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NNR0NN";
        let with_gcm = ours.replace(
            "a=crypto:1 ",
            &format!("a=crypto:3 AEAD_AES_256_GCM {KGCM}\r\na=crypto:1 "),
        );
        let f8 =
            "a=crypto:1 F8_128_HMAC_SHA1_80 inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        let gcm256 = "a=crypto:2 AEAD_AES_256_GCM inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        let (a, _) = answer_with(
            &with_gcm,
            None,
            &srtp_offer(&format!("{f8}{gcm256}{pbx80}")),
        );
        assert_eq!(
            crypto(&a),
            [format!("a=crypto:2 AEAD_AES_256_GCM {KGCM}")],
            "{a}"
        );
    }

    /// An SDES call (our description `RTP/SAVP` with keys) whose peer re-offers plain
    /// `RTP/AVP` without keys (music on hold, a gateway without SRTP): with srtp required
    /// the offer is refused with `Warning: 399` naming why (RFC 3261 §14.2: the session
    /// stays); optional follows it: the answer is `RTP/AVP` without our `a=crypto` lines.
    /// A DTLS call refuses a plain or SDES offer likewise; a DTLS offer outside a DTLS call
    /// is refused (305). Before: every one was answered with our two `a=crypto` lines on
    /// `RTP/SAVP` (the call stayed SRTP, the answer did not match the offer's transport).
    #[test]
    fn an_offer_that_drops_srtp_is_refused_when_required_and_followed_when_optional() {
        const K80: &str = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let sdes = OURS.replace("RTP/AVP", "RTP/SAVP").replace(
            "a=ptime:20\r\n",
            &format!("a=ptime:20\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 {K80}\r\n"),
        );
        let plain = offer("a=sendonly\r\n");
        let rule = |policy| CallSrtp {
            policy,
            ..CallSrtp::default()
        };
        match under(&rule(SrtpPolicy::Sdes), &sdes, None, &plain) {
            InCallAnswer::Refused(w) => {
                assert!(w.starts_with("399 sipmeter \"the offer drops SRTP"), "{w}");
                assert!(w.contains("srtp = sdes"), "{w}");
            }
            a => panic!("{a:?}"),
        }
        let (a, _) = answer_with(&sdes, None, &plain);
        assert!(a.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{a}");
        assert!(!a.contains("a=crypto"), "{a}");
        assert!(a.contains("a=recvonly\r\n"), "{a}");
        assert!(a.contains(" 2 IN IP4 "), "the version goes up: {a}");
        // DTLS: our description has a fingerprint; a plain or an SDES offer drops it.
        let fp = "a=fingerprint:sha-256 AB:CD\r\na=setup:active\r\n";
        let dtls = OURS.replace("RTP/AVP", "UDP/TLS/RTP/SAVP") + fp;
        let sdes_offer = plain.replace("RTP/AVP", "RTP/SAVP")
            + "a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        for o in [&plain, &sdes_offer] {
            match under(&rule(SrtpPolicy::Dtls), &dtls, None, o) {
                InCallAnswer::Refused(w) => assert!(w.contains("drops DTLS-SRTP"), "{w}"),
                a => panic!("{a:?}"),
            }
        }
        // A DTLS re-offer in a DTLS call is answered as before (the association is kept):
        // the peer's fingerprint as it was, `a=setup:actpass` (or the peer's role kept).
        let peer = "a=fingerprint:sha-256 EF:01\r\n";
        let dtls_offer =
            plain.replace("RTP/AVP", "UDP/TLS/RTP/SAVP") + peer + "a=setup:actpass\r\n";
        let known = CallSrtp {
            peer_fingerprint: Some("sha-256 EF:01"),
            ..rule(SrtpPolicy::Dtls)
        };
        for o in [&dtls_offer, &dtls_offer.replace("actpass", "passive")] {
            assert!(
                matches!(under(&known, &dtls, None, o), InCallAnswer::Answer(..)),
                "{o}"
            );
        }
        // RFC 5763 §5: another certificate, or our role asked of the peer (active to our
        // active), would need a new handshake: refused by name (stretch: not done).
        for o in [
            dtls_offer.replace("EF:01", "EF:02"),
            dtls_offer.replace("actpass", "active"),
        ] {
            match under(&known, &dtls, None, &o) {
                InCallAnswer::Refused(w) => {
                    assert!(
                        w.starts_with("399 ") && w.contains("new DTLS handshake"),
                        "{w}"
                    );
                }
                a => panic!("{a:?}"),
            }
        }
        // A DTLS offer in an SDES or a plain call: refused.
        for (policy, ours) in [
            (SrtpPolicy::Sdes, &sdes),
            (SrtpPolicy::Optional, &OURS.to_owned()),
        ] {
            match under(&rule(policy), ours, None, &dtls_offer) {
                InCallAnswer::Refused(w) => {
                    assert!(w.starts_with("305 ") && w.contains("DTLS"), "{w}")
                }
                a => panic!("{a:?}"),
            }
        }
    }

    /// A plain call whose peer re-offers SRTP: srtp off refuses `RTP/SAVP` (305 "the peer
    /// asks for srtp", as a first offer) and ignores `a=crypto` on `RTP/AVP`; optional takes
    /// it with the call's keys: those of our description when it has them (an optional
    /// offer the peer answered plain), else the spare ones the application gave; with none,
    /// refused by name. Before: a plain answer (`RTP/AVP`, no keys) to `RTP/SAVP`.
    #[test]
    fn an_offer_that_brings_srtp_into_a_plain_call_is_taken_when_optional() {
        const SPARE: &str = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        let savp = offer("").replace("RTP/AVP", "RTP/SAVP")
            + "a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:UEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJYUEJY\r\n";
        let off = CallSrtp::default();
        match under(&off, OURS, None, &savp) {
            InCallAnswer::Refused(w) => assert!(w.contains("the peer asks for srtp"), "{w}"),
            a => panic!("{a:?}"),
        }
        let avp_crypto = savp.replace("RTP/SAVP", "RTP/AVP");
        match under(&off, OURS, None, &avp_crypto) {
            InCallAnswer::Answer(a, _) => {
                let a = String::from_utf8(a.to_vec()).unwrap();
                assert!(
                    a.contains("RTP/AVP 0 101") && !a.contains("a=crypto"),
                    "{a}"
                );
            }
            a => panic!("{a:?}"),
        }
        let mut optional = CallSrtp {
            policy: SrtpPolicy::Optional,
            ..CallSrtp::default()
        };
        match under(&optional, OURS, None, &savp) {
            InCallAnswer::Refused(w) => assert!(w.contains("none of its own"), "{w}"),
            a => panic!("{a:?}"),
        }
        optional.spare = Some(SPARE.as_bytes());
        match under(&optional, OURS, None, &savp) {
            InCallAnswer::Answer(a, _) => {
                let a = String::from_utf8(a.to_vec()).unwrap();
                assert!(a.contains("m=audio 30000 RTP/SAVP 0 101\r\n"), "{a}");
                assert!(
                    a.contains("a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"),
                    "{a}"
                );
            }
            a => panic!("{a:?}"),
        }
        // Our optional offer (RTP/AVP with a key) was answered plain: its key answers now.
        let unkeyed = OURS.replace("a=ptime:20\r\n", &format!("a=ptime:20\r\n{SPARE}"));
        optional.spare = None;
        optional.unkeyed = true;
        match under(&optional, &unkeyed, None, &savp) {
            InCallAnswer::Answer(a, _) => {
                let a = String::from_utf8(a.to_vec()).unwrap();
                assert!(a.contains("RTP/SAVP") && a.contains("a=crypto:4 "), "{a}");
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn an_offer_without_our_codec_is_told_apart() {
        let ours = OURS.as_bytes();
        // PCMU by rtpmap, by static type alone, in another case, among others.
        assert!(!refused(ours, voice_only("").as_bytes()));
        let bare = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\n";
        assert!(!refused(ours, bare.as_bytes()));
        let lower = voice_only("").replace("PCMU/8000", "pcmu/8000");
        assert!(!refused(ours, lower.as_bytes()));
        // PCMA only, and PCMA with telephone-event (which carries no voice): refused.
        let pcma = voice_only("")
            .replace("RTP/AVP 0", "RTP/AVP 8")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
        assert!(refused(ours, pcma.as_bytes()), "{pcma}");
        let with_events =
            pcma.replace("RTP/AVP 8", "RTP/AVP 8 101") + "a=rtpmap:101 telephone-event/8000\r\n";
        assert!(refused(ours, with_events.as_bytes()));
        // PCMU under a dynamic payload type is PCMU.
        let dynamic = voice_only("")
            .replace("RTP/AVP 0", "RTP/AVP 96")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 PCMU/8000");
        assert!(!refused(ours, dynamic.as_bytes()));
        // A disabled audio stream, no audio, or text we cannot read: not refused here.
        let disabled = pcma.replace("m=audio 40000", "m=audio 0");
        assert!(!refused(ours, disabled.as_bytes()));
        assert!(!refused(ours, b"v=0\r\nm=video 5000 RTP/AVP 96\r\n"));
        assert!(!refused(ours, b"\xff\xfe"));
    }

    /// Ours offered PCMU and PCMA (with telephone-event, RTCP muxed).
    const BOTH: &str = "v=0\r\no=sipmeter 7 1 IN IP4 127.0.0.1\r\ns=sipmeter\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n";

    /// RFC 3264 §6.1: an offer of PCMA (and telephone-event under another number) in a PCMU
    /// call, when we offered both, is answered with PCMA under the offer's numbers, one
    /// version higher; the codec in use is kept while the offer lists it.
    #[test]
    fn an_offer_of_another_of_our_codecs_is_answered_with_it() {
        let pcma = "v=0\r\no=pbx 9 3 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                    m=audio 40000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n\
                    a=rtpmap:96 telephone-event/8000\r\na=rtcp-mux\r\n";
        let (a, codec) = answer_with(BOTH, None, pcma);
        assert_eq!(codec.as_deref(), Some("PCMA/8000"));
        assert_eq!(
            a,
            "v=0\r\no=sipmeter 7 2 IN IP4 127.0.0.1\r\ns=sipmeter\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio 30000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:20\r\na=rtcp-mux\r\n\
             a=sendrecv\r\n"
        );
        // Both offered, PCMA first: PCMU (in use, BOTH's first) is kept.
        let both = pcma.replace("RTP/AVP 8 96", "RTP/AVP 8 0 96");
        let (a, codec) = answer_with(BOTH, None, &both);
        assert_eq!(codec.as_deref(), Some("PCMU/8000"));
        assert!(a.contains("m=audio 30000 RTP/AVP 0 96\r\n"), "{a}");
        // PCMA in use (the peer's answer chose it): kept too.
        let (_, codec) = answer_with(BOTH, Some("PCMA/8000"), &both);
        assert_eq!(codec.as_deref(), Some("PCMA/8000"));
        // No telephone-event offered: none answered.
        let (a, _) = answer_with(BOTH, None, &pcma.replace(" 96\r\n", "\r\n"));
        assert!(
            a.contains("m=audio 30000 RTP/AVP 8\r\n") && !a.contains("event"),
            "{a}"
        );
    }

    /// Our codecs' list muxes RTCP, the call does not (our first answer went without): an
    /// offer with `a=rtcp-mux` inside the call is answered without it, and our offer in a 2xx
    /// has none either (muxing does not start inside a call).
    #[test]
    fn muxing_does_not_start_inside_a_call() {
        let offer = "v=0\r\no=pbx 9 3 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
                     a=rtcp-mux\r\n";
        let unmuxed = BOTH.replace("a=rtcp-mux\r\n", "");
        let current = Bytes::from(unmuxed.clone());
        let srtp = CallSrtp::default();
        let a = match answer_in_call(
            &current,
            Some(BOTH.as_bytes()),
            None,
            offer.as_bytes(),
            &srtp,
        ) {
            InCallAnswer::Answer(a, _) => String::from_utf8(a.to_vec()).unwrap(),
            InCallAnswer::Refused(w) => panic!("refused: {w}"),
        };
        assert!(
            a.contains("RTP/AVP 8 101") && !a.contains("rtcp-mux"),
            "{a}"
        );
        assert_eq!(offer_again(&current, Some(BOTH.as_bytes())), current);
    }

    /// RFC 5761 §5.1.3: a new offer without `a=rtcp-mux` while we mux is answered without
    /// it (RTCP on its own port again).
    #[test]
    fn an_offer_without_rtcp_mux_is_answered_without_it() {
        let offer = "v=0\r\no=pbx 9 3 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (a, _) = answer_with(BOTH, None, offer);
        assert!(!a.contains("rtcp-mux"), "{a}");
        assert!(a.contains("o=sipmeter 7 2 "), "{a}");
        let (a, _) = answer_with(BOTH, None, &format!("{offer}a=rtcp-mux\r\n"));
        assert_eq!(
            a,
            BOTH.replace("RTP/AVP 0 8 101", "RTP/AVP 0 101")
                .replace("a=rtpmap:8 PCMA/8000\r\n", "")
                .replace("7 1 IN", "7 2 IN")
        );
    }

    /// RFC 3261 §14.2, RFC 3264 §8: the offer in our 2xx to a re-INVITE without one is our
    /// description with every codec we have, sendrecv unless we hold; unchanged (same
    /// version) when that is what we last sent, else one version higher.
    #[test]
    fn the_offer_in_our_2xx_lists_all_our_codecs() {
        let current = Bytes::from_static(BOTH.as_bytes());
        assert_eq!(offer_again(&current, None), current);
        let answered = BOTH
            .replace("RTP/AVP 0 8 101", "RTP/AVP 8")
            .replace("a=rtpmap:0 PCMU/8000\r\n", "")
            .replace(
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
                "",
            )
            .replace("a=sendrecv", "a=recvonly")
            .replace("7 1 IN", "7 4 IN");
        let offer = offer_again(&Bytes::from(answered), Some(BOTH.as_bytes()));
        assert_eq!(
            std::str::from_utf8(&offer).unwrap(),
            BOTH.replace("7 1 IN", "7 5 IN")
        );
        assert!(keeps_our_first_codec(
            BOTH.as_bytes(),
            b"v=0\r\nm=audio 5 RTP/AVP 0 8\r\n"
        ));
        assert!(!keeps_our_first_codec(
            BOTH.as_bytes(),
            b"v=0\r\nm=audio 5 RTP/AVP 8 0\r\n"
        ));
        assert!(!keeps_our_first_codec(
            BOTH.as_bytes(),
            b"v=0\r\nm=audio 0 RTP/AVP 0\r\n"
        ));
        // Our offer without media (port 0): the answer's codec is still read without
        // `answered_codec`, and says what that would.
        let no_media = BOTH.replacen("m=audio 30000", "m=audio 0", 1);
        let answer = b"v=0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(keeps_our_first_codec(no_media.as_bytes(), answer));
        assert_eq!(
            answered_codec(no_media.as_bytes(), answer),
            codec_in(no_media.as_bytes())
        );
        assert!(!keeps_our_first_codec(
            no_media.as_bytes(),
            b"v=0\r\nm=audio 6000 RTP/AVP 8\r\n"
        ));
        // A static number the answer maps to another codec, or to the same in other
        // letters; an `m=audio` that does not start a line.
        let g722 = BOTH.replace("RTP/AVP 0 8 101", "RTP/AVP 9 0 101").replace(
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000",
        );
        let misnamed =
            "v=0\r\nm=audio 6000 RTP/AVP 9 0\r\na=rtpmap:9 G722/16000\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(!keeps_our_first_codec(g722.as_bytes(), misnamed.as_bytes()));
        assert_eq!(
            answered_codec(g722.as_bytes(), misnamed.as_bytes()).as_deref(),
            Some("PCMU/8000")
        );
        let lower = "v=0\r\nm=audio 6000 RTP/AVP 9\r\na=rtpmap:9 g722/8000\r\n";
        assert!(keeps_our_first_codec(g722.as_bytes(), lower.as_bytes()));
        assert_eq!(
            answered_codec(g722.as_bytes(), lower.as_bytes()),
            codec_in(g722.as_bytes())
        );
        // An rtpmap of the answer's video stream says nothing of its audio.
        let video =
            "v=0\r\nm=audio 6000 RTP/AVP 0\r\nm=video 6002 RTP/AVP 0\r\na=rtpmap:0 H261/90000\r\n";
        assert!(keeps_our_first_codec(BOTH.as_bytes(), video.as_bytes()));
        assert!(!keeps_our_first_codec(
            BOTH.as_bytes(),
            b"v=0\r\ns=m=audio 5 RTP/AVP 0\r\n"
        ));
        let held = Bytes::from(BOTH.replace("a=sendrecv", "a=sendonly"));
        assert_eq!(offer_again(&held, None), held);
        assert_eq!(
            answered_codec(BOTH.as_bytes(), b"v=0\r\nm=audio 5 RTP/AVP 18 8 0\r\n").as_deref(),
            Some("PCMA/8000")
        );
    }

    /// RFC 3264 §8: an offer made before our last description goes out one version above
    /// it; one above already, the same text, or no version: as it is.
    #[test]
    fn an_offer_sent_after_our_answer_takes_the_next_version() {
        let offer = Bytes::from(OURS.replace("a=sendrecv", "a=sendonly"));
        let answered = OURS
            .replace("7 1 IN", "7 2 IN")
            .replace("a=sendrecv", "a=recvonly");
        let again = offer_after(answered.as_bytes(), &offer);
        assert_eq!(
            std::str::from_utf8(&again).unwrap(),
            OURS.replace("a=sendrecv", "a=sendonly")
                .replace("7 1 IN", "7 3 IN")
        );
        assert_eq!(offer_after(OURS.as_bytes(), &again), again);
        assert_eq!(offer_after(&offer, &offer), offer);
        let bare = Bytes::from_static(b"v=0 a hold\r\n");
        assert_eq!(offer_after(answered.as_bytes(), &bare), bare);
    }

    #[test]
    fn hold_is_answered_recvonly_with_a_higher_version() {
        let a = answer(&offer("a=sendonly\r\n"));
        assert_eq!(
            a,
            OURS.replace("a=sendrecv", "a=recvonly")
                .replace("sipmeter 7 1", "sipmeter 7 2")
        );
        assert_eq!(
            answer(&offer("a=inactive\r\n"))
                .matches("a=inactive")
                .count(),
            1
        );
        assert!(answer(&offer("a=recvonly\r\n")).contains("\r\na=sendonly\r\n"));
    }

    /// RFC 3264 §8.4: `c=0.0.0.0` (the RFC 2543 hold, often with no direction attribute)
    /// means nothing is to be sent to the offerer: answered `recvonly`, as the media
    /// crate answers such a first offer; at the stream's level too, and `::` for IPv6.
    #[test]
    fn an_offer_with_c_0_0_0_0_is_a_hold() {
        let held = offer("").replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
        assert!(answer(&held).contains("\r\na=recvonly\r\n"), "{held}");
        let held_stream = offer("c=IN IP6 ::\r\n");
        assert!(answer(&held_stream).contains("\r\na=recvonly\r\n"));
        let recvonly = held.replace("PCMU/8000\r\n", "PCMU/8000\r\na=recvonly\r\n");
        assert!(
            answer(&recvonly).contains("\r\na=inactive\r\n"),
            "{recvonly}"
        );
        // The origin's 0.0.0.0 is not the connection's.
        let origin = offer("").replace("IN IP4 10.0.0.1\r\ns=", "IN IP4 0.0.0.0\r\ns=");
        assert_eq!(answer(&origin), OURS, "{origin}");
    }

    #[test]
    fn an_offer_like_the_last_one_gets_the_same_description() {
        // RFC 3264 §8: unchanged, the version stays.
        assert_eq!(answer(&offer("a=sendrecv\r\n")), OURS);
        assert_eq!(answer(&offer("")), OURS, "no attribute is sendrecv");
        // RFC 3264 §6.1: no telephone-event offered, none answered (a new description).
        let a = answer(&voice_only(""));
        assert!(a.contains("RTP/AVP 0\r\n") && a.contains(" 7 2 IN"), "{a}");
    }

    #[test]
    fn a_session_level_direction_and_a_rejected_stream_count() {
        let session = "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\na=sendonly\r\nt=0 0\r\n\
                       m=audio 40000 RTP/AVP 0\r\n";
        assert!(answer(session).contains("a=recvonly"));
        let rejected =
            "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert!(answer(rejected).contains("a=inactive"));
        // A video stream's attribute is not the audio's.
        let video = "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 5 RTP/AVP 96\r\n\
                     a=sendonly\r\nm=audio 40000 RTP/AVP 0 101\r\n\
                     a=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(answer(video), OURS);
    }

    #[test]
    fn text_that_is_not_sdp_is_left_alone() {
        let ours = Bytes::from_static(b"v=0\r\n");
        let a = |ours: &Bytes, offer: &[u8]| match answer_in_call(
            ours,
            None,
            None,
            offer,
            &CallSrtp::default(),
        ) {
            InCallAnswer::Answer(a, _) => a,
            InCallAnswer::Refused(w) => panic!("refused: {w}"),
        };
        assert_eq!(a(&ours, offer("a=sendonly\r\n").as_bytes()), ours);
        let bad = Bytes::from_static(&[0xff, 0xfe]);
        assert_eq!(a(&bad, b"a=sendonly\r\n"), bad);
    }

    #[test]
    fn a_rejecting_answer_has_each_offered_stream_with_port_0_in_order() {
        let offer = "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n\
                     m=video 40002 RTP/AVP 96\r\n";
        let a = rejecting_answer(offer.as_bytes(), "127.0.0.1");
        assert_eq!(
            std::str::from_utf8(&a).unwrap(),
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 0 RTP/AVP 8 0 101\r\nm=video 0 RTP/AVP 96\r\n"
        );
        let a = rejecting_answer(offer.as_bytes(), "[::1]");
        assert!(a.starts_with(b"v=0\r\no=- 0 0 IN IP6 ::1\r\n"), "{a:?}");
    }
}
