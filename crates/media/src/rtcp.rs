//! RTCP (RFC 3550 §6): SR, RR, SDES (CNAME), BYE, and XR (RFC 3611, [`crate::xr`]); compound
//! build and parse. Other packet types (APP, feedback) are skipped by their length. Malformed input is an error, never a panic.

/// An undecodable RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Shorter than a 4-byte common header, or a length field past the end.
    #[error("rtcp packet truncated at offset {0}")]
    Truncated(usize),
    /// Version is not 2.
    #[error("rtcp version {0} (2 expected)")]
    BadVersion(u8),
    /// The report count does not fit the length.
    #[error("rtcp packet type {0}: count does not fit the length")]
    BadCount(u8),
    /// An SDES item runs past its packet.
    #[error("rtcp sdes item truncated")]
    SdesTruncated,
    /// Empty compound.
    #[error("empty rtcp packet")]
    Empty,
}

/// Packet types (RFC 3550 §12.1).
pub const SR: u8 = 200;
/// Receiver report.
pub const RR: u8 = 201;
/// Source description.
pub const SDES: u8 = 202;
/// Goodbye.
pub const BYE: u8 = 203;

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (0 if none).
    pub lsr: u32,
    /// Delay since that SR in 1/65536 s.
    pub dlsr: u32,
}

/// The sender info of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp.
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// One RTCP packet of a compound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// Sender info.
        info: SenderInfo,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report.
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Source description: (SSRC, CNAME) per chunk; other items are skipped.
    SourceDescription(Vec<(u32, Option<String>)>),
    /// Goodbye.
    Bye {
        /// The sources leaving.
        ssrcs: Vec<u32>,
        /// Reason, if given.
        reason: Option<String>,
    },
    /// Extended report (RFC 3611): the reporter and its blocks.
    ExtendedReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Report blocks.
        blocks: Vec<crate::xr::XrBlock>,
    },
    /// A type we do not decode (APP, RTPFB, PSFB, ...).
    Other {
        /// Packet type.
        packet_type: u8,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn parse_block(b: &[u8]) -> ReportBlock {
    // 24-bit two's complement, sign-extended.
    let lost = (i32::from(b[5]) << 16 | i32::from(b[6]) << 8 | i32::from(b[7])) << 8 >> 8;
    ReportBlock {
        ssrc: be32(&b[0..4]),
        fraction_lost: b[4],
        cumulative_lost: lost,
        highest_seq: be32(&b[8..12]),
        jitter: be32(&b[12..16]),
        lsr: be32(&b[16..20]),
        dlsr: be32(&b[20..24]),
    }
}

fn parse_blocks(body: &[u8], count: usize, pt: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    if body.len() < count * 24 {
        return Err(RtcpError::BadCount(pt));
    }
    Ok(body.chunks_exact(24).take(count).map(parse_block).collect())
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<(u32, Option<String>)>, RtcpError> {
    let mut chunks = Vec::with_capacity(count);
    let mut off = 0;
    for _ in 0..count {
        if body.len() < off + 4 {
            return Err(RtcpError::BadCount(SDES));
        }
        let ssrc = be32(&body[off..off + 4]);
        off += 4;
        let mut cname = None;
        loop {
            let Some(&kind) = body.get(off) else {
                return Err(RtcpError::SdesTruncated);
            };
            if kind == 0 {
                // End of items; the chunk is padded to a 32-bit boundary.
                off = (off + 4) & !3;
                break;
            }
            let len = usize::from(*body.get(off + 1).ok_or(RtcpError::SdesTruncated)?);
            let text = body
                .get(off + 2..off + 2 + len)
                .ok_or(RtcpError::SdesTruncated)?;
            if kind == 1 {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
            off += 2 + len;
        }
        chunks.push((ssrc, cname));
    }
    Ok(chunks)
}

/// Parses a compound RTCP packet (RFC 3550 §6.1).
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        if buf.len() < off + 4 {
            return Err(RtcpError::Truncated(off));
        }
        let h = &buf[off..off + 4];
        let version = h[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let count = usize::from(h[0] & 0x1f);
        let pt = h[1];
        let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
        if buf.len() < off + len {
            return Err(RtcpError::Truncated(off));
        }
        let mut body = &buf[off + 4..off + len];
        if h[0] & 0x20 != 0 {
            // Padding: the last octet counts it.
            let p = usize::from(*body.last().ok_or(RtcpError::Truncated(off))?);
            if p == 0 || p > body.len() {
                return Err(RtcpError::Truncated(off));
            }
            body = &body[..body.len() - p];
        }
        let pkt = match pt {
            SR => {
                if body.len() < 24 {
                    return Err(RtcpError::Truncated(off));
                }
                RtcpPacket::SenderReport {
                    ssrc: be32(&body[0..4]),
                    info: SenderInfo {
                        ntp: u64::from(be32(&body[4..8])) << 32 | u64::from(be32(&body[8..12])),
                        rtp_timestamp: be32(&body[12..16]),
                        packet_count: be32(&body[16..20]),
                        octet_count: be32(&body[20..24]),
                    },
                    reports: parse_blocks(&body[24..], count, pt)?,
                }
            }
            RR => {
                if body.len() < 4 {
                    return Err(RtcpError::Truncated(off));
                }
                RtcpPacket::ReceiverReport {
                    ssrc: be32(&body[0..4]),
                    reports: parse_blocks(&body[4..], count, pt)?,
                }
            }
            SDES => RtcpPacket::SourceDescription(parse_sdes(body, count)?),
            BYE => {
                if body.len() < 4 * count {
                    return Err(RtcpError::BadCount(pt));
                }
                let ssrcs = body.chunks_exact(4).take(count).map(be32).collect();
                let rest = &body[4 * count..];
                let reason = match rest.first() {
                    Some(&n) if n > 0 => rest
                        .get(1..1 + usize::from(n))
                        .map(|t| String::from_utf8_lossy(t).into_owned()),
                    _ => None,
                };
                RtcpPacket::Bye { ssrcs, reason }
            }
            crate::xr::XR => {
                let (ssrc, blocks) = crate::xr::parse_body(body, off)?;
                RtcpPacket::ExtendedReport { ssrc, blocks }
            }
            other => RtcpPacket::Other { packet_type: other },
        };
        out.push(pkt);
        off += len;
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0x80 | (count.min(31) as u8), pt, 0, 0]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let words = ((out.len() - at) / 4 - 1) as u16;
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

fn write_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    out.push(b.fraction_lost);
    // Clamp to the 24-bit signed range (RFC 3550 §6.4.1).
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
    out.extend_from_slice(&lost.to_be_bytes()[1..]);
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.lsr.to_be_bytes());
    out.extend_from_slice(&b.dlsr.to_be_bytes());
}

impl RtcpPacket {
    /// Appends this packet to `out` (at most 31 report blocks / chunks / sources are written).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            RtcpPacket::SenderReport {
                ssrc,
                info,
                reports,
            } => {
                let n = reports.len().min(31);
                let at = header(out, n, SR);
                out.extend_from_slice(&ssrc.to_be_bytes());
                out.extend_from_slice(&info.ntp.to_be_bytes());
                out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&info.packet_count.to_be_bytes());
                out.extend_from_slice(&info.octet_count.to_be_bytes());
                reports[..n].iter().for_each(|b| write_block(out, b));
                finish(out, at);
            }
            RtcpPacket::ReceiverReport { ssrc, reports } => {
                let n = reports.len().min(31);
                let at = header(out, n, RR);
                out.extend_from_slice(&ssrc.to_be_bytes());
                reports[..n].iter().for_each(|b| write_block(out, b));
                finish(out, at);
            }
            RtcpPacket::SourceDescription(chunks) => {
                let n = chunks.len().min(31);
                let at = header(out, n, SDES);
                for (ssrc, cname) in &chunks[..n] {
                    out.extend_from_slice(&ssrc.to_be_bytes());
                    if let Some(c) = cname {
                        let c = &c.as_bytes()[..c.len().min(255)];
                        out.push(1);
                        out.push(c.len() as u8);
                        out.extend_from_slice(c);
                    }
                    // Null terminator, then pad to a word boundary (at least one null).
                    out.push(0);
                    while !(out.len() - at).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                finish(out, at);
            }
            RtcpPacket::Bye { ssrcs, reason } => {
                let n = ssrcs.len().min(31);
                let at = header(out, n, BYE);
                ssrcs[..n]
                    .iter()
                    .for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
                if let Some(r) = reason {
                    let r = &r.as_bytes()[..r.len().min(255)];
                    out.push(r.len() as u8);
                    out.extend_from_slice(r);
                    while !(out.len() - at).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                finish(out, at);
            }
            RtcpPacket::ExtendedReport { ssrc, blocks } => {
                // The header's low five bits are reserved in XR (RFC 3611 §2).
                let at = header(out, 0, crate::xr::XR);
                crate::xr::write_body(out, *ssrc, blocks);
                finish(out, at);
            }
            // We never send types we do not decode.
            RtcpPacket::Other { .. } => {}
        }
    }
}

/// Builds a compound packet from its parts.
pub fn build_compound(packets: &[RtcpPacket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    packets.iter().for_each(|p| p.write(&mut out));
    out
}

/// The middle 32 bits of an NTP timestamp, as carried in LSR (RFC 3550 §6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RTT from a report block received at `arrival_ntp_middle` (RFC 3550 §6.4.1, Figure 2):
/// `A - LSR - DLSR` in 1/65536 s, or `None` when the block carries no LSR.
pub fn rtt_from_block(b: &ReportBlock, arrival_ntp_middle: u32) -> Option<f64> {
    if b.lsr == 0 {
        return None;
    }
    let rtt = arrival_ntp_middle.wrapping_sub(b.lsr).wrapping_sub(b.dlsr);
    // A negative RTT (clock trouble) shows as a huge unsigned value: discard it.
    (rtt < 0x8000_0000).then(|| f64::from(rtt) / 65536.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0xabcd,
            fraction_lost: 64,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 37,
            lsr: 0x1234_5678,
            dlsr: 0x0001_8000,
        }
    }

    #[test]
    fn compound_round_trip() {
        let pkts = vec![
            RtcpPacket::SenderReport {
                ssrc: 1,
                info: SenderInfo {
                    ntp: 0x8000_0001_4000_0000,
                    rtp_timestamp: 160,
                    packet_count: 50,
                    octet_count: 8000,
                },
                reports: vec![block()],
            },
            RtcpPacket::SourceDescription(vec![(1, Some("alice@sipmeter".into()))]),
            RtcpPacket::Bye {
                ssrcs: vec![1],
                reason: Some("done".into()),
            },
        ];
        let bytes = build_compound(&pkts);
        // SR 28+24; SDES 4+4+2+14+1 null → 28; BYE 4+4+1+4 → 16.
        assert_eq!(bytes.len(), 52 + 28 + 16);
        assert_eq!(&bytes[0..4], &[0x81, 200, 0, 12]);
        assert_eq!(&bytes[52..56], &[0x81, 202, 0, 6]);
        assert_eq!(&bytes[80..84], &[0x81, 203, 0, 3]);
        assert_eq!(parse_compound(&bytes).unwrap(), pkts);
        let rr = RtcpPacket::ReceiverReport {
            ssrc: 9,
            reports: vec![block(), ReportBlock::default()],
        };
        assert_eq!(
            parse_compound(&build_compound(std::slice::from_ref(&rr))).unwrap(),
            vec![rr]
        );
    }

    /// RFC 3550 §6.4.1 / A.3: cumulative lost is 24-bit signed, clamped (not wrapped) at
    /// 0x7fffff and −0x800000.
    #[test]
    fn cumulative_lost_is_clamped_to_24_bit_signed() {
        for (lost, wire, back) in [
            (0x0100_0000, [0x7f, 0xff, 0xff], 0x7f_ffff),
            (-0x0100_0000, [0x80, 0, 0], -0x80_0000),
            (-1, [0xff, 0xff, 0xff], -1),
        ] {
            let rr = RtcpPacket::ReceiverReport {
                ssrc: 1,
                reports: vec![ReportBlock {
                    cumulative_lost: lost,
                    ..block()
                }],
            };
            let bytes = build_compound(std::slice::from_ref(&rr));
            // Header 4, reporter 4, then SSRC_n 4 and fraction 1: the field is at 13..16.
            assert_eq!(&bytes[13..16], &wire, "{lost}");
            let Ok(p) = parse_compound(&bytes) else {
                panic!("{lost}")
            };
            let RtcpPacket::ReceiverReport { reports, .. } = &p[0] else {
                panic!("{p:?}")
            };
            assert_eq!(reports[0].cumulative_lost, back);
        }
    }

    #[test]
    fn rfc3550_rtt_example() {
        // RFC 3550 Figure 2: A = 0xb710:8000 (46864.5 s), LSR = 0xb705:2000 (46853.125 s),
        // DLSR = 0x0005:4000 (5.25 s) → RTT = 6.125 s.
        let b = ReportBlock {
            lsr: 0xb705_2000,
            dlsr: 0x0005_4000,
            ..block()
        };
        assert_eq!(rtt_from_block(&b, 0xb710_8000), Some(6.125));
        assert_eq!(
            rtt_from_block(&ReportBlock { lsr: 0, ..b }, 0xb710_8000),
            None
        );
        assert_eq!(ntp_middle(0x0000_b705_2000_0000), 0xb705_2000);
    }

    #[test]
    fn errors_and_unknown_types() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(
            parse_compound(&[0x80, 201, 0]),
            Err(RtcpError::Truncated(0))
        );
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 0]),
            Err(RtcpError::BadVersion(1))
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 1]),
            Err(RtcpError::Truncated(0))
        );
        // RR claims one block but has none.
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::BadCount(201))
        );
        // SDES item length runs past the packet.
        assert_eq!(
            parse_compound(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b']),
            Err(RtcpError::SdesTruncated)
        );
        // APP (204) is skipped by length; the RR after it still parses.
        let mut b = vec![0x80, 204, 0, 2, 0, 0, 0, 1, b'n', b'a', b'm', b'e'];
        b.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 7]);
        assert_eq!(
            parse_compound(&b).unwrap(),
            vec![
                RtcpPacket::Other { packet_type: 204 },
                RtcpPacket::ReceiverReport {
                    ssrc: 7,
                    reports: vec![]
                }
            ]
        );
    }

    #[test]
    fn never_panics() {
        let mut seed = 99u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        };
        for len in 0..80 {
            for _ in 0..300 {
                let mut b: Vec<u8> = (0..len).map(|_| rnd()).collect();
                if len > 4 {
                    b[0] = 0x80 | (b[0] & 0x3f);
                    b[1] = 200 + b[1] % 5;
                    b[2] = 0;
                    b[3] %= 24;
                }
                let _ = parse_compound(&b);
            }
        }
    }
}
