//! Two media sessions back to back on a virtual clock, through a seeded impairment (random
//! loss and uniform extra delay on RTP), printing each second's metrics for the A side and the
//! summaries at the end. Offer/answer is real: A offers, B answers, both configure from it.
//!
//! `cargo run -p media --example call -- [codec=PCMU|PCMA|G722|OPUS] [secs=10] [loss%=0]
//! [jitter_ms=0] [seed=1]`

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use media::sdp::{self, Codec, Direction, LocalMedia, SessionDescription};
use media::session::{MediaSession, PacketKind, SessionConfig};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn local(codecs: Vec<Codec>, last_octet: u8, port: u16) -> LocalMedia {
    LocalMedia {
        codecs,
        telephone_event: true,
        ptime: 20,
        direction: Direction::SendRecv,
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)),
        port,
        rtcp_mux: true,
        session_id: u64::from(port),
        session_version: 1,
        srtp: None,
        dtls: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let codec = match arg(0, "PCMU").to_ascii_uppercase().as_str() {
        "PCMA" => Codec::Pcma,
        "G722" => Codec::G722,
        "OPUS" => Codec::Opus,
        _ => Codec::Pcmu,
    };
    let secs: u64 = arg(1, "10").parse().unwrap_or(10);
    let loss: f64 = arg(2, "0").parse::<f64>().unwrap_or(0.0) / 100.0;
    let jitter_us: u64 = arg(3, "0").parse::<u64>().unwrap_or(0) * 1000;
    let seed: u64 = arg(4, "1").parse().unwrap_or(1);

    let la = local(vec![codec, Codec::Pcmu], 1, 40000);
    let lb = local(
        vec![Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus],
        2,
        50000,
    );
    let offer = sdp::build_offer(&la).to_string();
    let offer = SessionDescription::parse(offer.as_bytes()).expect("our offer parses");
    let (answer, nb) = match sdp::answer_offer(&offer, &lb) {
        Ok(x) => x,
        Err(e) => return eprintln!("NEGOTIATION_FAILED: {e}"),
    };
    let answer = SessionDescription::parse(answer.to_string().as_bytes()).expect("answer parses");
    let na = match sdp::apply_answer(&la, &answer) {
        Ok(n) => n,
        Err(e) => return eprintln!("NEGOTIATION_FAILED: {e}"),
    };
    println!(
        "negotiated {:?} pt {} ptime {} ms",
        na.codec, na.send_pt, na.ptime
    );

    let t0 = Instant::now();
    let mut a = MediaSession::new(
        SessionConfig::from_negotiated(&na, 0xa, "a@demo".into(), seed),
        t0,
    )
    .expect("supported codec");
    let mut b = MediaSession::new(
        SessionConfig::from_negotiated(&nb, 0xb, "b@demo".into(), seed + 1),
        t0,
    )
    .expect("supported codec");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut wire: Vec<(Instant, u64, bool, Vec<u8>)> = Vec::new();
    let mut order = 0;
    let end = t0 + Duration::from_secs(secs);
    let mut next_sample = t0 + Duration::from_secs(1);
    let mut now = t0;
    let mut stopped = false;
    loop {
        wire.sort_by_key(|w| (w.0, w.1));
        while wire.first().is_some_and(|w| w.0 <= now) {
            let (at, _, to_b, bytes) = wire.remove(0);
            let s = if to_b { &mut b } else { &mut a };
            let _ = s.handle_packet(at, &bytes);
        }
        for (from_a, s) in [(true, &mut a), (false, &mut b)] {
            while let Some(o) = s.poll_transmit(now) {
                order += 1;
                let mut d = Duration::from_millis(10);
                if o.kind == PacketKind::Rtp {
                    if rng.random::<f64>() < loss {
                        continue;
                    }
                    d += Duration::from_micros(rng.random_range(0..=jitter_us));
                }
                wire.push((now + d, order, from_a, o.bytes));
            }
        }
        if now >= next_sample && !stopped {
            let x = a.sample(now);
            b.sample(now);
            let m: BTreeMap<_, _> = x.metrics().into_iter().collect();
            let g = |k: &str| m.get(k).map_or("-".to_string(), |v| format!("{v:.2}"));
            println!(
                "t={:>3}s rx_packets {} rx_lost {} rx_jitter_ms {} rx_jb_late {} rx_plc_events {} rtt_ms {} \
                 rx_level_dbov {} rx_noise_dbov {} rx_r_factor {} rx_mos {} tx_mos {}",
                (now - t0).as_secs(),
                g("rx_packets"),
                g("rx_lost"),
                g("rx_jitter_ms"),
                g("rx_jb_late"),
                g("rx_plc_events"),
                g("rtt_ms"),
                g("rx_level_dbov"),
                g("rx_noise_dbov"),
                g("rx_r_factor"),
                g("rx_mos"),
                g("tx_mos"),
            );
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
    println!("A summary: {:#?}", a.summary());
}
