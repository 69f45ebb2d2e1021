//! One call's media bound to sockets: an RTP/RTCP socket pair per call (RFC 3550 §11: RTP on
//! an even port, RTCP on the next), a receive pump per socket that hands datagrams to the
//! shard's loop, and the sans-IO [`MediaSession`] that paces, measures and scores.
//!
//! The endpoint stays a struct in the shard's slab: the pumps only move bytes from a socket
//! to the shard's channel; every decision is taken by the shard loop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::audio::SourceKind;
use media::sdp::{
    self, Codec, Direction, LocalMedia, Negotiated, NegotiationError, SessionDescription,
};
use media::session::{CallMediaSummary, MediaSession, PacketKind, Sample, SessionConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// A group's media settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlan {
    /// Codecs offered and accepted, in preference order.
    pub codecs: Vec<Codec>,
    /// Packetisation time, ms.
    pub ptime_ms: u32,
    /// Offer and accept RFC 4733 telephone-events.
    pub telephone_event: bool,
    /// Offer RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// Advertise this address and port in SDP instead of the socket's own (a media relay or
    /// a static NAT mapping in front of the endpoint; the impairment tests put a relay
    /// there). Every call of the group advertises the same one. `None`: the bound socket.
    pub advertise: Option<SocketAddr>,
    /// What the calls send: the generated speech-like signal (default) or a WAV clip.
    pub source: SourceKind,
}

impl Default for MediaPlan {
    fn default() -> Self {
        Self {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            ptime_ms: 20,
            telephone_event: true,
            rtcp_mux: false,
            advertise: None,
            source: SourceKind::Generated,
        }
    }
}

/// A datagram received on a call's media socket.
#[derive(Debug)]
pub struct MediaIn {
    /// The endpoint's slot in the shard.
    pub endpoint: usize,
    /// Which of the endpoint's calls (stale datagrams of an ended call are dropped).
    pub generation: u64,
    /// The datagram.
    pub bytes: Bytes,
    /// When the pump read it.
    pub at: Instant,
}

/// Hands out RTP/RTCP port pairs: from a range (`rtp_ports = "20000-30000"`), or chosen by the
/// system when no range is set.
#[derive(Debug)]
pub struct PortAllocator {
    range: Option<(u16, u16)>,
    cursor: u16,
}

impl PortAllocator {
    /// `range`: inclusive bounds; `None` lets the system choose. `offset` spreads shards.
    pub fn new(range: Option<(u16, u16)>, offset: usize) -> Self {
        let cursor = range.map_or(0, |(from, to)| {
            let pairs = (usize::from(to).saturating_sub(usize::from(from)) / 2).max(1);
            let port = usize::from(from) + 2 * (offset % pairs);
            u16::try_from(port).unwrap_or(from)
        });
        Self { range, cursor }
    }

    /// Binds an RTP socket on an even port and RTCP on the next one.
    pub fn bind_pair(
        &mut self,
        ip: IpAddr,
    ) -> io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
        match self.range {
            None => {
                for _ in 0..64 {
                    let rtp = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
                    let port = rtp.local_addr()?.port();
                    if port % 2 == 1 || port == u16::MAX {
                        continue;
                    }
                    if let Ok(rtcp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                        return Ok((rtp, rtcp));
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "no free even/odd port pair for RTP/RTCP",
                ))
            }
            Some((from, to)) => {
                // Even RTP ports with room for RTCP on the next one, in u32 so a range that
                // ends at 65535 cannot overflow.
                let (from32, to32) = (u32::from(from) + u32::from(from) % 2, u32::from(to));
                let from = u16::try_from(from32).unwrap_or(u16::MAX);
                let pairs = (to32.saturating_sub(from32) / 2).max(1);
                for _ in 0..pairs {
                    let port = self.cursor.max(from);
                    if u32::from(port) + 1 > to32 {
                        self.cursor = from;
                        continue;
                    }
                    self.cursor = if u32::from(port) + 3 > to32 {
                        from
                    } else {
                        port + 2
                    };
                    let Ok(rtp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port)) else {
                        continue;
                    };
                    if let Ok(rtcp) = std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
                        return Ok((rtp, rtcp));
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("every RTP port pair in {from}-{to} is in use"),
                ))
            }
        }
    }
}

/// Per-call media: sockets, pumps and the session once negotiated.
#[derive(Debug)]
pub struct CallMedia {
    local: LocalMedia,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    pumps: Vec<JoinHandle<()>>,
    session: Option<MediaSession>,
    negotiated: Option<Negotiated>,
    next_sample: Option<Instant>,
    generation: u64,
    source: SourceKind,
    /// Datagrams the socket refused (buffer full): counted, never retried.
    pub send_errors: u64,
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        for p in &self.pumps {
            p.abort();
        }
    }
}

fn spawn_pump(
    sock: Arc<UdpSocket>,
    endpoint: usize,
    generation: u64,
    tx: UnboundedSender<MediaIn>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, _from)) => {
                    let m = MediaIn {
                        endpoint,
                        generation,
                        bytes: Bytes::copy_from_slice(&buf[..n]),
                        at: Instant::now(),
                    };
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from an earlier send: the peer is not there yet or
                // any more; keep listening.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            }
        }
    })
}

impl CallMedia {
    /// Binds the call's port pair and starts its receive pumps.
    pub fn bind(
        ip: IpAddr,
        ports: &mut PortAllocator,
        plan: &MediaPlan,
        session_id: u64,
        endpoint: usize,
        generation: u64,
        tx: &UnboundedSender<MediaIn>,
    ) -> io::Result<Self> {
        let (rtp, rtcp) = ports.bind_pair(ip)?;
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        let port = rtp.local_addr()?.port();
        let rtp = Arc::new(UdpSocket::from_std(rtp)?);
        let rtcp = Arc::new(UdpSocket::from_std(rtcp)?);
        let pumps = vec![
            spawn_pump(Arc::clone(&rtp), endpoint, generation, tx.clone()),
            spawn_pump(Arc::clone(&rtcp), endpoint, generation, tx.clone()),
        ];
        Ok(Self {
            local: LocalMedia {
                codecs: plan.codecs.clone(),
                telephone_event: plan.telephone_event,
                ptime: plan.ptime_ms,
                direction: Direction::SendRecv,
                address: plan.advertise.map_or(ip, |a| a.ip()),
                port: plan.advertise.map_or(port, |a| a.port()),
                rtcp_mux: plan.rtcp_mux,
                session_id,
                session_version: 1,
            },
            rtp,
            rtcp,
            pumps,
            session: None,
            negotiated: None,
            next_sample: None,
            generation,
            source: plan.source.clone(),
            send_errors: 0,
        })
    }

    /// Which call of the endpoint this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Our SDP offer.
    pub fn offer(&self) -> Bytes {
        Bytes::from(sdp::build_offer(&self.local).to_string())
    }

    /// A new offer in the same session with another direction (hold: sendonly; resume:
    /// sendrecv), with the session version raised (RFC 3264 §8).
    pub fn reoffer(&mut self, now: Instant, direction: Direction) -> Bytes {
        self.local.session_version += 1;
        self.set_direction(now, direction);
        self.offer()
    }

    /// Answers the remote offer and starts the session; the answer goes in our 200 OK.
    pub fn answer(
        &mut self,
        offer: &[u8],
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<Bytes, String> {
        let sd = SessionDescription::parse(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
        let (answer, n) = sdp::answer_offer(&sd, &self.local).map_err(|e| negotiation(&e))?;
        self.start(n, ssrc, cname, seed, now)?;
        Ok(Bytes::from(answer.to_string()))
    }

    /// Applies the remote answer to our offer and starts the session.
    pub fn apply_answer(
        &mut self,
        answer: &[u8],
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<(), String> {
        let sd = SessionDescription::parse(answer).map_err(|e| format!("bad SDP answer: {e}"))?;
        let n = sdp::apply_answer(&self.local, &sd).map_err(|e| negotiation(&e))?;
        self.start(n, ssrc, cname, seed, now)
    }

    fn start(
        &mut self,
        n: Negotiated,
        ssrc: u32,
        cname: &str,
        seed: u64,
        now: Instant,
    ) -> Result<(), String> {
        let mut cfg = SessionConfig::from_negotiated(&n, ssrc, cname.to_owned(), seed);
        cfg.source.kind = self.source.clone();
        let session = MediaSession::new(cfg, now).map_err(|e| e.to_string())?;
        self.session = Some(session);
        self.negotiated = Some(n);
        self.next_sample = Some(now + Duration::from_secs(1));
        self.flush(now);
        Ok(())
    }

    /// Sends DTMF digits as RFC 4733 telephone-events (each `duration` long).
    pub fn send_dtmf(&mut self, digits: &str, duration: Duration) -> Result<(), String> {
        let s = self.session.as_mut().ok_or("no media session")?;
        s.send_dtmf(digits, duration).map_err(|e| e.to_string())
    }

    /// Follows a new offer of the remote (re-INVITE): our direction mirrors its direction
    /// (its sendonly → we stop sending; its sendrecv → we send again).
    pub fn follow_remote_offer(&mut self, now: Instant, offer: &[u8]) {
        let Ok(sd) = SessionDescription::parse(offer) else {
            return;
        };
        let Some(m) = sd.media.iter().find(|m| m.media == "audio") else {
            return;
        };
        let theirs = if m.port == 0 {
            Direction::Inactive
        } else {
            sd.direction_of(m)
        };
        self.set_direction(now, theirs.mirror());
    }

    /// Sets our direction (hold: sendonly; resume: sendrecv).
    pub fn set_direction(&mut self, now: Instant, direction: Direction) {
        self.local.direction = direction;
        if let Some(s) = self.session.as_mut() {
            s.set_direction(now, direction);
        }
    }

    /// True once offer/answer completed and media flows.
    pub fn started(&self) -> bool {
        self.session.is_some()
    }

    /// The negotiated codec's name (`PCMU` …).
    pub fn codec(&self) -> Option<&'static str> {
        self.negotiated.as_ref().map(|n| n.codec.encoding_name())
    }

    /// When [`Self::on_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        [s.poll_timeout(), self.next_sample]
            .into_iter()
            .flatten()
            .min()
    }

    /// A datagram arrived on one of the call's sockets.
    pub fn on_packet(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(s) = self.session.as_mut() {
            // Undecodable datagrams are counted by the session (summary.malformed).
            let _ = s.handle_packet(now, bytes);
        }
    }

    /// Sends what is due; returns the second's sample when one is due.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Sample> {
        self.flush(now);
        let due = self.next_sample.filter(|t| *t <= now)?;
        self.next_sample = Some(due + Duration::from_secs(1));
        self.session.as_mut().map(|s| s.sample(now))
    }

    fn flush(&mut self, now: Instant) {
        let (Some(s), Some(n)) = (self.session.as_mut(), self.negotiated.as_ref()) else {
            return;
        };
        while let Some(o) = s.poll_transmit(now) {
            let (sock, to) = match o.kind {
                PacketKind::Rtp => (&self.rtp, n.remote_rtp),
                PacketKind::Rtcp if n.rtcp_mux => (&self.rtp, n.remote_rtcp),
                PacketKind::Rtcp => (&self.rtcp, n.remote_rtcp),
            };
            match sock.try_send_to(&o.bytes, to) {
                Ok(_) => {}
                // An ICMP port-unreachable from an earlier datagram (the peer closed its
                // port, e.g. before our final RTCP BYE): not a failure of the generator.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => self.send_errors += 1,
            }
        }
    }

    /// Ends the call's media: sends RTCP BYE, closes the last interval and sums the call.
    pub fn finish(mut self, now: Instant) -> Option<(CallMediaSummary, Sample)> {
        let s = self.session.as_mut()?;
        s.stop(now);
        let last = s.sample(now);
        self.flush(now);
        let summary = self.session.as_ref()?.summary();
        Some((summary, last))
    }
}

fn negotiation(e: &NegotiationError) -> String {
    format!("SDP negotiation failed: {e}")
}

/// Parses a codec name from a test file (`PCMU`, `pcma`, `G711U` …).
pub fn codec_by_name(name: &str) -> Option<Codec> {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "G711U" | "G.711U" | "ULAW" => Some(Codec::Pcmu),
        "PCMA" | "G711A" | "G.711A" | "ALAW" => Some(Codec::Pcma),
        "G722" | "G.722" => Some(Codec::G722),
        "OPUS" => Some(Codec::Opus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_in_even_odd_pairs_from_the_range() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut system = PortAllocator::new(None, 0);
        let (rtp, rtcp) = system.bind_pair(ip).unwrap();
        let p = rtp.local_addr().unwrap().port();
        assert_eq!(p % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), p + 1);
        // A range hands out successive pairs and skips ports in use.
        // A range that ends at the last port hands out its pairs without overflowing.
        let mut top = PortAllocator::new(Some((65530, 65535)), 7);
        for _ in 0..4 {
            if let Ok((rtp, rtcp)) = top.bind_pair(ip) {
                let p = rtp.local_addr().unwrap().port();
                assert!(p % 2 == 0 && rtcp.local_addr().unwrap().port() == p + 1);
            }
        }
        let base = p.saturating_sub(40) & !1;
        let mut ranged = PortAllocator::new(Some((base, base + 99)), 0);
        let a = ranged.bind_pair(ip).unwrap();
        let b = ranged.bind_pair(ip).unwrap();
        let (pa, pb) = (
            a.0.local_addr().unwrap().port(),
            b.0.local_addr().unwrap().port(),
        );
        assert!(pa >= base && pb <= base + 98 && pa != pb, "{pa} {pb}");
        assert_eq!((pa % 2, pb % 2), (0, 0));
    }

    #[test]
    fn codec_names() {
        assert_eq!(codec_by_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(codec_by_name("G711A"), Some(Codec::Pcma));
        assert_eq!(codec_by_name("GSM"), None);
    }
}
