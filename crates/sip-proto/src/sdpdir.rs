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

/// The codecs (`NAME/RATE`, upper case) of the first audio stream of `sdp`, telephone-event
/// and comfort noise left out (they carry no voice), and whether that stream is in use
/// (port not 0). `None` when the text has no audio stream.
fn audio_codecs(sdp: &str) -> Option<(Vec<String>, bool)> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    let m = lines.find_map(|l| l.strip_prefix("m=audio "))?;
    let mut parts = m.split(' ').filter(|p| !p.is_empty());
    let in_use = parts.next() != Some("0");
    let formats: Vec<&str> = parts.skip(1).collect();
    let mut rtpmaps: Vec<(&str, &str)> = Vec::new();
    for line in lines.take_while(|l| !l.starts_with("m=")) {
        if let Some((pt, enc)) = line
            .strip_prefix("a=rtpmap:")
            .and_then(|r| r.split_once(' '))
        {
            rtpmaps.push((pt.trim(), enc.trim()));
        }
    }
    let codecs = formats
        .iter()
        .filter_map(|pt| {
            let name = match rtpmaps.iter().find(|(p, _)| p == pt) {
                // NAME/RATE[/CHANNELS]: the channels do not make another codec here.
                Some((_, enc)) => enc.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"),
                // RFC 3551 §6's static payload types (an rtpmap is optional for them).
                None => match *pt {
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
            let name = name.to_ascii_uppercase();
            (!name.starts_with("TELEPHONE-EVENT/") && !name.starts_with("CN/")).then_some(name)
        })
        .collect();
    Some((codecs, in_use))
}

/// Whether an offer inside the call can be answered with our description: its audio stream
/// lists one of our voice codecs (RFC 3264 §6.1: the answer's formats come from the
/// offer's), or it has no audio stream in use (a stream disabled or put aside is answered as
/// before). True when either text cannot be read: only an offer read and found without our
/// codecs is refused.
pub(crate) fn offer_shares_a_codec(ours: &[u8], offer: &[u8]) -> bool {
    let (Ok(ours), Ok(offer)) = (std::str::from_utf8(ours), std::str::from_utf8(offer)) else {
        return true;
    };
    match (audio_codecs(ours), audio_codecs(offer)) {
        (Some((ours, _)), Some((theirs, true))) if !ours.is_empty() => {
            ours.iter().any(|c| theirs.contains(c))
        }
        _ => true,
    }
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

/// `ours` answering `offer`: its direction attributes replaced by the mirror of the offer's,
/// written once in the first audio stream, and its `o=` version one higher when that changed
/// the description. `ours` as it is when the direction already mirrors the offer's, or when
/// either text is not UTF-8 or `ours` has no audio stream (nothing to say then).
pub(crate) fn answer_direction(ours: &Bytes, offer: &[u8]) -> Bytes {
    let (Ok(text), Ok(offer)) = (std::str::from_utf8(ours), std::str::from_utf8(offer)) else {
        return ours.clone();
    };
    let want = mirror(offered_direction(offer));
    if offered_direction(text) == want {
        return ours.clone();
    }
    if !text.lines().any(|l| l.starts_with("m=audio")) {
        return ours.clone();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_audio = false;
    let mut written = false;
    let push = |out: &mut String, line: &str| {
        out.push_str(line);
        out.push_str("\r\n");
    };
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            if in_audio && !written {
                push(&mut out, &format!("a={want}"));
                written = true;
            }
            in_audio = line.starts_with("m=audio") && !written;
        }
        if direction_of(line).is_some() {
            continue;
        }
        if let Some(o) = line.strip_prefix("o=") {
            push(&mut out, &format!("o={}", bump_version(o)));
            continue;
        }
        push(&mut out, line);
    }
    if in_audio && !written {
        push(&mut out, &format!("a={want}"));
    }
    Bytes::from(out)
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

    const OURS: &str = "v=0\r\no=sipmeter 7 1 IN IP4 127.0.0.1\r\ns=sipmeter\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\na=sendrecv\r\n";

    fn offer(direction: &str) -> String {
        format!(
            "v=0\r\no=pbx 9 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{direction}"
        )
    }

    fn answer(offer: &str) -> String {
        let out = answer_direction(&Bytes::from_static(OURS.as_bytes()), offer.as_bytes());
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn an_offer_without_our_codec_is_told_apart() {
        let ours = OURS.as_bytes();
        // PCMU by rtpmap, by static type alone, in another case, among others.
        assert!(offer_shares_a_codec(ours, offer("").as_bytes()));
        let bare = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0\r\n";
        assert!(offer_shares_a_codec(ours, bare.as_bytes()));
        let lower = offer("").replace("PCMU/8000", "pcmu/8000");
        assert!(offer_shares_a_codec(ours, lower.as_bytes()));
        // PCMA only, and PCMA with telephone-event (which carries no voice): refused.
        let pcma = offer("")
            .replace("RTP/AVP 0", "RTP/AVP 8")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
        assert!(!offer_shares_a_codec(ours, pcma.as_bytes()), "{pcma}");
        let with_events =
            pcma.replace("RTP/AVP 8", "RTP/AVP 8 101") + "a=rtpmap:101 telephone-event/8000\r\n";
        assert!(!offer_shares_a_codec(ours, with_events.as_bytes()));
        // PCMU under a dynamic payload type is PCMU.
        let dynamic = offer("")
            .replace("RTP/AVP 0", "RTP/AVP 96")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 PCMU/8000");
        assert!(offer_shares_a_codec(ours, dynamic.as_bytes()));
        // A disabled audio stream, no audio, or text we cannot read: not refused here.
        let disabled = pcma.replace("m=audio 40000", "m=audio 0");
        assert!(offer_shares_a_codec(ours, disabled.as_bytes()));
        assert!(offer_shares_a_codec(
            ours,
            b"v=0\r\nm=video 5000 RTP/AVP 96\r\n"
        ));
        assert!(offer_shares_a_codec(ours, b"\xff\xfe"));
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
                     a=sendonly\r\nm=audio 40000 RTP/AVP 0\r\n";
        assert_eq!(answer(video), OURS);
    }

    #[test]
    fn text_that_is_not_sdp_is_left_alone() {
        let ours = Bytes::from_static(b"v=0\r\n");
        assert_eq!(
            answer_direction(&ours, offer("a=sendonly\r\n").as_bytes()),
            ours
        );
        let bad = Bytes::from_static(&[0xff, 0xfe]);
        assert_eq!(answer_direction(&bad, b"a=sendonly\r\n"), bad);
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
