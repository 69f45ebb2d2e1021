//! How many concurrent calls' worth of media one core handles: each iteration is one 20 ms
//! packet through the real code — generate + G.711-encode + build RTP on one session, parse +
//! RFC 3550 stats + jitter-buffer model + decode + level meter on the other — with RTCP and
//! the per-second sample included at their real rates. One endpoint's media for one second is
//! 50 iterations (50 packets sent, 50 received, counted once each), so
//! `sessions per core = 1 s / (50 × time per iteration)`. The SRTP cases add one suite's
//! protection on the sender and authentication + decryption on the receiver (RTCP too), what
//! `srtp = "sdes"` costs with that suite (AES-CM + HMAC-SHA1, or AES-GCM).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use media::audio::SourceConfig;
use media::sdp::{Codec, Direction};
use media::session::{DEFAULT_NTP_ORIGIN, MediaSession, SessionConfig};
use media::srtp::{MasterKey, SrtpParams, Suite};

fn cfg(ssrc: u32, codec: Codec) -> SessionConfig {
    SessionConfig {
        local_ssrc: ssrc,
        cname: format!("bench{ssrc}"),
        codec,
        send_pt: codec.default_pt(),
        recv_pt: codec.default_pt(),
        recv_event_pt: Some(101),
        send_event_pt: Some(101),
        ptime_ms: 20,
        rtcp_mux: true,
        direction: Direction::SendRecv,
        source: SourceConfig::default(),
        rtcp_interval: Duration::from_secs(5),
        ntp_at_start: DEFAULT_NTP_ORIGIN,
        seed: u64::from(ssrc),
        srtp: None,
        dtls: None,
        rtcp_xr: false,
    }
}

/// SRTP from session `from` to `to` and back (each sends under its own key).
fn with_srtp(mut c: SessionConfig, suite: Suite, from: u8, to: u8) -> SessionConfig {
    let key = |b: u8| MasterKey::new(suite, &vec![b; suite.master_len()]).expect("its length");
    c.srtp = Some(SrtpParams {
        suite,
        tx_key: key(from),
        rx_key: key(to),
    });
    c
}

fn packet_round(c: &mut Criterion) {
    let mut cases = vec![("G.711".to_string(), Codec::Pcmu, None)];
    for suite in Suite::ALL {
        cases.push((
            format!("G.711 SRTP {}", suite.name()),
            Codec::Pcmu,
            Some(suite),
        ));
    }
    cases.push(("G.722".into(), Codec::G722, None));
    cases.push(("Opus".into(), Codec::Opus, None));
    for (name, codec, srtp) in cases {
        // Opus is absent from builds without the `opus` feature.
        if MediaSession::new(cfg(1, codec), Instant::now()).is_err() {
            continue;
        }
        let (cfg_a, cfg_b) = if let Some(suite) = srtp {
            (
                with_srtp(cfg(1, codec), suite, 1, 2),
                with_srtp(cfg(2, codec), suite, 2, 1),
            )
        } else {
            (cfg(1, codec), cfg(2, codec))
        };
        c.bench_function(
            &format!("media packet (send+receive, 20 ms {name})"),
            |bench| {
                let t0 = Instant::now();
                let mut a = MediaSession::new(cfg_a.clone(), t0).expect("checked above");
                let mut b = MediaSession::new(cfg_b.clone(), t0).expect("checked above");
                let mut now = t0;
                let mut n = 0u64;
                // One reused send buffer, as the agent's driver does.
                let mut out = Vec::new();
                bench.iter(|| {
                    while a.poll_transmit_into(now, &mut out).is_some() {
                        // Every packet must pass: a failing one would measure nothing.
                        assert!(b.handle_packet(now, &out).is_ok());
                    }
                    n += 1;
                    if n.is_multiple_of(50) {
                        black_box(b.sample(now));
                    }
                    now += Duration::from_millis(20);
                });
            },
        );
    }
}

/// The same packet round, but over 1,000 session pairs taken in turn, as a loaded agent does:
/// each session's state, and any table the codec uses, compete for the cache with the other
/// sessions' (what the single hot session above cannot show). One iteration is still one
/// packet each way on one pair.
fn packet_round_many(c: &mut Criterion) {
    const PAIRS: u32 = 1000;
    c.bench_function(
        "media packet (send+receive, 20 ms G.711, 1000 sessions in turn)",
        |bench| {
            let t0 = Instant::now();
            let mut pairs: Vec<(MediaSession, MediaSession)> = (0..PAIRS)
                .map(|i| {
                    let a = MediaSession::new(cfg(2 * i + 1, Codec::Pcmu), t0).expect("PCMU");
                    let b = MediaSession::new(cfg(2 * i + 2, Codec::Pcmu), t0).expect("PCMU");
                    (a, b)
                })
                .collect();
            let mut now = t0;
            let mut i = 0usize;
            let mut round = 0u64;
            let mut out = Vec::new();
            bench.iter(|| {
                let (a, b) = &mut pairs[i];
                while a.poll_transmit_into(now, &mut out).is_some() {
                    let _ = black_box(b.handle_packet(now, &out));
                }
                if round.is_multiple_of(50) {
                    black_box(b.sample(now));
                }
                i += 1;
                if i == pairs.len() {
                    i = 0;
                    round += 1;
                    now += Duration::from_millis(20);
                }
            });
        },
    );
}

/// One DTLS-SRTP handshake (`srtp = "dtls"`), both ends' CPU: a client and a server
/// `DtlsSrtp` (the run's certificates made once, as the agent does) exchange their flights in
/// memory until both have SRTP keys (DTLS 1.3, ECDHE P-256 / X25519, ECDSA P-256 signatures
/// and verifications, the key export). Also one certificate (`DtlsIdentity::generate`),
/// which the agent makes once per run.
fn dtls_handshake(c: &mut Criterion) {
    use media::dtls::{DtlsIdentity, DtlsParams, DtlsSrtp};
    use std::sync::Arc;
    let (a, b) = (
        Arc::new(DtlsIdentity::generate().unwrap()),
        Arc::new(DtlsIdentity::generate().unwrap()),
    );
    let params = |me: &Arc<DtlsIdentity>, peer: &Arc<DtlsIdentity>, active| DtlsParams {
        identity: me.clone(),
        remote: peer.fingerprint().clone(),
        active,
    };
    let (pc, ps) = (params(&a, &b, true), params(&b, &a, false));
    c.bench_function("DTLS-SRTP handshake, both ends (DTLS 1.3)", |bench| {
        bench.iter(|| {
            let now = Instant::now();
            let mut client = DtlsSrtp::new(&pc, now);
            let mut server = DtlsSrtp::new(&ps, now);
            while client.handshaking() || server.handshaking() {
                let mut moved = false;
                while let Some(d) = client.poll_datagram() {
                    server.handle_datagram(now, &d);
                    moved = true;
                }
                while let Some(d) = server.poll_datagram() {
                    client.handle_datagram(now, &d);
                    moved = true;
                }
                assert!(moved, "{:?} {:?}", client.summary(), server.summary());
            }
            black_box((client.take_keys().unwrap(), server.take_keys().unwrap()))
        })
    });
    c.bench_function("DTLS certificate (ECDSA P-256, self-signed)", |bench| {
        bench.iter(|| black_box(DtlsIdentity::generate().unwrap()))
    });
}

criterion_group!(benches, packet_round, packet_round_many, dtls_handshake);
criterion_main!(benches);
