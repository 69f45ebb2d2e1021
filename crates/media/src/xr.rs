//! RTCP Extended Reports (RFC 3611): the XR packet (§2) with its VoIP Metrics report block
//! (§4.7), and the burst/gap loss model that block reports (§4.7.2, Appendix A.2); the
//! Receiver Reference Time (§4.4) and DLRR (§4.5) blocks, which give a receiver that sends
//! no RTP (on hold, or listening only) its round trip time, as SR/RR give it to senders.
//!
//! A VoIP Metrics block is one receiver's view of one stream: loss and discard rates,
//! burst/gap densities and durations, delays, levels, R factor and MOS. Phones, SBCs and
//! media servers send it so a collector sees call quality from the far end; we send one in each
//! RTCP compound with `rtcp_xr` on, and read the peer's about our stream either way. Other
//! block types are skipped by their length. Malformed input is an error, never a panic.

use crate::rtcp::RtcpError;

/// The XR packet type (RFC 3611 §2).
pub const XR: u8 = 207;
/// The VoIP Metrics report block type (RFC 3611 §4.7).
pub const BT_VOIP_METRICS: u8 = 7;
/// The Receiver Reference Time report block type (RFC 3611 §4.4).
pub const BT_RRT: u8 = 4;
/// The DLRR report block type (RFC 3611 §4.5).
pub const BT_DLRR: u8 = 5;
/// The value of an 8-bit metric that is not available (RFC 3611 §4.7.5–§4.7.6).
pub const UNAVAILABLE: u8 = 127;
/// The gap threshold Gmin: RFC 3611 §4.7.2 recommends 16 (a loss with 16 or more packets
/// received since the previous one is isolated, in a gap; closer losses make a burst).
pub const GMIN: u8 = 16;
/// A VoIP Metrics block's length field: 8 words after the header (36 octets in all).
const VOIP_METRICS_WORDS: u16 = 8;

/// One VoIP Metrics report block (RFC 3611 §4.7), fields as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoipMetrics {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Packets lost / expected since the stream began, in 1/256 (§4.7.1).
    pub loss_rate: u8,
    /// Packets discarded (late for the jitter buffer) / expected, in 1/256.
    pub discard_rate: u8,
    /// Share of the packets lost or discarded within bursts, in 1/256 (§4.7.2).
    pub burst_density: u8,
    /// Share of the packets lost or discarded within gaps, in 1/256.
    pub gap_density: u8,
    /// Mean burst length, ms.
    pub burst_duration_ms: u16,
    /// Mean gap length, ms.
    pub gap_duration_ms: u16,
    /// The latest round trip delay (RTCP, RFC 3550 §6.4.1), ms; 0 unknown (§4.7.3; we send
    /// a known one under 1 ms as 1).
    pub round_trip_delay_ms: u16,
    /// The reporter's own delay: packetisation plus jitter buffer, ms; 0 unknown.
    pub end_system_delay_ms: u16,
    /// Speech level relative to 0 dBm0, dB; 127 unavailable (§4.7.4).
    pub signal_level: i8,
    /// Noise level in pauses relative to 0 dBm0, dB; 127 unavailable.
    pub noise_level: i8,
    /// Residual echo return loss, dB; 127 unavailable.
    pub rerl: u8,
    /// The reporter's gap threshold (§4.7.2).
    pub gmin: u8,
    /// R factor (G.107, 0–100) of this stream; 127 unavailable (§4.7.5).
    pub r_factor: u8,
    /// R factor of an external network segment; 127 unavailable.
    pub ext_r_factor: u8,
    /// Listening-quality MOS ×10 (10–50); 127 unavailable.
    pub mos_lq: u8,
    /// Conversational-quality MOS ×10 (10–50); 127 unavailable.
    pub mos_cq: u8,
    /// Receiver configuration: PLC (bits 7–6), jitter buffer adaptive (5–4), rate (3–0)
    /// (§4.7.6).
    pub rx_config: u8,
    /// Jitter buffer nominal delay, ms.
    pub jb_nominal_ms: u16,
    /// Jitter buffer maximum delay so far, ms.
    pub jb_maximum_ms: u16,
    /// Jitter buffer absolute maximum delay, ms.
    pub jb_abs_max_ms: u16,
}

/// `rx_config` bits 5–4: the jitter buffer is adaptive (RFC 3611 §4.7.6, JBA = 3).
pub const RX_CONFIG_JB_ADAPTIVE: u8 = 0b0011_0000;

/// One sub-block of a DLRR block (RFC 3611 §4.5): the answer to a receiver's Receiver
/// Reference Time block, as an RR's LSR/DLSR answers an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlrrItem {
    /// The receiver whose RRT this answers.
    pub ssrc: u32,
    /// The middle 32 bits of that RRT's NTP timestamp.
    pub lrr: u32,
    /// The delay from receiving that RRT to sending this, in 1/65536 s.
    pub dlrr: u32,
}

/// A block of an XR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XrBlock {
    /// A VoIP Metrics block.
    VoipMetrics(VoipMetrics),
    /// A Receiver Reference Time block (§4.4): the NTP time it was sent.
    ReceiverReferenceTime {
        /// The 64-bit NTP timestamp.
        ntp: u64,
    },
    /// A DLRR block (§4.5): one sub-block per receiver answered.
    Dlrr(Vec<DlrrItem>),
    /// A block type we do not decode (loss RLE, statistics summary, ...).
    Other {
        /// Its block type.
        block_type: u8,
    },
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Parses the body of an XR packet (after the common header): the reporter's SSRC, then
/// report blocks (RFC 3611 §3).
pub(crate) fn parse_body(body: &[u8], at: usize) -> Result<(u32, Vec<XrBlock>), RtcpError> {
    let Some(ssrc) = body.get(0..4) else {
        return Err(RtcpError::Truncated(at));
    };
    let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
    let mut blocks = Vec::new();
    let mut rest = &body[4..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::Truncated(at));
        }
        let len = 4 * (usize::from(be16(&rest[2..4])) + 1);
        let Some(block) = rest.get(..len) else {
            return Err(RtcpError::Truncated(at));
        };
        blocks.push(match block[0] {
            BT_VOIP_METRICS if len == 4 * (usize::from(VOIP_METRICS_WORDS) + 1) => {
                XrBlock::VoipMetrics(VoipMetrics::read(&block[4..]))
            }
            // A VoIP Metrics block of another length is not one we can read.
            BT_VOIP_METRICS => return Err(RtcpError::BadCount(XR)),
            BT_RRT if len == 12 => XrBlock::ReceiverReferenceTime {
                ntp: u64::from_be_bytes(block[4..12].try_into().unwrap_or([0; 8])),
            },
            BT_RRT => return Err(RtcpError::BadCount(XR)),
            BT_DLRR if (len - 4).is_multiple_of(12) => XrBlock::Dlrr(
                block[4..]
                    .chunks_exact(12)
                    .map(|c| {
                        let word =
                            |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                        DlrrItem {
                            ssrc: word(0),
                            lrr: word(4),
                            dlrr: word(8),
                        }
                    })
                    .collect(),
            ),
            BT_DLRR => return Err(RtcpError::BadCount(XR)),
            other => XrBlock::Other { block_type: other },
        });
        rest = &rest[len..];
    }
    Ok((ssrc, blocks))
}

impl VoipMetrics {
    /// Reads the 32 octets after the block header (the caller checked the length).
    fn read(b: &[u8]) -> Self {
        VoipMetrics {
            ssrc: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            loss_rate: b[4],
            discard_rate: b[5],
            burst_density: b[6],
            gap_density: b[7],
            burst_duration_ms: be16(&b[8..10]),
            gap_duration_ms: be16(&b[10..12]),
            round_trip_delay_ms: be16(&b[12..14]),
            end_system_delay_ms: be16(&b[14..16]),
            signal_level: b[16] as i8,
            noise_level: b[17] as i8,
            rerl: b[18],
            gmin: b[19],
            r_factor: b[20],
            ext_r_factor: b[21],
            mos_lq: b[22],
            mos_cq: b[23],
            rx_config: b[24],
            // b[25] is reserved.
            jb_nominal_ms: be16(&b[26..28]),
            jb_maximum_ms: be16(&b[28..30]),
            jb_abs_max_ms: be16(&b[30..32]),
        }
    }

    /// Appends the block, header included.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[BT_VOIP_METRICS, 0]);
        out.extend_from_slice(&VOIP_METRICS_WORDS.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&[
            self.loss_rate,
            self.discard_rate,
            self.burst_density,
            self.gap_density,
        ]);
        for v in [
            self.burst_duration_ms,
            self.gap_duration_ms,
            self.round_trip_delay_ms,
            self.end_system_delay_ms,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&[
            self.signal_level as u8,
            self.noise_level as u8,
            self.rerl,
            self.gmin,
            self.r_factor,
            self.ext_r_factor,
            self.mos_lq,
            self.mos_cq,
            self.rx_config,
            0,
        ]);
        for v in [self.jb_nominal_ms, self.jb_maximum_ms, self.jb_abs_max_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A MOS field in MOS (`None`: unavailable or out of the 1.0–5.0 range).
    pub fn mos(field: u8) -> Option<f64> {
        (10..=50).contains(&field).then(|| f64::from(field) / 10.0)
    }

    /// An R factor field (`None`: unavailable or above 100).
    pub fn r(field: u8) -> Option<u8> {
        (field <= 100).then_some(field)
    }

    /// A level field in dB (`None`: unavailable).
    pub fn level(field: i8) -> Option<i8> {
        (field != UNAVAILABLE as i8).then_some(field)
    }
}

/// Appends the body of an XR packet (after the common header).
pub(crate) fn write_body(out: &mut Vec<u8>, ssrc: u32, blocks: &[XrBlock]) {
    out.extend_from_slice(&ssrc.to_be_bytes());
    for b in blocks {
        match b {
            XrBlock::VoipMetrics(m) => m.write(out),
            XrBlock::ReceiverReferenceTime { ntp } => {
                out.extend_from_slice(&[BT_RRT, 0, 0, 2]);
                out.extend_from_slice(&ntp.to_be_bytes());
            }
            XrBlock::Dlrr(items) => {
                // Empty, the block would say nothing: none is written.
                if let Ok(words) = u16::try_from(3 * items.len())
                    && words > 0
                {
                    out.extend_from_slice(&[BT_DLRR, 0]);
                    out.extend_from_slice(&words.to_be_bytes());
                    for i in items {
                        for w in [i.ssrc, i.lrr, i.dlrr] {
                            out.extend_from_slice(&w.to_be_bytes());
                        }
                    }
                }
            }
            // We never send block types we do not decode.
            XrBlock::Other { .. } => {}
        }
    }
}

/// The burst/gap loss model of RFC 3611 §4.7.2, counted as Appendix A.2 counts it: a loss
/// with at least [`GMIN`] packets received since the previous loss is in a gap; closer
/// losses are in a burst. Fed in sequence order with runs of received and lost packets.
///
/// One departure from the appendix's code, whose counters all start at 0: `lost` starts at
/// 1, the stream beginning in a gap, so a first isolated loss counts as gap → gap (`c14`)
/// rather than as the end of a burst that never was (`c13`), which would report a
/// one-packet burst of density 255 for a stream with only isolated losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstGap {
    /// Packets received since the last loss.
    pkt: u64,
    /// Losses in the current burst (1: the last loss was isolated, in a gap).
    lost: u64,
    c11: u64,
    c13: u64,
    c14: u64,
    c22: u64,
    c23: u64,
    c33: u64,
}

impl Default for BurstGap {
    fn default() -> Self {
        BurstGap {
            pkt: 0,
            lost: 1,
            c11: 0,
            c13: 0,
            c14: 0,
            c22: 0,
            c23: 0,
            c33: 0,
        }
    }
}

/// Burst and gap densities (in 1/256) and mean durations (ms), as a VoIP Metrics block
/// carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BurstGapMetrics {
    /// Share of the packets in bursts that were lost, in 1/256.
    pub burst_density: u8,
    /// Share of the packets in gaps that were lost, in 1/256.
    pub gap_density: u8,
    /// Mean burst length, ms.
    pub burst_duration_ms: u16,
    /// Mean gap length, ms.
    pub gap_duration_ms: u16,
}

impl BurstGap {
    /// `n` packets received in a row.
    pub fn received(&mut self, n: u64) {
        self.pkt += n;
    }

    /// `n` packets lost in a row.
    pub fn lost(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if self.pkt >= u64::from(GMIN) {
            // The first loss after a gap: an isolated loss if the burst before it was one
            // loss (gap → gap), else the end of a burst (burst → gap).
            if self.lost == 1 {
                self.c14 += 1;
            } else {
                self.c13 += 1;
            }
            self.lost = 1;
            self.c11 += self.pkt;
        } else {
            self.lost += 1;
            if self.pkt == 0 {
                self.c33 += 1;
            } else {
                self.c23 += 1;
                self.c22 += self.pkt - 1;
            }
        }
        // The rest of the run: consecutive losses in a burst (no packet between them).
        self.lost += n - 1;
        self.c33 += n - 1;
        self.pkt = 0;
    }

    /// The metrics so far, for packets of `packet_ms` each (RFC 3611 Appendix A.2).
    pub fn metrics(&self, packet_ms: f64) -> BurstGapMetrics {
        let (c11, c14, c22, c23, c33) = (
            self.c11 as f64,
            self.c14 as f64,
            self.c22 as f64,
            self.c23 as f64,
            self.c33 as f64,
        );
        // The last run of received packets counts as gap as the RFC's end-of-period step
        // counts it (c11 += pkt when it is at least Gmin long).
        let tail = if self.pkt >= u64::from(GMIN) {
            self.pkt as f64
        } else {
            0.0
        };
        let c11 = c11 + tail;
        let (c13, c31, c32) = (self.c13 as f64, self.c13 as f64, c23);
        let ctotal = c11 + c14 + c13 + c22 + c23 + c31 + c32 + c33;
        if ctotal == 0.0 {
            return BurstGapMetrics::default();
        }
        let p32 = if c31 + c32 + c33 > 0.0 {
            c32 / (c31 + c32 + c33)
        } else {
            0.0
        };
        let p23 = if c22 + c23 > 0.0 {
            1.0 - c22 / (c22 + c23)
        } else {
            1.0
        };
        let density = |x: f64| (256.0 * x).clamp(0.0, 255.0) as u8;
        let burst_density = if self.c23 + self.c33 + self.c13 == 0 {
            0
        } else {
            density(p23 / (p23 + p32))
        };
        let gap_density = if c11 + c14 > 0.0 {
            density(c14 / (c11 + c14))
        } else {
            0
        };
        // Mean lengths: every burst ends with a burst → gap transition (c13), so the
        // periods are counted by it; none yet: one period, the stream so far.
        let periods = c13.max(1.0);
        let gap_len = (c11 + c14 + c13) * packet_ms / periods;
        let burst_len = (ctotal * packet_ms / periods - gap_len).max(0.0);
        let ms = |x: f64| x.round().clamp(0.0, f64::from(u16::MAX)) as u16;
        BurstGapMetrics {
            burst_density,
            gap_density,
            burst_duration_ms: ms(burst_len),
            gap_duration_ms: ms(gap_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> VoipMetrics {
        VoipMetrics {
            ssrc: 0x1234_5678,
            loss_rate: 13,
            discard_rate: 2,
            burst_density: 200,
            gap_density: 3,
            burst_duration_ms: 60,
            gap_duration_ms: 2_340,
            round_trip_delay_ms: 42,
            end_system_delay_ms: 60,
            signal_level: -21,
            noise_level: -62,
            rerl: UNAVAILABLE,
            gmin: GMIN,
            r_factor: 88,
            ext_r_factor: UNAVAILABLE,
            mos_lq: 42,
            mos_cq: 41,
            rx_config: RX_CONFIG_JB_ADAPTIVE,
            jb_nominal_ms: 40,
            jb_maximum_ms: 80,
            jb_abs_max_ms: 300,
        }
    }

    /// RFC 3611 §4.7: the block is 36 octets, its fields where the figure puts them.
    #[test]
    fn a_voip_metrics_block_is_written_as_the_rfc_draws_it() {
        let mut out = Vec::new();
        metrics().write(&mut out);
        assert_eq!(out.len(), 36);
        assert_eq!(&out[..4], &[7, 0, 0, 8]);
        assert_eq!(&out[4..8], &0x1234_5678u32.to_be_bytes());
        assert_eq!(&out[8..12], &[13, 2, 200, 3]);
        assert_eq!(&out[12..16], &[0, 60, 0x09, 0x24]);
        assert_eq!(&out[16..20], &[0, 42, 0, 60]);
        assert_eq!(&out[20..24], &[(-21i8) as u8, (-62i8) as u8, 127, 16]);
        assert_eq!(&out[24..28], &[88, 127, 42, 41]);
        assert_eq!(&out[28..32], &[0x30, 0, 0, 40]);
        assert_eq!(&out[32..36], &[0, 80, 1, 44]);
        let (ssrc, blocks) = {
            let mut body = 9u32.to_be_bytes().to_vec();
            body.extend_from_slice(&out);
            parse_body(&body, 0).unwrap()
        };
        assert_eq!(ssrc, 9);
        assert_eq!(blocks, vec![XrBlock::VoipMetrics(metrics())]);
    }

    /// RRT and DLRR blocks (RFC 3611 §4.4, §4.5) written and read back, field by field on
    /// the wire; a DLRR with no sub-block is not written.
    #[test]
    fn rrt_and_dlrr_blocks_round_trip() {
        let blocks = vec![
            XrBlock::ReceiverReferenceTime {
                ntp: 0x0102_0304_0506_0708,
            },
            XrBlock::Dlrr(vec![
                DlrrItem {
                    ssrc: 0xa,
                    lrr: 0x0304_0506,
                    dlrr: 0x0001_8000,
                },
                DlrrItem {
                    ssrc: 0xb,
                    lrr: 1,
                    dlrr: 2,
                },
            ]),
            XrBlock::Dlrr(Vec::new()),
        ];
        let mut out = Vec::new();
        write_body(&mut out, 9, &blocks);
        assert_eq!(&out[4..16], &[4, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[16..20], &[5, 0, 0, 6]);
        assert_eq!(&out[20..32], &[0, 0, 0, 0xa, 3, 4, 5, 6, 0, 1, 0x80, 0]);
        assert_eq!(out.len(), 4 + 12 + 4 + 24, "the empty DLRR is left out");
        let (ssrc, read) = parse_body(&out, 0).unwrap();
        assert_eq!(ssrc, 9);
        assert_eq!(read, blocks[..2]);
        // An RRT of another length, a DLRR of a partial sub-block: errors.
        for bad in [&[4u8, 0, 0, 1, 0, 0, 0, 0][..], &[5, 0, 0, 1, 0, 0, 0, 0]] {
            let mut body = 1u32.to_be_bytes().to_vec();
            body.extend_from_slice(bad);
            assert_eq!(
                parse_body(&body, 0),
                Err(RtcpError::BadCount(XR)),
                "{bad:?}"
            );
        }
    }

    /// Unknown blocks are skipped by their length; a short block or a VoIP Metrics block of
    /// the wrong length is an error, not a panic.
    #[test]
    fn other_blocks_are_skipped_and_bad_lengths_are_errors() {
        let mut body = 1u32.to_be_bytes().to_vec();
        // A statistics summary block (BT=6) of 9 words, a type we skip.
        body.extend_from_slice(&[6, 0, 0, 9]);
        body.extend_from_slice(&[0; 36]);
        metrics().write(&mut body);
        let (_, blocks) = parse_body(&body, 0).unwrap();
        assert_eq!(
            blocks,
            vec![
                XrBlock::Other { block_type: 6 },
                XrBlock::VoipMetrics(metrics())
            ]
        );
        for cut in 1..body.len() - 4 {
            if cut == 40 {
                continue; // exactly the statistics summary block: valid
            }
            let r = parse_body(&body[..4 + cut], 0);
            assert!(r.is_err(), "cut at {cut}: {r:?}");
        }
        let mut short = 1u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[7, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(parse_body(&short, 0), Err(RtcpError::BadCount(XR)));
        assert_eq!(parse_body(&[0, 0], 3), Err(RtcpError::Truncated(3)));
    }

    /// Appendix A.2 by hand: losses 16 or more packets apart are gaps; closer ones a burst.
    #[test]
    fn burst_and_gap_follow_appendix_a2() {
        // 100 received, 1 lost, 100 received, 1 lost, 100 received: two isolated losses,
        // no burst; the stream is one gap of 302 packets (c11 + c14) with 2 lost.
        let mut g = BurstGap::default();
        for _ in 0..2 {
            g.received(100);
            g.lost(1);
        }
        g.received(100);
        assert_eq!((g.c11, g.c13, g.c14), (200, 0, 2));
        let want = BurstGapMetrics {
            burst_density: 0,
            // 256 · 2 / 302 = 1.7
            gap_density: 1,
            burst_duration_ms: 0,
            gap_duration_ms: 302 * 20,
        };
        assert_eq!(g.metrics(20.0), want);

        // 200 received, a loss (isolated so far: it ends the gap), then a burst (2 received,
        // 2 lost, 1 received, 1 lost), then 200 received and a loss, which ends the burst,
        // then 50 received.
        let mut g = BurstGap::default();
        g.received(200);
        g.lost(1);
        g.received(2);
        g.lost(2);
        g.received(1);
        g.lost(1);
        g.received(200);
        g.lost(1);
        g.received(50);
        let c = (g.c11, g.c13, g.c14, g.c22, g.c23, g.c33);
        assert_eq!(c, (400, 1, 1, 1, 2, 1));
        // With the 50-packet tail: c11 = 450, c31 = c13 = 1, c32 = c23 = 2, ctotal = 459;
        // p32 = 2 / 4, p23 = 1 − 1/3; burst density 256 · (2/3) / (2/3 + 1/2) = 146.3;
        // gap density 256 · 1 / 451 = 0.57; gap (450 + 1 + 1) · 20 ms; burst 459 · 20 − gap.
        let want = BurstGapMetrics {
            burst_density: 146,
            gap_density: 0,
            burst_duration_ms: 140,
            gap_duration_ms: 9_040,
        };
        assert_eq!(g.metrics(20.0), want);

        // Only consecutive losses in a burst: density 255 (all lost), no gap losses.
        let mut g = BurstGap::default();
        g.lost(5);
        let m = g.metrics(20.0);
        assert_eq!((m.burst_density, m.gap_density), (255, 0), "{m:?}");
        assert_eq!(
            BurstGap::default().metrics(20.0),
            BurstGapMetrics::default()
        );
    }

    /// A run of `n` losses counts as `n` single losses fed one by one.
    #[test]
    fn a_run_of_losses_equals_single_losses() {
        let mut a = BurstGap::default();
        let mut b = BurstGap::default();
        for (rx, lost) in [(0, 3), (20, 1), (5, 4), (16, 2), (3, 1), (100, 7)] {
            a.received(rx);
            b.received(rx);
            a.lost(lost);
            for _ in 0..lost {
                b.lost(1);
            }
        }
        assert_eq!(a, b);
    }
}
