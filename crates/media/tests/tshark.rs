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
    }
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
    let which = Command::new("tshark").arg("--version").output();
    if which.is_err() {
        assert!(
            std::env::var("SIPMETER_REQUIRE_PEERS").as_deref() != Ok("1"),
            "tshark is required (SIPMETER_REQUIRE_PEERS=1) but not installed"
        );
        eprintln!("skipped: tshark not installed");
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
