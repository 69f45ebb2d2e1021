//! One call's media, sans-IO: sends paced RTP carrying a generated speech-like signal, sends
//! RTCP reports, receives RTP/RTCP and measures both directions.
//!
//! # Driving a [`MediaSession`]
//!
//! Getters: [`MediaSession::config`], [`MediaSession::remote_ssrc`].
//! Inputs (each takes `now`): [`MediaSession::handle_packet`] for every datagram received on
//! the call's RTP port (and on its RTCP port when not muxed; RTP and RTCP are told apart per
//! RFC 5761 §4 either way).
//! Commands: [`MediaSession::stop`] (queues the final RTCP report with BYE).
//! Outputs: after every input or command, and whenever [`MediaSession::poll_timeout`] has
//! passed, drain [`MediaSession::poll_transmit`] until it returns `None`; send RTP to the
//! negotiated RTP address and RTCP to the RTCP address (the same one when muxed).
//! Measurements: [`MediaSession::sample`] once a second, [`MediaSession::summary`] at the end.
//! With SRTP negotiated ([`SessionConfig::srtp`]), every datagram polled out is protected and
//! every one handled is checked and decrypted first ([`crate::srtp`]); the figures come only
//! from packets that authenticated.
//!
//! The session never reads the clock; its RTCP timing and initial sequence number and
//! timestamp come from a seeded RNG, so a run can be replayed exactly.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::audio::{LevelMeter, Levels, SourceConfig, SpeechSource};
use crate::dtls::{DtlsParams, DtlsSrtp, DtlsSummary};
use crate::dtmf::{TelephoneEvent, char_of, event_of};
use crate::emodel::{self, CodecImpairment};
use crate::g711::Law;
use crate::gaps::AudioGaps;
use crate::rtcp::{
    self, ReportBlock, RtcpError, RtcpPacket, SenderInfo, ntp_middle, rtt_from_block,
};
use crate::rtp::{self, RtpError, RtpHeader, RtpPacket};
use crate::sdp::{Codec, Direction, Negotiated};
use crate::sound::{SoundConfig, SoundWatch};
use crate::srtp::{SrtpContext, SrtpError, SrtpParams, SrtpStream};
use crate::stats::{ReceiveStats, ReportInterval, Verdict};
use crate::tone::{Tone, ToneWatch};
use crate::xr::{DlrrItem, GMIN, RX_CONFIG_JB_ADAPTIVE, UNAVAILABLE, VoipMetrics, XrBlock};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our SSRC.
    pub local_ssrc: u32,
    /// Our SDES CNAME.
    pub cname: String,
    /// The codec (PCMU, PCMA, G.722 or Opus).
    pub codec: Codec,
    /// Payload type we send.
    pub send_pt: u8,
    /// Payload type we expect.
    pub recv_pt: u8,
    /// telephone-event payload type we expect, if negotiated.
    pub recv_event_pt: Option<u8>,
    /// telephone-event payload type we send with, if negotiated.
    pub send_event_pt: Option<u8>,
    /// Packetisation time, ms.
    pub ptime_ms: u32,
    /// RTCP multiplexed on the RTP port (informational: demux works either way).
    pub rtcp_mux: bool,
    /// Whether we send (and receive) media.
    pub direction: Direction,
    /// The generated signal.
    pub source: SourceConfig,
    /// The nominal RTCP report interval (RFC 3550 §6.2 minimum 5 s); each actual interval is
    /// randomised over [0.5, 1.5] × this (§6.3.1), the first is half of it.
    pub rtcp_interval: Duration,
    /// Our NTP time (RFC 3550 §4 format) at the session's `now` of creation; only used to
    /// stamp SRs, so any consistent origin works.
    pub ntp_at_start: u64,
    /// Seed for the initial sequence number, timestamp and RTCP timing.
    pub seed: u64,
    /// SRTP's suite and keys (SDES, RFC 4568); `None`: plain RTP.
    pub srtp: Option<SrtpParams>,
    /// DTLS-SRTP (RFC 5764): the session runs the handshake on the RTP port and keys SRTP
    /// with its export; nothing but the handshake is sent before.
    pub dtls: Option<DtlsParams>,
    /// Send an RTCP XR VoIP Metrics block (RFC 3611 §4.7) about the stream we receive in
    /// each RTCP compound. The peer's blocks about our stream are read either way.
    pub rtcp_xr: bool,
}

impl SessionConfig {
    /// A configuration from the outcome of offer/answer.
    pub fn from_negotiated(n: &Negotiated, local_ssrc: u32, cname: String, seed: u64) -> Self {
        SessionConfig {
            local_ssrc,
            cname,
            codec: n.codec,
            send_pt: n.send_pt,
            recv_pt: n.recv_pt,
            recv_event_pt: n.recv_event_pt,
            send_event_pt: n.send_event_pt,
            ptime_ms: n.ptime,
            rtcp_mux: n.rtcp_mux,
            direction: n.direction,
            source: SourceConfig {
                seed,
                ..SourceConfig::default()
            },
            rtcp_interval: Duration::from_secs(5),
            ntp_at_start: DEFAULT_NTP_ORIGIN,
            seed,
            srtp: n.srtp.clone(),
            dtls: n.dtls.clone(),
            rtcp_xr: false,
        }
    }
}

/// 2024-01-01T00:00:00Z in NTP seconds, shifted to the 64-bit format.
pub const DEFAULT_NTP_ORIGIN: u64 = 3_913_056_000 << 32;

/// A configuration the session cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// This build has no encoder for the codec (Opus without the `opus` feature).
    #[error("codec {0:?} is not in this build")]
    UnsupportedCodec(Codec),
    /// The codec library refused to start.
    #[error("codec {0:?} failed to initialise")]
    CodecInit(Codec),
    /// ptime outside 10..=120 ms.
    #[error("ptime {0} ms out of range (10..=120)")]
    BadPtime(u32),
    /// RTCP interval outside 100 ms ..= 1 h.
    #[error("rtcp interval {0:?} out of range (100 ms ..= 1 h)")]
    BadRtcpInterval(Duration),
}

/// A DTMF request the session cannot carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfSendError {
    /// telephone-event was not negotiated (use SIP INFO instead).
    #[error("telephone-event was not negotiated")]
    NotNegotiated,
    /// Not one of 0-9 * # A-D.
    #[error("not a dtmf digit: {0:?}")]
    BadDigit(char),
    /// The session does not send media.
    #[error("the session does not send media")]
    NotSending,
}

/// An RFC 4733 event being sent.
#[derive(Debug, Clone, Copy)]
struct EventTx {
    event: u8,
    start_ts: u32,
    packets: u32,
    total: u32,
    ends_sent: u8,
}

/// An undecodable datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Bad RTP.
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// Bad RTCP.
    #[error(transparent)]
    Rtcp(#[from] RtcpError),
    /// An SRTP or SRTCP packet that failed its checks (RFC 3711 §3.3).
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// RTP or RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Goes to the remote RTP address.
    Rtp,
    /// Goes to the remote RTCP address (the RTP one when muxed).
    Rtcp,
    /// DTLS (RFC 5764, first byte 20–63 per RFC 7983): goes to the remote RTP address.
    Dtls,
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// RTP or RTCP.
    pub kind: PacketKind,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// The jitter buffer's largest delay, ms.
const JB_MAX_MS: f64 = 300.0;

/// Consecutive late packets after which the buffer re-syncs to the stream's new delay.
const JB_RESYNC_LATE: u32 = 3;

/// A simple adaptive jitter-buffer model: playout at the fastest relative transit seen plus a
/// target delay of `ptime + 3·J` (J the A.8 jitter), clamped to [ptime, 300 ms], raised at
/// once and lowered by half the difference per second. A packet later than its playout
/// instant is late (discarded); the delay a packet waits is the current delay.
///
/// A step in the stream's delay (a sender that stalled once and kept its new pace, a route
/// change) makes every later packet late by the same amount, which jitter (a spread, not a
/// step) never raises the target enough to absorb. As a real buffer does after an underrun,
/// [`JB_RESYNC_LATE`] late packets in a row re-sync playout to the newest: those before it
/// are discarded, the stream plays on from it.
#[derive(Debug, Clone)]
struct JitterBuffer {
    ptime_ms: f64,
    target_ms: f64,
    /// The largest target so far (RTCP XR's "JB maximum").
    max_target_ms: f64,
    base_ns: Option<i128>,
    ext_ts: Option<(u32, i64)>,
    late_total: u64,
    late_interval: u64,
    /// Late packets in a row (see [`JB_RESYNC_LATE`]).
    late_run: u32,
    delay_sum_ms: f64,
    delay_n: u64,
}

impl JitterBuffer {
    fn new(ptime_ms: u32) -> Self {
        JitterBuffer {
            ptime_ms: f64::from(ptime_ms),
            target_ms: f64::from(ptime_ms),
            max_target_ms: f64::from(ptime_ms),
            base_ns: None,
            ext_ts: None,
            late_total: 0,
            late_interval: 0,
            late_run: 0,
            delay_sum_ms: 0.0,
            delay_n: 0,
        }
    }

    fn reset(&mut self) {
        self.base_ns = None;
        self.ext_ts = None;
        self.late_run = 0;
    }

    /// Returns true if the packet is in time for playout.
    fn on_packet(&mut self, arrival_ns: i128, ts: u32, clock_rate: u32) -> bool {
        let ext = match self.ext_ts {
            None => i64::from(ts),
            // Extend the 32-bit timestamp around the previous one.
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        if self.ext_ts.is_none_or(|(_, e)| ext > e) {
            self.ext_ts = Some((ts, ext));
        }
        // Relative transit in integer nanoseconds, so steady streams give exact figures.
        let rel = arrival_ns - i128::from(ext) * 1_000_000_000 / i128::from(clock_rate.max(1));
        let base = match self.base_ns {
            Some(b) if b <= rel => b,
            _ => {
                self.base_ns = Some(rel);
                rel
            }
        };
        let mut lateness_ms = (rel - base) as f64 / 1e6;
        // The fastest packet waits `target` before playout; one later than that missed it.
        if lateness_ms > self.target_ms + 1e-9 {
            self.late_run += 1;
            if self.late_run < JB_RESYNC_LATE {
                self.late_total += 1;
                self.late_interval += 1;
                return false;
            }
            // A delay step: playout re-syncs to this packet.
            self.base_ns = Some(rel);
            lateness_ms = 0.0;
        }
        self.late_run = 0;
        self.delay_sum_ms += self.target_ms - lateness_ms;
        self.delay_n += 1;
        true
    }

    fn adapt(&mut self, jitter_ms: f64) {
        let want = (self.ptime_ms + 3.0 * jitter_ms).clamp(self.ptime_ms, JB_MAX_MS);
        self.target_ms = if want > self.target_ms {
            want
        } else {
            self.target_ms - (self.target_ms - want) / 2.0
        };
        self.max_target_ms = self.max_target_ms.max(self.target_ms);
    }
}

/// Per-second figures of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DirectionSample {
    /// Packets in the interval.
    pub packets: u64,
    /// Bytes (whole RTP packets) in the interval.
    pub bytes: u64,
    /// Packets per second.
    pub packet_rate: f64,
    /// Kilobits per second of RTP packets.
    pub bitrate_kbps: f64,
    /// Cumulative packets lost.
    pub lost: Option<i64>,
    /// Fraction lost in the interval, 0..=1 (sent direction: the remote's last report).
    pub fraction_lost: Option<f64>,
    /// Interarrival jitter, ms (sent direction: the remote's last report).
    pub jitter_ms: Option<f64>,
    /// E-model R for this interval.
    pub r_factor: Option<f64>,
    /// MOS from that R.
    pub mos: Option<f64>,
}

/// Receive-only figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceiveSample {
    /// Duplicates (cumulative).
    pub duplicates: u64,
    /// Out-of-order packets (cumulative).
    pub out_of_order: u64,
    /// Sequence restarts (cumulative).
    pub seq_resets: u64,
    /// Large sequence jumps (cumulative).
    pub seq_jumps: u64,
    /// Largest gap (cumulative).
    pub largest_gap: u64,
    /// SSRC switches (cumulative).
    pub ssrc_switches: u64,
    /// Timestamp jumps (cumulative).
    pub ts_jumps: u64,
    /// Sender clock skew, ppm.
    pub clock_skew_ppm: Option<f64>,
    /// Accumulated clock drift, ms.
    pub clock_drift_ms: Option<f64>,
    /// Spacing between arrivals in the interval, ms.
    pub spacing_min_ms: Option<f64>,
    /// Mean spacing, ms.
    pub spacing_avg_ms: Option<f64>,
    /// Largest spacing, ms.
    pub spacing_max_ms: Option<f64>,
    /// Jitter-buffer late packets in the interval.
    pub jb_late: u64,
    /// Frames concealed by the decoder's PLC (Opus), cumulative.
    pub plc_events: u64,
    /// Jitter-buffer target delay, ms.
    pub jb_target_ms: f64,
    /// Mean time packets waited in the buffer this interval, ms.
    pub jb_delay_ms: Option<f64>,
    /// Decoded audio levels in the interval.
    pub levels: Levels,
}

/// One second of measurements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// Length of the interval.
    pub interval: Duration,
    /// What we sent (quality as reported back by the remote's RTCP).
    pub sent: DirectionSample,
    /// What we received (measured here).
    pub received: DirectionSample,
    /// Receive-only figures.
    pub rx: ReceiveSample,
    /// Round-trip time from the last RTCP LSR/DLSR, ms.
    pub rtt_ms: Option<f64>,
    /// One-way delay used by the E-model (RTT/2 + jitter buffer + packetisation), ms.
    pub one_way_delay_ms: f64,
    /// Top of the R scale the `r_factor`s are on: 100 (G.107, G.711) or 129 (G.107.1,
    /// G.722 and Opus). MOS is on one scale for all codecs; R is not.
    pub r_factor_scale: f64,
}

impl Sample {
    /// The figures under their stable metric names (documented in README.md and docs/media.md).
    /// Absent values (no RTCP yet, no audio) are left out.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut m = Vec::with_capacity(49);
        let mut dir = |prefix: [&'static str; 9], d: &DirectionSample| {
            m.push((prefix[0], d.packets as f64));
            m.push((prefix[1], d.bytes as f64));
            m.push((prefix[2], d.packet_rate));
            m.push((prefix[3], d.bitrate_kbps));
            let opt = [
                (prefix[4], d.lost.map(|l| l as f64)),
                (prefix[5], d.fraction_lost),
                (prefix[6], d.jitter_ms),
                (prefix[7], d.r_factor),
                (prefix[8], d.mos),
            ];
            m.extend(opt.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        };
        dir(
            [
                "tx_packets",
                "tx_bytes",
                "tx_packet_rate",
                "tx_bitrate_kbps",
                "tx_lost",
                "tx_fraction_lost",
                "tx_jitter_ms",
                "tx_r_factor",
                "tx_mos",
            ],
            &self.sent,
        );
        dir(
            [
                "rx_packets",
                "rx_bytes",
                "rx_packet_rate",
                "rx_bitrate_kbps",
                "rx_lost",
                "rx_fraction_lost",
                "rx_jitter_ms",
                "rx_r_factor",
                "rx_mos",
            ],
            &self.received,
        );
        let r = &self.rx;
        m.extend([
            ("rx_duplicates", r.duplicates as f64),
            ("rx_out_of_order", r.out_of_order as f64),
            ("rx_seq_resets", r.seq_resets as f64),
            ("rx_seq_jumps", r.seq_jumps as f64),
            ("rx_largest_gap", r.largest_gap as f64),
            ("rx_ssrc_switches", r.ssrc_switches as f64),
            ("rx_ts_jumps", r.ts_jumps as f64),
            ("rx_jb_late", r.jb_late as f64),
            ("rx_plc_events", r.plc_events as f64),
            ("rx_jb_target_ms", r.jb_target_ms),
            ("one_way_delay_ms", self.one_way_delay_ms),
        ]);
        let opt = [
            ("rx_spacing_min_ms", r.spacing_min_ms),
            ("rx_spacing_avg_ms", r.spacing_avg_ms),
            ("rx_spacing_max_ms", r.spacing_max_ms),
            ("rx_jb_delay_ms", r.jb_delay_ms),
            ("rx_clock_skew_ppm", r.clock_skew_ppm),
            ("rx_clock_drift_ms", r.clock_drift_ms),
            ("rx_level_dbov", r.levels.speech_dbov),
            ("rx_rms_dbov", r.levels.rms_dbov),
            ("rx_noise_dbov", r.levels.noise_dbov),
            ("rtt_ms", self.rtt_ms),
        ];
        m.extend(opt.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        if self.sent.r_factor.is_some() || self.received.r_factor.is_some() {
            m.push(("r_factor_scale", self.r_factor_scale));
        }
        m
    }
}

/// The whole call's media figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallMediaSummary {
    /// From creation to stop (or the last sample).
    pub duration: Duration,
    /// RTP packets sent.
    pub tx_packets: u64,
    /// RTP bytes sent (whole packets).
    pub tx_bytes: u64,
    /// RTP packets received (all).
    pub rx_packets: u64,
    /// RTP bytes received.
    pub rx_bytes: u64,
    /// Expected packets (RFC 3550 A.3).
    pub rx_expected: u64,
    /// Lost packets (RFC 3550 A.3).
    pub rx_lost: i64,
    /// Lost / expected, percent.
    pub rx_loss_percent: f64,
    /// Duplicates.
    pub rx_duplicates: u64,
    /// Out of order.
    pub rx_out_of_order: u64,
    /// Sequence restarts.
    pub rx_seq_resets: u64,
    /// Large sequence jumps.
    pub rx_seq_jumps: u64,
    /// Largest gap.
    pub rx_largest_gap: u64,
    /// SSRC switches.
    pub rx_ssrc_switches: u64,
    /// Timestamp jumps.
    pub rx_ts_jumps: u64,
    /// Final A.8 jitter, ms.
    pub rx_jitter_ms: f64,
    /// Largest A.8 jitter, ms.
    pub rx_max_jitter_ms: f64,
    /// Jitter-buffer late packets.
    pub rx_jb_late: u64,
    /// Frames concealed by the decoder's PLC (Opus).
    pub rx_plc_events: u64,
    /// Sender clock skew, ppm.
    pub rx_clock_skew_ppm: Option<f64>,
    /// Burst ratio of the observed loss (2-state Markov estimate).
    pub rx_burst_ratio: f64,
    /// Mean RTT, ms.
    pub rtt_avg_ms: Option<f64>,
    /// Largest RTT, ms.
    pub rtt_max_ms: Option<f64>,
    /// R for the whole call (loss incl. jitter-buffer discards over the call, observed
    /// BurstR, last one-way delay), on the scale of `emodel` (G.107: up to 100, G.107.1: up
    /// to 129). `None` when no RTP was received: there is nothing to rate (a call without
    /// audio is not a perfect call).
    pub r_factor: Option<f64>,
    /// MOS from that R (1–4.5 whatever the model); `None` when no RTP was received.
    ///
    /// `r_factor`, `mos` and `mos_min` are also `None` for a call with an audio gap
    /// (`gaps.count > 0`: no RTP for [`crate::gaps::AUDIO_GAP_MIN`] or more while the far end
    /// was to send). G.107's packet-loss input is the share of the packets *sent* that were
    /// lost; a sender that stops sent none to lose, and the model has no input for a stretch
    /// without a stream, so any score would be made up; a score of the part that was heard
    /// would be the perfect score of a half-silent call. The per-second samples keep each
    /// heard second's rating.
    pub mos: Option<f64>,
    /// The E-model the codec is scored with: "G.107" (G.711) or "G.107.1" (G.722, Opus).
    pub emodel: &'static str,
    /// Lowest per-second MOS (`None` for a call that is not rated, see `mos`).
    pub mos_min: Option<f64>,
    /// DTMF digits received (RFC 4733).
    pub dtmf_received: String,
    /// DTMF digits sent (RFC 4733), each once its last end packet went out.
    pub dtmf_sent: String,
    /// Undecodable datagrams.
    pub malformed: u64,
    /// SRTP/SRTCP packets received whose authentication tag did not match (RFC 3711 §3.3:
    /// tampered, or sent under another key): dropped, not measured.
    pub srtp_auth_failures: u64,
    /// SRTP/SRTCP packets received again or too old for the replay window (RFC 3711
    /// §3.3.2): dropped, not measured.
    pub srtp_replayed: u64,
    /// DTLS-SRTP: role, version, suite, handshake time, failure (`None`: no DTLS).
    pub dtls: Option<DtlsSummary>,
    /// SRTP packets received under DTLS-SRTP before the handshake gave keys: dropped.
    pub dtls_early: u64,
    /// RTP packets with a payload type we did not negotiate.
    pub unexpected_pt: u64,
    /// RTCP compounds received.
    pub rtcp_received: u64,
    /// The peer's last RTCP XR VoIP Metrics block about our stream (RFC 3611 §4.7): its
    /// view of what we send (its loss, burst/gap, jitter buffer, R and MOS).
    pub peer_xr: Option<VoipMetrics>,
    /// VoIP Metrics blocks received about our stream.
    pub xr_received: u64,
    /// Round trips measured from RTCP XR DLRR blocks answering our Receiver Reference Time
    /// blocks (RFC 3611 §4.4–§4.5: while we sent no RTP), counted in the RTT figures too.
    pub xr_rtts: u64,
    /// The remote sent RTCP BYE.
    pub remote_bye: bool,
    /// Stretches without RTP while the far end was to send ([`crate::gaps`]).
    pub gaps: AudioGaps,
}

/// The encoder/decoder pair of a session.
enum Coder {
    G711(Law),
    // Boxed: the G.722 state is ~400 bytes a direction.
    G722(Box<G722Encoder>, Box<G722Decoder>),
    #[cfg(feature = "opus")]
    Opus(opus::Encoder, opus::Decoder),
}

/// Opus runs at 16 kHz mono here (wideband speech); its RTP clock is 48 kHz (RFC 7587).
#[cfg(feature = "opus")]
const OPUS_RATE: u32 = 16_000;

impl fmt::Debug for Coder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Coder::G711(law) => write!(f, "G711({law:?})"),
            Coder::G722(..) => f.write_str("G722"),
            #[cfg(feature = "opus")]
            Coder::Opus(..) => f.write_str("Opus"),
        }
    }
}

impl Coder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Coder::G711(law) => law.encode(pcm, out),
            Coder::G722(enc, _) => {
                let at = out.len();
                out.resize(at + enc.max_encode_bytes(pcm.len()), 0);
                // The buffer is sized by the encoder's own bound, so this cannot fail.
                let n = enc.encode_into(pcm, &mut out[at..]).unwrap_or(0);
                out.truncate(at + n);
            }
            #[cfg(feature = "opus")]
            Coder::Opus(enc, _) => {
                let at = out.len();
                // 1275 bytes is Opus's largest frame (RFC 6716 §3.2.1).
                out.resize(at + 1275, 0);
                let n = enc.encode(pcm, &mut out[at..]).unwrap_or(0);
                out.truncate(at + n);
            }
        }
    }

    /// Runs the decoder's packet-loss concealment for one missing frame of `samples`.
    /// Returns false for codecs without PLC here (G.711, G.722).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> bool {
        #[cfg(feature = "opus")]
        if let Coder::Opus(_, dec) = self {
            out.resize(samples, 0);
            let n = dec.decode(&[], out, false).unwrap_or(0);
            out.truncate(n);
            return true;
        }
        let _ = (samples, out);
        false
    }

    /// True for codecs whose decoder conceals lost frames (and must see packets in order).
    fn has_plc(&self) -> bool {
        #[cfg(feature = "opus")]
        if matches!(self, Coder::Opus(..)) {
            return true;
        }
        false
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        match self {
            Coder::G711(law) => law.decode(payload, out),
            Coder::G722(_, dec) => {
                out.resize(dec.max_decode_samples(payload.len()), 0);
                // Sized by the decoder's own bound, as above.
                let n = dec.decode_into(payload, out).unwrap_or(0);
                out.truncate(n);
            }
            #[cfg(feature = "opus")]
            Coder::Opus(_, dec) => {
                // Up to 120 ms per packet (RFC 6716 §3.2.1).
                out.resize(OPUS_RATE as usize * 120 / 1000, 0);
                let n = dec.decode(payload, out, false).unwrap_or(0);
                out.truncate(n);
            }
        }
    }
}

/// The encoder/decoder pair of `codec`, and the sample rate it codes at.
fn coder_for(codec: Codec) -> Result<(Coder, u32), ConfigError> {
    // G.722 samples at 16 kHz but its RTP clock is 8 kHz (RFC 3551 §4.5.2).
    Ok(match codec {
        Codec::Pcmu => (Coder::G711(Law::Ulaw), 8000),
        Codec::Pcma => (Coder::G711(Law::Alaw), 8000),
        Codec::G722 => (
            Coder::G722(Box::new(G722Encoder::new()), Box::new(G722Decoder::new())),
            16000,
        ),
        #[cfg(not(feature = "opus"))]
        Codec::Opus => return Err(ConfigError::UnsupportedCodec(Codec::Opus)),
        #[cfg(feature = "opus")]
        Codec::Opus => {
            let init = ConfigError::CodecInit(Codec::Opus);
            let mut enc =
                opus::Encoder::new(OPUS_RATE, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|_| init)?;
            enc.set_bitrate(opus::Bitrate::Bits(32_000))
                .map_err(|_| init)?;
            let dec = opus::Decoder::new(OPUS_RATE, opus::Channels::Mono).map_err(|_| init)?;
            (Coder::Opus(enc, dec), OPUS_RATE)
        }
    })
}

/// What the peer sent before the session's last change between plain RTP and SRTP
/// ([`MediaSession::rekey`]), taken until its first datagram of the new kind.
#[derive(Debug)]
enum SrtpWas {
    /// No change, or its first datagram of the new kind came.
    Nothing,
    /// Plain RTP (the session took SRTP).
    Plain,
    /// SRTP under this receive stream (the session dropped SRTP).
    Srtp(Box<SrtpStream>),
}

/// One call's media. See the module docs for how to drive it.
#[derive(Debug)]
pub struct MediaSession {
    cfg: SessionConfig,
    coder: Coder,
    clock_rate: u32,
    spp: u32,
    start: Instant,
    rng: SmallRng,
    // sending
    source: SpeechSource,
    pcm: Vec<i16>,
    next_rtp: Option<Instant>,
    seq: u16,
    ts: u32,
    tx_packets: u64,
    tx_bytes: u64,
    tx_octets: u64,
    tx_interval: (u64, u64),
    /// `tx_packets` and `tx_octets` when the current SSRC began: an SR counts its own SSRC's
    /// (RFC 3550 §6.4.1), and a new clock rate takes a new SSRC (RFC 7160 §4.1).
    ssrc_base: (u64, u64),
    /// Our RTP timestamp at an instant (the stream's first packet, or the first of a new
    /// SSRC): an SR's timestamp is this one moved on by the time since (RFC 3550 §6.4.1).
    ts_anchor: (Instant, u32),
    dtmf_queue: VecDeque<(u8, u32)>,
    dtmf_current: Option<EventTx>,
    dtmf_gap: u32,
    dtmf_sent: String,
    event_ts: u32,
    // rtcp
    next_rtcp: Option<Instant>,
    last_sr: Option<(u32, Instant)>,
    remote_report: Option<ReportBlock>,
    report_interval: ReportInterval,
    rtt_ms: Option<f64>,
    rtt_sum_ms: f64,
    rtt_n: u64,
    rtt_max_ms: Option<f64>,
    rtcp_received: u64,
    remote_bye: bool,
    /// The peer's last RTCP XR VoIP Metrics block about our stream, and how many came.
    peer_xr: Option<VoipMetrics>,
    xr_received: u64,
    /// The peer's last Receiver Reference Time block (RFC 3611 §4.4): its SSRC, the middle
    /// 32 bits of its NTP time, and when it came; answered by a DLRR block in ours.
    peer_rrt: Option<(u32, u32, Instant)>,
    /// Round trips measured from DLRR blocks answering our RRT (we sent no RTP then).
    xr_rtts: u64,
    /// The last speech and noise levels measured (dBov), for our XR blocks.
    xr_levels: (Option<f64>, Option<f64>),
    // receiving
    stats: ReceiveStats,
    jb: JitterBuffer,
    meter: LevelMeter,
    /// When sound starts and stops in what we decode, for a session asked to watch it
    /// ([`MediaSession::watch_sound`]).
    sound: Option<Box<SoundWatch>>,
    /// Tones and in-band DTMF in what we decode, for a session asked to watch them
    /// ([`MediaSession::watch_tones`]).
    tones: Option<Box<ToneWatch>>,
    decoded: Vec<i16>,
    origin: Option<Instant>,
    seen_resets: (u64, u64),
    /// The payload type, RTP clock rate and samples per packet we received before the last
    /// codec change, until the first packet of the new codec arrives: the far end's packets
    /// still on their way are its stream, measured on their own clock (RFC 7160 §4.3).
    prev_rx: Option<(u8, u32, u32)>,
    malformed: u64,
    unexpected_pt: u64,
    // srtp (boxed: most calls have none)
    srtp: Option<Box<SrtpContext>>,
    /// Each received SRTP datagram is decrypted here (one buffer for the whole call).
    srtp_plain: Vec<u8>,
    /// What the peer sent before the last change between plain RTP and SRTP, still taken
    /// until its first datagram of the new kind ([`Self::rekey`]).
    srtp_was: SrtpWas,
    srtp_auth_failures: u64,
    srtp_replayed: u64,
    // DTLS-SRTP (boxed: most calls have none)
    dtls: Option<Box<DtlsSrtp>>,
    dtls_early: u64,
    dtmf: String,
    last_event_ts: Option<u32>,
    last_played: Option<u16>,
    plc_events: u64,
    /// The far end is to send, as far as the driver knows ([`Self::set_far_end_sends`]).
    far_end_sends: bool,
    // lifecycle
    paused_at: Option<Instant>,
    pending: VecDeque<Outgoing>,
    stopped_at: Option<Instant>,
    last_sample: Instant,
    one_way_ms: f64,
    mos_min: Option<f64>,
}

fn ntp_add(base: u64, d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    base.wrapping_add((d.as_secs() << 32) | frac)
}

impl MediaSession {
    /// A session starting at `now` (the first RTP packet goes out at `now`).
    pub fn new(cfg: SessionConfig, now: Instant) -> Result<Self, ConfigError> {
        let (coder, sample_rate) = coder_for(cfg.codec)?;
        if !(10..=120).contains(&cfg.ptime_ms) {
            return Err(ConfigError::BadPtime(cfg.ptime_ms));
        }
        // A zero interval would make poll_transmit emit RTCP forever at one instant.
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&cfg.rtcp_interval) {
            return Err(ConfigError::BadRtcpInterval(cfg.rtcp_interval));
        }
        let clock_rate = cfg.codec.clock_rate();
        let spp = clock_rate / 1000 * cfg.ptime_ms;
        let frame = sample_rate / 1000 * cfg.ptime_ms;
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        // RFC 3550 §5.1: random initial sequence number and timestamp.
        let seq = rng.random();
        let ts = rng.random();
        let first_rtcp = now + cfg.rtcp_interval.mul_f64(rng.random_range(0.25..0.75));
        Ok(MediaSession {
            coder,
            clock_rate,
            spp,
            start: now,
            source: SpeechSource::new(cfg.source.clone(), sample_rate),
            pcm: vec![0; frame as usize],
            next_rtp: cfg.direction.sends().then_some(now),
            seq,
            ts,
            tx_packets: 0,
            tx_bytes: 0,
            tx_octets: 0,
            tx_interval: (0, 0),
            ssrc_base: (0, 0),
            ts_anchor: (now, ts),
            dtmf_queue: VecDeque::new(),
            dtmf_current: None,
            dtmf_gap: 0,
            dtmf_sent: String::new(),
            event_ts: 0,
            next_rtcp: Some(first_rtcp),
            last_sr: None,
            remote_report: None,
            report_interval: ReportInterval::default(),
            rtt_ms: None,
            rtt_sum_ms: 0.0,
            rtt_n: 0,
            rtt_max_ms: None,
            rtcp_received: 0,
            peer_xr: None,
            xr_received: 0,
            peer_rrt: None,
            xr_rtts: 0,
            xr_levels: (None, None),
            remote_bye: false,
            stats: {
                let mut stats = ReceiveStats::new(clock_rate, spp);
                stats.watch_gaps(now, cfg.direction.receives());
                stats
            },
            jb: JitterBuffer::new(cfg.ptime_ms),
            meter: LevelMeter::default(),
            sound: None,
            tones: None,
            decoded: Vec::with_capacity(frame as usize),
            origin: None,
            seen_resets: (0, 0),
            prev_rx: None,
            malformed: 0,
            unexpected_pt: 0,
            srtp: cfg.srtp.as_ref().map(|p| Box::new(SrtpContext::new(p))),
            srtp_plain: Vec::new(),
            srtp_was: SrtpWas::Nothing,
            srtp_auth_failures: 0,
            srtp_replayed: 0,
            dtls: cfg.dtls.as_ref().map(|p| Box::new(DtlsSrtp::new(p, now))),
            dtls_early: 0,
            dtmf: String::new(),
            last_event_ts: None,
            last_played: None,
            plc_events: 0,
            far_end_sends: true,
            paused_at: None,
            pending: VecDeque::new(),
            stopped_at: None,
            last_sample: now,
            one_way_ms: 0.0,
            mos_min: None,
            rng,
            cfg,
        })
    }

    /// New SDES keys inside the call ([`crate::sdp::srtp_of_exchange`], RFC 4568 §7.1.4):
    /// each direction whose suite or master key changed starts a new SRTP stream (its keys
    /// derived anew, its index and replay window starting again, RFC 3711 §3.2.1), the other
    /// goes on as it was. `None`: the exchange dropped SRTP (an `srtp = "optional"` call
    /// whose peer offered plain RTP): sent and received plain from now on. Keys in a plain
    /// session: SRTP starts. Across a change between plain and SRTP, what the peer sent
    /// before it (its datagrams of the old kind still on their way: an offerer changes when
    /// our answer reaches it) is taken until its first datagram of the new kind: SRTP that
    /// authenticates under the old key, or plain RTP before a first SRTP datagram
    /// authenticates. False (nothing done) when nothing changed, or with DTLS-SRTP (its keys
    /// are the handshake's).
    pub fn rekey(&mut self, p: Option<&SrtpParams>) -> bool {
        if self.dtls.is_some() || self.cfg.srtp.as_ref() == p {
            return false;
        }
        match (self.srtp.as_deref_mut(), self.cfg.srtp.as_ref(), p) {
            (Some(ctx), Some(old), Some(p)) => {
                if old.suite != p.suite || old.tx_key != p.tx_key {
                    ctx.tx = SrtpStream::new(p.suite, &p.tx_key);
                }
                if old.suite != p.suite || old.rx_key != p.rx_key {
                    ctx.rx = SrtpStream::new(p.suite, &p.rx_key);
                }
            }
            (_, _, Some(p)) => {
                self.srtp = Some(Box::new(SrtpContext::new(p)));
                self.srtp_was = SrtpWas::Plain;
            }
            (_, _, None) => {
                self.srtp_was = match self.srtp.take() {
                    Some(ctx) => SrtpWas::Srtp(Box::new(ctx.rx)),
                    None => SrtpWas::Nothing,
                };
            }
        }
        self.cfg.srtp = p.cloned();
        true
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The remote SSRC once a packet was received.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.stats.ssrc()
    }

    fn ntp(&self, now: Instant) -> u64 {
        ntp_add(
            self.cfg.ntp_at_start,
            now.saturating_duration_since(self.start),
        )
    }

    /// When [`Self::poll_transmit`] has something next; `None` once stopped and drained.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(d) = self.dtls.as_deref() {
            // DTLS datagrams waiting (a flight, or an answer to the peer's retransmission
            // after the keys) are due now; while handshaking only its timer counts.
            if d.has_output() {
                return Some(d.now());
            }
            if self.srtp.is_none() {
                return d.poll_timeout();
            }
        }
        if self.stopped_at.is_some() {
            return if self.pending.is_empty() {
                None
            } else {
                Some(self.start)
            };
        }
        match (self.next_rtp, self.next_rtcp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the next paced RTP packet is due (`None` while not sending): a driver compares
    /// it with the time it actually sends to measure its own send-timing jitter.
    pub fn rtp_due(&self) -> Option<Instant> {
        self.next_rtp.filter(|_| self.stopped_at.is_none())
    }

    /// The next datagram due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Outgoing> {
        let mut bytes = Vec::new();
        let kind = self.poll_transmit_into(now, &mut bytes)?;
        Some(Outgoing { kind, bytes })
    }

    /// As [`Self::poll_transmit`], but the datagram is written into `out` (cleared first), so
    /// a driver can reuse one buffer for every packet. `None` (and `out` empty): nothing due.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<PacketKind> {
        if let Some(d) = self.dtls.as_deref_mut() {
            d.handle_timeout(now);
            if let Some(datagram) = d.poll_datagram() {
                out.clear();
                out.extend_from_slice(&datagram);
                return Some(PacketKind::Dtls);
            }
            self.take_dtls_keys(now);
            if self.srtp.is_none() {
                // RFC 5764 §4.1: no media before the keys (what the handshake failed or
                // has not finished for is dropped, never sent in the clear).
                self.pending.clear();
                out.clear();
                return None;
            }
        }
        loop {
            let kind = self.next_datagram(now, out)?;
            let Some(srtp) = self.srtp.as_mut() else {
                return Some(kind);
            };
            // RFC 3711 §3.3, §3.4: nothing leaves unprotected.
            let protected = match kind {
                PacketKind::Rtp => srtp.tx.protect_rtp(out),
                PacketKind::Rtcp => srtp.tx.protect_rtcp(out),
                PacketKind::Dtls => Ok(()),
            };
            if protected.is_ok() {
                return Some(kind);
            }
            // Only an exhausted index (2^48 RTP or 2^31 RTCP packets under one key, RFC 3711
            // §9.2) fails: the packet is not sent, plain or otherwise.
            out.clear();
        }
    }

    /// The next datagram due, in the clear.
    fn next_datagram(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<PacketKind> {
        out.clear();
        if let Some(o) = self.pending.pop_front() {
            out.extend_from_slice(&o.bytes);
            return Some(o.kind);
        }
        if self.stopped_at.is_some() {
            return None;
        }
        if let Some(at) = self.next_rtp.filter(|at| *at <= now) {
            // Paced on the codec clock: packet n leaves at start + n·ptime, however late
            // the driver calls (a late driver gets the backlog in a burst).
            self.next_rtp = Some(at + Duration::from_millis(u64::from(self.cfg.ptime_ms)));
            self.build_rtp(out);
            return Some(PacketKind::Rtp);
        }
        if let Some(at) = self.next_rtcp.filter(|at| *at <= now) {
            let jitter = self.rng.random_range(0.5..1.5);
            self.next_rtcp = Some(at + self.cfg.rtcp_interval.mul_f64(jitter));
            out.extend_from_slice(&rtcp::build_compound(&self.build_report(now, false)));
            return Some(PacketKind::Rtcp);
        }
        None
    }

    /// Queues DTMF digits to send as RFC 4733 events of `duration` each (50 ms of audio
    /// between digits). Events replace the audio packets while they last.
    pub fn send_dtmf(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfSendError> {
        if self.cfg.send_event_pt.is_none() {
            return Err(DtmfSendError::NotNegotiated);
        }
        if self.next_rtp.is_none() {
            return Err(DtmfSendError::NotSending);
        }
        let events = digits
            .chars()
            .map(|c| event_of(c).ok_or(DtmfSendError::BadDigit(c)))
            .collect::<Result<Vec<_>, _>>()?;
        // The duration field is 16 bits of timestamp units (RFC 4733 §2.5.1.3); whole packets.
        let units = (duration.as_secs_f64() * f64::from(self.clock_rate)) as u32;
        let total = units.clamp(self.spp, u32::from(u16::MAX) / self.spp * self.spp);
        self.dtmf_queue
            .extend(events.into_iter().map(|e| (e, total)));
        Ok(())
    }

    /// The next RFC 4733 packet (payload and marker) if an event is being sent.
    fn next_event(&mut self) -> Option<([u8; 4], bool)> {
        if self.dtmf_current.is_none() && self.dtmf_gap == 0 {
            let (event, total) = self.dtmf_queue.pop_front()?;
            self.dtmf_current = Some(EventTx {
                event,
                start_ts: self.ts,
                packets: 0,
                total,
                ends_sent: 0,
            });
        }
        let Some(e) = self.dtmf_current.as_mut() else {
            self.dtmf_gap = self.dtmf_gap.saturating_sub(1);
            return None;
        };
        if e.ends_sent == 0 {
            e.packets += 1;
        }
        let duration = (e.packets * self.spp).min(e.total);
        let end = duration >= e.total;
        let marker = e.packets == 1 && e.ends_sent == 0;
        if end {
            e.ends_sent += 1;
        }
        let payload = TelephoneEvent {
            event: e.event,
            end,
            volume: 10,
            duration: duration as u16,
        }
        .encode();
        // All packets of an event carry its start time (RFC 4733 §2.5.1.2).
        self.event_ts = e.start_ts;
        // RFC 4733 §2.5.1.4: the end packet goes out three times.
        if e.ends_sent == 3 {
            if let Some(c) = char_of(e.event) {
                self.dtmf_sent.push(c);
            }
            self.dtmf_current = None;
            self.dtmf_gap = (50 / self.cfg.ptime_ms).max(1);
        }
        Some((payload, marker))
    }

    /// Appends the next RTP packet (an RFC 4733 event while one is being sent, else audio)
    /// to `out`, which is empty.
    fn build_rtp(&mut self, out: &mut Vec<u8>) {
        if let Some(pt) = self.cfg.send_event_pt
            && let Some((payload, marker)) = self.next_event()
        {
            let header = RtpHeader {
                marker,
                payload_type: pt,
                sequence: self.seq,
                timestamp: self.event_ts,
                ssrc: self.cfg.local_ssrc,
                ..RtpHeader::default()
            };
            header.write(&payload, out);
            return self.account(out.len(), 4);
        }
        let marker = self.source.spurt_starts();
        self.source.fill(&mut self.pcm);
        let header = RtpHeader {
            marker,
            payload_type: self.cfg.send_pt,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.cfg.local_ssrc,
            ..RtpHeader::default()
        };
        out.reserve(12 + self.pcm.len());
        header.write(&[], out);
        let payload_at = out.len();
        self.coder.encode(&self.pcm, out);
        let payload_len = out.len() - payload_at;
        self.account(out.len(), payload_len);
    }

    fn account(&mut self, len: usize, payload_len: usize) {
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.spp);
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
        self.tx_octets += payload_len as u64;
        self.tx_interval.0 += 1;
        self.tx_interval.1 += len as u64;
    }

    fn build_report(&mut self, now: Instant, bye: bool) -> Vec<RtcpPacket> {
        let mut reports = Vec::new();
        if let Some(remote) = self.stats.ssrc() {
            let t = self.stats.totals();
            let (lsr, dlsr) = match self.last_sr {
                // DLSR in 1/65536 s (RFC 3550 §6.4.1).
                Some((lsr, at)) => (
                    lsr,
                    (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
                ),
                None => (0, 0),
            };
            reports.push(ReportBlock {
                ssrc: remote,
                fraction_lost: self.report_interval.fraction(t.expected, t.received),
                cumulative_lost: t.lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
                highest_seq: t.ext_highest_seq,
                jitter: t.jitter as u32,
                lsr,
                dlsr,
            });
        }
        let ssrc = self.cfg.local_ssrc;
        let mut out = Vec::with_capacity(3);
        let (packets, octets) = (
            self.tx_packets - self.ssrc_base.0,
            self.tx_octets - self.ssrc_base.1,
        );
        if packets > 0 {
            // The RTP timestamp of `now` on our media clock (RFC 3550 §6.4.1).
            let (at, ts) = self.ts_anchor;
            let elapsed = now.saturating_duration_since(at);
            let rtp_timestamp =
                ts.wrapping_add((elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u32);
            out.push(RtcpPacket::SenderReport {
                ssrc,
                info: SenderInfo {
                    ntp: self.ntp(now),
                    rtp_timestamp,
                    packet_count: packets as u32,
                    octet_count: octets as u32,
                },
                reports,
            });
        } else {
            out.push(RtcpPacket::ReceiverReport { ssrc, reports });
        }
        out.push(RtcpPacket::SourceDescription(vec![(
            ssrc,
            Some(self.cfg.cname.clone()),
        )]));
        if self.cfg.rtcp_xr {
            let xr = self.xr_blocks(now, packets == 0);
            if !xr.is_empty() {
                out.push(RtcpPacket::ExtendedReport { ssrc, blocks: xr });
            }
        }
        if bye {
            out.push(RtcpPacket::Bye {
                ssrcs: vec![ssrc],
                reason: None,
            });
        }
        out
    }

    /// Our XR blocks (with `rtcp_xr`): a Receiver Reference Time block while we send no RTP
    /// (`receiver_only`: our compound is an RR, so the peer has no SR of ours to answer with
    /// LSR/DLSR; RFC 3611 §4.4, as `a=rtcp-xr:rcvr-rtt=all` says), a DLRR block answering
    /// the peer's last RRT (§4.5), and our VoIP Metrics about the peer's stream once it has
    /// one.
    fn xr_blocks(&self, now: Instant, receiver_only: bool) -> Vec<XrBlock> {
        let mut blocks = Vec::new();
        if receiver_only {
            blocks.push(XrBlock::ReceiverReferenceTime { ntp: self.ntp(now) });
        }
        if let Some((ssrc, lrr, at)) = self.peer_rrt {
            blocks.push(XrBlock::Dlrr(vec![DlrrItem {
                ssrc,
                lrr,
                // In 1/65536 s (§4.5, as DLSR in RFC 3550 §6.4.1).
                dlrr: (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            }]));
        }
        if let Some(remote) = self.stats.ssrc() {
            blocks.push(XrBlock::VoipMetrics(self.voip_metrics(now, remote)));
        }
        blocks
    }

    /// A round trip time measured (ms): from an RR's LSR/DLSR or an XR DLRR.
    fn record_rtt(&mut self, ms: f64) {
        self.rtt_ms = Some(ms);
        self.rtt_sum_ms += ms;
        self.rtt_n += 1;
        self.rtt_max_ms = Some(self.rtt_max_ms.map_or(ms, |m| m.max(ms)));
    }

    /// Handles one received datagram (RTP or RTCP, demultiplexed per RFC 5761 §4).
    /// Malformed datagrams are counted and returned as an error; the session carries on.
    pub fn handle_packet(&mut self, now: Instant, buf: &[u8]) -> Result<PacketKind, PacketError> {
        if let Some(d) = self.dtls.as_deref_mut() {
            // RFC 7983 §7: 20–63 is DTLS, the rest goes on as (S)RTP/(S)RTCP.
            if crate::dtls::is_dtls(buf) {
                d.handle_datagram(now, buf);
                self.take_dtls_keys(now);
                return Ok(PacketKind::Dtls);
            }
            if self.srtp.is_none() {
                self.dtls_early += 1;
                return Err(PacketError::Srtp(SrtpError::AuthFailed));
            }
        }
        if self.srtp.is_some() {
            return self.handle_srtp(now, buf);
        }
        if let SrtpWas::Srtp(rx) = &mut self.srtp_was {
            // SRTP of before the peer dropped it, until its first plain datagram.
            let mut plain = std::mem::take(&mut self.srtp_plain);
            plain.clear();
            plain.extend_from_slice(buf);
            let r = if rtp::is_rtcp(buf) {
                rx.unprotect_rtcp(&mut plain)
            } else {
                rx.unprotect_rtp(&mut plain)
            };
            let r = match r {
                Ok(n) => Some(self.handle_plain(now, &plain[..n])),
                Err(_) => {
                    self.srtp_was = SrtpWas::Nothing;
                    None
                }
            };
            self.srtp_plain = plain;
            if let Some(r) = r {
                return r;
            }
        }
        self.handle_plain(now, buf)
    }

    /// An SRTP or SRTCP datagram: checked and decrypted (RFC 3711 §3.3, §3.4), then handled
    /// as plain; one that fails is counted by why and goes no further.
    fn handle_srtp(&mut self, now: Instant, buf: &[u8]) -> Result<PacketKind, PacketError> {
        let mut plain = std::mem::take(&mut self.srtp_plain);
        plain.clear();
        plain.extend_from_slice(buf);
        let r = match self.srtp.as_mut() {
            Some(srtp) if rtp::is_rtcp(buf) => srtp.rx.unprotect_rtcp(&mut plain),
            Some(srtp) => srtp.rx.unprotect_rtp(&mut plain),
            None => Ok(plain.len()),
        };
        let r = match r {
            Ok(n) => {
                // The peer's first SRTP: its plain RTP of before is over.
                self.srtp_was = SrtpWas::Nothing;
                self.handle_plain(now, &plain[..n])
            }
            Err(SrtpError::AuthFailed) if matches!(self.srtp_was, SrtpWas::Plain) => {
                // Plain RTP of before the peer took SRTP, still on its way.
                self.srtp_plain = plain;
                return self.handle_plain(now, buf);
            }
            Err(e) => {
                match e {
                    // Another MKI: a key we do not have, as a failed tag says.
                    SrtpError::AuthFailed | SrtpError::UnknownMki => self.srtp_auth_failures += 1,
                    SrtpError::Replayed => self.srtp_replayed += 1,
                    SrtpError::Malformed | SrtpError::IndexExhausted => self.malformed += 1,
                }
                Err(e.into())
            }
        };
        self.srtp_plain = plain;
        r
    }

    /// The handshake's keys, once: SRTP starts, and the sends held since the start go out
    /// from `now` on the same sequence and timestamp line (the timestamp advanced by the
    /// wait, RFC 3550 §5.1), with no backlog burst.
    fn take_dtls_keys(&mut self, now: Instant) {
        let Some(keys) = self.dtls.as_deref_mut().and_then(DtlsSrtp::take_keys) else {
            return;
        };
        self.srtp = Some(Box::new(SrtpContext::new(&keys)));
        self.cfg.srtp = Some(keys);
        if self.stopped_at.is_some() {
            return;
        }
        if let Some(at) = self.next_rtp.filter(|at| *at < now) {
            let gap = now.saturating_duration_since(at).as_secs_f64();
            self.ts = self
                .ts
                .wrapping_add((gap * f64::from(self.clock_rate)) as u32);
            self.next_rtp = Some(now);
        }
        if let Some(at) = self.next_rtcp.filter(|at| *at < now) {
            self.next_rtcp = Some(at.max(now));
        }
    }

    /// Whether the DTLS-SRTP handshake is still running (media held).
    pub fn dtls_handshaking(&self) -> bool {
        self.dtls.as_deref().is_some_and(DtlsSrtp::handshaking)
    }

    fn handle_plain(&mut self, now: Instant, buf: &[u8]) -> Result<PacketKind, PacketError> {
        let r = if rtp::is_rtcp(buf) {
            self.handle_rtcp(now, buf).map(|()| PacketKind::Rtcp)
        } else {
            self.handle_rtp(now, buf).map(|()| PacketKind::Rtp)
        };
        if r.is_err() {
            self.malformed += 1;
        }
        r
    }

    fn handle_rtcp(&mut self, now: Instant, buf: &[u8]) -> Result<(), PacketError> {
        let pkts = rtcp::parse_compound(buf)?;
        self.rtcp_received += 1;
        let arrival = ntp_middle(self.ntp(now));
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport { info, reports, .. } => {
                    self.last_sr = Some((ntp_middle(info.ntp), now));
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { .. } => {
                    // Undone if a new source of the far end follows (`handle_rtp`).
                    self.remote_bye = true;
                    continue;
                }
                RtcpPacket::ExtendedReport { ssrc, blocks } => {
                    for b in blocks {
                        match b {
                            XrBlock::VoipMetrics(m) if m.ssrc == self.cfg.local_ssrc => {
                                self.peer_xr = Some(m);
                                self.xr_received += 1;
                            }
                            XrBlock::ReceiverReferenceTime { ntp } => {
                                self.peer_rrt = Some((ssrc, ntp_middle(ntp), now));
                            }
                            XrBlock::Dlrr(items) => {
                                // RFC 3611 §4.5: the round trip is as for an RR's LSR/DLSR.
                                let ours = items.iter().find(|i| i.ssrc == self.cfg.local_ssrc);
                                if let Some(rtt) = ours.and_then(|i| {
                                    rtt_from_block(
                                        &ReportBlock {
                                            lsr: i.lrr,
                                            dlsr: i.dlrr,
                                            ..ReportBlock::default()
                                        },
                                        arrival,
                                    )
                                }) {
                                    self.record_rtt(rtt * 1000.0);
                                    self.xr_rtts += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let ours = self.cfg.local_ssrc;
            for b in blocks.into_iter().filter(|b| b.ssrc == ours) {
                if let Some(rtt) = rtt_from_block(&b, arrival) {
                    self.record_rtt(rtt * 1000.0);
                }
                self.remote_report = Some(b);
            }
        }
        Ok(())
    }

    fn handle_rtp(&mut self, now: Instant, buf: &[u8]) -> Result<(), PacketError> {
        let p = RtpPacket::parse(buf)?;
        // Audio and telephone-events share the sequence space (RFC 4733 §2.1): count all,
        // but only media timestamps follow the media clock.
        let verdict = if Some(p.payload_type) == self.cfg.recv_event_pt {
            self.stats
                .on_other_packet(now, p.sequence, p.ssrc, buf.len())
        } else {
            // RFC 7160 §4.3: each packet on its payload type's clock: the codec before the
            // last change while its packets may still come, else the current one (a no-op
            // unless the clock changed).
            let (rate, spp) = match self.prev_rx {
                Some((pt, rate, spp)) if pt == p.payload_type => (rate, spp),
                _ => (self.clock_rate, self.spp),
            };
            self.stats.set_clock(rate, spp);
            self.stats
                .on_packet(now, p.sequence, p.timestamp, p.ssrc, p.marker, buf.len())
        };
        let t = self.stats.totals();
        if (t.ssrc_switches, t.seq_resets) != self.seen_resets {
            if t.ssrc_switches != self.seen_resets.0 {
                // A new source: a BYE before it was for the source it replaced (RFC 7160
                // §4.1: a new SSRC for a new clock rate), not the far end's goodbye.
                self.remote_bye = false;
            }
            self.seen_resets = (t.ssrc_switches, t.seq_resets);
            self.jb.reset();
        }
        if matches!(verdict, Verdict::Duplicate | Verdict::Jump) {
            return Ok(());
        }
        if p.payload_type == self.cfg.recv_pt {
            self.prev_rx = None;
            let origin = *self.origin.get_or_insert(now);
            let arrival = now.saturating_duration_since(origin).as_nanos() as i128;
            if self.jb.on_packet(arrival, p.timestamp, self.clock_rate) {
                self.play(now, p.sequence, p.payload);
            }
        } else if self.prev_rx.is_some_and(|(pt, ..)| pt == p.payload_type) {
            // The old codec's, still on its way: counted above, not played (the decoder is
            // the new codec's).
        } else if Some(p.payload_type) == self.cfg.recv_event_pt {
            // RFC 4733 §2.5.1.4: the end packet is repeated; one digit per event timestamp.
            if let Ok(ev) = TelephoneEvent::decode(p.payload)
                && ev.end
                && self.last_event_ts != Some(p.timestamp)
            {
                self.last_event_ts = Some(p.timestamp);
                if let Some(c) = char_of(ev.event) {
                    self.dtmf.push(c);
                }
            }
        } else {
            self.unexpected_pt += 1;
        }
        Ok(())
    }

    /// Decodes one in-time packet into the level meter. With a PLC codec, sequence numbers
    /// skipped since the last decoded packet are concealed first (counted as PLC events), and
    /// a packet older than that is not decoded (its frame was already concealed).
    fn play(&mut self, now: Instant, seq: u16, payload: &[u8]) {
        if let Some(last) = self.last_played {
            let ahead = seq.wrapping_sub(last);
            if ahead == 0 || ahead >= 0x8000 {
                if self.coder.has_plc() {
                    return;
                }
            } else if ahead > 1 {
                // Conceal at most 5 frames per gap (100 ms at 20 ms): enough to keep the
                // decoder's state honest without unbounded work on a big jump.
                for _ in 0..(ahead - 1).min(5) {
                    self.decoded.clear();
                    if !self.coder.conceal(self.pcm.len(), &mut self.decoded) {
                        break;
                    }
                    self.plc_events += 1;
                }
            }
        }
        if self
            .last_played
            .is_none_or(|l| seq.wrapping_sub(l).wrapping_sub(1) < 0x8000)
        {
            self.last_played = Some(seq);
        }
        self.decoded.clear();
        self.coder.decode(payload, &mut self.decoded);
        let level = self.meter.add_frame(&self.decoded);
        // The decoder's rate: our frame (`pcm`) is `ptime_ms` of it.
        let rate = (self.pcm.len() as u64 * 1000 / u64::from(self.cfg.ptime_ms.max(1))).max(1);
        if let (Some(w), Some(level)) = (self.sound.as_deref_mut(), level) {
            let len = Duration::from_micros(self.decoded.len() as u64 * 1_000_000 / rate);
            w.handle_frame(now, level, len);
        }
        if let Some(w) = self.tones.as_deref_mut() {
            w.handle_pcm(now, &self.decoded, u32::try_from(rate).unwrap_or(u32::MAX));
        }
    }

    /// Watches when sound starts and stops in the audio decoded from now on
    /// ([`crate::sound`]): the same frames the level meter measures.
    pub fn watch_sound(&mut self, cfg: SoundConfig) {
        self.sound = Some(Box::new(SoundWatch::new(cfg)));
    }

    /// The sound watch, if [`Self::watch_sound`] started one: drive its timeout and drain
    /// its events.
    pub fn sound_mut(&mut self) -> Option<&mut SoundWatch> {
        self.sound.as_deref_mut()
    }

    /// Watches these tones (each with its minimum duration) and, if `dtmf`, in-band DTMF
    /// and, if `sit`, Special Information Tones in the audio decoded from now on
    /// ([`crate::tone`]): the frames the level meter measures.
    pub fn watch_tones(&mut self, tones: &[(Tone, Duration)], dtmf: bool, sit: bool) {
        self.tones = Some(Box::new(ToneWatch::new(tones, dtmf).with_sit(sit)));
    }

    /// The tone watch, if [`Self::watch_tones`] started one: drive its timeout and drain its
    /// events.
    pub fn tones_mut(&mut self) -> Option<&mut ToneWatch> {
        self.tones.as_deref_mut()
    }

    /// Applies a new direction after a re-INVITE/UPDATE (hold: `SendOnly`/`Inactive`,
    /// resume: `SendRecv`). Sending resumes at `now`, on the same sequence and timestamp
    /// line (the timestamp jumps by the time on hold, as RFC 3550 §5.1 wants).
    pub fn set_direction(&mut self, now: Instant, direction: Direction) {
        if self.stopped_at.is_some() {
            return;
        }
        self.cfg.direction = direction;
        self.expect_rtp(now);
        match (direction.sends(), self.next_rtp) {
            (true, None) => {
                if let Some(at) = self.paused_at.take() {
                    // Advance the media clock by the pause so receivers see real time pass.
                    let gap = now.saturating_duration_since(at).as_secs_f64();
                    self.ts = self
                        .ts
                        .wrapping_add((gap * f64::from(self.clock_rate)) as u32);
                }
                self.next_rtp = Some(now);
            }
            (false, Some(_)) => {
                self.next_rtp = None;
                self.paused_at = Some(now);
            }
            _ => {}
        }
    }

    /// Whether the far end is to send RTP from `now` on, besides our direction: `false` while
    /// it parked the call with `c=0.0.0.0` (RFC 3264 §8.4, the old hold). A stretch without
    /// RTP is a gap ([`crate::gaps`]) only while our direction receives and this is `true`.
    pub fn set_far_end_sends(&mut self, now: Instant, sends: bool) {
        self.far_end_sends = sends;
        self.expect_rtp(now);
    }

    /// The far end's media moved to a new address at `now` (RFC 3264 §8.3.1): its first
    /// packet from there gets a wait of its own ([`crate::gaps::GapWatch::restart`]).
    pub fn far_end_moved(&mut self, now: Instant) {
        self.stats.rtp_source_moved(now);
    }

    fn expect_rtp(&mut self, now: Instant) {
        let expected = self.cfg.direction.receives() && self.far_end_sends;
        self.stats.expect_rtp(now, expected);
    }

    /// Changes the codec (and its payload types and packetisation) at `now` after a new
    /// offer/answer inside the call (RFC 3264 §8.3.2), from `n`.
    ///
    /// Sending: at the same RTP clock rate, on the same SSRC, sequence and timestamp line.
    /// At another clock rate (PCMU → Opus), on a new SSRC with new random sequence and
    /// timestamp (RFC 7160 §4.1; RFC 3550 §5.1), after an RTCP BYE for the old SSRC with its
    /// last SR (queued: [`Self::poll_transmit`] sends it first); the CNAME stays, so the
    /// far end can tell it is the same participant. An RFC 4733 event not yet ended starts
    /// again on the new line.
    ///
    /// Receiving: the statistics stay the call's. Each packet is measured on its payload
    /// type's clock (RFC 7160 §4.3): the old codec's packets still on their way (the far
    /// end changes when our answer reaches it) are its stream, not an unexpected payload
    /// type, until the first packet of the new codec; a change of clock rescales the jitter
    /// estimate, kept in timestamp units (RFC 3550 §6.4.1), and starts its transit-time
    /// origin again ([`ReceiveStats::set_clock`]); the jitter buffer starts again. A far end
    /// that takes a new SSRC is an SSRC switch, its BYE for the old one no goodbye. The
    /// summary then scores the call with the new codec's E-model. Returns the error of a
    /// codec or packetisation the session cannot run, changing nothing then.
    pub fn change_codec(&mut self, now: Instant, n: &Negotiated) -> Result<(), ConfigError> {
        if !(10..=120).contains(&n.ptime) {
            return Err(ConfigError::BadPtime(n.ptime));
        }
        let new_coder = if n.codec == self.cfg.codec {
            None
        } else {
            Some(coder_for(n.codec)?)
        };
        let rate = n.codec.clock_rate();
        if rate != self.clock_rate {
            if self.tx_packets > self.ssrc_base.0 {
                self.new_ssrc(now, rate, rate / 1000 * n.ptime);
            }
            self.jb.reset();
        }
        if n.recv_pt != self.cfg.recv_pt {
            self.prev_rx = Some((self.cfg.recv_pt, self.clock_rate, self.spp));
        }
        if let Some((coder, sample_rate)) = new_coder {
            self.coder = coder;
            let frame = (sample_rate / 1000 * n.ptime) as usize;
            self.source = SpeechSource::new(self.cfg.source.clone(), sample_rate);
            self.pcm = vec![0; frame];
            self.decoded = Vec::with_capacity(frame);
            self.last_played = None;
        } else if n.ptime != self.cfg.ptime_ms {
            let sample_rate = self.pcm.len() as u32 * 1000 / self.cfg.ptime_ms.max(1);
            self.pcm = vec![0; (sample_rate / 1000 * n.ptime) as usize];
        }
        self.clock_rate = rate;
        self.spp = self.clock_rate / 1000 * n.ptime;
        if n.ptime != self.cfg.ptime_ms {
            self.jb = JitterBuffer::new(n.ptime);
        }
        self.cfg.codec = n.codec;
        self.cfg.send_pt = n.send_pt;
        self.cfg.recv_pt = n.recv_pt;
        self.cfg.send_event_pt = n.send_event_pt;
        self.cfg.recv_event_pt = n.recv_event_pt;
        self.cfg.ptime_ms = n.ptime;
        Ok(())
    }

    /// Leaves the current SSRC for a new one at `now`, the stream going on at `rate` with
    /// `spp` samples a packet (RFC 7160 §4.1): the old one's last report and BYE are queued
    /// (RFC 3550 §6.6), the new SSRC differs from it and from the far end's (§8.1), its
    /// sequence number and timestamp start at random (§5.1), and its SR counts from zero.
    fn new_ssrc(&mut self, now: Instant, rate: u32, spp: u32) {
        let bytes = rtcp::build_compound(&self.build_report(now, true));
        self.pending.push_back(Outgoing {
            kind: PacketKind::Rtcp,
            bytes,
        });
        let (old, remote) = (self.cfg.local_ssrc, self.stats.ssrc());
        let mut ssrc = self.rng.random();
        while ssrc == old || Some(ssrc) == remote {
            ssrc = self.rng.random();
        }
        self.cfg.local_ssrc = ssrc;
        self.seq = self.rng.random();
        self.ts = self.rng.random();
        self.ssrc_base = (self.tx_packets, self.tx_octets);
        // The new SSRC's first packet leaves on the send grid with this timestamp.
        self.ts_anchor = (self.next_rtp.map_or(now, |at| at.max(now)), self.ts);
        // RFC 4733 §2.5.1.3: an event's duration is in timestamp units. One not yet ended
        // is sent again whole on the new line; one whose end went out is done.
        if let Some(e) = self.dtmf_current.take() {
            if e.ends_sent == 0 {
                self.dtmf_queue.push_front((e.event, e.total));
            } else if let Some(c) = char_of(e.event) {
                self.dtmf_sent.push(c);
            }
            self.dtmf_gap = 0;
        }
        let old_rate = u64::from(self.clock_rate.max(1));
        for (_, total) in &mut self.dtmf_queue {
            let units = u64::from(*total) * u64::from(rate) / old_rate;
            *total = (units as u32).clamp(spp, u32::from(u16::MAX) / spp.max(1) * spp);
        }
    }

    /// Stops sending; queues the final RTCP report with BYE (RFC 3550 §6.6).
    pub fn stop(&mut self, now: Instant) {
        if self.stopped_at.is_some() {
            return;
        }
        let bytes = rtcp::build_compound(&self.build_report(now, true));
        self.pending.push_back(Outgoing {
            kind: PacketKind::Rtcp,
            bytes,
        });
        self.stopped_at = Some(now);
        self.next_rtp = None;
        self.next_rtcp = None;
    }

    /// G.107's packet-loss input for the call so far: lost and jitter-buffer-late packets
    /// over those expected, percent.
    fn call_ppl(&self, t: &crate::stats::Totals) -> f64 {
        let lost_all = t.lost.max(0) as f64 + self.jb.late_total as f64;
        if t.expected > 0 {
            (100.0 * lost_all / t.expected as f64).min(100.0)
        } else {
            0.0
        }
    }

    /// Our VoIP Metrics block (RFC 3611 §4.7) about the stream from `remote`, the call so
    /// far. MOS-CQ and R are the call's rating as [`MediaSession::summary`] gives it (with
    /// the one-way delay), MOS-LQ the same without delay (G.107 with Ta = 0: listening only);
    /// all three are unavailable (127) while nothing was received or after an audio gap (see
    /// `CallMediaSummary::mos`), and R also for a wideband codec (RFC 3611's R is G.107's
    /// 0–100 scale; G.107.1 goes to 129). Levels are the last second's that had speech or
    /// noise, from dBov to dBm0 (a G.711 full-scale sine is +3.17 dBm0 and −3.01 dBov). End
    /// system delay: one packet time (packetisation) plus the jitter buffer's delay.
    /// Burst/gap figures count network loss (packets that never came); late packets are
    /// the discard rate.
    fn voip_metrics(&self, now: Instant, remote: u32) -> VoipMetrics {
        const DBM0_OVER_DBOV: f64 = 3.17 + 3.01;
        let t = self.stats.totals();
        let rate = |n: f64| {
            if t.expected > 0 {
                (256.0 * n / t.expected as f64).clamp(0.0, 255.0) as u8
            } else {
                0
            }
        };
        let ms = |x: f64| x.round().clamp(0.0, f64::from(u16::MAX)) as u16;
        let bg = self
            .stats
            .loss_pattern()
            .burst_gap
            .metrics(self.jb.ptime_ms);
        let rated = t.packets > 0 && self.stats.gaps(now).count == 0;
        let (ppl, burst) = (self.call_ppl(&t), self.stats.loss_pattern().burst_ratio());
        let cq = rated.then(|| self.rate(ppl, burst, self.one_way_ms));
        let lq = rated.then(|| self.rate(ppl, burst, 0.0));
        let mos10 = |r: Option<f64>| r.map_or(UNAVAILABLE, |r| (self.mos(r) * 10.0).round() as u8);
        let level = |dbov: Option<f64>| {
            dbov.map_or(UNAVAILABLE as i8, |d| {
                (d + DBM0_OVER_DBOV).round().clamp(-126.0, 126.0) as i8
            })
        };
        let narrowband = CodecImpairment::of(self.cfg.codec).model == emodel::Model::G107;
        VoipMetrics {
            ssrc: remote,
            loss_rate: rate(t.lost.max(0) as f64),
            discard_rate: rate(self.jb.late_total as f64),
            burst_density: bg.burst_density,
            gap_density: bg.gap_density,
            burst_duration_ms: bg.burst_duration_ms,
            gap_duration_ms: bg.gap_duration_ms,
            // Rounded up: a known round trip under 1 ms (loopback) is not 0, "unknown".
            round_trip_delay_ms: self.rtt_ms.map_or(0, |r| ms(r.ceil()).max(1)),
            end_system_delay_ms: if t.packets > 0 {
                ms(self.jb.ptime_ms + self.jb.target_ms)
            } else {
                0
            },
            signal_level: level(self.xr_levels.0),
            noise_level: level(self.xr_levels.1),
            rerl: UNAVAILABLE,
            gmin: GMIN,
            r_factor: match cq {
                Some(r) if narrowband => r.round().clamp(0.0, 100.0) as u8,
                _ => UNAVAILABLE,
            },
            ext_r_factor: UNAVAILABLE,
            mos_lq: mos10(lq),
            mos_cq: mos10(cq),
            rx_config: RX_CONFIG_JB_ADAPTIVE,
            jb_nominal_ms: ms(self.jb.target_ms),
            jb_maximum_ms: ms(self.jb.max_target_ms),
            jb_abs_max_ms: ms(JB_MAX_MS),
        }
    }

    /// R on the codec's E-model scale (G.107 for G.711, G.107.1 for G.722 and Opus).
    fn rate(&self, ppl: f64, burst_r: f64, delay_ms: f64) -> f64 {
        emodel::score(self.cfg.codec, ppl, burst_r, delay_ms).r
    }

    /// MOS from an R of [`MediaSession::rate`].
    fn mos(&self, r: f64) -> f64 {
        CodecImpairment::of(self.cfg.codec).model.mos(r)
    }

    /// Closes the current measurement interval (call once a second) and returns its figures.
    pub fn sample(&mut self, now: Instant) -> Sample {
        let interval = now.saturating_duration_since(self.last_sample);
        self.last_sample = now;
        let secs = interval.as_secs_f64();
        let per_s = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
        let iv = self.stats.take_interval();
        let t = self.stats.totals();
        let jitter_ms = self.stats.jitter_ms();
        let jb_late = std::mem::take(&mut self.jb.late_interval);
        let jb_delay = (self.jb.delay_n > 0).then(|| self.jb.delay_sum_ms / self.jb.delay_n as f64);
        self.jb.delay_sum_ms = 0.0;
        self.jb.delay_n = 0;
        let jb_target = self.jb.target_ms;
        self.jb.adapt(jitter_ms);
        self.one_way_ms =
            self.rtt_ms.unwrap_or(0.0) / 2.0 + jb_target + f64::from(self.cfg.ptime_ms);

        let levels = self.meter.take();
        if levels.speech_dbov.is_some() {
            self.xr_levels.0 = levels.speech_dbov;
        }
        if levels.noise_dbov.is_some() {
            self.xr_levels.1 = levels.noise_dbov;
        }
        let receiving = self.stats.ssrc().is_some() && iv.expected > 0;
        let (rx_r, rx_mos) = if receiving {
            let lost = iv.lost.max(0) as f64 + jb_late as f64;
            let ppl = (100.0 * lost / iv.expected as f64).min(100.0);
            let r = self.rate(
                ppl,
                self.stats.loss_pattern().burst_ratio(),
                self.one_way_ms,
            );
            (Some(r), Some(self.mos(r)))
        } else {
            (None, None)
        };
        if let Some(m) = rx_mos {
            self.mos_min = Some(self.mos_min.map_or(m, |x: f64| x.min(m)));
        }
        let received = DirectionSample {
            packets: iv.packets,
            bytes: iv.bytes,
            packet_rate: per_s(iv.packets),
            bitrate_kbps: per_s(iv.bytes) * 8.0 / 1000.0,
            lost: self.stats.ssrc().map(|_| t.lost),
            fraction_lost: (iv.expected > 0).then(|| f64::from(iv.fraction_lost) / 256.0),
            jitter_ms: self.stats.ssrc().map(|_| jitter_ms),
            r_factor: rx_r,
            mos: rx_mos,
        };
        let (txp, txb) = std::mem::take(&mut self.tx_interval);
        let rep = self.remote_report;
        let tx_r = rep.map(|b| {
            self.rate(
                100.0 * f64::from(b.fraction_lost) / 256.0,
                1.0,
                self.one_way_ms,
            )
        });
        let sent = DirectionSample {
            packets: txp,
            bytes: txb,
            packet_rate: per_s(txp),
            bitrate_kbps: per_s(txb) * 8.0 / 1000.0,
            lost: rep.map(|b| i64::from(b.cumulative_lost)),
            fraction_lost: rep.map(|b| f64::from(b.fraction_lost) / 256.0),
            jitter_ms: rep.map(|b| f64::from(b.jitter) * 1000.0 / f64::from(self.clock_rate)),
            r_factor: tx_r,
            mos: tx_r.map(|r| self.mos(r)),
        };
        Sample {
            interval,
            sent,
            received,
            rx: ReceiveSample {
                duplicates: t.duplicates,
                out_of_order: t.out_of_order,
                seq_resets: t.seq_resets,
                seq_jumps: t.seq_jumps,
                largest_gap: t.largest_gap,
                ssrc_switches: t.ssrc_switches,
                ts_jumps: t.ts_jumps,
                clock_skew_ppm: t.clock_skew_ppm,
                clock_drift_ms: t.clock_drift_ms,
                spacing_min_ms: iv.spacing_min_ms,
                spacing_avg_ms: iv.spacing_avg_ms,
                spacing_max_ms: iv.spacing_max_ms,
                jb_late,
                plc_events: self.plc_events,
                jb_target_ms: jb_target,
                jb_delay_ms: jb_delay,
                levels,
            },
            rtt_ms: self.rtt_ms,
            one_way_delay_ms: self.one_way_ms,
            r_factor_scale: CodecImpairment::of(self.cfg.codec).model.r_scale(),
        }
    }

    /// The DTMF digits received so far as RFC 4733 events (one per event, at its end), in
    /// order: what [`CallMediaSummary::dtmf_received`] will say, readable while the call goes
    /// on (scenario actions that wait for a digit).
    pub fn dtmf_received(&self) -> &str {
        &self.dtmf
    }

    /// The whole call so far.
    pub fn summary(&self) -> CallMediaSummary {
        let t = self.stats.totals();
        let end = self.stopped_at.unwrap_or(self.last_sample);
        let loss_percent = if t.expected > 0 {
            100.0 * t.lost.max(0) as f64 / t.expected as f64
        } else {
            0.0
        };
        let ppl = self.call_ppl(&t);
        let burst = self.stats.loss_pattern().burst_ratio();
        let gaps = self.stats.gaps(end);
        // Rated only from packets actually received (G.107 rates what was heard), and only
        // when nothing is missing that the loss cannot show (see `CallMediaSummary::mos`).
        let rated = t.packets > 0 && gaps.count == 0;
        let r = rated.then(|| self.rate(ppl, burst, self.one_way_ms));
        CallMediaSummary {
            duration: end.saturating_duration_since(self.start),
            tx_packets: self.tx_packets,
            tx_bytes: self.tx_bytes,
            rx_packets: t.packets,
            rx_bytes: t.bytes,
            rx_expected: t.expected,
            rx_lost: t.lost,
            rx_loss_percent: loss_percent,
            rx_duplicates: t.duplicates,
            rx_out_of_order: t.out_of_order,
            rx_seq_resets: t.seq_resets,
            rx_seq_jumps: t.seq_jumps,
            rx_largest_gap: t.largest_gap,
            rx_ssrc_switches: t.ssrc_switches,
            rx_ts_jumps: t.ts_jumps,
            rx_jitter_ms: self.stats.jitter_ms(),
            rx_max_jitter_ms: t.max_jitter * 1000.0 / f64::from(self.clock_rate),
            rx_jb_late: self.jb.late_total,
            rx_plc_events: self.plc_events,
            rx_clock_skew_ppm: t.clock_skew_ppm,
            rx_burst_ratio: burst,
            rtt_avg_ms: (self.rtt_n > 0).then(|| self.rtt_sum_ms / self.rtt_n as f64),
            rtt_max_ms: self.rtt_max_ms,
            r_factor: r,
            mos: r.map(|r| self.mos(r)),
            emodel: CodecImpairment::of(self.cfg.codec).model.name(),
            mos_min: self.mos_min.filter(|_| rated),
            dtmf_received: self.dtmf.clone(),
            dtmf_sent: self.dtmf_sent.clone(),
            malformed: self.malformed,
            srtp_auth_failures: self.srtp_auth_failures,
            srtp_replayed: self.srtp_replayed,
            dtls: self.dtls.as_deref().map(|d| d.summary().clone()),
            dtls_early: self.dtls_early,
            unexpected_pt: self.unexpected_pt,
            rtcp_received: self.rtcp_received,
            peer_xr: self.peer_xr,
            xr_received: self.xr_received,
            xr_rtts: self.xr_rtts,
            remote_bye: self.remote_bye,
            gaps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 ms G.711 stream into the buffer: packet `k` sent at `k`·20 ms, arriving
    /// `delay_ms(k)` later; whether each was in time.
    fn jb_stream(n: u32, delay_ms: impl Fn(u32) -> i128) -> (JitterBuffer, Vec<bool>) {
        let mut jb = JitterBuffer::new(20);
        let played = (0..n)
            .map(|k| {
                let arrival = (i128::from(k) * 20 + delay_ms(k)) * 1_000_000;
                jb.on_packet(arrival, 1000 + k * 160, 8000)
            })
            .collect();
        (jb, played)
    }

    /// A sender that stalls once and keeps its new pace (SIPp's `rtp_stream` under load did):
    /// the two packets after the 100 ms step are discarded, the third re-syncs playout and
    /// the stream plays on, rather than every packet after the step being late.
    #[test]
    fn the_jitter_buffer_re_syncs_after_a_delay_step() {
        let (jb, played) = jb_stream(100, |k| if k < 50 { 0 } else { 100 });
        let late: Vec<usize> = (0..100).filter(|&k| !played[k]).collect();
        assert_eq!(late, [50, 51]);
        assert_eq!(jb.late_total, 2);
        // Back to the old delay: early packets, played, and the base follows them down.
        let (jb, played) = jb_stream(150, |k| if (50..100).contains(&k) { 100 } else { 0 });
        assert_eq!(played.iter().filter(|p| !**p).count(), 2);
        assert_eq!(jb.late_total, 2);
    }

    /// Jitter is not a step: one packet late, or two in a row, is discarded and playout keeps
    /// its timing (the packet after it is in time again).
    #[test]
    fn late_packets_that_are_not_a_step_are_discarded() {
        let (jb, played) = jb_stream(100, |k| match k {
            30 => 60,
            60 | 61 => 80,
            _ => 0,
        });
        let late: Vec<usize> = (0..100).filter(|&k| !played[k]).collect();
        assert_eq!(late, [30, 60, 61]);
        assert_eq!(jb.late_total, 3);
        assert_eq!(jb.base_ns, Some(-1000 * 1_000_000_000 / 8000));
    }
    use crate::dtmf::TelephoneEvent;
    use crate::emodel::{Delays, Params};
    use crate::impair::{Impairment, ImpairmentConfig, Loss};

    fn cfg(ssrc: u32, codec: Codec, seed: u64) -> SessionConfig {
        SessionConfig {
            local_ssrc: ssrc,
            cname: format!("ep{ssrc}@sipmeter"),
            codec,
            send_pt: codec.default_pt(),
            recv_pt: codec.default_pt(),
            recv_event_pt: Some(101),
            send_event_pt: Some(101),
            ptime_ms: 20,
            rtcp_mux: true,
            direction: Direction::SendRecv,
            source: SourceConfig {
                seed,
                ..SourceConfig::default()
            },
            rtcp_interval: Duration::from_secs(5),
            ntp_at_start: DEFAULT_NTP_ORIGIN,
            seed,
            srtp: None,
            dtls: None,
            rtcp_xr: false,
        }
    }

    /// RFC 3264 §8.3.2: the codec changes inside the call (PCMU → PCMA on both sides):
    /// the packets after the change carry PT 8, the receiver takes them (nothing
    /// unexpected, nothing lost) and the summary names PCMA.
    #[test]
    fn a_codec_change_inside_the_call_goes_on_without_loss() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        let pcma = negotiated(Codec::Pcma);
        let mut pts = Vec::new();
        for ms in 0..2000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms == 1000 {
                a.change_codec(now, &pcma).unwrap();
                b.change_codec(now, &pcma).unwrap();
            }
            while let Some(o) = a.poll_transmit(now) {
                if o.kind == PacketKind::Rtp {
                    pts.push((ms, o.bytes[1] & 0x7f));
                    b.handle_packet(now + Duration::from_millis(20), &o.bytes)
                        .unwrap();
                }
            }
            while b.poll_transmit(now).is_some() {}
        }
        assert!(
            pts.iter()
                .all(|&(ms, pt)| pt == if ms < 1000 { 0 } else { 8 }),
            "{pts:?}"
        );
        assert!(pts.len() >= 99, "{}", pts.len());
        let s = b.summary();
        assert_eq!((s.unexpected_pt, s.rx_lost), (0, 0), "{s:?}");
        assert_eq!(s.rx_packets, pts.len() as u64);
        assert_eq!(b.config().codec, Codec::Pcma);
    }

    /// What a change to `codec` inside the call negotiates (payload types as offered).
    fn negotiated(codec: Codec) -> Negotiated {
        Negotiated {
            codec,
            send_pt: codec.default_pt(),
            recv_pt: codec.default_pt(),
            send_event_pt: Some(101),
            recv_event_pt: Some(101),
            clock_rate: codec.clock_rate(),
            ptime: 20,
            direction: Direction::SendRecv,
            remote_rtp: "127.0.0.1:4000".parse().unwrap(),
            remote_rtcp: "127.0.0.1:4000".parse().unwrap(),
            rtcp_mux: true,
            srtp: None,
            dtls: None,
        }
    }

    /// RFC 7160 §4.1: a sender that changes to a codec of another RTP clock rate uses a new
    /// SSRC (new random sequence and timestamp, RFC 3550 §5.1), after an RTCP BYE for the
    /// old one whose SR counts the old SSRC's packets (§6.4.1: the counts are per SSRC); the
    /// next SR counts only the new SSRC's. A change at the same clock rate (PCMU → G.722,
    /// whose RTP clock is 8 kHz, RFC 3551 §4.5.2) keeps the SSRC and its lines.
    #[cfg(feature = "opus")]
    #[test]
    fn a_change_to_another_clock_rate_takes_a_new_ssrc_and_says_bye_to_the_old() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        // (ms, ssrc, pt, seq) of the RTP sent; the RTCP compounds, parsed, with their ms.
        let (mut rtp, mut rtcp) = (Vec::new(), Vec::new());
        for ms in 0..12_000u64 {
            let now = t0 + Duration::from_millis(ms);
            match ms {
                1000 => a.change_codec(now, &negotiated(Codec::G722)).unwrap(),
                2000 => a.change_codec(now, &negotiated(Codec::Opus)).unwrap(),
                _ => {}
            }
            while let Some(o) = a.poll_transmit(now) {
                if o.kind == PacketKind::Rtp {
                    let p = RtpPacket::parse(&o.bytes).unwrap();
                    rtp.push((ms, p.ssrc, p.payload_type, p.sequence));
                } else {
                    rtcp.push((ms, rtcp::parse_compound(&o.bytes).unwrap()));
                }
            }
        }
        let on = |ssrc: u32| rtp.iter().filter(move |r| r.1 == ssrc);
        // PCMU, then G.722 on the same SSRC and sequence line.
        assert!(on(1).all(|r| r.0 < 2000 && r.2 == if r.0 < 1000 { 0 } else { 9 }));
        let old = on(1).count();
        assert!(
            on(1)
                .zip(on(1).skip(1))
                .all(|(x, y)| y.3 == x.3.wrapping_add(1))
        );
        // Opus on a new SSRC from the change on.
        let new = rtp.iter().find(|r| r.1 != 1).unwrap().1;
        assert!(on(new).all(|r| r.0 >= 2000 && r.2 == crate::sdp::OPUS_PT));
        assert_eq!(old + on(new).count(), rtp.len());
        // The BYE for SSRC 1 goes before the new SSRC's first packet, its SR counting SSRC
        // 1's packets.
        let (bye_ms, bye) = rtcp
            .iter()
            .find(|(_, c)| c.iter().any(|p| matches!(p, RtcpPacket::Bye { .. })))
            .unwrap();
        assert_eq!(*bye_ms, 2000);
        assert!(
            matches!(
                &bye[..],
                [RtcpPacket::SenderReport { ssrc: 1, info, .. }, .., RtcpPacket::Bye { ssrcs, .. }]
                    if info.packet_count as usize == old && ssrcs == &[1]
            ),
            "{bye:?}"
        );
        // The next SR is the new SSRC's, counting its own packets only.
        let (sr_ms, sr) = rtcp.iter().find(|(ms, _)| *ms > 2000).unwrap();
        let sent = on(new).filter(|r| r.0 <= *sr_ms).count();
        assert!(
            matches!(
                &sr[0],
                RtcpPacket::SenderReport { ssrc, info, .. }
                    if *ssrc == new && info.packet_count as usize == sent
            ),
            "{sr:?}"
        );
    }

    /// RFC 3550 §6.4.1: an SR's RTP timestamp "corresponds to the same time as the NTP
    /// timestamp": after a hold (on resume the timestamp moves on by the time held, §5.1),
    /// it is the stream's timestamp at the report's time, within a packet. (It counted the
    /// time held twice: 2 s ahead after a 2 s hold.)
    #[test]
    fn an_sr_after_a_hold_has_the_timestamp_of_its_time() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        // (ms, timestamp) of the last RTP packet; (ms, SR timestamp) of each SR.
        let (mut last, mut srs) = ((0u64, 0u32), Vec::new());
        for ms in 0..12_000u64 {
            let now = t0 + Duration::from_millis(ms);
            match ms {
                1000 => a.set_direction(now, Direction::Inactive),
                3000 => a.set_direction(now, Direction::SendRecv),
                _ => {}
            }
            while let Some(o) = a.poll_transmit(now) {
                if o.kind == PacketKind::Rtp {
                    last = (ms, RtpPacket::parse(&o.bytes).unwrap().timestamp);
                } else if let Ok(c) = rtcp::parse_compound(&o.bytes)
                    && let Some(RtcpPacket::SenderReport { info, .. }) = c.first()
                    && ms > 3000
                {
                    let due = last.1.wrapping_add(8 * (ms - last.0) as u32);
                    srs.push((ms, info.rtp_timestamp.wrapping_sub(due) as i32));
                }
            }
        }
        assert!(!srs.is_empty());
        assert!(srs.iter().all(|(_, off)| off.abs() <= 160), "{srs:?}");
    }

    /// A far end's RTP through a 40 ms path to `b`, from `send(ms)` (its packets due at that
    /// ms, RTP and RTCP); `b` changes to `b_codec` at 1000 ms (the answerer changes first:
    /// the far end's packets of the old codec are still on their way).
    fn receive_through_40_ms(
        b: &mut MediaSession,
        b_codec: Codec,
        t0: Instant,
        mut send: impl FnMut(u64, Instant) -> Vec<Vec<u8>>,
    ) {
        let mut path: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        for ms in 0..4000u64 {
            let now = t0 + Duration::from_millis(ms);
            if ms == 1000 {
                b.change_codec(now, &negotiated(b_codec)).unwrap();
            }
            path.extend(send(ms, now).into_iter().map(|d| (ms + 40, d)));
            while path.front().is_some_and(|(at, _)| *at <= ms) {
                let (_, d) = path.pop_front().unwrap();
                b.handle_packet(now, &d).unwrap();
            }
            while b.poll_transmit(now).is_some() {}
        }
    }

    /// RFC 7160 §4.3, as a receiver: a far end that changes from PCMU to Opus (48 kHz) 40 ms
    /// after us, on a new SSRC with a BYE for its old one, as RFC 7160 §4.1 wants. The
    /// PCMU packets still on their way are its stream (not an unexpected payload type), each
    /// measured on its own payload type's clock: no loss, no timestamp jump, no jitter
    /// from the change, nothing late in the jitter buffer; the switch is counted, and the
    /// BYE of the retired SSRC is not the far end's goodbye.
    #[cfg(feature = "opus")]
    #[test]
    fn a_peer_that_takes_a_new_ssrc_for_a_new_clock_rate_is_measured_right() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        receive_through_40_ms(&mut b, Codec::Opus, t0, |ms, now| {
            if ms == 1040 {
                a.change_codec(now, &negotiated(Codec::Opus)).unwrap();
            }
            std::iter::from_fn(|| a.poll_transmit(now).map(|o| o.bytes)).collect()
        });
        let s = measured_clean(&b, 1);
        assert!(!s.remote_bye, "{s:?}");
    }

    /// `b`'s stream, through a change to Opus with `switches` SSRC switches: nothing lost,
    /// unexpected, jumping or late; no jitter (a perfect path); its summary.
    fn measured_clean(b: &MediaSession, switches: u64) -> CallMediaSummary {
        let s = b.summary();
        assert_eq!(b.config().codec, Codec::Opus);
        assert_eq!(s.rx_ssrc_switches, switches, "{s:?}");
        assert_eq!(
            (s.rx_lost, s.unexpected_pt, s.rx_ts_jumps, s.rx_jb_late),
            (0, 0, 0, 0),
            "{s:?}"
        );
        assert!(s.rx_max_jitter_ms < 0.5, "{s:?}");
        assert!(s.rx_packets >= 195, "{s:?}");
        s
    }

    /// A far end that changes from PCMU to Opus on the same SSRC and sequence line (RFC
    /// 7160 §4.1 would rather it did not; legacy senders do), its timestamps going on at
    /// 48 kHz from where they were: each packet is measured on its own payload type's
    /// clock, so the change is no timestamp jump, no jitter and nothing late in the jitter
    /// buffer, and the PCMU packets still on their way are not unexpected.
    #[cfg(feature = "opus")]
    #[test]
    fn a_peer_that_keeps_its_ssrc_for_a_new_clock_rate_is_measured_right() {
        let t0 = Instant::now();
        let mut pcmu = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut opus = MediaSession::new(cfg(3, Codec::Opus, 3), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        // The sequence and timestamp lines the legacy far end keeps going.
        let (mut seq, mut ts) = (100u16, 5000u32);
        receive_through_40_ms(&mut b, Codec::Opus, t0, |ms, now| {
            // Both encode on the same grid; the far end sends one's packets, then the other's.
            let (ours, theirs) = if ms < 1040 {
                (&mut pcmu, &mut opus)
            } else {
                (&mut opus, &mut pcmu)
            };
            while theirs.poll_transmit(now).is_some() {}
            let step = ours.config().codec.clock_rate() / 50;
            let mut out = Vec::new();
            while let Some(o) = ours.poll_transmit(now) {
                let p = match (o.kind, RtpPacket::parse(&o.bytes)) {
                    (PacketKind::Rtp, Ok(p)) => p,
                    _ => continue,
                };
                let mut d = Vec::new();
                let header = RtpHeader {
                    payload_type: p.payload_type,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 1,
                    ..RtpHeader::default()
                };
                header.write(p.payload, &mut d);
                (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(step));
                out.push(d);
            }
            out
        });
        measured_clean(&b, 0);
    }

    struct Run {
        a: MediaSession,
        b: MediaSession,
        samples_a: Vec<Sample>,
        samples_b: Vec<Sample>,
        rtp_dropped: u64,
        rtcp_seen: Vec<Vec<u8>>,
    }

    /// Two sessions wired back to back through a virtual network: fixed one-way delay, RTP
    /// dropped at random with probability `loss` (seeded); RTCP is never dropped.
    fn run(codec: Codec, secs: u64, loss: f64, delay_ms: u64, seed: u64) -> Run {
        let delay = Duration::from_millis(delay_ms);
        run_with(codec, secs, seed, move |rng, _, _| {
            if rng.random::<f64>() < loss {
                vec![]
            } else {
                vec![delay]
            }
        })
    }

    /// The same with any impairment: `impair(rng, n, from_a)` gives the delays of the copies
    /// of the n-th RTP packet of a direction (none: dropped, two: duplicated). RTCP always
    /// takes 10 ms.
    fn run_with(
        codec: Codec,
        secs: u64,
        seed: u64,
        impair: impl FnMut(&mut SmallRng, u64, bool) -> Vec<Duration>,
    ) -> Run {
        run_src(codec, secs, seed, None, impair)
    }

    /// The same with both sides sending `source` (default: the generated signal).
    fn run_src(
        codec: Codec,
        secs: u64,
        seed: u64,
        source: Option<SourceConfig>,
        mut impair: impl FnMut(&mut SmallRng, u64, bool) -> Vec<Duration>,
    ) -> Run {
        let t0 = Instant::now();
        let mk = |ssrc, seed| {
            let mut c = cfg(ssrc, codec, seed);
            if let Some(s) = &source {
                c.source = s.clone();
            }
            c
        };
        let mut a = MediaSession::new(mk(0xa, seed), t0).unwrap();
        let mut b = MediaSession::new(mk(0xb, seed + 1), t0).unwrap();
        let mut rng = SmallRng::seed_from_u64(seed);
        // (deliver at, send order, to b?, bytes), delivered in time order.
        let mut wire: Vec<(Instant, u64, bool, Vec<u8>)> = Vec::new();
        let mut order = 0u64;
        let mut sent = [0u64; 2];
        let end = t0 + Duration::from_secs(secs);
        let mut next_sample = t0 + Duration::from_secs(1);
        let mut out = Run {
            a: MediaSession::new(cfg(1, codec, 0), t0).unwrap(),
            b: MediaSession::new(cfg(2, codec, 0), t0).unwrap(),
            samples_a: Vec::new(),
            samples_b: Vec::new(),
            rtp_dropped: 0,
            rtcp_seen: Vec::new(),
        };
        let mut now = t0;
        let mut stopped = false;
        loop {
            wire.sort_by_key(|w| (w.0, w.1));
            while wire.first().is_some_and(|w| w.0 <= now) {
                let (at, _, to_b, bytes) = wire.remove(0);
                let target = if to_b { &mut b } else { &mut a };
                target.handle_packet(at, &bytes).unwrap();
            }
            for (from_a, s) in [(true, &mut a), (false, &mut b)] {
                while let Some(o) = s.poll_transmit(now) {
                    order += 1;
                    let delays = if o.kind == PacketKind::Rtp {
                        let n = &mut sent[usize::from(from_a)];
                        *n += 1;
                        impair(&mut rng, *n - 1, from_a)
                    } else {
                        if from_a {
                            out.rtcp_seen.push(o.bytes.clone());
                        }
                        vec![Duration::from_millis(10)]
                    };
                    if delays.is_empty() {
                        out.rtp_dropped += 1;
                    }
                    for d in delays {
                        wire.push((now + d, order, from_a, o.bytes.clone()));
                    }
                }
            }
            if now >= next_sample && !stopped {
                out.samples_a.push(a.sample(now));
                out.samples_b.push(b.sample(now));
                next_sample += Duration::from_secs(1);
            }
            if now >= end && !stopped {
                a.stop(now);
                b.stop(now);
                stopped = true;
                continue;
            }
            let next = [
                a.poll_timeout(),
                b.poll_timeout(),
                wire.iter().map(|w| w.0).min(),
                (!stopped).then_some(next_sample.min(end)),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(n) => now = n.max(now),
                None => break,
            }
        }
        out.a = a;
        out.b = b;
        out
    }

    /// Two sessions through two [`Impairment`] models (one per direction).
    fn run_model(codec: Codec, secs: u64, ab: ImpairmentConfig, ba: ImpairmentConfig) -> Run {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(0xa, codec, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(0xb, codec, 2), t0).unwrap();
        let mut to_b: Impairment<Vec<u8>> = Impairment::new(ab);
        let mut to_a: Impairment<Vec<u8>> = Impairment::new(ba);
        let end = t0 + Duration::from_secs(secs);
        let mut next_sample = t0 + Duration::from_secs(1);
        let (mut samples_a, mut samples_b) = (Vec::new(), Vec::new());
        let mut now = t0;
        let mut stopped = false;
        loop {
            while let Some(p) = to_b.poll_packet(now) {
                b.handle_packet(now, &p).unwrap();
            }
            while let Some(p) = to_a.poll_packet(now) {
                a.handle_packet(now, &p).unwrap();
            }
            while let Some(o) = a.poll_transmit(now) {
                to_b.handle_packet(now, o.bytes);
            }
            while let Some(o) = b.poll_transmit(now) {
                to_a.handle_packet(now, o.bytes);
            }
            if now >= next_sample && !stopped {
                samples_a.push(a.sample(now));
                samples_b.push(b.sample(now));
                next_sample += Duration::from_secs(1);
            }
            if now >= end && !stopped {
                a.stop(now);
                b.stop(now);
                stopped = true;
                continue;
            }
            let next = [
                a.poll_timeout(),
                b.poll_timeout(),
                to_a.poll_timeout(),
                to_b.poll_timeout(),
                (!stopped).then_some(next_sample.min(end)),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(n) => now = n.max(now),
                None => break,
            }
        }
        Run {
            a,
            b,
            samples_a,
            samples_b,
            rtp_dropped: to_b.stats().dropped + to_a.stats().dropped,
            rtcp_seen: Vec::new(),
        }
    }

    #[test]
    fn bursty_loss_gives_the_markov_burst_ratio() {
        // Gilbert loss A → B (RTCP included, as on a real path): p = 0.01, r = 0.25 → loss
        // p/(p+r) = 3.85 %, BurstR 1/(p+r) = 3.85. 300 s = 15 000 packets, ≈ 145 bursts:
        // the estimate of r has σ ≈ r·√((1−r)/145) ≈ 7 %, so BurstR within ±25 %.
        let ab = ImpairmentConfig {
            delay: Duration::from_millis(20),
            loss: Loss::GilbertElliott {
                p: 0.01,
                r: 0.25,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
            seed: 21,
            ..ImpairmentConfig::default()
        };
        let ba = ImpairmentConfig {
            delay: Duration::from_millis(20),
            ..ImpairmentConfig::default()
        };
        let r = run_model(Codec::Pcmu, 300, ab, ba);
        let s = r.b.summary();
        assert!(
            (s.rx_loss_percent - 3.85).abs() < 0.6,
            "{}",
            s.rx_loss_percent
        );
        assert!(
            (s.rx_burst_ratio - 3.85).abs() < 0.96,
            "{}",
            s.rx_burst_ratio
        );
        // G.107 with what was measured (one-way 20 + 20 jitter buffer + 20 ptime = 60 ms);
        // bursty loss costs more than random loss of the same rate: at 3.85 % Ie-eff is
        // 95·3.85/(3.85/3.85 + 25.1) = 14.0 instead of 95·3.85/(3.85 + 25.1) = 12.6.
        let rate = |burst: f64| {
            emodel::rating(
                &Params::default(),
                Delays {
                    ta: 60.0,
                    ..Delays::default()
                },
                CodecImpairment::of(Codec::Pcmu),
                s.rx_loss_percent,
                burst,
            )
            .r
        };
        assert_eq!(s.rx_jb_late, 0);
        assert!(
            (s.r_factor.unwrap() - rate(s.rx_burst_ratio)).abs() < 0.05,
            "{}",
            s.r_factor.unwrap()
        );
        assert!(
            rate(1.0) - s.r_factor.unwrap() > 1.0,
            "{} vs random {}",
            s.r_factor.unwrap(),
            rate(1.0)
        );
        // The RTT still comes through (RTCP from A may be lost too): 2 × 20 ms.
        let rtt = r.a.summary().rtt_avg_ms.unwrap();
        assert!((rtt - 40.0).abs() < 0.05, "{rtt}");
        assert_eq!(r.a.summary().rx_lost, 0);
    }

    #[test]
    fn lossless_g711_call_scores_93_2() {
        let r = run(Codec::Pcmu, 12, 0.0, 10, 7);
        let s = r.a.summary();
        // 12 s at 50 packets/s, sent at t = 0, 20 ms, ..., 11.98 s and stop at 12 s: 601
        // packets including the one at exactly 12 s (sent before stop in the same instant).
        assert_eq!(s.tx_packets, r.b.summary().rx_packets);
        assert_eq!(s.rx_packets, 601);
        assert_eq!(s.rx_bytes, 601 * 172);
        // The first packet is A.1's probation packet.
        assert_eq!((s.rx_expected, s.rx_lost), (600, 0));
        assert_eq!(
            (s.rx_duplicates, s.rx_out_of_order, s.rx_ts_jumps),
            (0, 0, 0)
        );
        assert_eq!(s.rx_jitter_ms, 0.0);
        assert_eq!(s.rx_jb_late, 0);
        // RTT = 2 × 10 ms, to the 1/65536 s resolution of LSR/DLSR.
        let rtt = s.rtt_avg_ms.unwrap();
        assert!((rtt - 20.0).abs() < 0.05, "{rtt}");
        // One-way 10 + jitter buffer 20 + packetisation 20 = 50 ms ≤ 100 ms: no Idd.
        assert_eq!((s.r_factor.unwrap() * 10.0).round() / 10.0, 93.2);
        assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        assert!(s.remote_bye && r.b.summary().remote_bye);
        assert_eq!(s.malformed, 0);
        assert!(s.rtcp_received >= 2);

        // Per-second samples: with this seed the RTT is known from the 9th second on (RTCP
        // every 2.5–7.5 s, and an RTT needs our SR answered by the peer's report).
        assert_eq!(r.samples_a[7].rtt_ms, None);
        assert_eq!(r.samples_a[7].one_way_delay_ms, 40.0);
        let x = &r.samples_a[10];
        assert_eq!(x.received.packets, 50);
        assert_eq!(x.sent.packets, 50);
        assert_eq!(x.received.packet_rate, 50.0);
        assert_eq!(x.received.bitrate_kbps, 68.8);
        assert_eq!(x.received.fraction_lost, Some(0.0));
        assert_eq!(x.sent.fraction_lost, Some(0.0));
        assert_eq!(x.sent.jitter_ms, Some(0.0));
        assert_eq!(x.rx.spacing_min_ms, Some(20.0));
        assert_eq!(x.rx.spacing_max_ms, Some(20.0));
        assert_eq!(x.rx.jb_target_ms, 20.0);
        assert_eq!(x.rx.jb_delay_ms, Some(20.0));
        assert!((x.one_way_delay_ms - 50.0).abs() < 0.05);
        assert_eq!((x.received.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        // Levels of the decoded µ-law audio: the source's −20 dBov speech and −60 dBov
        // noise, within G.711 quantisation (about 0.1 dB here).
        let mut meter_speech = Vec::new();
        let mut meter_noise = Vec::new();
        for s in &r.samples_a[2..] {
            meter_speech.extend(s.rx.levels.speech_dbov);
            meter_noise.extend(s.rx.levels.noise_dbov);
        }
        assert!(
            meter_speech.iter().all(|l| (l + 20.0).abs() < 0.15),
            "{meter_speech:?}"
        );
        assert!(
            meter_noise.iter().all(|l| (l + 60.0).abs() < 0.6),
            "{meter_noise:?}"
        );
        let names: Vec<_> = x.metrics().into_iter().map(|(k, _)| k).collect();
        for n in [
            "rx_mos",
            "tx_mos",
            "rtt_ms",
            "rx_jitter_ms",
            "rx_level_dbov",
            "rx_jb_late",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }

    /// Hands every datagram of `wire` due by `until` to its session (`true`: to `b`).
    fn deliver_due(
        wire: &mut VecDeque<(Instant, bool, Vec<u8>)>,
        until: Instant,
        a: &mut MediaSession,
        b: &mut MediaSession,
    ) {
        while wire.front().is_some_and(|w| w.0 <= until) {
            let (at, to_b, bytes) = wire.pop_front().unwrap();
            let _ = if to_b { &mut *b } else { &mut *a }.handle_packet(at, &bytes);
        }
    }

    /// AES_CM_128_HMAC_SHA1_80 with our master key all `tx` bytes and the peer's all `rx`.
    fn sdes_params(tx: u8, rx: u8) -> SrtpParams {
        use crate::srtp::{MasterKey, Suite};
        SrtpParams {
            suite: Suite::AesCm128HmacSha1_80,
            tx_key: MasterKey::from_bytes([tx; 30]),
            rx_key: MasterKey::from_bytes([rx; 30]),
        }
    }

    /// A (SSRC 0xa, key 1) and B (0xb, key 2), each keyed to hear the other, from `t0`.
    fn sdes_pair(t0: Instant) -> (MediaSession, MediaSession) {
        (
            sdes_session(0xa, sdes_params(1, 2), t0),
            sdes_session(0xb, sdes_params(2, 1), t0),
        )
    }

    /// A PCMU session of `ssrc` keyed with `p`, started at `t0`.
    fn sdes_session(ssrc: u32, p: SrtpParams, t0: Instant) -> MediaSession {
        let mut c = cfg(ssrc, Codec::Pcmu, u64::from(ssrc));
        c.srtp = Some(p);
        MediaSession::new(c, t0).unwrap()
    }

    /// RFC 4568 §7.1.4: B re-keys inside the call (a re-INVITE with a new key); A takes the
    /// new key for what it receives, B sends under it from then on: no packet fails on either
    /// side, before or after, and the call scores as a plain one. Taking the same keys again
    /// changes nothing; a session without SRTP has nothing to re-key.
    #[test]
    fn new_keys_inside_the_call_are_taken_without_a_failed_packet() {
        let params = sdes_params;
        let t0 = Instant::now();
        let (mut a, mut b) = sdes_pair(t0);
        // Hears B under its old key: after the change, every packet of B fails there.
        let mut old = sdes_session(0xd, params(4, 2), t0);
        let (mut fed, rekeyed) = (0, t0 + Duration::from_secs(2));
        let delay = Duration::from_millis(10);
        let mut wire: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
        let mut now = t0;
        while now <= t0 + Duration::from_secs(4) {
            if now == t0 + Duration::from_secs(2) {
                // B's new key is in its offer; A's answer keeps A's key. Packets of the old
                // key still in flight fail: B switches once they have arrived (as a peer's
                // answer takes its round trip), A at once.
                assert!(b.rekey(Some(&params(3, 1))));
                assert!(!b.rekey(Some(&params(3, 1))), "the same keys again");
                deliver_due(&mut wire, now + delay, &mut a, &mut b);
                assert!(a.rekey(Some(&params(1, 3))));
            }
            deliver_due(&mut wire, now, &mut a, &mut b);
            for from_a in [true, false] {
                let s = if from_a { &mut a } else { &mut b };
                while let Some(o) = s.poll_transmit(now) {
                    if !from_a && now > rekeyed {
                        let _ = old.handle_packet(now, &o.bytes);
                        fed += 1;
                    }
                    wire.push_back((now + delay, from_a, o.bytes));
                }
            }
            now += Duration::from_millis(1);
        }
        a.stop(now);
        b.stop(now);
        assert!(fed > 90, "{fed}");
        assert_eq!(
            old.summary().srtp_auth_failures,
            fed,
            "B sends under its new key"
        );
        for s in [a.summary(), b.summary()] {
            assert_eq!((s.srtp_auth_failures, s.srtp_replayed), (0, 0), "{s:?}");
            assert_eq!((s.rx_lost, s.malformed), (0, 0), "{s:?}");
            assert!(s.rtcp_received >= 1, "SRTCP under the new key too: {s:?}");
            assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        }
        let mut plain = MediaSession::new(cfg(0xc, Codec::Pcmu, 0xc), t0).unwrap();
        assert!(!plain.rekey(None), "plain already");
    }

    /// An `srtp = "optional"` call whose peer drops SRTP by re-INVITE, then brings it back:
    /// A answers (changes at once), B is the offerer (changes when A's answer reaches it, one
    /// way later). After the drop A sends plain RTP (172 bytes for 20 ms of PCMU, no tag) and
    /// takes B's SRTP still on its way under the old key; after the return both send SRTP
    /// (182 bytes) and A takes B's plain RTP still on its way. No packet fails, none is
    /// lost, the call scores as a plain one. Before (the call stayed SRTP): every plain
    /// packet of B failed authentication at A.
    #[test]
    fn srtp_dropped_then_taken_again_inside_the_call_loses_no_packet() {
        let params = sdes_params;
        let t0 = Instant::now();
        let (mut a, mut b) = sdes_pair(t0);
        let (dropped, taken) = (t0 + Duration::from_secs(2), t0 + Duration::from_secs(4));
        let delay = Duration::from_millis(10);
        let mut wire: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
        // Lengths of A's RTP (not RTCP) datagrams in each phase.
        let mut lens: [Vec<usize>; 3] = Default::default();
        let mut now = t0;
        while now <= t0 + Duration::from_secs(6) {
            if now == dropped {
                assert!(a.rekey(None));
                assert!(!a.rekey(None), "plain already");
                deliver_due(&mut wire, now + delay, &mut a, &mut b);
                assert!(b.rekey(None));
            }
            if now == taken {
                assert!(a.rekey(Some(&params(5, 6))));
                deliver_due(&mut wire, now + delay, &mut a, &mut b);
                assert!(b.rekey(Some(&params(6, 5))));
            }
            deliver_due(&mut wire, now, &mut a, &mut b);
            for from_a in [true, false] {
                let s = if from_a { &mut a } else { &mut b };
                while let Some(o) = s.poll_transmit(now) {
                    if from_a && o.kind == PacketKind::Rtp {
                        let phase = usize::from(now >= dropped) + usize::from(now >= taken);
                        lens[phase].push(o.bytes.len());
                    }
                    wire.push_back((now + delay, from_a, o.bytes));
                }
            }
            now += Duration::from_millis(1);
        }
        a.stop(now);
        b.stop(now);
        for (phase, want) in [(0, 182), (1, 172), (2, 182)] {
            assert!(lens[phase].len() > 90, "{phase}: {}", lens[phase].len());
            assert!(
                lens[phase].iter().all(|l| *l == want),
                "{phase}: {:?}",
                lens[phase]
            );
        }
        assert!(a.config().srtp.is_some());
        for s in [a.summary(), b.summary()] {
            assert_eq!((s.srtp_auth_failures, s.srtp_replayed), (0, 0), "{s:?}");
            assert_eq!(
                (s.rx_lost, s.malformed, s.unexpected_pt),
                (0, 0, 0),
                "{s:?}"
            );
            assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.41, "{s:?}");
        }
    }

    /// DTLS-SRTP between two sessions (RFC 5764): the handshake runs on the session's own
    /// datagrams and timers, nothing but DTLS leaves before the keys, then only SRTP/SRTCP;
    /// the call scores as a plain one. A wrong fingerprint: no media at all, the reason named.
    #[test]
    fn dtls_srtp_call_holds_media_until_the_keys_then_scores_as_plain() {
        use crate::dtls::{DtlsIdentity, DtlsParams};
        use std::sync::Arc;
        let run = |wrong: bool| {
            let (ia, ib) = (
                Arc::new(DtlsIdentity::generate().unwrap()),
                Arc::new(DtlsIdentity::generate().unwrap()),
            );
            let t0 = Instant::now();
            let mk = |ssrc, me: &Arc<DtlsIdentity>, peer: &Arc<DtlsIdentity>, active| {
                let mut c = cfg(ssrc, Codec::Pcmu, u64::from(ssrc));
                c.dtls = Some(DtlsParams {
                    identity: me.clone(),
                    remote: peer.fingerprint().clone(),
                    active,
                });
                MediaSession::new(c, t0).unwrap()
            };
            let mut a = mk(0xa, &ia, if wrong { &ia } else { &ib }, false);
            let mut b = mk(0xb, &ib, &ia, true);
            let delay = Duration::from_millis(10);
            let mut wire: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
            let mut kinds = Vec::new();
            let mut now = t0;
            while now <= t0 + Duration::from_secs(5) {
                deliver_due(&mut wire, now, &mut a, &mut b);
                for from_a in [true, false] {
                    let s = if from_a { &mut a } else { &mut b };
                    // The session asks to be woken for its DTLS timers and output.
                    assert!(s.poll_timeout().is_some() || !s.dtls_handshaking());
                    while let Some(o) = s.poll_transmit(now) {
                        kinds.push((from_a, o.kind, o.bytes[0]));
                        wire.push_back((now + delay, from_a, o.bytes));
                    }
                }
                now += Duration::from_millis(1);
            }
            a.stop(now);
            b.stop(now);
            while a.poll_transmit(now).is_some() || b.poll_transmit(now).is_some() {}
            (a.summary(), b.summary(), kinds)
        };
        let (sa, sb, kinds) = run(false);
        // RFC 7983: DTLS is 20–63, media 128–191 (SRTP, read back below); each side's
        // handshake comes first (DTLS 1.3 ACKs may follow its media).
        assert!(
            kinds
                .iter()
                .all(|k| (k.1 == PacketKind::Dtls) == (20..=63).contains(&k.2))
        );
        assert!(kinds.iter().all(|k| k.1 == PacketKind::Dtls || k.2 >= 128));
        for side in [true, false] {
            let mine: Vec<_> = kinds.iter().filter(|k| k.0 == side).collect();
            let first_media = mine.iter().position(|k| k.1 != PacketKind::Dtls).unwrap();
            assert!(first_media >= 1, "{mine:?}");
        }
        for s in [&sa, &sb] {
            let d = s.dtls.as_ref().unwrap();
            assert_eq!(d.failure, None, "{d:?}");
            assert_eq!(d.suite, Some("AEAD_AES_256_GCM"));
            let hs = d.handshake.unwrap();
            assert!(
                hs >= Duration::from_millis(10) && hs < Duration::from_millis(40),
                "{hs:?}"
            );
            assert_eq!(
                (s.srtp_auth_failures, s.srtp_replayed, s.malformed),
                (0, 0, 0),
                "{s:?}"
            );
            assert_eq!((s.rx_lost, s.dtls_early), (0, 0), "{s:?}");
            assert!(s.rtcp_received >= 1, "SRTCP: {s:?}");
            assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        }
        // A (the server) was told another fingerprint than B's certificate: no keys, so A
        // sends no media and measures none. B, the DTLS 1.3 client, has its keys once A's
        // Finished arrived (before A saw B's certificate) and sends SRTP that A drops.
        let (sa, sb, kinds) = run(true);
        assert!(
            kinds
                .iter()
                .filter(|k| k.0)
                .all(|k| k.1 == PacketKind::Dtls),
            "{kinds:?}"
        );
        let why = sa.dtls.as_ref().unwrap().failure.clone().unwrap();
        assert!(
            why.contains("does not match the SDP a=fingerprint"),
            "{why}"
        );
        assert_eq!((sa.tx_packets, sa.rx_packets, sb.rx_packets), (0, 0, 0));
        assert!(sa.dtls_early > 200, "{sa:?}");
        assert_eq!(sa.mos, None);
    }

    /// SRTP between two sessions (each with the other's key): every datagram on the wire is
    /// protected, the call scores as a plain one, and tampered or replayed copies injected
    /// into one direction are counted, dropped and measured nowhere.
    #[test]
    fn srtp_call_scores_as_plain_and_counts_tampered_and_replayed_packets() {
        use crate::srtp::{MasterKey, Suite};
        let (ka, kb) = (
            MasterKey::from_bytes([1; 30]),
            MasterKey::from_bytes([2; 30]),
        );
        let t0 = Instant::now();
        let mk = |ssrc, tx: &MasterKey, rx: &MasterKey| {
            let mut c = cfg(ssrc, Codec::Pcmu, u64::from(ssrc));
            c.srtp = Some(SrtpParams {
                suite: Suite::AesCm128HmacSha1_32,
                tx_key: tx.clone(),
                rx_key: rx.clone(),
            });
            MediaSession::new(c, t0).unwrap()
        };
        let mut a = mk(0xa, &ka, &kb);
        let mut b = mk(0xb, &kb, &ka);
        // The plain twin of `a` (same seed): its packets are what `a` encrypts.
        let mut plain = MediaSession::new(cfg(0xa, Codec::Pcmu, 0xa), t0).unwrap();
        let delay = Duration::from_millis(10);
        let mut wire: VecDeque<(Instant, bool, Vec<u8>)> = VecDeque::new();
        let (mut tampered, mut replayed, mut n) = (0, 0, 0u64);
        let mut heard = Vec::new();
        let mut now = t0;
        let end = t0 + Duration::from_secs(6);
        while now <= end {
            deliver_due(&mut wire, now, &mut a, &mut b);
            for from_a in [true, false] {
                let s = if from_a { &mut a } else { &mut b };
                while let Some(o) = s.poll_transmit(now) {
                    if from_a && o.kind == PacketKind::Rtp {
                        let p = plain.poll_transmit(now).unwrap();
                        assert_eq!(o.bytes.len(), p.bytes.len() + 4, "a 32-bit tag");
                        assert_eq!(o.bytes[..12], p.bytes[..12], "the header is plain");
                        assert_ne!(o.bytes[12..172], p.bytes[12..], "the payload is not");
                        n += 1;
                        if n % 50 == 0 {
                            let mut t = o.bytes.clone();
                            t[20] ^= 0x10;
                            wire.push_back((now + delay, true, t));
                            tampered += 1;
                        }
                        if n % 40 == 0 {
                            wire.push_back((now + delay, true, o.bytes.clone()));
                            replayed += 1;
                        }
                    }
                    if from_a && heard.len() < 20 {
                        heard.push((now, o.kind, o.bytes.clone()));
                    }
                    wire.push_back((now + delay, from_a, o.bytes));
                }
            }
            while plain.poll_transmit(now).is_some() {}
            now += Duration::from_millis(1);
        }
        a.stop(now);
        b.stop(now);
        let (sa, sb) = (a.summary(), b.summary());
        assert!(tampered >= 5 && replayed >= 7, "{tampered} {replayed}");
        assert_eq!(
            (sb.srtp_auth_failures, sb.srtp_replayed),
            (tampered, replayed)
        );
        assert_eq!((sa.srtp_auth_failures, sa.srtp_replayed), (0, 0));
        assert_eq!(
            sb.rx_packets + 1,
            sa.tx_packets,
            "all but the one in flight"
        );
        assert_eq!((sb.rx_duplicates, sb.rx_lost, sb.malformed), (0, 0, 0));
        assert!(sb.rtcp_received >= 1 && sa.rtcp_received >= 1, "SRTCP too");
        assert_eq!((sb.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        assert_eq!((sa.mos.unwrap() * 100.0).round() / 100.0, 4.41);
        // A session under other keys hears nothing it can use: every packet fails.
        let mut stranger = mk(0xc, &kb, &kb);
        for (_, _, bytes) in &heard {
            assert!(stranger.handle_packet(now, bytes).is_err());
        }
        let st = stranger.summary();
        assert_eq!(
            (st.rx_packets, st.srtp_auth_failures),
            (0, heard.len() as u64)
        );
    }

    #[test]
    fn wav_tone_at_44k1_arrives_at_its_level() {
        use crate::audio::SourceKind;
        use crate::wav::{WavAudio, write_pcm16};
        // 0.5 s of 1 kHz at −20 dBov, 44.1 kHz (500 whole periods, so the loop is seamless).
        let rate = 44100;
        let amp = 32768.0 * 0.1 * 2f64.sqrt();
        let tone: Vec<i16> = (0..rate / 2)
            .map(|i| {
                let w = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / f64::from(rate);
                (amp * w.sin()).round() as i16
            })
            .collect();
        let clip = WavAudio::from_wav_bytes(&write_pcm16(&tone, rate)).unwrap();
        assert!((clip.level_dbov() + 20.0).abs() < 0.01);
        let src = SourceConfig {
            kind: SourceKind::Wav(clip),
            ..SourceConfig::default()
        };
        for (codec, tol) in [(Codec::Pcmu, 0.15), (Codec::Pcma, 0.15), (Codec::G722, 0.5)] {
            let delay = Duration::from_millis(10);
            let r = run_src(codec, 5, 3, Some(src.clone()), move |_, _, _| vec![delay]);
            assert_eq!(r.a.summary().rx_lost, 0);
            for x in &r.samples_a[1..] {
                // Every frame of a steady tone is "speech": activity 1, level −20 dBov.
                assert_eq!(x.rx.levels.activity, Some(1.0), "{codec:?}");
                let l = x.rx.levels.rms_dbov.unwrap();
                assert!((l + 20.0).abs() < tol, "{codec:?}: {l}");
                // 2000 sign changes per second of decoded audio at the codec's rate.
                let rate = if codec == Codec::G722 {
                    16000.0
                } else {
                    8000.0
                };
                let zps = x.rx.levels.zero_crossings.unwrap() * rate;
                assert!((zps - 2000.0).abs() < 5.0, "{codec:?}: {zps}");
            }
        }
    }

    /// A far end playing an IVR prompt (1 s of tone, then 2 s of digital silence, looped):
    /// the receiving session's sound watch, fed the frames its level meter decodes, hears
    /// the sound start on the first packet and stop when its last loud frame ended.
    #[test]
    fn a_prompt_and_its_silence_are_heard_where_they_are() {
        use crate::audio::SourceKind;
        use crate::sound::SoundEvent;
        use crate::wav::{WavAudio, write_pcm16};
        let tone: Vec<i16> = (0..24000)
            .map(|i| {
                if i < 8000 {
                    (8000.0 * (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 8000.0).sin())
                        as i16
                } else {
                    0
                }
            })
            .collect();
        let clip = WavAudio::from_wav_bytes(&write_pcm16(&tone, 8000)).unwrap();
        let t0 = Instant::now();
        let mut tx = cfg(0xa, Codec::Pcmu, 1);
        tx.source.kind = SourceKind::Wav(clip);
        let mut a = MediaSession::new(tx, t0).unwrap();
        let mut b = MediaSession::new(cfg(0xb, Codec::Pcmu, 2), t0).unwrap();
        b.watch_sound(SoundConfig::default());
        let mut seen = Vec::new();
        // Each packet arrives 5 ms after it is sent. A sine of amplitude 8000 is −15.3 dBov.
        for ms in (0..4000).step_by(5) {
            let now = t0 + Duration::from_millis(ms);
            while let Some(o) = a.poll_transmit(now) {
                if o.kind == PacketKind::Rtp {
                    b.handle_packet(now + Duration::from_millis(5), &o.bytes)
                        .unwrap();
                }
            }
            let w = b.sound_mut().unwrap();
            w.handle_timeout(now);
            seen.extend(std::iter::from_fn(|| w.poll_event()));
        }
        let at = |e: &SoundEvent| match e {
            SoundEvent::Started { at, .. } | SoundEvent::Stopped { at, .. } => {
                at.duration_since(t0).as_millis()
            }
        };
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            matches!(seen[0], SoundEvent::Started { level_dbov, .. } if (-15.8..-14.8).contains(&level_dbov)),
            "{seen:?}"
        );
        assert!(matches!(seen[1], SoundEvent::Stopped { .. }));
        assert!(matches!(seen[2], SoundEvent::Started { .. }));
        // The first packet arrives at 5 ms; the 50th (the last of the tone) ends at 1005 ms.
        assert_eq!([at(&seen[0]), at(&seen[1]), at(&seen[2])], [5, 1005, 3005]);
    }

    /// A CED (2100 Hz, 1 s) then a DTMF `5` (100 ms) from a WAV clip over PCMU and G.722:
    /// the receiving session's tone watch, fed the frames it decodes at the codec's rate,
    /// hears the tone where it was sent and reads the digit.
    #[test]
    fn tones_and_inband_digits_are_heard_where_they_are() {
        use crate::audio::SourceKind;
        use crate::tone::ToneEvent;
        use crate::wav::{WavAudio, write_pcm16};
        let sine = |f: &[f64], i: i32| -> i16 {
            f.iter()
                .map(|f| 6000.0 * (2.0 * std::f64::consts::PI * f * f64::from(i) / 8000.0).sin())
                .sum::<f64>() as i16
        };
        let clip: Vec<i16> = (0..24000)
            .map(|i| match i {
                0..8000 => sine(&[2100.0], i),
                12000..12800 => sine(&[770.0, 1336.0], i),
                _ => 0,
            })
            .collect();
        let clip = WavAudio::from_wav_bytes(&write_pcm16(&clip, 8000)).unwrap();
        for codec in [Codec::Pcmu, Codec::G722] {
            let t0 = Instant::now();
            let mut tx = cfg(0xa, codec, 1);
            tx.source.kind = SourceKind::Wav(clip.clone());
            let mut a = MediaSession::new(tx, t0).unwrap();
            let mut b = MediaSession::new(cfg(0xb, codec, 2), t0).unwrap();
            let min = Duration::from_millis(200);
            let ced = crate::tone::Tone::parse("2100").unwrap();
            let busy = crate::tone::Tone::parse("480+620").unwrap();
            b.watch_tones(&[(ced, min), (busy, min)], true, false);
            let mut seen = Vec::new();
            for ms in (0..2500).step_by(5) {
                let now = t0 + Duration::from_millis(ms);
                while let Some(o) = a.poll_transmit(now) {
                    if o.kind == PacketKind::Rtp {
                        b.handle_packet(now + Duration::from_millis(5), &o.bytes)
                            .unwrap();
                    }
                }
                let w = b.tones_mut().unwrap();
                w.handle_timeout(now);
                seen.extend(std::iter::from_fn(|| w.poll_event()));
            }
            let ms = |t: Instant| t.duration_since(t0).as_millis();
            let [
                ToneEvent::Heard { tone: 0, at },
                ToneEvent::Ended {
                    tone: 0,
                    start,
                    end,
                },
                ToneEvent::Digit { digit: '5', at: d },
            ] = seen[..]
            else {
                panic!("{codec:?}: {seen:?}");
            };
            // The first packet arrives at 5 ms; the tone's 50th packet ends at 1005 ms, the
            // digit's first starts at 1505 ms (blocks of 40 and 12.5 ms from the first sample;
            // G.722's filters delay a little).
            assert_eq!((ms(at), ms(start)), (5, 5), "{codec:?}");
            assert!((965..=1005).contains(&ms(end)), "{codec:?}: {seen:?}");
            assert!((1505..1530).contains(&ms(d)), "{codec:?}: {seen:?}");
        }
    }

    #[test]
    fn g722_call_carries_wideband_audio() {
        let r = run(Codec::G722, 6, 0.0, 10, 4);
        let s = r.a.summary();
        // 64 kbit/s: 160 payload bytes per 20 ms, as G.711; the RTP clock is 8 kHz.
        assert_eq!(s.rx_bytes, s.rx_packets * 172);
        assert_eq!((s.rx_lost, s.rx_ts_jumps, s.malformed), (0, 0, 0));
        // The decoded 16 kHz signal has the source's levels (ADPCM: within 0.5 dB).
        for x in &r.samples_a[2..] {
            let speech = x.rx.levels.speech_dbov.unwrap();
            assert!((speech + 20.0).abs() < 0.5, "{speech}");
            if let Some(noise) = x.rx.levels.noise_dbov {
                assert!((noise + 60.0).abs() < 3.0, "{noise}");
            }
        }
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_call_with_loss_conceals_frames() {
        // 2 % random loss on both directions; Opus at 16 kHz mono, 32 kbit/s, 48 kHz clock.
        let r = run(Codec::Opus, 20, 0.02, 10, 6);
        let s = r.a.summary();
        assert!(s.rx_lost > 0);
        assert_eq!((s.rx_ts_jumps, s.malformed, s.unexpected_pt), (0, 0, 0));
        // Each lost packet is concealed once by the decoder, unless it was the very last.
        assert_eq!(s.rx_plc_events, s.rx_lost as u64);
        // 48 kHz RTP clock: 960 per 20 ms; jitter stays 0 on a fixed-delay path.
        assert_eq!(s.rx_jitter_ms, 0.0);
        // The decoded speech keeps its level: Opus is perceptual, not waveform-matching,
        // and concealed frames fade, so allow 1.5 dB.
        for x in &r.samples_a[2..] {
            let speech = x.rx.levels.speech_dbov.unwrap();
            assert!((speech + 20.0).abs() < 1.5, "{speech}");
        }
        // 32 kbit/s → ~80 bytes of payload per 20 ms, far below G.711's 160.
        let per_packet = s.rx_bytes as f64 / s.rx_packets as f64 - 12.0;
        assert!(per_packet > 40.0 && per_packet < 120.0, "{per_packet}");
    }

    #[test]
    fn first_rtcp_is_sr_with_cname() {
        let r = run(Codec::Pcma, 6, 0.0, 5, 3);
        let first = rtcp::parse_compound(&r.rtcp_seen[0]).unwrap();
        let RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        } = &first[0]
        else {
            panic!("not an SR: {first:?}");
        };
        assert_eq!(*ssrc, 0xa);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].ssrc, 0xb);
        assert_eq!(info.octet_count, info.packet_count * 160);
        assert_eq!(
            first[1],
            RtcpPacket::SourceDescription(vec![(0xa, Some("ep10@sipmeter".into()))])
        );
        // The last compound carries BYE.
        let last = rtcp::parse_compound(r.rtcp_seen.last().unwrap()).unwrap();
        assert_eq!(
            last.last(),
            Some(&RtcpPacket::Bye {
                ssrcs: vec![0xa],
                reason: None
            })
        );
    }

    #[test]
    fn five_percent_random_loss_gives_the_g107_figure() {
        let r = run(Codec::Pcmu, 60, 0.05, 10, 11);
        let s = r.a.summary();
        let lost = s.rx_lost as f64;
        let ppl = 100.0 * lost / s.rx_expected as f64;
        // The measured loss is what the wire dropped (b → a plus a → b, so about half).
        assert!(s.rx_lost as u64 + r.b.summary().rx_lost as u64 <= r.rtp_dropped);
        // 3000 packets at p = 0.05: σ = √(3000·0.05·0.95) = 11.9 packets = 0.40 %;
        // this seed lands within 2σ.
        assert!((ppl - 5.0).abs() < 0.8, "{ppl}");
        // Random loss: the 2-state estimate of BurstR is ≈ 1 (σ ≈ 0.06 at this size).
        assert!(
            (s.rx_burst_ratio - 1.0).abs() < 0.15,
            "{}",
            s.rx_burst_ratio
        );
        // The session's R is exactly G.107 with the measured Ppl and BurstR ...
        let expect = emodel::rating(
            &Params::default(),
            Delays {
                ta: 50.0,
                ..Delays::default()
            },
            CodecImpairment::of(Codec::Pcmu),
            ppl,
            s.rx_burst_ratio,
        )
        .r;
        assert!(
            (s.r_factor.unwrap() - expect).abs() < 0.05,
            "{} vs {expect}",
            s.r_factor.unwrap()
        );
        // ... which is the reference figure for 5 % random loss (R 77.43, MOS 3.92) within
        // the sampling spread: dR/dPpl ≈ −3.1 per % near 5 %, so ±0.8 % → ±2.5 R.
        assert!(
            (s.r_factor.unwrap() - 77.43).abs() < 2.5,
            "{}",
            s.r_factor.unwrap()
        );
        assert_eq!(s.rx_jb_late, 0);
        assert_eq!(s.rx_jitter_ms, 0.0);
    }

    #[test]
    fn lossless_g722_call_scores_116_on_the_wideband_scale() {
        // G.722 is scored with G.107.1 (Ie,WB 13): R = 129 − 13 = 116, MOS 4.34 (Annex A).
        let r = run(Codec::G722, 12, 0.0, 10, 7);
        let s = r.a.summary();
        assert_eq!((s.rx_expected, s.rx_lost), (600, 0));
        assert_eq!(s.emodel, "G.107.1");
        assert_eq!(s.r_factor.unwrap(), 116.0);
        assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.34);
        let x = &r.samples_a[10];
        assert_eq!(x.received.r_factor, Some(116.0));
        assert_eq!((x.received.mos.unwrap() * 100.0).round() / 100.0, 4.34);
        assert_eq!(x.sent.r_factor, Some(116.0));
        assert_eq!(x.r_factor_scale, 129.0);
        let m = x.metrics();
        assert!(m.contains(&("r_factor_scale", 129.0)), "{m:?}");
        assert!(m.contains(&("rx_r_factor", 116.0)), "{m:?}");
        // G.711 stays on the narrowband scale, and says so.
        let r = run(Codec::Pcma, 3, 0.0, 10, 7);
        assert_eq!(r.a.summary().emodel, "G.107");
        assert!(
            r.samples_a[2]
                .metrics()
                .contains(&("r_factor_scale", 100.0))
        );
    }

    #[test]
    fn g722_with_random_loss_follows_the_wideband_formula() {
        let r = run(Codec::G722, 60, 0.02, 10, 11);
        let s = r.a.summary();
        let ppl = 100.0 * s.rx_lost as f64 / s.rx_expected as f64;
        // 3000 packets at p = 0.02: σ = 0.26 %; this seed measures 2.03 % (R 89.71, MOS 3.58).
        assert!((ppl - 2.0).abs() < 0.55, "{ppl}");
        // R is G.107.1 with the measured Ppl and BurstR (Ie,WB 13, Bpl 4.3) ...
        let expect = emodel::rating(
            &Params::default(),
            Delays {
                ta: 50.0,
                ..Delays::default()
            },
            CodecImpairment::G722,
            ppl,
            s.rx_burst_ratio,
        );
        assert!(
            (s.r_factor.unwrap() - expect.r).abs() < 0.05,
            "{} vs {}",
            s.r_factor.unwrap(),
            expect.r
        );
        assert!((s.mos.unwrap() - emodel::mos_from_r_wb(expect.r)).abs() < 1e-9);
        // ... near the 2 % reference (R 89.97, MOS 3.58): dR/dPpl ≈ −8.8 per % at 2 %.
        assert!(
            (s.r_factor.unwrap() - 89.97).abs() < 5.0,
            "{}",
            s.r_factor.unwrap()
        );
    }

    #[cfg(feature = "opus")]
    #[test]
    fn lossless_opus_call_is_scored_wideband() {
        // Opus: G.107.1 with Ie,WB 19.96 → R 109.04, MOS 4.18.
        let r = run(Codec::Opus, 6, 0.0, 10, 7);
        let s = r.a.summary();
        assert_eq!(s.rx_lost, 0);
        assert_eq!(s.emodel, "G.107.1");
        assert_eq!((s.r_factor.unwrap() * 100.0).round() / 100.0, 109.04);
        assert_eq!((s.mos.unwrap() * 100.0).round() / 100.0, 4.18);
        assert_eq!(r.samples_a[4].r_factor_scale, 129.0);
    }

    #[test]
    fn uniform_jitter_is_measured() {
        // One-way delay uniform in [10, 25] ms, independent per packet (no reordering: the
        // spread is below the 20 ms spacing). A.8's J averages E|Dᵢ − Dᵢ₋₁| = a/3 for
        // independent U(0, a) delays: 15/3 = 5 ms. Each 1-s reading has σ ≈ a/√18/√31
        // = 0.63 ms (EWMA gain 1/16); the mean of 58 readings has σ ≈ 0.1 ms.
        let r = run_with(Codec::Pcmu, 60, 5, |rng, _, _| {
            vec![Duration::from_micros(rng.random_range(10_000..=25_000))]
        });
        let js: Vec<f64> = r.samples_b[2..]
            .iter()
            .filter_map(|s| s.received.jitter_ms)
            .collect();
        let mean = js.iter().sum::<f64>() / js.len() as f64;
        assert!((mean - 5.0).abs() < 0.4, "mean jitter {mean} ms");
        let s = r.b.summary();
        assert_eq!((s.rx_lost, s.rx_out_of_order, s.rx_jb_late), (0, 0, 0));
        // A's view of the same direction comes from B's RTCP reports: the same estimator.
        let reported = r.samples_a.last().unwrap().sent.jitter_ms.unwrap();
        assert!((reported - 5.0).abs() < 2.5, "{reported}");
        // The jitter buffer grew to ptime + 3·J ≈ 35 ms.
        let target = r.samples_b.last().unwrap().rx.jb_target_ms;
        assert!((target - 35.0).abs() < 5.0, "{target}");
    }

    #[test]
    fn spikes_reorder_and_duplicates_are_counted() {
        // A → B: every 100th packet (n ≡ 50) is held 100 ms more (5 packets overtake it, and
        // it misses its playout: the jitter buffer's target stays well under 100 ms); every
        // 100th (n ≡ 75) is duplicated 1 ms later. 20 s: 1001 packets, 10 of each.
        let r = run_with(Codec::Pcma, 20, 9, |_, n, from_a| {
            let base = Duration::from_millis(10);
            match (from_a, n % 100) {
                (true, 50) => vec![base + Duration::from_millis(100)],
                (true, 75) => vec![base, base + Duration::from_millis(1)],
                _ => vec![base],
            }
        });
        let s = r.b.summary();
        assert_eq!(s.rx_packets, 1011);
        assert_eq!((s.rx_expected, s.rx_lost), (1000, 0));
        assert_eq!(
            (s.rx_out_of_order, s.rx_duplicates, s.rx_jb_late),
            (10, 10, 10)
        );
        assert_eq!(s.rx_largest_gap, 1);
        // For the E-model the 10 late packets are lost: Ppl = 1 %. The network lost nothing
        // (the held packets filled their gaps), so the loss pattern gives BurstR 1.
        assert_eq!(s.rx_burst_ratio, 1.0);
        let expect = emodel::rating(
            &Params::default(),
            Delays {
                ta: r.samples_b.last().unwrap().one_way_delay_ms,
                ..Delays::default()
            },
            CodecImpairment::of(Codec::Pcma),
            1.0,
            s.rx_burst_ratio,
        )
        .r;
        assert!(
            (s.r_factor.unwrap() - expect).abs() < 1e-9,
            "{} vs {expect}",
            s.r_factor.unwrap()
        );
        // ≈ 89.6 (1 % random loss is 89.57).
        assert_eq!((s.r_factor.unwrap() * 10.0).round() / 10.0, 89.6);
        // The other direction was clean.
        let s = r.a.summary();
        assert_eq!(
            (s.rx_lost, s.rx_out_of_order, s.rx_duplicates, s.rx_jb_late),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn dtmf_sent_as_rfc4733_events_is_detected() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        assert_eq!(
            a.send_dtmf("1x", Duration::from_millis(100)),
            Err(DtmfSendError::BadDigit('x'))
        );
        a.send_dtmf("12#", Duration::from_millis(100)).unwrap();
        let mut events = Vec::new();
        let mut heard: Vec<String> = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(2) {
            while let Some(o) = a.poll_transmit(now) {
                if o.kind == PacketKind::Rtp {
                    let p = RtpPacket::parse(&o.bytes).unwrap();
                    if p.payload_type == 101 {
                        let e = TelephoneEvent::decode(p.payload).unwrap();
                        events.push((p.marker, p.timestamp, e.event, e.end, e.duration));
                    }
                }
                b.handle_packet(now, &o.bytes).unwrap();
            }
            while let Some(o) = b.poll_transmit(now) {
                a.handle_packet(now, &o.bytes).unwrap();
            }
            if heard.last().is_none_or(|h: &String| h != b.dtmf_received()) {
                heard.push(b.dtmf_received().to_owned());
            }
            now += Duration::from_millis(20);
        }
        // Each digit is readable at its end packet, while the call goes on.
        assert_eq!(heard, ["", "1", "12", "12#"]);
        // 100 ms = 800 units = 5 packets, then the end packet twice more: 7 per digit.
        assert_eq!(events.len(), 21);
        let first: Vec<_> = events[..7].iter().map(|e| (e.0, e.2, e.3, e.4)).collect();
        assert_eq!(
            first,
            vec![
                (true, 1, false, 160),
                (false, 1, false, 320),
                (false, 1, false, 480),
                (false, 1, false, 640),
                (false, 1, true, 800),
                (false, 1, true, 800),
                (false, 1, true, 800),
            ]
        );
        // One timestamp per event (its start); 2 audio packets (50 ms → 2) between digits.
        assert!(events[..7].iter().all(|e| e.1 == events[0].1));
        assert_eq!(events[7].1.wrapping_sub(events[0].1), 9 * 160);
        assert_eq!(a.summary().dtmf_sent, "12#");
        let s = b.summary();
        assert_eq!(s.dtmf_received, "12#");
        // Events share the sequence space and do not disturb the media figures.
        assert_eq!((s.rx_lost, s.rx_ts_jumps, s.unexpected_pt), (0, 0, 0));
        assert_eq!(s.rx_jitter_ms, 0.0);
        let mut c = cfg(3, Codec::Pcmu, 3);
        c.send_event_pt = None;
        let mut x = MediaSession::new(c, t0).unwrap();
        assert_eq!(
            x.send_dtmf("1", Duration::from_millis(100)),
            Err(DtmfSendError::NotNegotiated)
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(cfg(1, Codec::G722, 1), t0).unwrap();
        let mut rng = SmallRng::seed_from_u64(5);
        for i in 0..20_000u32 {
            let len = rng.random_range(0..200);
            let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if len > 1 && i % 2 == 0 {
                b[0] = 0x80 | (b[0] & 0x3f);
            }
            let _ = s.handle_packet(t0 + Duration::from_millis(u64::from(i)), &b);
            if i % 1000 == 0 {
                let x = s.sample(t0 + Duration::from_millis(u64::from(i)));
                assert!(x.metrics().iter().all(|(_, v)| v.is_finite()), "{x:?}");
            }
        }
        let sum = s.summary();
        assert!(sum.malformed > 0);
        assert!(sum.r_factor.is_some_and(f64::is_finite) && sum.mos.is_some_and(|m| m >= 1.0));
    }

    /// A call that heard nothing is not rated: no R, no MOS (a perfect score from no
    /// packets would be a made-up figure), while what was sent is still counted.
    #[test]
    fn a_session_that_receives_nothing_has_no_mos() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let end = t0 + Duration::from_secs(3);
        while let Some(at) = s.poll_timeout().filter(|&at| at <= end) {
            while s.poll_transmit(at).is_some() {}
            let _ = s.sample(at);
        }
        s.stop(end);
        let sum = s.summary();
        assert!(sum.tx_packets >= 140, "{sum:?}");
        assert_eq!(sum.rx_packets, 0);
        assert_eq!((sum.r_factor, sum.mos), (None, None), "{sum:?}");
    }

    #[test]
    fn dtmf_events_malformed_and_foreign_payloads() {
        let t0 = Instant::now();
        let mut s = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut seq = 100u16;
        let mut send = |s: &mut MediaSession, pt: u8, ts: u32, payload: &[u8]| {
            let mut b = Vec::new();
            RtpHeader {
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ssrc: 9,
                ..RtpHeader::default()
            }
            .write(payload, &mut b);
            seq += 1;
            s.handle_packet(t0 + Duration::from_millis(u64::from(seq) * 20), &b)
        };
        for (i, digit) in [1u8, 11].into_iter().enumerate() {
            let ts = 1000 * (i as u32 + 1);
            for end in [false, true, true, true] {
                let ev = TelephoneEvent {
                    event: digit,
                    end,
                    volume: 10,
                    duration: 400,
                };
                assert_eq!(send(&mut s, 101, ts, &ev.encode()), Ok(PacketKind::Rtp));
            }
        }
        assert_eq!(send(&mut s, 13, 5000, &[0x40]), Ok(PacketKind::Rtp));
        assert_eq!(
            s.handle_packet(t0, &[0x80, 0]),
            Err(PacketError::Rtp(RtpError::TooShort(2)))
        );
        assert_eq!(
            s.handle_packet(t0, &[0x80, 201, 0, 9]),
            Err(PacketError::Rtcp(RtcpError::Truncated(0)))
        );
        let sum = s.summary();
        assert_eq!(sum.dtmf_received, "1#");
        assert_eq!(sum.unexpected_pt, 1);
        assert_eq!(sum.malformed, 2);
        assert_eq!(sum.rx_packets, 9);
    }

    #[test]
    fn hold_and_resume() {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        let mut now = t0;
        let step = Duration::from_millis(20);
        let pump = |a: &mut MediaSession, b: &mut MediaSession, now: Instant| {
            let mut rtp = 0;
            while let Some(o) = a.poll_transmit(now) {
                rtp += usize::from(o.kind == PacketKind::Rtp);
                b.handle_packet(now, &o.bytes).unwrap();
            }
            rtp
        };
        let mut sent = 0;
        for _ in 0..50 {
            sent += pump(&mut a, &mut b, now);
            now += step;
        }
        assert_eq!(sent, 50);
        // Hold for 2 s: nothing goes out.
        a.set_direction(now, Direction::Inactive);
        for _ in 0..100 {
            sent += pump(&mut a, &mut b, now);
            now += step;
        }
        assert_eq!(sent, 50);
        // Resume: packets again, the timestamp moved on by the 2 s of hold (no marker on the
        // first packet after hold unless a spurt starts, so it shows as one timestamp jump).
        a.set_direction(now, Direction::SendRecv);
        for _ in 0..50 {
            sent += pump(&mut a, &mut b, now);
            now += step;
        }
        assert_eq!(sent, 100);
        let s = b.summary();
        assert_eq!((s.rx_lost, s.rx_seq_jumps, s.rx_ts_jumps), (0, 0, 1));
        // Sequence numbers carried on; the hold shows as one 2 s spacing.
        let rx = b.sample(now).rx;
        assert_eq!(rx.spacing_max_ms, Some(2020.0));
    }

    /// `a` and `b` wired back to back (no delay, no loss) for `secs`: every 10 ms `script`
    /// may change either (at `ms` since the start), then both send what is due and the
    /// other takes it at once. `a`'s per-second samples and its summary.
    fn scripted(
        secs: u64,
        mut script: impl FnMut(Instant, u64, &mut MediaSession, &mut MediaSession),
    ) -> (Vec<Sample>, CallMediaSummary) {
        let t0 = Instant::now();
        let mut a = MediaSession::new(cfg(1, Codec::Pcmu, 1), t0).unwrap();
        let mut b = MediaSession::new(cfg(2, Codec::Pcmu, 2), t0).unwrap();
        let mut samples = Vec::new();
        for ms in (0..=secs * 1000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            script(now, ms, &mut a, &mut b);
            while let Some(o) = a.poll_transmit(now) {
                b.handle_packet(now, &o.bytes).unwrap();
            }
            while let Some(o) = b.poll_transmit(now) {
                a.handle_packet(now, &o.bytes).unwrap();
            }
            if ms > 0 && ms % 1000 == 0 {
                samples.push(a.sample(now));
            }
        }
        a.stop(t0 + Duration::from_secs(secs));
        (samples, a.summary())
    }

    /// The far end stops sending and nobody says so (one-way audio after a re-INVITE, a NAT
    /// binding that timed out): its sequence numbers have no hole, so RFC 3550 sees no
    /// loss, but `a` heard nothing from 4 s to the end of the 10 s call. The call is not
    /// rated (no perfect score for a call that went silent), its gap is named, and the
    /// per-second samples of the silence show 0 packets and no MOS.
    #[test]
    fn a_far_end_that_stops_sending_leaves_a_gap_and_no_score() {
        let (samples, sum) = scripted(10, |now, ms, _, b| {
            if ms == 4000 {
                b.set_direction(now, Direction::RecvOnly);
            }
        });
        assert_eq!(sum.rx_lost, 0, "RFC 3550 loss cannot see it: {sum:?}");
        assert_eq!(sum.rx_packets, 200);
        assert_eq!((sum.r_factor, sum.mos, sum.mos_min), (None, None, None));
        assert_eq!(sum.gaps.count, 1, "{sum:?}");
        let gap = sum.gaps.longest.unwrap();
        assert_eq!(
            gap.to_string(),
            "no RTP received from 4.0 s to the end of the call (10.0 s), after 200 packets"
        );
        assert_eq!(sum.gaps.total, gap.length());
        for s in &samples[1..3] {
            assert_eq!(s.received.packets, 50);
            assert!(s.received.mos.is_some_and(|m| m > 4.3), "{s:?}");
        }
        for s in &samples[5..] {
            assert_eq!((s.received.packets, s.received.mos), (0, None), "{s:?}");
        }
    }

    /// A hole in the middle (the far end's sender pauses 3 s and goes on with the next
    /// sequence number): one gap, ended by the audio coming back.
    #[test]
    fn a_hole_in_the_middle_is_a_gap_until_audio_comes_back() {
        let (samples, sum) = scripted(10, |now, ms, _, b| match ms {
            3000 => b.set_direction(now, Direction::RecvOnly),
            6000 => b.set_direction(now, Direction::SendRecv),
            _ => {}
        });
        assert_eq!(sum.rx_lost, 0, "{sum:?}");
        assert_eq!((sum.mos, sum.gaps.count), (None, 1), "{sum:?}");
        let gap = sum.gaps.longest.unwrap();
        assert_eq!(gap.ended, crate::gaps::GapEnd::AudioBack);
        assert_eq!(
            gap.to_string(),
            "no RTP received from 3.0 s to 6.0 s (3.0 s, then audio came back), after 150 packets"
        );
        assert_eq!(samples[4].received.packets, 0);
        assert!(samples[8].received.mos.is_some(), "{:?}", samples[8]);
        // A shorter hole (1.5 s) is not a gap: the call is rated.
        let (_, sum) = scripted(10, |now, ms, _, b| match ms {
            3000 => b.set_direction(now, Direction::RecvOnly),
            4500 => b.set_direction(now, Direction::SendRecv),
            _ => {}
        });
        assert_eq!(sum.gaps.count, 0, "{sum:?}");
        assert!(sum.mos.is_some_and(|m| m > 4.3), "{sum:?}");
    }

    /// Silences the far end was allowed: `a` holds the call (sendonly: the far end mirrors
    /// recvonly and stops), or the far end parks it with `c=0.0.0.0` (RFC 3264 §8.4); after
    /// the resume it gets a new wait. None is a gap; the call is rated.
    #[test]
    fn holds_and_parking_are_not_gaps() {
        let (_, held) = scripted(10, |now, ms, a, b| match ms {
            2000 => {
                a.set_direction(now, Direction::SendOnly);
                b.set_direction(now, Direction::RecvOnly);
            }
            7000 => {
                a.set_direction(now, Direction::SendRecv);
                b.set_direction(now, Direction::SendRecv);
            }
            _ => {}
        });
        assert_eq!(held.gaps.count, 0, "{held:?}");
        assert!(held.mos.is_some_and(|m| m > 4.3), "{held:?}");
        // Parked to the end: the far end sends nothing, `a` was told.
        let (_, parked) = scripted(10, |now, ms, a, b| {
            if ms == 2000 {
                a.set_far_end_sends(now, false);
                b.set_direction(now, Direction::RecvOnly);
            }
        });
        assert_eq!(parked.gaps.count, 0, "{parked:?}");
        assert!(parked.mos.is_some(), "{parked:?}");
        // Told of the resume, but the far end stays silent: a gap from the resume on.
        let (_, silent) = scripted(10, |now, ms, a, b| match ms {
            2000 => {
                a.set_far_end_sends(now, false);
                b.set_direction(now, Direction::RecvOnly);
            }
            5000 => a.set_far_end_sends(now, true),
            _ => {}
        });
        let gap = silent.gaps.longest.expect("a gap after the resume");
        assert_eq!(
            (gap.from, gap.to),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
    }

    #[test]
    fn config_errors_and_recvonly() {
        let t0 = Instant::now();
        let mut c = cfg(1, Codec::Pcmu, 1);
        c.ptime_ms = 5;
        assert_eq!(
            MediaSession::new(c, t0).unwrap_err(),
            ConfigError::BadPtime(5)
        );
        let mut c = cfg(1, Codec::Pcmu, 1);
        c.rtcp_interval = Duration::ZERO;
        assert_eq!(
            MediaSession::new(c, t0).unwrap_err(),
            ConfigError::BadRtcpInterval(Duration::ZERO)
        );
        let mut c = cfg(1, Codec::Pcmu, 1);
        c.direction = Direction::RecvOnly;
        let mut s = MediaSession::new(c, t0).unwrap();
        // No RTP: only RTCP (an RR, since nothing was sent) when its time comes.
        let at = s.poll_timeout().unwrap();
        assert!(at > t0);
        assert_eq!(s.poll_transmit(t0), None);
        let o = s.poll_transmit(at).unwrap();
        assert_eq!(o.kind, PacketKind::Rtcp);
        assert!(matches!(
            rtcp::parse_compound(&o.bytes).unwrap()[0],
            RtcpPacket::ReceiverReport { .. }
        ));
        s.stop(at);
        assert_eq!(s.poll_transmit(at).map(|o| o.kind), Some(PacketKind::Rtcp));
        assert_eq!(s.poll_transmit(at), None);
        assert_eq!(s.poll_timeout(), None);
    }
}
