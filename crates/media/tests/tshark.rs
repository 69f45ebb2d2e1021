//! Cross-check against Wireshark's own RTP analysis: a G.711 stream from a real
//! `MediaSession`, through the seeded impairment model (3 % loss, 0–15 ms extra delay), is
//! written to a pcap and measured twice — by our RFC 3550 statistics and by
//! `tshark -z rtp,streams` — and the figures must agree.
//!
//! Tolerances: packets and lost packets must be equal. Jitter: both implement RFC 3550 A.8 on
//! the same microsecond timestamps, but A.1's probation makes our estimator start one packet
//! later (Wireshark starts at the first packet), and Wireshark prints 3 decimals; over 1 000
//! packets the EWMA forgets that start (weight (15/16)^1000), so the final and maximum jitter
//! agree to 0.01 ms and the mean (over packets) to 0.05 ms.
//!
//! Needs `tshark` (Debian `tshark`); skipped when missing unless SIPMETER_REQUIRE_PEERS=1.

use std::process::Command;
use std::time::{Duration, Instant};

use media::impair::{Impairment, ImpairmentConfig, Loss};
use media::sdp::{Codec, Direction};
use media::session::{DEFAULT_NTP_ORIGIN, MediaSession, PacketKind, SessionConfig};
use media::stats::ReceiveStats;

/// A pcap (LINKTYPE_RAW: bare IPv4 packets) of UDP datagrams from 10.0.0.1:40002 to
/// 10.0.0.2:40000, microsecond timestamps from an arbitrary epoch.
struct Pcap(Vec<u8>);

impl Pcap {
    fn new() -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&0i32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        Pcap(b)
    }

    fn push(&mut self, micros: u64, payload: &[u8]) {
        let secs = 1_700_000_000 + micros / 1_000_000;
        let len = 20 + 8 + payload.len();
        let b = &mut self.0;
        b.extend_from_slice(&(secs as u32).to_le_bytes());
        b.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        // IPv4 header: no options, UDP, checksum left 0 (Wireshark does not verify it).
        b.extend_from_slice(&[
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        b.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let ulen = 8 + payload.len();
        b.extend_from_slice(&40002u16.to_be_bytes());
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&(ulen as u16).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(payload);
    }
}

fn cfg(ssrc: u32) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        cname: format!("ep{ssrc}"),
        codec: Codec::Pcmu,
        send_pt: 0,
        recv_pt: 0,
        recv_event_pt: None,
        send_event_pt: None,
        ptime_ms: 20,
        rtcp_mux: true,
        direction: Direction::SendRecv,
        source: Default::default(),
        rtcp_interval: Duration::from_secs(5),
        ntp_at_start: DEFAULT_NTP_ORIGIN,
        seed: u64::from(ssrc),
        srtp: None,
        dtls: None,
        rtcp_xr: false,
    }
}

/// Whether tshark is installed; without it the tests are skipped, unless the suite requires
/// its peers (SIPMETER_REQUIRE_PEERS=1, as `./scripts/test` sets).
fn tshark_present() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("SIPMETER_REQUIRE_PEERS").as_deref() != Ok("1"),
        "tshark is required (SIPMETER_REQUIRE_PEERS=1) but not installed"
    );
    eprintln!("skipped: tshark not installed");
    false
}

/// tshark's row for the stream: (packets, lost, min/mean/max jitter ms).
fn tshark_row(pcap: &std::path::Path) -> (u64, u64, [f64; 3]) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", "udp.port==40000,rtp", "-q", "-z", "rtp,streams"])
        .output()
        .expect("tshark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("0x0000000A") || l.contains("0x0000000a"))
        .unwrap_or_else(|| panic!("no stream row in tshark output:\n{text}"));
    let t: Vec<&str> = row.split_whitespace().collect();
    // ... SSRC Payload Pkts Lost (x%) MinΔ MeanΔ MaxΔ MinJ MeanJ MaxJ [Problem]
    let pct = t
        .iter()
        .position(|x| x.ends_with("%)"))
        .expect("lost percentage column");
    let num = |i: usize| {
        t[i].parse::<f64>()
            .unwrap_or_else(|_| panic!("column {i} in {row}"))
    };
    (
        num(pct - 2) as u64,
        num(pct - 1) as u64,
        [num(pct + 4), num(pct + 5), num(pct + 6)],
    )
}

#[test]
fn loss_and_jitter_agree_with_wireshark() {
    if !tshark_present() {
        return;
    }
    let t0 = Instant::now();
    let mut a = MediaSession::new(cfg(0xa), t0).unwrap();
    let mut b = MediaSession::new(cfg(0xb), t0).unwrap();
    let mut stats = ReceiveStats::new(8000, 160);
    let mut wire: Impairment<Vec<u8>> = Impairment::new(ImpairmentConfig {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(15),
        loss: Loss::Random(0.03),
        seed: 17,
        ..ImpairmentConfig::default()
    });
    let mut pcap = Pcap::new();
    let mut jitter_sum_ms = 0.0;
    let mut counted = 0u64;
    let end = t0 + Duration::from_secs(30);
    let mut now = t0;
    loop {
        while let Some(p) = wire.poll_packet(now) {
            // Microsecond arrival times, as in the pcap, so both see the same input.
            let us = (now - t0).as_micros() as u64;
            let at = t0 + Duration::from_micros(us);
            pcap.push(us, &p);
            let rtp = media::rtp::RtpPacket::parse(&p).unwrap();
            stats.on_packet(
                at,
                rtp.sequence,
                rtp.timestamp,
                rtp.ssrc,
                rtp.marker,
                p.len(),
            );
            let j = stats.jitter_ms();
            jitter_sum_ms += j;
            counted += 1;
            b.handle_packet(at, &p).unwrap();
        }
        while let Some(o) = a.poll_transmit(now) {
            if o.kind == PacketKind::Rtp {
                wire.handle_packet(now, o.bytes);
            }
        }
        if now >= end && a.poll_timeout().is_some() {
            a.stop(now);
            while a.poll_transmit(now).is_some() {}
        }
        match [a.poll_timeout(), wire.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(n) => now = n.max(now),
            None => break,
        }
    }
    let path = std::env::temp_dir().join(format!("sipmeter-media-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap.0).unwrap();
    let (pkts, lost, [_min_j, mean_j, max_j]) = tshark_row(&path);
    let _ = std::fs::remove_file(&path);

    let t = stats.totals();
    let s = b.summary();
    eprintln!(
        "tshark: {pkts} packets, {lost} lost, jitter mean {mean_j} max {max_j} ms; ours: {} \
         packets, {} lost, jitter mean {:.3} max {:.3} final {:.3} ms",
        t.packets,
        t.lost,
        jitter_sum_ms / counted as f64,
        t.max_jitter / 8.0,
        stats.jitter_ms()
    );
    assert_eq!(pkts, t.packets);
    assert_eq!(pkts, s.rx_packets);
    assert!(t.lost > 0);
    assert_eq!(lost as i64, t.lost);
    assert_eq!(lost as i64, s.rx_lost);
    let final_j = stats.jitter_ms();
    assert!((s.rx_jitter_ms - final_j).abs() < 1e-9);
    let max_ours = t.max_jitter / 8.0;
    assert!(
        (max_j - max_ours).abs() < 0.01,
        "max jitter: tshark {max_j}, ours {max_ours}"
    );
    // Wireshark averages over all packets; ours starts one packet later (probation).
    let mean_ours = jitter_sum_ms / counted as f64;
    assert!(
        (mean_j - mean_ours).abs() < 0.05,
        "mean jitter: tshark {mean_j}, ours {mean_ours}"
    );
    // Uniform 0–15 ms: the A.8 estimate averages E|D| = 15/3 = 5 ms.
    assert!((mean_ours - 5.0).abs() < 0.5, "{mean_ours}");
}

/// tshark's reading of every RTCP XR VoIP Metrics block in `pcap`, one row per block: the
/// fields named, in order.
fn tshark_xr(pcap: &std::path::Path, fields: &[&str]) -> Vec<Vec<i64>> {
    tshark_xr_blocks(pcap, 7, fields)
}

/// tshark's reading of every RTCP XR block of type `bt` in `pcap`, one row per block: the
/// fields named, in order.
fn tshark_xr_blocks(pcap: &std::path::Path, bt: u8, fields: &[&str]) -> Vec<Vec<i64>> {
    let filter = format!("rtcp.xr.bt == {bt}");
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", "udp.port==40000,rtcp", "-Y", &filter])
        .args(["-T", "fields", "-E", "separator=,"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split(',')
                .map(|v| {
                    v.parse::<i64>()
                        .unwrap_or_else(|_| panic!("field {v:?} in {l}"))
                })
                .collect()
        })
        .collect()
}

/// RTCP XR (RFC 3611 §4.7) read by Wireshark's dissector: a G.711 call with `rtcp_xr` on both
/// ends, bursty loss (Gilbert–Elliott) on the way to B; every VoIP Metrics block B sends is
/// decoded by tshark with the values we wrote, the last one (in B's closing compound) says
/// what B's own summary says (loss rate, MOS-CQ, R), the burst is denser than the gaps, and
/// A's summary holds that block as the peer's view of its stream.
#[test]
fn xr_voip_metrics_are_read_by_wireshark_as_written() {
    if !tshark_present() {
        return;
    }
    use media::rtcp::{RtcpPacket, parse_compound};
    use media::xr::{VoipMetrics, XrBlock};
    let t0 = Instant::now();
    let xr = |ssrc| SessionConfig {
        rtcp_xr: true,
        ..cfg(ssrc)
    };
    let mut a = MediaSession::new(xr(0xa), t0).unwrap();
    let mut b = MediaSession::new(xr(0xb), t0).unwrap();
    let mut wire: Impairment<Vec<u8>> = Impairment::new(ImpairmentConfig {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss: Loss::GilbertElliott {
            p: 0.01,
            r: 0.25,
            loss_good: 0.002,
            loss_bad: 0.7,
        },
        seed: 5,
        ..ImpairmentConfig::default()
    });
    let mut pcap = Pcap::new();
    let mut sent_by_b: Vec<VoipMetrics> = Vec::new();
    let end = t0 + Duration::from_secs(40);
    let mut now = t0;
    let mut next_sample = t0 + Duration::from_secs(1);
    loop {
        while let Some(p) = wire.poll_packet(now) {
            let _ = b.handle_packet(now, &p);
        }
        while let Some(o) = a.poll_transmit(now) {
            wire.handle_packet(now, o.bytes);
        }
        while let Some(o) = b.poll_transmit(now) {
            if o.kind == PacketKind::Rtcp {
                pcap.push((now - t0).as_micros() as u64, &o.bytes);
                for p in parse_compound(&o.bytes).unwrap() {
                    if let RtcpPacket::ExtendedReport { ssrc, blocks } = p {
                        assert_eq!(ssrc, 0xb);
                        for blk in blocks {
                            // B sends RTP: no Receiver Reference Time, and A sends none to
                            // answer with a DLRR.
                            let XrBlock::VoipMetrics(m) = blk else {
                                panic!("{blk:?}")
                            };
                            sent_by_b.push(m);
                        }
                    }
                }
            }
            let _ = a.handle_packet(now, &o.bytes);
        }
        if now >= next_sample {
            // Once a second, as the engine does: the jitter buffer adapts, levels are read.
            a.sample(now);
            b.sample(now);
            next_sample += Duration::from_secs(1);
        }
        if now >= end && b.poll_timeout().is_some() {
            a.stop(now);
            b.stop(now);
            continue;
        }
        match [
            a.poll_timeout(),
            b.poll_timeout(),
            wire.poll_timeout(),
            (now < end).then_some(next_sample),
        ]
        .into_iter()
        .flatten()
        .min()
        {
            Some(n) => now = n.max(now),
            None => break,
        }
    }
    assert!(sent_by_b.len() >= 6, "{} blocks", sent_by_b.len());
    let path = std::env::temp_dir().join(format!("sipmeter-xr-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap.0).unwrap();
    let rows = tshark_xr(
        &path,
        &[
            "rtcp.xr.voipmetrics.burstdensity",
            "rtcp.xr.voipmetrics.gapdensity",
            "rtcp.xr.voipmetrics.burstduration",
            "rtcp.xr.voipmetrics.gapduration",
            "rtcp.xr.voipmetrics.esdelay",
            "rtcp.xr.voipmetrics.signallevel",
            "rtcp.xr.voipmetrics.noiselevel",
            "rtcp.xr.voipmetrics.gmin",
            "rtcp.xr.voipmetrics.rfactor",
            "rtcp.xr.voipmetrics.jba",
            "rtcp.xr.voipmetrics.jbnominal",
            "rtcp.xr.voipmetrics.jbmax",
            "rtcp.xr.voipmetrics.jbabsmax",
        ],
    );
    let _ = std::fs::remove_file(&path);
    let ours: Vec<Vec<i64>> = sent_by_b
        .iter()
        .map(|m| {
            vec![
                m.burst_density.into(),
                m.gap_density.into(),
                m.burst_duration_ms.into(),
                m.gap_duration_ms.into(),
                m.end_system_delay_ms.into(),
                m.signal_level.into(),
                m.noise_level.into(),
                m.gmin.into(),
                m.r_factor.into(),
                (m.rx_config >> 4 & 3).into(),
                m.jb_nominal_ms.into(),
                m.jb_maximum_ms.into(),
                m.jb_abs_max_ms.into(),
            ]
        })
        .collect();
    assert_eq!(rows, ours, "tshark's reading (left) and the blocks B sent");

    let last = *sent_by_b.last().unwrap();
    let s = b.summary();
    eprintln!("B's last block: {last:?}\nB's summary: {s:?}");
    assert!(s.rx_lost > 0);
    let rate = (256.0 * s.rx_lost as f64 / s.rx_expected as f64) as u8;
    assert_eq!(last.loss_rate, rate);
    assert_eq!(
        last.discard_rate,
        (256 * s.rx_jb_late / s.rx_expected) as u8
    );
    let mos = s.mos.expect("B rates the call");
    assert_eq!(last.mos_cq, (mos * 10.0).round() as u8);
    assert_eq!(last.r_factor, s.r_factor.unwrap().round() as u8);
    assert!(last.mos_lq >= last.mos_cq, "{last:?}");
    assert!(last.burst_density > 4 * last.gap_density.max(1), "{last:?}");
    assert!(last.burst_duration_ms > 0 && last.gap_duration_ms > last.burst_duration_ms);
    assert_eq!(last.ssrc, 0xa);
    // Signal: the test signal's −20 dBov talk spurts are about −14 dBm0.
    assert!((-17..=-11).contains(&last.signal_level), "{last:?}");
    let peer = a.summary();
    assert_eq!(peer.peer_xr, Some(last));
    assert_eq!(peer.xr_received, sent_by_b.len() as u64);
}

/// What [`receive_only_call`] saw: both sessions, the pcap of every RTCP compound, the DLRR
/// sub-blocks A sent (LRR, DLRR) and how many Receiver Reference Time blocks B sent.
struct ReceiveOnly {
    a: MediaSession,
    b: MediaSession,
    pcap: Pcap,
    dlrr_by_a: Vec<(u32, u32)>,
    rrt_by_b: usize,
}

/// A 40 s G.711 call where only A sends RTP (B is `recvonly`, as a held phone or a listener),
/// 20 ms each way, `rtcp_xr` on both ends or on neither.
fn receive_only_call(xr: bool) -> ReceiveOnly {
    use media::rtcp::{RtcpPacket, parse_compound};
    use media::xr::XrBlock;
    let t0 = Instant::now();
    let mut a = MediaSession::new(
        SessionConfig {
            rtcp_xr: xr,
            ..cfg(0xa)
        },
        t0,
    )
    .unwrap();
    let mut b = MediaSession::new(
        SessionConfig {
            rtcp_xr: xr,
            direction: Direction::RecvOnly,
            ..cfg(0xb)
        },
        t0,
    )
    .unwrap();
    let wire = || -> Impairment<Vec<u8>> {
        Impairment::new(ImpairmentConfig {
            delay: Duration::from_millis(20),
            seed: 9,
            ..ImpairmentConfig::default()
        })
    };
    let (mut ab, mut ba) = (wire(), wire());
    let (mut pcap, mut dlrr_by_a, mut rrt_by_b) = (Pcap::new(), Vec::new(), 0);
    let end = t0 + Duration::from_secs(40);
    let mut now = t0;
    loop {
        while let Some(p) = ab.poll_packet(now) {
            let _ = b.handle_packet(now, &p);
        }
        while let Some(p) = ba.poll_packet(now) {
            let _ = a.handle_packet(now, &p);
        }
        for (from_a, s) in [(true, &mut a), (false, &mut b)] {
            while let Some(o) = s.poll_transmit(now) {
                assert!(from_a || o.kind == PacketKind::Rtcp, "B sends no RTP");
                if o.kind == PacketKind::Rtcp {
                    pcap.push((now - t0).as_micros() as u64, &o.bytes);
                    for p in parse_compound(&o.bytes).unwrap() {
                        let RtcpPacket::ExtendedReport { blocks, .. } = p else {
                            continue;
                        };
                        for blk in blocks {
                            match blk {
                                XrBlock::Dlrr(items) if from_a => {
                                    assert_eq!(items.len(), 1, "{items:?}");
                                    assert_eq!(items[0].ssrc, 0xb);
                                    dlrr_by_a.push((items[0].lrr, items[0].dlrr));
                                }
                                XrBlock::ReceiverReferenceTime { .. } if !from_a => {
                                    rrt_by_b += 1;
                                }
                                XrBlock::VoipMetrics(_) => {}
                                other => panic!("{from_a}: {other:?}"),
                            }
                        }
                    }
                }
                if from_a {
                    ab.handle_packet(now, o.bytes);
                } else {
                    ba.handle_packet(now, o.bytes);
                }
            }
        }
        if now >= end && a.poll_timeout().is_some() {
            a.stop(now);
            b.stop(now);
            continue;
        }
        match [
            a.poll_timeout(),
            b.poll_timeout(),
            ab.poll_timeout(),
            ba.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        {
            Some(n) => now = n.max(now),
            None => break,
        }
    }
    ReceiveOnly {
        a,
        b,
        pcap,
        dlrr_by_a,
        rrt_by_b,
    }
}

/// RTCP XR Receiver Reference Time and DLRR (RFC 3611 §4.4–§4.5): a receive-only end (no
/// RTP, so no SR for the sender to answer with LSR/DLSR) sends RRT blocks, the sender answers
/// each with a DLRR sub-block, and the receive-only end gets its round trip time: 40 ms on a
/// path of 20 ms each way. Without XR it has none. tshark's dissector reads our blocks as
/// written (the LRR and DLRR of each sub-block; one RRT per compound of B's).
#[test]
fn xr_rrt_and_dlrr_give_a_receive_only_end_its_round_trip_time() {
    if !tshark_present() {
        return;
    }
    let plain = receive_only_call(false);
    assert_eq!(
        plain.b.summary().rtt_avg_ms,
        None,
        "no RTT for a receiver without XR"
    );
    assert!(
        plain.a.summary().rtt_avg_ms.is_some(),
        "the sender has its RTT (RR)"
    );
    assert_eq!((plain.rrt_by_b, plain.dlrr_by_a.len()), (0, 0));

    let seen = receive_only_call(true);
    let (a, b) = (seen.a.summary(), seen.b.summary());
    eprintln!(
        "A: rtt {:?}; B: rtt {:?} from {} DLRR",
        a.rtt_avg_ms, b.rtt_avg_ms, b.xr_rtts
    );
    // RTCP every 2.5–7.5 s over 40 s: several of each.
    assert!(seen.rrt_by_b >= 4, "{}", seen.rrt_by_b);
    assert!(seen.dlrr_by_a.len() >= 3, "{:?}", seen.dlrr_by_a);
    assert!(b.xr_rtts >= 3, "{b:?}");
    let rtt = b.rtt_avg_ms.expect("B's round trip from DLRR");
    // 40 ms, within the 1/65536 s rounding of the NTP fields.
    assert!((rtt - 40.0).abs() < 0.2, "{rtt}");
    assert!((b.rtt_max_ms.unwrap() - 40.0).abs() < 0.2, "{b:?}");
    assert_eq!(a.xr_rtts, 0, "A sends RTP: its RTT comes from B's RR");
    assert!(
        a.rtt_avg_ms.is_some_and(|r| (r - 40.0).abs() < 0.2),
        "{a:?}"
    );

    let path = std::env::temp_dir().join(format!("sipmeter-rrt-{}.pcap", std::process::id()));
    std::fs::write(&path, &seen.pcap.0).unwrap();
    let dlrr = tshark_xr_blocks(&path, 5, &["rtcp.xr.lrr", "rtcp.xr.dlrr"]);
    let rrt = tshark_xr_blocks(&path, 4, &["rtcp.xr.bl"]);
    let _ = std::fs::remove_file(&path);
    let ours: Vec<Vec<i64>> = seen
        .dlrr_by_a
        .iter()
        .map(|&(lrr, d)| vec![lrr.into(), d.into()])
        .collect();
    assert_eq!(
        dlrr, ours,
        "tshark's reading (left) and the DLRR sub-blocks A sent"
    );
    // Each of B's XR packets: the RRT block, two words long (§4.4), then the VoIP Metrics
    // block, eight (§4.7).
    assert_eq!(rrt, vec![vec![2, 8]; seen.rrt_by_b]);
}
