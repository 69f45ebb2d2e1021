//! SDP (RFC 4566/8866) for audio and the offer/answer model (RFC 3264).
//!
//! A small hand-written parser: SDP is line-based and the audio subset we negotiate is small,
//! so owning the parser gives us precise errors (line number and what was wrong) and no
//! panics on garbage. Lines we do not understand are kept as generic attributes and printed
//! back; unknown line types are skipped, as RFC 4566 §5 asks.
//!
//! Offer/answer: [`build_offer`] from a [`LocalMedia`], [`answer_offer`] on the answerer,
//! [`apply_answer`] on the offerer. Both sides end with a [`Negotiated`] that configures a
//! [`crate::session::MediaSession`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::dtls::{DtlsIdentity, DtlsParams, Fingerprint, FingerprintError, Setup};
use crate::srtp::{Crypto, MasterKey, Mki, SrtpParams, Suite, Unsupported};

/// An undecodable SDP body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not UTF-8.
    #[error("sdp is not utf-8")]
    NotUtf8,
    /// A line is not of the form `<type>=<value>` with a lower-case letter type.
    #[error("line {line}: not a <type>=<value> line")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A mandatory line is missing.
    #[error("missing mandatory {0}= line")]
    Missing(char),
    /// `v=` is not 0.
    #[error("line {line}: unsupported version (v=0 expected)")]
    BadVersion {
        /// 1-based line number.
        line: usize,
    },
    /// A field of a line does not parse.
    #[error("line {line}: bad {what}")]
    BadField {
        /// 1-based line number.
        line: usize,
        /// Which field (e.g. `"origin"`, `"media port"`, `"rtpmap"`).
        what: &'static str,
    },
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive (the default).
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither (hold).
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// True if media flows from this side.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True if this side accepts media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction seen from the other side (sendonly ↔ recvonly).
    pub fn mirror(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both allow: send only if both allow sending, and so on.
    pub fn intersect(self, other: Direction) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

/// `o=` (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when none).
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version, bumped on every new offer.
    pub session_version: u64,
    /// Unicast address of the originator (kept as text: may be a name).
    pub address: String,
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` (RFC 4566 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written.
    pub encoding: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels (1 when absent).
    pub channels: u8,
}

/// One generic attribute `a=name[:value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// Name.
    pub name: String,
    /// Value after the colon.
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, ...
    pub media: String,
    /// Transport port; 0 rejects or disables the stream.
    pub port: u16,
    /// `RTP/AVP`, ...
    pub proto: String,
    /// Format tokens (payload types for RTP).
    pub formats: Vec<String>,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines: payload type and parameters.
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime` in ms.
    pub ptime: Option<u32>,
    /// Direction attribute if present.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` present (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=rtcp:<port>` (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// Other attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// Payload types as numbers; tokens that are not 0..=127 are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
    }

    /// The rtpmap of a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.pt == pt)
    }

    /// The fmtp parameters of a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, s)| s.as_str())
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`.
    pub origin: Origin,
    /// `s=`.
    pub session_name: String,
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level attributes.
    pub attributes: Vec<Attribute>,
    /// `m=` sections.
    pub media: Vec<MediaDescription>,
}

fn parse_connection(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let bad = SdpError::BadField {
        line,
        what: "connection",
    };
    let mut it = value.split_ascii_whitespace();
    let (Some("IN"), Some(kind), Some(addr), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(bad);
    };
    // A multicast address may carry /ttl[/count]; we keep the address.
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| bad.clone())?;
    match (kind, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(bad),
    }
}

fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let bad = SdpError::BadField {
        line,
        what: "origin",
    };
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [user, id, ver, "IN", _kind, addr] = f[..] else {
        return Err(bad);
    };
    Ok(Origin {
        username: user.to_string(),
        session_id: id.parse().map_err(|_| bad.clone())?,
        session_version: ver.parse().map_err(|_| bad.clone())?,
        address: addr.to_string(),
    })
}

fn parse_media(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let mut it = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
        return Err(SdpError::BadField {
            line,
            what: "media line",
        });
    };
    // `<port>/<count>` is allowed; we use the first port.
    let port = port.split('/').next().unwrap_or(port);
    let port: u16 = port.parse().map_err(|_| SdpError::BadField {
        line,
        what: "media port",
    })?;
    Ok(MediaDescription {
        media: media.to_string(),
        port,
        proto: proto.to_string(),
        formats: it.map(str::to_string).collect(),
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp_mux: false,
        rtcp_port: None,
        attributes: Vec::new(),
    })
}

fn parse_rtpmap(value: &str, line: usize) -> Result<RtpMap, SdpError> {
    let bad = SdpError::BadField {
        line,
        what: "rtpmap",
    };
    let (pt, rest) = value.split_once(' ').ok_or(bad.clone())?;
    let pt: u8 = pt.parse().map_err(|_| bad.clone())?;
    if pt > 127 {
        return Err(bad);
    }
    let mut parts = rest.trim().split('/');
    let encoding = parts.next().filter(|e| !e.is_empty()).ok_or(bad.clone())?;
    let clock_rate: u32 = parts
        .next()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .ok_or(bad.clone())?;
    let channels: u8 = match parts.next() {
        Some(c) => c.parse().ok().filter(|c| *c > 0).ok_or(bad.clone())?,
        None => 1,
    };
    if parts.next().is_some() {
        return Err(bad);
    }
    Ok(RtpMap {
        pt,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    })
}

impl SessionDescription {
    /// Parses an SDP body. Accepts CRLF or bare LF line ends; never panics.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut version_seen = false;
        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut direction = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            let b = raw.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(SdpError::BadLine { line });
            }
            let kind = b[0] as char;
            // Slicing at 2 is fine: bytes 0 and 1 are ASCII, so 2 is a char boundary.
            let value = &raw[2..];
            if !version_seen && kind != 'v' {
                return Err(SdpError::Missing('v'));
            }
            match kind {
                'v' => {
                    if version_seen || value.trim() != "0" {
                        return Err(SdpError::BadVersion { line });
                    }
                    version_seen = true;
                }
                'o' => origin = Some(parse_origin(value, line)?),
                's' => session_name = Some(value.to_string()),
                'c' => {
                    let addr = parse_connection(value, line)?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => connection = Some(addr),
                    }
                }
                'm' => media.push(parse_media(value, line)?),
                'a' => {
                    let (name, val) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    match media.last_mut() {
                        None => match Direction::parse(name) {
                            Some(d) if val.is_none() => direction = Some(d),
                            _ => attributes.push(Attribute {
                                name: name.to_string(),
                                value: val.map(str::to_string),
                            }),
                        },
                        Some(m) => parse_media_attribute(m, name, val, line)?,
                    }
                }
                _ => {} // RFC 4566 §5: unknown types are ignored.
            }
        }
        if !version_seen {
            return Err(SdpError::Missing('v'));
        }
        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::Missing('o'))?,
            session_name: session_name.ok_or(SdpError::Missing('s'))?,
            connection,
            direction,
            attributes,
            media,
        })
    }

    /// The effective direction of an m-section (media-level, else session-level, else
    /// sendrecv per RFC 3264 §5.1).
    pub fn direction_of(&self, m: &MediaDescription) -> Direction {
        m.direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// The effective connection address of an m-section.
    pub fn connection_of(&self, m: &MediaDescription) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }
}

fn parse_media_attribute(
    m: &mut MediaDescription,
    name: &str,
    val: Option<&str>,
    line: usize,
) -> Result<(), SdpError> {
    match (name, val) {
        ("rtpmap", Some(v)) => m.rtpmaps.push(parse_rtpmap(v, line)?),
        ("fmtp", Some(v)) => {
            let bad = SdpError::BadField { line, what: "fmtp" };
            let (pt, params) = v.split_once(' ').ok_or(bad.clone())?;
            let pt: u8 = pt.parse().map_err(|_| bad)?;
            m.fmtps.push((pt, params.trim().to_string()));
        }
        ("ptime", Some(v)) => {
            // RFC 4566 allows a decimal ptime; we keep whole milliseconds.
            let ms = v
                .trim()
                .split('.')
                .next()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|p| *p > 0)
                .ok_or(SdpError::BadField {
                    line,
                    what: "ptime",
                })?;
            m.ptime = Some(ms);
        }
        ("rtcp-mux", None) => m.rtcp_mux = true,
        ("rtcp", Some(v)) => {
            let port = v.split_ascii_whitespace().next().unwrap_or("");
            m.rtcp_port = Some(
                port.parse()
                    .map_err(|_| SdpError::BadField { line, what: "rtcp" })?,
            );
        }
        (d, None) if Direction::parse(d).is_some() => m.direction = Direction::parse(d),
        _ => m.attributes.push(Attribute {
            name: name.to_string(),
            value: val.map(str::to_string),
        }),
    }
    Ok(())
}

fn addr_kind(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        let okind = if o.address.contains(':') {
            "IP6"
        } else {
            "IP4"
        };
        write!(
            f,
            "v=0\r\no={} {} {} IN {okind} {}\r\ns={}\r\n",
            o.username, o.session_id, o.session_version, o.address, self.session_name
        )?;
        if let Some(c) = &self.connection {
            write!(f, "c=IN {} {c}\r\n", addr_kind(c))?;
        }
        f.write_str("t=0 0\r\n")?;
        for a in &self.attributes {
            write_attr(f, &a.name, a.value.as_deref())?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        for m in &self.media {
            write!(f, "m={} {} {}", m.media, m.port, m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            if let Some(c) = &m.connection {
                write!(f, "c=IN {} {c}\r\n", addr_kind(c))?;
            }
            for r in &m.rtpmaps {
                write!(f, "a=rtpmap:{} {}/{}", r.pt, r.encoding, r.clock_rate)?;
                if r.channels != 1 {
                    write!(f, "/{}", r.channels)?;
                }
                f.write_str("\r\n")?;
            }
            for (pt, p) in &m.fmtps {
                write!(f, "a=fmtp:{pt} {p}\r\n")?;
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = m.rtcp_port {
                write!(f, "a=rtcp:{p}\r\n")?;
            }
            if m.rtcp_mux {
                f.write_str("a=rtcp-mux\r\n")?;
            }
            for a in &m.attributes {
                write_attr(f, &a.name, a.value.as_deref())?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.as_str())?;
            }
        }
        Ok(())
    }
}

fn write_attr(f: &mut fmt::Formatter<'_>, name: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => write!(f, "a={name}:{v}\r\n"),
        None => write!(f, "a={name}\r\n"),
    }
}

/// Audio codecs we negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static PT 0.
    Pcmu,
    /// G.711 A-law, static PT 8.
    Pcma,
    /// G.722, static PT 9 (RTP clock 8000 per RFC 3551 §4.5.2, sampled at 16 kHz).
    G722,
    /// Opus, dynamic PT, `opus/48000/2` (RFC 7587).
    Opus,
}

impl Codec {
    /// The encoding name in rtpmap.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 8_000,
        }
    }

    /// Channels as written in rtpmap.
    pub fn channels(self) -> u8 {
        if self == Codec::Opus { 2 } else { 1 }
    }

    /// The static payload type (RFC 3551 Table 4), if any.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// The payload type we put in our offers.
    pub fn default_pt(self) -> u8 {
        self.static_pt().unwrap_or(OPUS_PT)
    }

    fn from_rtpmap(m: &RtpMap) -> Option<Self> {
        let c = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(&m.encoding))?;
        (m.clock_rate == c.clock_rate() && m.channels == c.channels()).then_some(c)
    }

    fn from_static(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The codec a payload type stands for in an m-section: its rtpmap if present, else the
    /// static assignment (RFC 3551).
    pub fn of_pt(m: &MediaDescription, pt: u8) -> Option<Self> {
        match m.rtpmap(pt) {
            Some(map) => Codec::from_rtpmap(map),
            None => Codec::from_static(pt),
        }
    }
}

/// The dynamic payload type we offer for Opus.
pub const OPUS_PT: u8 = 111;
/// The dynamic payload type we offer for telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// The dynamic payload type we offer for telephone-event/48000 (with Opus).
pub const TELEPHONE_EVENT_48K_PT: u8 = 110;

/// What this side can and wants to do.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    /// Offer/accept `telephone-event/8000` (RFC 4733) with events 0-16.
    pub telephone_event: bool,
    /// Packetisation time in ms.
    pub ptime: u32,
    /// Direction we want.
    pub direction: Direction,
    /// Our RTP address.
    pub address: IpAddr,
    /// Our RTP port (RTCP on port+1 unless muxed).
    pub port: u16,
    /// Offer/accept RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version.
    pub session_version: u64,
    /// SRTP with SDES keys (RFC 4568); `None`: plain RTP only (`srtp = "off"`).
    pub srtp: Option<Sdes>,
    /// DTLS-SRTP (RFC 5763, RFC 5764) with this certificate (`srtp = "dtls"`, then `srtp` is
    /// `None`): we offer `UDP/TLS/RTP/SAVP` with its `a=fingerprint` and `a=setup:actpass`
    /// and `a=rtcp-mux`, and take only offers and answers with a fingerprint.
    pub dtls: Option<Arc<DtlsIdentity>>,
}

/// Our side of SDES (RFC 4568): whether SRTP is required, and our master keys (fresh per
/// call, from the caller's random source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes {
    /// `srtp = "sdes"`: we offer `RTP/SAVP`, and an offer or answer without a usable
    /// `a=crypto` fails. Else (`"optional"`): we offer `RTP/AVP` with `a=crypto` lines (the
    /// best-effort SRTP of Asterisk's `media_encryption_optimistic` and many phones) and take
    /// plain RTP from a peer without them.
    pub required: bool,
    /// Our suites in our preference order, each with our master key of it (of its length):
    /// `keys[i]` is our offer's line `i + 1` (RFC 4568 §5.1.1: one line per suite, each its
    /// own key). Answering, we take the offer's first line of one of these suites (§7.1.2)
    /// and answer with our key of it.
    pub keys: Vec<(Suite, MasterKey)>,
}

impl Sdes {
    /// Our SDES for `suites` (in that order; [`Suite::ALL`] by default), each a fresh key
    /// from `fill` (a CSPRNG, RFC 3711 §8.1.1).
    pub fn generate<E>(
        required: bool,
        suites: &[Suite],
        mut fill: impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let keys = suites
            .iter()
            .map(|&s| Ok((s, MasterKey::generate(s, &mut fill)?)))
            .collect::<Result<_, E>>()?;
        Ok(Sdes { required, keys })
    }

    /// These keys, each identified by `mki` in every packet (or by none).
    pub fn with_mki(mut self, mki: Option<Mki>) -> Self {
        for (_, k) in &mut self.keys {
            *k = k.clone().with_mki(mki);
        }
        self
    }

    /// Our key of `suite`, if we run it.
    pub fn key_of(&self, suite: Suite) -> Option<&MasterKey> {
        self.keys.iter().find(|(s, _)| *s == suite).map(|(_, k)| k)
    }

    /// Our offer's `a=crypto` lines: one per suite, tags from 1 (RFC 4568 §5.1.1).
    fn crypto(&self) -> Vec<Crypto> {
        self.keys
            .iter()
            .zip(1..)
            .map(|((suite, key), tag)| Crypto {
                tag,
                suite: *suite,
                key: key.clone(),
            })
            .collect()
    }

    /// [`Self::crypto`] as SDP lines (`a=crypto:1 SUITE inline:KEY`, CRLF ended), as the
    /// user agent answers an SRTP offer inside a plain call with them.
    pub fn crypto_lines(&self) -> String {
        self.crypto()
            .iter()
            .map(|c| format!("a=crypto:{}\r\n", c.value()))
            .collect()
    }
}

/// Why offer/answer failed; the engine reports NEGOTIATION_FAILED with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The SDP has no `m=audio` section.
    #[error("no audio stream in the sdp")]
    NoAudio,
    /// The audio stream has port 0 (rejected or disabled, RFC 3264 §6/§8.2).
    #[error("audio stream rejected (port 0)")]
    Rejected,
    /// The audio transport is not plain RTP.
    #[error("unsupported audio transport {0}")]
    UnsupportedTransport(String),
    /// No connection address for the audio stream.
    #[error("no connection address for the audio stream")]
    NoConnection,
    /// A DTLS-SRTP (`UDP/TLS/RTP/SAVP`) offer or answer while `srtp` is not `"dtls"`.
    #[error("the peer asks for DTLS-SRTP ({proto}) and srtp is {mode} (set srtp = \"dtls\")")]
    DtlsOff {
        /// The peer's transport.
        proto: String,
        /// Our `srtp` setting: `"off"`, `"sdes"` or `"optional"`.
        mode: &'static str,
    },
    /// `srtp = "dtls"` and the peer's SDP has no `a=fingerprint` (RFC 5763 §5).
    #[error(
        "srtp is dtls and the peer's sdp ({0}) has no a=fingerprint (RFC 5763 §5): it does not do DTLS-SRTP"
    )]
    NoFingerprint(String),
    /// A malformed `a=fingerprint`, or one of a hash we do not know, and no usable one.
    #[error("{0}")]
    BadFingerprint(#[from] FingerprintError),
    /// `a=setup` the peer may not use there (RFC 5763 §5: an answer is `active` or
    /// `passive`; `holdconn` opens no connection).
    #[error("a=setup:{0} cannot set up DTLS here (RFC 5763 §5: the answer is active or passive)")]
    BadSetup(String),
    /// DTLS-SRTP without `a=rtcp-mux`: we run one handshake on the RTP port for RTP and RTCP
    /// (as WebRTC, RFC 8829 §5.1.1), not a second one on the RTCP port (RFC 5764 §4.1).
    #[error(
        "srtp is dtls and the peer does not multiplex RTCP (no a=rtcp-mux): sipmeter runs DTLS-SRTP with rtcp-mux only"
    )]
    DtlsNeedsRtcpMux,
    /// An `RTP/SAVP` offer or answer while SRTP is off in the test file.
    #[error("the peer asks for srtp ({0}) and srtp is off (set srtp = \"sdes\" or \"optional\")")]
    SrtpOff(String),
    /// SRTP is required (or the transport is `RTP/SAVP`) and the SDP has no `a=crypto`.
    #[error("srtp is required and the sdp has no a=crypto line (RFC 4568)")]
    NoCrypto,
    /// `a=crypto` lines, none of them usable.
    #[error("no crypto suite in common: the peer offers [{}], we run [{}] with one key and without session parameters", .remote.join(", "), .local.join(" "))]
    NoCommonCrypto {
        /// The peer's lines, as `tag suite` (with what we lack, if that is the reason).
        remote: Vec<String>,
        /// Our suites (the test file's `srtp_suites`).
        local: Vec<&'static str>,
    },
    /// A malformed `a=crypto` line and no usable one.
    #[error("malformed crypto attribute: {0}")]
    BadCrypto(#[from] crate::srtp::CryptoError),
    /// No codec in common.
    #[error("no common codec: remote offers [{}], we support [{}]", .remote.join(" "), .local.join(" "))]
    NoCommonCodec {
        /// Remote formats, as `PT:name/rate` (or the bare PT when unknown).
        remote: Vec<String>,
        /// Our codecs.
        local: Vec<String>,
    },
}

/// The outcome of offer/answer: everything a media session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec.
    pub codec: Codec,
    /// Payload type in the packets we send (the remote side's number).
    pub send_pt: u8,
    /// Payload type we expect in received packets (our number).
    pub recv_pt: u8,
    /// telephone-event PT we send with (the remote side's number), if negotiated.
    pub send_event_pt: Option<u8>,
    /// telephone-event PT we expect, if negotiated.
    pub recv_event_pt: Option<u8>,
    /// RTP clock rate of the codec.
    pub clock_rate: u32,
    /// Packetisation we send with (the remote's `a=ptime` if given, else ours), in ms.
    pub ptime: u32,
    /// Our resulting direction.
    pub direction: Direction,
    /// Where to send RTP.
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP (the RTP address when muxed).
    pub remote_rtcp: SocketAddr,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// SRTP's suite and keys when SDES negotiated it; `None`: plain RTP (or DTLS-SRTP, whose
    /// keys come from the handshake).
    pub srtp: Option<SrtpParams>,
    /// DTLS-SRTP: our certificate, the peer's fingerprint, our role.
    pub dtls: Option<DtlsParams>,
}

fn local_names(local: &LocalMedia) -> Vec<String> {
    local
        .codecs
        .iter()
        .map(|c| format!("{}/{}", c.encoding_name(), c.clock_rate()))
        .collect()
}

fn remote_names(m: &MediaDescription) -> Vec<String> {
    m.formats
        .iter()
        .map(|f| match f.parse::<u8>().ok().and_then(|pt| m.rtpmap(pt)) {
            Some(r) => format!("{f}:{}/{}", r.encoding, r.clock_rate),
            None => f.clone(),
        })
        .collect()
}

/// The telephone-event payload type of an m-section at this clock rate (RFC 4733 §2.1: the
/// events' clock is the audio codec's).
fn telephone_event(m: &MediaDescription, clock_rate: u32) -> Option<u8> {
    m.payload_types().find(|pt| {
        m.rtpmap(*pt).is_some_and(|r| {
            r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == clock_rate
        })
    })
}

/// Our telephone-event payload type for a clock rate.
fn our_event_pt(clock_rate: u32) -> u8 {
    if clock_rate == 48_000 {
        TELEPHONE_EVENT_48K_PT
    } else {
        TELEPHONE_EVENT_PT
    }
}

fn audio_section(
    local: &LocalMedia,
    pts: &[(Codec, u8)],
    events: &[(u8, u32)],
    direction: Direction,
    rtcp_mux: bool,
    proto: &str,
    crypto: &[Crypto],
) -> MediaDescription {
    let mut formats = Vec::new();
    let mut rtpmaps = Vec::new();
    let mut fmtps = Vec::new();
    for &(c, pt) in pts {
        formats.push(pt.to_string());
        rtpmaps.push(RtpMap {
            pt,
            encoding: c.encoding_name().to_string(),
            clock_rate: c.clock_rate(),
            channels: c.channels(),
        });
        if c == Codec::Opus {
            fmtps.push((pt, "minptime=10;useinbandfec=1".to_string()));
        }
    }
    for &(pt, clock_rate) in events {
        formats.push(pt.to_string());
        rtpmaps.push(RtpMap {
            pt,
            encoding: "telephone-event".to_string(),
            clock_rate,
            channels: 1,
        });
        fmtps.push((pt, "0-16".to_string()));
    }
    MediaDescription {
        media: "audio".to_string(),
        port: local.port,
        proto: proto.to_string(),
        formats,
        connection: None,
        rtpmaps,
        fmtps,
        ptime: Some(local.ptime),
        direction: Some(direction),
        rtcp_mux,
        rtcp_port: None,
        attributes: crypto
            .iter()
            .map(|c| Attribute {
                name: "crypto".to_string(),
                value: Some(c.value()),
            })
            .collect(),
    }
}

fn session(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: "sipmeter".to_string(),
            session_id: local.session_id,
            session_version: local.session_version,
            address: local.address.to_string(),
        },
        session_name: "sipmeter".to_string(),
        connection: Some(local.address),
        direction: None,
        attributes: Vec::new(),
        media,
    }
}

/// Builds our offer: one audio stream with our codecs in order.
pub fn build_offer(local: &LocalMedia) -> SessionDescription {
    let pts: Vec<(Codec, u8)> = local.codecs.iter().map(|c| (*c, c.default_pt())).collect();
    let mut events = Vec::new();
    if local.telephone_event {
        events.push((TELEPHONE_EVENT_PT, 8000));
        if local.codecs.contains(&Codec::Opus) {
            events.push((TELEPHONE_EVENT_48K_PT, 48_000));
        }
    }
    // RFC 4568 §5.1.1: one a=crypto line per suite offered, each with its own key.
    let (proto, crypto) = match &local.srtp {
        _ if local.dtls.is_some() => (DTLS_PROTO, Vec::new()),
        None => ("RTP/AVP", Vec::new()),
        Some(sdes) => (
            if sdes.required { "RTP/SAVP" } else { "RTP/AVP" },
            sdes.crypto(),
        ),
    };
    let mut m = audio_section(
        local,
        &pts,
        &events,
        local.direction,
        local.rtcp_mux || local.dtls.is_some(),
        proto,
        &crypto,
    );
    if let Some(id) = &local.dtls {
        // RFC 5763 §5: the offerer says actpass and lets the answerer choose.
        m.attributes.extend(dtls_attributes(id, Setup::ActPass));
    }
    session(local, vec![m])
}

/// The transport we offer for DTLS-SRTP (RFC 5764 §8).
pub const DTLS_PROTO: &str = "UDP/TLS/RTP/SAVP";

fn dtls_attributes(id: &DtlsIdentity, setup: Setup) -> [Attribute; 2] {
    [
        Attribute {
            name: "fingerprint".to_string(),
            value: Some(id.fingerprint().to_string()),
        },
        Attribute {
            name: "setup".to_string(),
            value: Some(setup.as_str().to_string()),
        },
    ]
}

/// DTLS-SRTP's transports (RFC 5764 §8; `…/SAVPF` from WebRTC peers, RFC 5124).
fn is_dtls_proto(m: &MediaDescription) -> bool {
    m.proto.starts_with("UDP/TLS/RTP/SAVP")
}

/// Whether the offer `sd` asks for DTLS-SRTP: an m-line on its transport
/// (`UDP/TLS/RTP/SAVP`, RFC 5764 §8), or a legacy `RTP/SAVP(F)` one with an `a=fingerprint`
/// (of the section or the session) and no `a=crypto` line. An answerer that does DTLS-SRTP
/// when asked (and plain or SDES otherwise) sets [`LocalMedia::dtls`] from this.
pub fn asks_for_dtls(sd: &SessionDescription) -> bool {
    sd.media.iter().any(|m| {
        is_dtls_proto(m)
            || (m.proto.starts_with("RTP/SAVP")
                && !attr(sd, m, "fingerprint").is_empty()
                && attr(sd, m, "crypto").is_empty())
    })
}

/// An attribute of the m-section, else of the session (RFC 8122 §5 and RFC 4145 §4 allow
/// both levels).
fn attr<'a>(sd: &'a SessionDescription, m: &'a MediaDescription, name: &str) -> Vec<&'a str> {
    let of = |a: &'a [Attribute]| -> Vec<&'a str> {
        a.iter()
            .filter(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_deref().unwrap_or_default())
            .collect()
    };
    let media = of(&m.attributes);
    if media.is_empty() {
        of(&sd.attributes)
    } else {
        media
    }
}

/// The peer's fingerprint and `a=setup` (absent: `active`, RFC 4145 §4). Of several
/// fingerprints (RFC 8122 §5) the first of a hash we know is taken; `Ok(None)`: none at all.
fn remote_dtls(
    sd: &SessionDescription,
    m: &MediaDescription,
) -> Result<Option<(Fingerprint, Setup)>, NegotiationError> {
    let prints = attr(sd, m, "fingerprint");
    let mut first_err = None;
    let mut found = None;
    for p in prints {
        match Fingerprint::parse(p) {
            Ok(f) => {
                found = Some(f);
                break;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let Some(f) = found else {
        return first_err.map_or(Ok(None), |e| Err(e.into()));
    };
    let setup = match attr(sd, m, "setup").first() {
        None => Setup::Active,
        Some(v) => Setup::parse(v).ok_or_else(|| NegotiationError::BadSetup((*v).to_string()))?,
    };
    Ok(Some((f, setup)))
}

fn mode_name(local: &LocalMedia) -> &'static str {
    match &local.srtp {
        None => "off",
        Some(s) if s.required => "sdes",
        Some(_) => "optional",
    }
}

/// Our DTLS side for a peer's offer or answer `m` (`offer`: whether it is an offer): its
/// fingerprint and our role (RFC 5763 §5: the answerer takes `active` when it may). Plain
/// `Ok(None)` when `srtp` is not `"dtls"` and `m` is no DTLS transport.
fn dtls_of(
    sd: &SessionDescription,
    m: &MediaDescription,
    local: &LocalMedia,
    offer: bool,
) -> Result<Option<DtlsParams>, NegotiationError> {
    let Some(id) = &local.dtls else {
        return if is_dtls_proto(m) {
            Err(NegotiationError::DtlsOff {
                proto: m.proto.clone(),
                mode: mode_name(local),
            })
        } else {
            Ok(None)
        };
    };
    // A legacy peer may signal DTLS-SRTP on RTP/SAVP(F) with a fingerprint: taken too.
    let Some((remote, setup)) = remote_dtls(sd, m)? else {
        return Err(NegotiationError::NoFingerprint(m.proto.clone()));
    };
    if !m.rtcp_mux {
        return Err(NegotiationError::DtlsNeedsRtcpMux);
    }
    let active = match (offer, setup) {
        // RFC 5763 §5: answering actpass (or passive), we are active.
        (true, Setup::ActPass | Setup::Passive) => true,
        (true, Setup::Active) => false,
        (false, Setup::Active) => false,
        (false, Setup::Passive) => true,
        (_, s) => return Err(NegotiationError::BadSetup(s.as_str().to_string())),
    };
    Ok(Some(DtlsParams {
        identity: id.clone(),
        remote,
        active,
    }))
}

fn remote_addrs(
    sd: &SessionDescription,
    m: &MediaDescription,
    rtcp_mux: bool,
) -> Result<(SocketAddr, SocketAddr), NegotiationError> {
    let ip = sd.connection_of(m).ok_or(NegotiationError::NoConnection)?;
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = if rtcp_mux {
        rtp
    } else {
        // RFC 3605 a=rtcp, else RFC 3550 §11: the next port.
        SocketAddr::new(ip, m.rtcp_port.unwrap_or(m.port.saturating_add(1)))
    };
    Ok((rtp, rtcp))
}

/// Where the first audio stream in use of `sd` (port not 0) takes RTP and RTCP (RTCP on the
/// RTP port under `rtcp_mux`); `None` when it has none or no connection address. A new offer
/// inside a call that names another address moves the media there (RFC 3264 §8.3.1).
pub fn audio_addrs(sd: &SessionDescription, rtcp_mux: bool) -> Option<(SocketAddr, SocketAddr)> {
    let m = sd
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)?;
    remote_addrs(sd, m, rtcp_mux).ok()
}

fn check_transport(m: &MediaDescription) -> Result<(), NegotiationError> {
    if matches!(
        m.proto.as_str(),
        "RTP/AVP"
            | "RTP/AVPF"
            | "RTP/SAVP"
            | "RTP/SAVPF"
            | "UDP/TLS/RTP/SAVP"
            | "UDP/TLS/RTP/SAVPF"
    ) {
        Ok(())
    } else {
        Err(NegotiationError::UnsupportedTransport(m.proto.clone()))
    }
}

/// SRTP's RTP profile (RFC 3711 §12): keys are then a must.
fn is_savp(m: &MediaDescription) -> bool {
    m.proto.starts_with("RTP/SAVP")
}

/// The first `a=crypto` line of `m` that `fits` (RFC 4568 §7.1.2: the answerer takes the
/// offer's first acceptable line). Lines of other suites, several keys or session
/// parameters are skipped; a malformed line is skipped too, and is the error when no line
/// fits. Never panics on any input.
fn pick_crypto(
    m: &MediaDescription,
    sdes: &Sdes,
    fits: impl Fn(&Crypto) -> bool,
) -> Result<Crypto, NegotiationError> {
    let mut remote = Vec::new();
    let mut malformed = None;
    for a in m.attributes.iter().filter(|a| a.name == "crypto") {
        let value = a.value.as_deref().unwrap_or_default();
        match Crypto::parse(value) {
            Ok(Ok(c)) if fits(&c) => return Ok(c),
            Ok(Ok(c)) => remote.push(format!("{} {} (not ours)", c.tag, c.suite.name())),
            Ok(Err(Unsupported::Suite(suite))) => remote.push(suite),
            Ok(Err(Unsupported::Feature(what))) => {
                let head: Vec<&str> = value.split_ascii_whitespace().take(2).collect();
                remote.push(format!("{} with {what}", head.join(" ")));
            }
            Err(e) => {
                malformed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = malformed {
        return Err(NegotiationError::BadCrypto(e));
    }
    if remote.is_empty() {
        Err(NegotiationError::NoCrypto)
    } else {
        Err(NegotiationError::NoCommonCrypto {
            remote,
            local: sdes.keys.iter().map(|(s, _)| s.name()).collect(),
        })
    }
}

/// The answerer's SDES (RFC 4568 §7.1.2): the offer's first usable line, answered with the
/// same tag and suite and our own key. Plain RTP when SRTP is off (an `RTP/SAVP` offer is
/// then refused), or optional and the offer is `RTP/AVP` without a usable line.
fn answer_crypto(
    om: &MediaDescription,
    local: &LocalMedia,
) -> Result<Option<(Crypto, SrtpParams)>, NegotiationError> {
    let Some(sdes) = &local.srtp else {
        return if is_savp(om) {
            Err(NegotiationError::SrtpOff(om.proto.clone()))
        } else {
            Ok(None)
        };
    };
    match pick_crypto(om, sdes, |c| sdes.key_of(c.suite).is_some()) {
        Ok(theirs) => {
            // An offer whose key has an MKI gets ours with one of the same length (value 1):
            // RFC 4568 leaves each direction its own, but peers that send one (Skype for
            // Business, Teams, their SBCs: `|2^31|1:1`) expect one back.
            let mki = theirs
                .key
                .mki()
                .and_then(|m| Mki::new(1, m.len))
                .or(sdes.key_of(theirs.suite).and_then(MasterKey::mki));
            let ours = Crypto {
                tag: theirs.tag,
                suite: theirs.suite,
                // This is ok because `pick_crypto` took only a suite we have a key of.
                key: sdes
                    .key_of(theirs.suite)
                    .expect("our suite")
                    .clone()
                    .with_mki(mki),
            };
            let params = SrtpParams {
                suite: theirs.suite,
                tx_key: ours.key.clone(),
                rx_key: theirs.key,
            };
            Ok(Some((ours, params)))
        }
        Err(_) if !sdes.required && !is_savp(om) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The SDES keys an exchange inside the call settled on (RFC 4568 §7.1.4: each new offer and
/// answer may carry new keys, or another suite): the first line of ours (`ours`, the audio
/// section of our offer or answer) whose tag and suite a line of the peer's (`theirs`) has;
/// we send under our key of it, receive under the peer's. `None` when no line pairs up (a
/// plain exchange, or one whose lines cannot be read: the call keeps its keys).
pub fn srtp_of_exchange(ours: &MediaDescription, theirs: &MediaDescription) -> Option<SrtpParams> {
    let lines = |m: &MediaDescription| -> Vec<Crypto> {
        m.attributes
            .iter()
            .filter(|a| a.name == "crypto")
            .filter_map(|a| Crypto::parse(a.value.as_deref()?).ok()?.ok())
            .collect()
    };
    let theirs = lines(theirs);
    lines(ours).into_iter().find_map(|o| {
        let t = theirs
            .iter()
            .find(|t| t.tag == o.tag && t.suite == o.suite)?;
        Some(SrtpParams {
            suite: o.suite,
            tx_key: o.key,
            rx_key: t.key.clone(),
        })
    })
}

/// The offerer's SDES (RFC 4568 §7.1.3): the answer's line must name one of our tags with
/// its suite; we send under our key of that line, receive under the answer's.
fn answered_crypto(
    am: &MediaDescription,
    local: &LocalMedia,
) -> Result<Option<SrtpParams>, NegotiationError> {
    let Some(sdes) = &local.srtp else {
        return if is_savp(am) {
            Err(NegotiationError::SrtpOff(am.proto.clone()))
        } else {
            Ok(None)
        };
    };
    let line = |c: &Crypto| {
        let i = usize::try_from(c.tag).unwrap_or(usize::MAX).wrapping_sub(1);
        sdes.keys.get(i).filter(|(s, _)| *s == c.suite)
    };
    match pick_crypto(am, sdes, |c| line(c).is_some()) {
        Ok(theirs) => Ok(Some(SrtpParams {
            suite: theirs.suite,
            // This is ok because `pick_crypto` accepted only a tag of ours with its suite.
            tx_key: line(&theirs).expect("our line").1.clone(),
            rx_key: theirs.key,
        })),
        Err(_) if !sdes.required && !is_savp(am) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Answers a remote offer (RFC 3264 §6): picks the offerer's first codec that we support,
/// adopts the offerer's payload type numbers (dynamic ones included), mirrors the direction,
/// and rejects every other m-section with port 0.
pub fn answer_offer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let idx = offer
        .media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0)
        .ok_or(if offer.media.iter().any(|m| m.media == "audio") {
            NegotiationError::Rejected
        } else {
            NegotiationError::NoAudio
        })?;
    let om = &offer.media[idx];
    check_transport(om)?;
    let dtls = dtls_of(offer, om, local, true)?;
    let crypto = if dtls.is_some() {
        None
    } else {
        answer_crypto(om, local)?
    };
    // RFC 3264 §6.1: answer with the offerer's order; we use its first match.
    let chosen = om
        .payload_types()
        .find_map(|pt| {
            Codec::of_pt(om, pt)
                .filter(|c| local.codecs.contains(c))
                .map(|c| (c, pt))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            remote: remote_names(om),
            local: local_names(local),
        })?;
    let event_pt = local
        .telephone_event
        .then(|| telephone_event(om, chosen.0.clock_rate()))
        .flatten();
    let rtcp_mux = (local.rtcp_mux || dtls.is_some()) && om.rtcp_mux;
    let (remote_rtp, remote_rtcp) = remote_addrs(offer, om, rtcp_mux)?;
    let mut offered_dir = offer.direction_of(om);
    // RFC 3264 §8.4: c=0.0.0.0 is the old way of putting a stream on hold.
    if remote_rtp.ip().is_unspecified() {
        offered_dir = offered_dir.intersect(Direction::SendOnly);
    }
    let direction = local.direction.intersect(offered_dir.mirror());
    let mut media = Vec::new();
    for (i, m) in offer.media.iter().enumerate() {
        if i == idx {
            let mut section = audio_section(
                local,
                &[chosen],
                &event_pt
                    .map(|pt| (pt, chosen.0.clock_rate()))
                    .into_iter()
                    .collect::<Vec<_>>(),
                direction,
                rtcp_mux,
                &om.proto,
                crypto
                    .as_ref()
                    .map(|c| std::slice::from_ref(&c.0))
                    .unwrap_or_default(),
            );
            if let Some(d) = &dtls {
                let setup = if d.active {
                    Setup::Active
                } else {
                    Setup::Passive
                };
                section
                    .attributes
                    .extend(dtls_attributes(&d.identity, setup));
            }
            media.push(section);
        } else {
            // RFC 3264 §6: every offered stream gets an m-line; port 0 rejects it.
            media.push(MediaDescription {
                media: m.media.clone(),
                port: 0,
                proto: m.proto.clone(),
                formats: m.formats.clone(),
                connection: None,
                rtpmaps: Vec::new(),
                fmtps: Vec::new(),
                ptime: None,
                direction: None,
                rtcp_mux: false,
                rtcp_port: None,
                attributes: Vec::new(),
            });
        }
    }
    let negotiated = Negotiated {
        codec: chosen.0,
        send_pt: chosen.1,
        recv_pt: chosen.1,
        send_event_pt: event_pt,
        recv_event_pt: event_pt,
        clock_rate: chosen.0.clock_rate(),
        ptime: om.ptime.unwrap_or(local.ptime),
        direction,
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        srtp: crypto.map(|c| c.1),
        dtls,
    };
    Ok((session(local, media), negotiated))
}

/// Applies the remote answer to our offer (made by [`build_offer`] from `local`).
pub fn apply_answer(
    local: &LocalMedia,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    // We offer a single audio stream, so the answer's first m-section is its answer.
    let am = answer.media.first().ok_or(NegotiationError::NoAudio)?;
    if am.media != "audio" {
        return Err(NegotiationError::NoAudio);
    }
    if am.port == 0 {
        return Err(NegotiationError::Rejected);
    }
    check_transport(am)?;
    let dtls = dtls_of(answer, am, local, false)?;
    let srtp = if dtls.is_some() {
        None
    } else {
        answered_crypto(am, local)?
    };
    let (codec, send_pt) = am
        .payload_types()
        .find_map(|pt| {
            Codec::of_pt(am, pt)
                .filter(|c| local.codecs.contains(c))
                .map(|c| (c, pt))
        })
        .ok_or_else(|| NegotiationError::NoCommonCodec {
            remote: remote_names(am),
            local: local_names(local),
        })?;
    let send_event_pt = local
        .telephone_event
        .then(|| telephone_event(am, codec.clock_rate()))
        .flatten();
    let rtcp_mux = (local.rtcp_mux || dtls.is_some()) && am.rtcp_mux;
    let (remote_rtp, remote_rtcp) = remote_addrs(answer, am, rtcp_mux)?;
    let mut answered_dir = answer.direction_of(am);
    if remote_rtp.ip().is_unspecified() {
        answered_dir = answered_dir.intersect(Direction::SendOnly);
    }
    Ok(Negotiated {
        codec,
        send_pt,
        recv_pt: codec.default_pt(),
        send_event_pt,
        recv_event_pt: send_event_pt.map(|_| our_event_pt(codec.clock_rate())),
        clock_rate: codec.clock_rate(),
        ptime: am.ptime.unwrap_or(local.ptime),
        direction: local.direction.intersect(answered_dir.mirror()),
        remote_rtp,
        remote_rtcp,
        rtcp_mux,
        srtp,
        dtls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn local(codecs: Vec<Codec>) -> LocalMedia {
        LocalMedia {
            codecs,
            telephone_event: true,
            ptime: 20,
            direction: Direction::SendRecv,
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 40000,
            rtcp_mux: true,
            session_id: 42,
            session_version: 1,
            srtp: None,
            dtls: None,
        }
    }

    fn dtls_sides() -> (LocalMedia, LocalMedia) {
        let id = || Some(Arc::new(DtlsIdentity::generate().unwrap()));
        let mut a = local(vec![Codec::Pcmu]);
        a.rtcp_mux = false;
        a.dtls = id();
        let mut b = local(vec![Codec::Pcmu]);
        b.port = 50000;
        b.dtls = id();
        (a, b)
    }

    #[test]
    fn dtls_offer_and_answer_rfc_5763() {
        let (a, b) = dtls_sides();
        let offer = build_offer(&a).to_string();
        let fa = a.dtls.as_ref().unwrap().fingerprint().clone();
        let fb = b.dtls.as_ref().unwrap().fingerprint().clone();
        // RFC 5764 §8 transport, rtcp-mux forced (one handshake), actpass (RFC 5763 §5).
        assert!(
            offer.contains("m=audio 40000 UDP/TLS/RTP/SAVP 0 101\r\n"),
            "{offer}"
        );
        assert!(
            offer.contains(&format!("a=fingerprint:{fa}\r\n")),
            "{offer}"
        );
        assert!(offer.contains("a=setup:actpass\r\n") && offer.contains("a=rtcp-mux\r\n"));
        assert!(!offer.contains("a=crypto"), "{offer}");
        let (answer, nb) =
            answer_offer(&SessionDescription::parse(offer.as_bytes()).unwrap(), &b).unwrap();
        let answer = answer.to_string();
        assert!(
            answer.contains("m=audio 50000 UDP/TLS/RTP/SAVP 0 101\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("a=fingerprint:{fb}\r\n")),
            "{answer}"
        );
        assert!(answer.contains("a=setup:active\r\n"), "{answer}");
        let na = apply_answer(&a, &SessionDescription::parse(answer.as_bytes()).unwrap()).unwrap();
        let (da, db) = (na.dtls.unwrap(), nb.dtls.unwrap());
        assert_eq!((da.active, db.active), (false, true));
        assert_eq!((da.remote, db.remote), (fb, fa));
        assert_eq!((na.srtp, nb.srtp), (None, None));
        assert!(na.rtcp_mux && nb.rtcp_mux);
        assert_eq!(na.remote_rtcp, na.remote_rtp);
    }

    #[test]
    fn dtls_roles_legacy_peers_and_refusals() {
        let (a, b) = dtls_sides();
        let fp = b.dtls.as_ref().unwrap().fingerprint().to_string();
        let sdp = |proto: &str, extra: &str| {
            SessionDescription::parse(
                format!(
                    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 5000 {proto} 0\r\n{extra}"
                )
                .as_bytes(),
            )
            .unwrap()
        };
        let with = |setup: &str| format!("a=fingerprint:{fp}\r\na=setup:{setup}\r\na=rtcp-mux\r\n");
        // The offerer's role decides ours (RFC 4145 §4: no a=setup means active).
        for (setup, active) in [("actpass", true), ("passive", true), ("active", false)] {
            let (ans, n) = answer_offer(&sdp(DTLS_PROTO, &with(setup)), &a).unwrap();
            assert_eq!(n.dtls.unwrap().active, active, "{setup}");
            let mine = if active { "active" } else { "passive" };
            assert!(ans.to_string().contains(&format!("a=setup:{mine}\r\n")));
        }
        let no_setup = format!("a=fingerprint:{fp}\r\na=rtcp-mux\r\n");
        assert!(
            !answer_offer(&sdp(DTLS_PROTO, &no_setup), &a)
                .unwrap()
                .1
                .dtls
                .unwrap()
                .active
        );
        // WebRTC's SAVPF and a legacy RTP/SAVP with a fingerprint are taken; the answer
        // mirrors the transport.
        for proto in ["UDP/TLS/RTP/SAVPF", "RTP/SAVP"] {
            let (ans, n) = answer_offer(&sdp(proto, &with("actpass")), &a).unwrap();
            assert!(n.dtls.is_some());
            assert!(
                ans.to_string()
                    .contains(&format!("m=audio 40000 {proto} 0\r\n"))
            );
        }
        // A session-level fingerprint counts (RFC 8122 §5).
        let sess = SessionDescription::parse(
            format!(
                "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                 a=fingerprint:{fp}\r\nm=audio 5000 {DTLS_PROTO} 0\r\na=rtcp-mux\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(answer_offer(&sess, &a).unwrap().1.dtls.is_some());
        // Refusals, each naming why.
        let e = |sd: SessionDescription, l: &LocalMedia| answer_offer(&sd, l).unwrap_err();
        let mut off = local(vec![Codec::Pcmu]);
        assert_eq!(
            e(sdp(DTLS_PROTO, &with("actpass")), &off),
            NegotiationError::DtlsOff {
                proto: DTLS_PROTO.into(),
                mode: "off"
            }
        );
        off.srtp = Some(Sdes {
            required: true,
            keys: vec![(Suite::AesCm128HmacSha1_80, MasterKey::from_bytes([1; 30]))],
        });
        assert!(
            e(sdp(DTLS_PROTO, &with("actpass")), &off)
                .to_string()
                .contains("srtp is sdes")
        );
        let sdes = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\na=rtcp-mux\r\n";
        assert_eq!(
            e(sdp("RTP/SAVP", sdes), &a),
            NegotiationError::NoFingerprint("RTP/SAVP".into())
        );
        assert_eq!(
            e(sdp("RTP/AVP", ""), &a),
            NegotiationError::NoFingerprint("RTP/AVP".into())
        );
        let no_mux = format!("a=fingerprint:{fp}\r\na=setup:actpass\r\n");
        assert_eq!(
            e(sdp(DTLS_PROTO, &no_mux), &a),
            NegotiationError::DtlsNeedsRtcpMux
        );
        assert_eq!(
            e(sdp(DTLS_PROTO, &with("holdconn")), &a),
            NegotiationError::BadSetup("holdconn".into())
        );
        assert!(matches!(
            e(
                sdp(DTLS_PROTO, "a=fingerprint:sha-256 AA:BB\r\na=rtcp-mux\r\n"),
                &a
            ),
            NegotiationError::BadFingerprint(_)
        ));
        // Answers: actpass is not an answer's (RFC 5763 §5); none: not DTLS.
        assert_eq!(
            apply_answer(&a, &sdp(DTLS_PROTO, &with("actpass"))).unwrap_err(),
            NegotiationError::BadSetup("actpass".into())
        );
        assert_eq!(
            apply_answer(&a, &sdp("RTP/AVP", "a=rtcp-mux\r\n")).unwrap_err(),
            NegotiationError::NoFingerprint("RTP/AVP".into())
        );
        assert!(
            apply_answer(&a, &sdp(DTLS_PROTO, &with("passive")))
                .unwrap()
                .dtls
                .unwrap()
                .active
        );
        assert_eq!(
            apply_answer(&local(vec![Codec::Pcmu]), &sdp(DTLS_PROTO, &with("active"))).unwrap_err(),
            NegotiationError::DtlsOff {
                proto: DTLS_PROTO.into(),
                mode: "off"
            }
        );
    }

    #[test]
    fn offer_text_and_round_trip() {
        let l = local(vec![Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus]);
        let text = build_offer(&l).to_string();
        let expected = "v=0\r\no=sipmeter 42 1 IN IP4 10.0.0.1\r\ns=sipmeter\r\n\
            c=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 9 111 101 110\r\n\
            a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
            a=rtpmap:110 telephone-event/48000\r\n\
            a=fmtp:111 minptime=10;useinbandfec=1\r\na=fmtp:101 0-16\r\na=fmtp:110 0-16\r\n\
            a=ptime:20\r\n\
            a=rtcp-mux\r\na=sendrecv\r\n";
        assert_eq!(text, expected);
        let parsed = SessionDescription::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, build_offer(&l));
        assert_eq!(parsed.to_string(), text);
    }

    const PBX_OFFER: &str = "v=0\r\n\
        o=- 3 4 IN IP4 192.0.2.10\r\n\
        s=pbx\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=audio 30000 RTP/AVP 96 8 0 97 98\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:97 telephone-event/8000\r\n\
        a=fmtp:97 0-15\r\n\
        a=rtpmap:98 telephone-event/48000\r\n\
        a=ptime:30\r\n\
        a=sendonly\r\n\
        m=video 30002 RTP/AVP 99\r\n\
        a=rtpmap:99 H264/90000\r\n";

    #[test]
    fn answer_adopts_offerer_order_pts_and_mirrors_direction() {
        let offer = SessionDescription::parse(PBX_OFFER.as_bytes()).unwrap();
        // We prefer PCMU, but the offerer's order wins: first common is opus (PT 96).
        let l = local(vec![Codec::Pcmu, Codec::Opus, Codec::Pcma]);
        let (ans, neg) = answer_offer(&offer, &l).unwrap();
        assert_eq!(neg.codec, Codec::Opus);
        assert_eq!((neg.send_pt, neg.recv_pt), (96, 96));
        // telephone-event at the codec's clock (RFC 4733 §2.1): 98/48000, not 97/8000.
        assert_eq!(neg.send_event_pt, Some(98));
        assert_eq!(neg.ptime, 30);
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(neg.remote_rtp, "192.0.2.10:30000".parse().unwrap());
        // The offer has no rtcp-mux: RTCP goes to port+1.
        assert!(!neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, "192.0.2.10:30001".parse().unwrap());
        let text = ans.to_string();
        assert!(text.contains("m=audio 40000 RTP/AVP 96 98\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:96 opus/48000/2\r\n"));
        assert!(text.contains("a=rtpmap:98 telephone-event/48000\r\n"));
        assert!(text.contains("a=recvonly\r\n"));
        assert!(!text.contains("rtcp-mux"));
        // Video is refused with port 0, same formats.
        assert!(text.contains("m=video 0 RTP/AVP 99\r\n"));
        assert_eq!(ans.media.len(), 2);
    }

    #[test]
    fn static_pt_without_rtpmap_and_hold() {
        let sdp = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\
                   m=audio 5000 RTP/AVP 18 0\na=inactive\n";
        let offer = SessionDescription::parse(sdp.as_bytes()).unwrap();
        let (_, neg) = answer_offer(&offer, &local(vec![Codec::Pcma, Codec::Pcmu])).unwrap();
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.send_pt, 0);
        assert_eq!(neg.direction, Direction::Inactive);
        assert_eq!(neg.send_event_pt, None);
        // Old-style hold: c=0.0.0.0 means the offerer does not want our media.
        let held = sdp
            .replace("192.0.2.1\nt", "0.0.0.0\nt")
            .replace("a=inactive\n", "");
        let offer = SessionDescription::parse(held.as_bytes()).unwrap();
        let (_, neg) = answer_offer(&offer, &local(vec![Codec::Pcmu])).unwrap();
        assert_eq!(neg.direction, Direction::RecvOnly);
    }

    #[test]
    fn no_common_codec_names_both_sides() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                   m=audio 5000 RTP/AVP 18 98\r\na=rtpmap:98 iLBC/8000\r\n";
        let offer = SessionDescription::parse(sdp.as_bytes()).unwrap();
        let err = answer_offer(&offer, &local(vec![Codec::Pcmu, Codec::Pcma])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no common codec: remote offers [18 98:iLBC/8000], we support [PCMU/8000 PCMA/8000]"
        );
    }

    #[test]
    fn rejections() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        let p = |s: String| SessionDescription::parse(s.as_bytes()).unwrap();
        let l = local(vec![Codec::Pcmu]);
        let r = |m: &str| answer_offer(&p(format!("{base}{m}")), &l).unwrap_err();
        assert_eq!(r("m=video 5000 RTP/AVP 99\r\n"), NegotiationError::NoAudio);
        assert_eq!(r("m=audio 0 RTP/AVP 0\r\n"), NegotiationError::Rejected);
        assert_eq!(
            r("m=audio 5000 RTP/AVP 0\r\n"),
            NegotiationError::NoConnection
        );
        assert_eq!(
            r("m=audio 5000 RTP/SAVP 0\r\nc=IN IP4 192.0.2.1\r\n"),
            NegotiationError::SrtpOff("RTP/SAVP".into())
        );
        assert_eq!(
            r("m=audio 5000 TCP/RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"),
            NegotiationError::UnsupportedTransport("TCP/RTP/AVP".into())
        );
    }

    #[test]
    fn offerer_applies_answer_with_foreign_pts() {
        let l = local(vec![Codec::Opus, Codec::Pcmu]);
        // The answerer renumbered opus and telephone-event (allowed, RFC 3264 §6.1 SHOULD).
        let ans = "v=0\r\no=- 9 9 IN IP4 192.0.2.7\r\ns=-\r\nt=0 0\r\n\
                   m=audio 7000 RTP/AVP 100 102\r\nc=IN IP4 192.0.2.7\r\n\
                   a=rtpmap:100 OPUS/48000/2\r\na=rtpmap:102 telephone-event/48000\r\n\
                   a=rtcp-mux\r\na=recvonly\r\n";
        let neg = apply_answer(&l, &SessionDescription::parse(ans.as_bytes()).unwrap()).unwrap();
        assert_eq!(neg.codec, Codec::Opus);
        assert_eq!((neg.send_pt, neg.recv_pt), (100, OPUS_PT));
        assert_eq!(
            (neg.send_event_pt, neg.recv_event_pt),
            (Some(102), Some(TELEPHONE_EVENT_48K_PT))
        );
        assert_eq!(neg.direction, Direction::SendOnly);
        assert!(neg.rtcp_mux);
        assert_eq!(neg.remote_rtcp, neg.remote_rtp);
        assert_eq!(neg.ptime, 20);
        let rejected = ans.replace("audio 7000", "audio 0");
        assert_eq!(
            apply_answer(&l, &SessionDescription::parse(rejected.as_bytes()).unwrap()),
            Err(NegotiationError::Rejected)
        );
    }

    #[test]
    fn full_offer_answer_between_two_sides() {
        let mut a = local(vec![Codec::Pcma, Codec::Pcmu]);
        a.telephone_event = true;
        let mut b = local(vec![Codec::Pcmu, Codec::Pcma]);
        b.port = 50000;
        b.address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let offer = build_offer(&a).to_string();
        let (answer, nb) =
            answer_offer(&SessionDescription::parse(offer.as_bytes()).unwrap(), &b).unwrap();
        let na = apply_answer(
            &a,
            &SessionDescription::parse(answer.to_string().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(na.codec, Codec::Pcma);
        assert_eq!(nb.codec, Codec::Pcma);
        assert_eq!(na.remote_rtp, "10.0.0.2:50000".parse().unwrap());
        assert_eq!(nb.remote_rtp, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(na.send_event_pt, Some(101));
        assert!(na.rtcp_mux && nb.rtcp_mux);
        assert_eq!(na.direction, Direction::SendRecv);
    }

    // Offers shaped like those of common servers (written for these tests, not captures).
    const ASTERISK: &str = include_str!("../testdata/sdp/asterisk-style-offer.sdp");
    const FREESWITCH: &str = include_str!("../testdata/sdp/freeswitch-style-offer.sdp");
    const WEBRTC: &str = include_str!("../testdata/sdp/webrtc-style-offer.sdp");
    const IPV6: &str = include_str!("../testdata/sdp/ipv6-sendonly-offer.sdp");
    const ASTERISK_SDES: &str = include_str!("../testdata/sdp/asterisk-style-sdes-offer.sdp");

    #[test]
    fn server_style_offers() {
        let p = |t: &str| SessionDescription::parse(t.as_bytes()).unwrap();
        // Asterisk-style: prints back byte for byte (unknown a=maxptime kept in place).
        let offer = p(ASTERISK);
        assert_eq!(offer.to_string(), ASTERISK);
        let (_, n) = answer_offer(&offer, &local(vec![Codec::Pcma, Codec::Pcmu])).unwrap();
        assert_eq!(
            (n.codec, n.send_pt, n.send_event_pt),
            (Codec::Pcmu, 0, Some(101))
        );
        assert_eq!(n.remote_rtp, "203.0.113.5:14562".parse().unwrap());
        assert_eq!(n.remote_rtcp, "203.0.113.5:14563".parse().unwrap());

        // FreeSWITCH-style: opus first, two telephone-event clocks, a=rtcp with an address.
        let offer = p(FREESWITCH);
        let (_, n) = answer_offer(&offer, &local(vec![Codec::Pcmu, Codec::G722])).unwrap();
        assert_eq!(
            (n.codec, n.send_pt, n.send_event_pt),
            (Codec::G722, 9, Some(101))
        );
        assert_eq!(n.remote_rtcp, "198.51.100.7:24001".parse().unwrap());
        let (_, n) = answer_offer(&offer, &local(vec![Codec::Pcmu, Codec::Opus])).unwrap();
        assert_eq!(
            (n.codec, n.send_pt, n.send_event_pt),
            (Codec::Opus, 102, Some(103))
        );
        assert_eq!(n.clock_rate, 48_000);
        assert_eq!(
            offer.media[0]
                .fmtp(102)
                .map(|f| f.starts_with("useinbandfec=1")),
            Some(true)
        );

        // WebRTC-style: DTLS-SRTP while srtp is off is refused with its name.
        let offer = p(WEBRTC);
        assert_eq!(
            offer.media[0]
                .attributes
                .iter()
                .filter(|a| a.name == "ice-ufrag")
                .count(),
            1
        );
        assert_eq!(
            answer_offer(&offer, &local(vec![Codec::Pcmu])).unwrap_err(),
            NegotiationError::DtlsOff {
                proto: "UDP/TLS/RTP/SAVPF".into(),
                mode: "off"
            }
        );

        // IPv6, sendonly: we receive only.
        let (ans, n) = answer_offer(&p(IPV6), &local(vec![Codec::Pcma])).unwrap();
        assert_eq!(n.remote_rtp, "[2001:db8::10]:6000".parse().unwrap());
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(ans.to_string().contains("a=recvonly\r\n"));
    }

    /// SDES for `suites`: the i-th suite's key is all bytes `seed + i`.
    fn sdes_of(required: bool, seed: u8, suites: &[Suite]) -> Option<Sdes> {
        let mut next = seed;
        let fill = |b: &mut [u8]| {
            b.fill(next);
            next += 1;
            Ok::<(), ()>(())
        };
        Some(Sdes::generate(required, suites, fill).unwrap())
    }

    fn sdes(required: bool, seed: u8) -> Option<Sdes> {
        sdes_of(required, seed, &Suite::ALL)
    }

    /// `suite`'s key of all bytes `b`.
    fn mk(suite: Suite, b: u8) -> MasterKey {
        MasterKey::new(suite, &vec![b; suite.master_len()]).unwrap()
    }

    fn all_names() -> Vec<&'static str> {
        Suite::ALL.map(Suite::name).to_vec()
    }

    /// Both sides of offer/answer from text; the error of whichever side failed.
    fn exchange(
        a: &LocalMedia,
        b: &LocalMedia,
    ) -> Result<(String, String, Negotiated, Negotiated), NegotiationError> {
        let offer = build_offer(a).to_string();
        let (answer, nb) = answer_offer(&SessionDescription::parse(offer.as_bytes()).unwrap(), b)?;
        let answer = answer.to_string();
        let na = apply_answer(a, &SessionDescription::parse(answer.as_bytes()).unwrap())?;
        Ok((offer, answer, na, nb))
    }

    #[test]
    fn sdes_required_on_both_sides_gives_each_the_others_key() {
        let mut a = local(vec![Codec::Pcmu]);
        a.srtp = sdes(true, 1);
        let mut b = local(vec![Codec::Pcmu]);
        b.srtp = sdes(true, 7);
        let (offer, answer, na, nb) = exchange(&a, &b).unwrap();
        // RFC 4568 §5.1.1: one line per suite, each its own key; RTP/SAVP when required.
        assert!(
            offer.contains("m=audio 40000 RTP/SAVP 0 101\r\n"),
            "{offer}"
        );
        // Every suite, strongest first, each its key of its length (44, 28, 46, 46, 30, 30).
        let lines: String = Suite::ALL
            .into_iter()
            .zip(1u8..)
            .map(|(s, i)| {
                format!(
                    "a=crypto:{i} {} inline:{}\r\n",
                    s.name(),
                    mk(s, i).to_base64()
                )
            })
            .collect();
        assert!(offer.contains(&lines), "{offer}");
        // The answer: the offer's first line's tag and suite, the answerer's own key.
        assert!(answer.contains("RTP/SAVP"), "{answer}");
        assert!(answer.contains(&format!(
            "a=crypto:1 AEAD_AES_256_GCM inline:{}\r\n",
            mk(Suite::AeadAes256Gcm, 7).to_base64()
        )));
        assert_eq!(answer.matches("a=crypto").count(), 1);
        let (sa, sb) = (na.srtp.unwrap(), nb.srtp.unwrap());
        assert_eq!(sa.suite, Suite::AeadAes256Gcm);
        assert_eq!((&sa.tx_key, &sa.rx_key), (&sb.rx_key, &sb.tx_key));
        assert_eq!(sa.tx_key, mk(Suite::AeadAes256Gcm, 1));
    }

    #[test]
    fn sdes_an_answer_of_our_sixth_line_takes_our_key_of_it() {
        let mut a = local(vec![Codec::Pcmu]);
        a.srtp = sdes(true, 1);
        let offer = build_offer(&a).to_string();
        let theirs = mk(Suite::AesCm128HmacSha1_32, 9).to_base64();
        let answer = |line: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
                 m=audio 50000 RTP/SAVP 0\r\n{line}"
            )
        };
        let sd = |t: String| SessionDescription::parse(t.as_bytes()).unwrap();
        let n = apply_answer(
            &a,
            &sd(answer(&format!(
                "a=crypto:6 AES_CM_128_HMAC_SHA1_32 inline:{theirs}\r\n"
            ))),
        )
        .unwrap();
        let s = n.srtp.unwrap();
        assert_eq!(s.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(s.tx_key, mk(Suite::AesCm128HmacSha1_32, 6));
        assert_eq!(s.rx_key, mk(Suite::AesCm128HmacSha1_32, 9));
        assert!(offer.contains("a=crypto:6 AES_CM_128_HMAC_SHA1_32"));
        // A tag we did not offer with that suite is no answer to our offer.
        assert_eq!(
            apply_answer(
                &a,
                &sd(answer(&format!(
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{theirs}\r\n"
                )))
            )
            .unwrap_err(),
            NegotiationError::NoCommonCrypto {
                remote: vec!["1 AES_CM_128_HMAC_SHA1_32 (not ours)".into()],
                local: all_names(),
            }
        );
        // No crypto in the answer while required: NEGOTIATION_FAILED with the reason.
        assert_eq!(
            apply_answer(&a, &sd(answer(""))).unwrap_err(),
            NegotiationError::NoCrypto
        );
    }

    #[test]
    fn sdes_optional_offers_avp_with_crypto_and_falls_back_to_plain() {
        let mut a = local(vec![Codec::Pcmu]);
        a.srtp = sdes(false, 1);
        // An answerer without SRTP answers plain RTP/AVP (the crypto lines ignored).
        let (offer, answer, na, nb) = exchange(&a, &local(vec![Codec::Pcmu])).unwrap();
        assert!(
            offer.contains("RTP/AVP 0 101") && offer.contains("a=crypto:1"),
            "{offer}"
        );
        assert!(!answer.contains("a=crypto"), "{answer}");
        assert_eq!((na.srtp, nb.srtp), (None, None));
        // An optional answerer takes SRTP, still on RTP/AVP (best effort).
        let mut b = local(vec![Codec::Pcmu]);
        b.srtp = sdes(false, 7);
        let (_, answer, na, nb) = exchange(&a, &b).unwrap();
        assert!(
            answer.contains("RTP/AVP") && answer.contains("a=crypto:1"),
            "{answer}"
        );
        assert_eq!(na.srtp.unwrap().rx_key, nb.srtp.unwrap().tx_key);
        // An optional answerer takes a plain offer plainly.
        let (_, _, na, nb) = exchange(&local(vec![Codec::Pcmu]), &b).unwrap();
        assert_eq!((na.srtp, nb.srtp), (None, None));
    }

    #[test]
    fn sdes_refusals_say_why() {
        let p = |t: &str| SessionDescription::parse(t.as_bytes()).unwrap();
        let offer = p(ASTERISK_SDES);
        // SRTP off: an RTP/SAVP offer is refused by name (a tester without srtp configured
        // reports the peer that insists on it).
        assert_eq!(
            answer_offer(&offer, &local(vec![Codec::Pcmu])).unwrap_err(),
            NegotiationError::SrtpOff("RTP/SAVP".into())
        );
        // Optional or required: taken, first line first.
        for required in [false, true] {
            let mut b = local(vec![Codec::Pcma]);
            b.srtp = sdes(required, 7);
            let (ans, n) = answer_offer(&offer, &b).unwrap();
            let s = n.srtp.unwrap();
            assert_eq!(s.suite, Suite::AesCm128HmacSha1_80);
            assert_eq!(
                s.rx_key.as_bytes(),
                std::array::from_fn::<u8, 30, _>(|i| i as u8 + 1)
            );
            assert!(ans.to_string().contains("m=audio 40000 RTP/SAVP 8 101\r\n"));
        }
        // Required, a plain offer: no crypto (the engine answers 488).
        let mut b = local(vec![Codec::Pcmu]);
        b.srtp = sdes(true, 7);
        assert_eq!(
            answer_offer(&p(ASTERISK), &b).unwrap_err(),
            NegotiationError::NoCrypto
        );
        // Only foreign suites or unsupported features: named.
        let with = |lines: &str| {
            ASTERISK_SDES.replace(
                &ASTERISK_SDES[ASTERISK_SDES.find("a=crypto:1").unwrap()
                    ..ASTERISK_SDES.find("a=rtpmap").unwrap()],
                lines,
            )
        };
        let key = MasterKey::from_bytes([3; 30]).to_base64();
        assert_eq!(
            answer_offer(
                &p(&with(&format!(
                    "a=crypto:1 AES_192_CM_HMAC_SHA1_80 inline:xyz\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|1:4;inline:{key}|2^31|2:4\r\n"
                ))),
                &b
            )
            .unwrap_err(),
            NegotiationError::NoCommonCrypto {
                remote: vec![
                    "AES_192_CM_HMAC_SHA1_80".into(),
                    "2 AES_CM_128_HMAC_SHA1_80 with several master keys".into()
                ],
                local: all_names(),
            }
        );
        // One key with an MKI (Skype for Business, Teams: `|2^31|1:1`): taken, and our
        // answer's key carries an MKI of the same length; each direction keeps its own.
        let (answer, n) = answer_offer(
            &p(&with(&format!(
                "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|7:2\r\n"
            ))),
            &b,
        )
        .unwrap();
        let srtp = n.srtp.unwrap();
        assert_eq!(srtp.rx_key.mki(), Mki::new(7, 2));
        assert_eq!(srtp.tx_key.mki(), Mki::new(1, 2));
        let line = answer.to_string();
        assert!(
            line.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{line}"
        );
        assert!(line.contains("|1:2\r\n"), "{line}");
        // A malformed line next to a good one: the good one is taken; alone: the reason.
        let bad = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n";
        let good = format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{key}\r\n");
        let (_, n) = answer_offer(&p(&with(&format!("{bad}{good}"))), &b).unwrap();
        assert_eq!(n.srtp.unwrap().suite, Suite::AesCm128HmacSha1_32);
        let e = answer_offer(&p(&with(bad)), &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed crypto attribute: a=crypto key is 3 bytes, 30 (16 key + 14 salt) expected \
             for AES_CM_128_HMAC_SHA1_80"
        );
        for garbage in ["a=crypto\r\n", "a=crypto:\r\n", "a=crypto:1 \u{e9}\r\n"] {
            assert!(answer_offer(&p(&with(garbage)), &b).is_err(), "{garbage}");
        }
    }

    /// Each suite alone (a GCM-only offer, as an SBC set to AEAD_AES_256_GCM sends) is
    /// answered by a default answerer with that suite; a restricted answerer takes the
    /// offer's first line of its suites; the in-call re-keying reads the same keys
    /// (RFC 4568 §7.1.2, §7.1.4).
    #[test]
    fn sdes_every_suite_alone_and_restricted_sides() {
        for suite in Suite::ALL {
            let mut a = local(vec![Codec::Pcmu]);
            a.srtp = sdes_of(true, 1, &[suite]);
            let mut b = local(vec![Codec::Pcmu]);
            b.srtp = sdes(true, 20);
            let (offer, answer, na, nb) = exchange(&a, &b).unwrap();
            assert_eq!(offer.matches("a=crypto").count(), 1, "{offer}");
            let line = format!("a=crypto:1 {} inline:", suite.name());
            assert!(answer.contains(&line), "{answer}");
            let (sa, sb) = (na.srtp.unwrap(), nb.srtp.unwrap());
            assert_eq!((sa.suite, sb.suite), (suite, suite));
            assert_eq!((&sa.tx_key, &sa.rx_key), (&sb.rx_key, &sb.tx_key));
            assert!(sa.tx_key.fits(suite) && sa.rx_key.fits(suite));
            let audio = |t: &str| SessionDescription::parse(t.as_bytes()).unwrap().media[0].clone();
            assert_eq!(srtp_of_exchange(&audio(&offer), &audio(&answer)), Some(sa));
            assert_eq!(srtp_of_exchange(&audio(&answer), &audio(&offer)), Some(sb));
        }
        // The answerer runs only AES_CM_128_HMAC_SHA1_80: line 5 of the default offer.
        let mut a = local(vec![Codec::Pcmu]);
        a.srtp = sdes(true, 1);
        let mut b = local(vec![Codec::Pcmu]);
        b.srtp = sdes_of(true, 20, &[Suite::AesCm128HmacSha1_80]);
        let (_, answer, na, _) = exchange(&a, &b).unwrap();
        assert!(
            answer.contains("a=crypto:5 AES_CM_128_HMAC_SHA1_80"),
            "{answer}"
        );
        assert_eq!(na.srtp.unwrap().tx_key, mk(Suite::AesCm128HmacSha1_80, 5));
        // The offerer runs only AEAD_AES_256_GCM, the answerer only AES-CM: refused, named.
        a.srtp = sdes_of(true, 1, &[Suite::AeadAes256Gcm]);
        b.srtp = sdes_of(
            true,
            20,
            &[Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32],
        );
        let e = exchange(&a, &b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no crypto suite in common: the peer offers [1 AEAD_AES_256_GCM (not ours)], we run \
             [AES_CM_128_HMAC_SHA1_80 AES_CM_128_HMAC_SHA1_32] with one key and without session \
             parameters"
        );
        // A GCM line whose key has AES-CM's length is malformed, never taken.
        b.srtp = sdes(true, 20);
        let offer = build_offer(&a).to_string().replace(
            &mk(Suite::AeadAes256Gcm, 1).to_base64(),
            &MasterKey::from_bytes([1; 30]).to_base64(),
        );
        assert!(matches!(
            answer_offer(&SessionDescription::parse(offer.as_bytes()).unwrap(), &b),
            Err(NegotiationError::BadCrypto(
                crate::srtp::CryptoError::KeyLength(30, _)
            ))
        ));
    }

    #[test]
    fn precise_errors_on_garbage() {
        let e = |s: &str| SessionDescription::parse(s.as_bytes()).unwrap_err();
        assert_eq!(e(""), SdpError::Missing('v'));
        assert_eq!(e("o=- 1 1 IN IP4 1.2.3.4\r\n"), SdpError::Missing('v'));
        assert_eq!(e("v=1\r\n"), SdpError::BadVersion { line: 1 });
        assert_eq!(e("v=0\r\nhello\r\n"), SdpError::BadLine { line: 2 });
        assert_eq!(e("v=0\r\ns=x\r\n"), SdpError::Missing('o'));
        assert_eq!(
            e("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n"),
            SdpError::BadField {
                line: 2,
                what: "origin"
            }
        );
        let head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n";
        let f = |tail: &str| e(&format!("{head}{tail}"));
        assert_eq!(
            f("c=IN IP4 999.1.1.1\r\n"),
            SdpError::BadField {
                line: 4,
                what: "connection"
            }
        );
        assert_eq!(
            f("c=IN IP6 1.1.1.1\r\n"),
            SdpError::BadField {
                line: 4,
                what: "connection"
            }
        );
        assert_eq!(
            f("m=audio 70000 RTP/AVP 0\r\n"),
            SdpError::BadField {
                line: 4,
                what: "media port"
            }
        );
        assert_eq!(
            f("m=audio\r\n"),
            SdpError::BadField {
                line: 4,
                what: "media line"
            }
        );
        let m = "m=audio 5 RTP/AVP 0\r\n";
        assert_eq!(
            f(&format!("{m}a=rtpmap:0 PCMU\r\n")),
            SdpError::BadField {
                line: 5,
                what: "rtpmap"
            }
        );
        assert_eq!(
            f(&format!("{m}a=rtpmap:200 X/8000\r\n")),
            SdpError::BadField {
                line: 5,
                what: "rtpmap"
            }
        );
        assert_eq!(
            f(&format!("{m}a=ptime:0\r\n")),
            SdpError::BadField {
                line: 5,
                what: "ptime"
            }
        );
        assert_eq!(
            f(&format!("{m}a=fmtp:x 0-15\r\n")),
            SdpError::BadField {
                line: 5,
                what: "fmtp"
            }
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\n\xff\xfe"),
            Err(SdpError::NotUtf8)
        );
    }

    #[test]
    fn never_panics_on_mutations() {
        // Every truncation and every single-byte corruption of a real offer parses or errors.
        let base = PBX_OFFER.as_bytes();
        for cut in 0..base.len() {
            let _ = SessionDescription::parse(&base[..cut]);
        }
        let mut seed = 0x1234_5678u32;
        for i in 0..base.len() {
            for _ in 0..8 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let mut b = base.to_vec();
                b[i] = (seed >> 16) as u8;
                if let Ok(sd) = SessionDescription::parse(&b) {
                    let _ = answer_offer(&sd, &local(vec![Codec::Pcmu, Codec::Opus]));
                    let _ = sd.to_string();
                }
            }
        }
    }
}
