//! The bytes on the wire of a seeded exchange, pinned: four phones register with digest
//! authentication through the registrar core, then two call the other two (407, retry with
//! credentials, 100, 200, ACK), and hang up (BYE, 200). Every message printed by either side
//! is compared, byte for byte, with the transcript recorded before the sip-msg/sip-proto
//! performance work of branch `perf12` (`testdata/regressions/perf12-wire-transcript.txt`):
//! the changes that write values in place, print a retransmission again, or skip unused
//! texts must not change a byte.
//!
//! Record again (only for an intended change of the wire format):
//! `WIRE_TRANSCRIPT_WRITE=1 cargo test -p registrar --test wire_transcript`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use registrar::{AuthMode, Registrar, RegistrarConfig};
use sip_msg::{Host, Message, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{CallEvent, CallId, Destination, UaEvent, UaIdentity, UaProfile, UserAgent};

const SECRET: &[u8] = b"transcript";
const NOW_UNIX: u64 = 1_900_000_000;
const N: usize = 4;

fn reg_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 5060)
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)), 6000 + i as u16)
}

fn golden_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/regressions/perf12-wire-transcript.txt")
}

/// Delivers every queued message until the network is quiet, appending each to `log`.
fn settle(
    uas: &mut [UserAgent],
    reg: &mut Registrar,
    now: Instant,
    incoming: &mut [Option<CallId>],
    log: &mut Vec<u8>,
) {
    loop {
        let mut queue: Vec<(SocketAddr, SocketAddr, Bytes)> = Vec::new();
        for (i, ua) in uas.iter_mut().enumerate() {
            while let Some(o) = ua.poll_transmit() {
                let to = match o.destination {
                    Destination::Registrar | Destination::OutboundProxy => reg_addr(),
                    Destination::Source(a) => a,
                    Destination::Uri(u) => {
                        let s = u.as_sip().unwrap();
                        let Host::V4(ip) = s.host else {
                            unreachable!("IPv4 only")
                        };
                        SocketAddr::new(ip.into(), s.port.unwrap_or(5060))
                    }
                };
                queue.push((addr_of(i), to, o.bytes));
            }
            while let Some(e) = ua.poll_event() {
                if let UaEvent::Call(call, CallEvent::Incoming { .. }) = e {
                    incoming[i] = Some(call);
                }
            }
        }
        if queue.is_empty() {
            return;
        }
        for (from, to, bytes) in queue {
            log.extend_from_slice(format!("==== {from} -> {to}\n").as_bytes());
            log.extend_from_slice(&bytes);
            log.extend_from_slice(b"\n");
            let msg = Message::parse_bytes(bytes).unwrap();
            if to == reg_addr() {
                reg.handle_message(now, NOW_UNIX, msg, from);
                while let Some((to, b)) = reg.poll_transmit() {
                    log.extend_from_slice(format!("==== {} -> {to}\n", reg_addr()).as_bytes());
                    log.extend_from_slice(&b);
                    log.extend_from_slice(b"\n");
                    let m = Message::parse_bytes(b).unwrap();
                    let i = (0..N).find(|&i| addr_of(i) == to).unwrap();
                    uas[i].handle_message(now, m, reg_addr());
                }
            } else {
                let i = (0..N).find(|&i| addr_of(i) == to).unwrap();
                uas[i].handle_message(now, msg, from);
            }
        }
    }
}

#[test]
fn a_seeded_exchange_prints_the_recorded_bytes() {
    let mut reg = Registrar::new(RegistrarConfig {
        domain: "bench.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Ephemeral,
        secret: SECRET.to_vec(),
        min_expires: 60,
        max_expires: 3600,
    });
    let profile = Arc::new(UaProfile {
        domain: "bench.test".into(),
        registrar_uri: Uri::parse("sip:127.0.0.1:5060;transport=udp").unwrap(),
        outbound_proxy: None,
        transport: "UDP".into(),
        reliable: false,
        expires: 3600,
        timers: TimerConfig::default(),
        user_agent: "sipmeter-transcript".into(),
        use_100rel: false,
        session_timer: None,
        codecs: None,
        srtp: sip_proto::ua::SrtpPolicy::Off,
        caller: Default::default(),
    });
    let mut uas: Vec<UserAgent> = (0..N)
        .map(|i| {
            let a = addr_of(i);
            let user = format!("u{i}");
            let (u, p) = sip_auth::ephemeral::issue(SECRET, &user, NOW_UNIX + 3600);
            UserAgent::with_profile(
                profile.clone(),
                UaIdentity {
                    user,
                    credentials: Some(Credentials::new(&u, &p)),
                    local_host: Host::V4(Ipv4Addr::new(127, 0, 1, 1)),
                    local_port: a.port(),
                    seed: 40 + i as u64,
                },
            )
        })
        .collect();
    let now = Instant::now();
    let mut log = Vec::new();
    let mut incoming = vec![None; N];
    for ua in uas.iter_mut() {
        ua.register(now);
    }
    settle(&mut uas, &mut reg, now, &mut incoming, &mut log);
    let half = N / 2;
    let calls: Vec<CallId> = (0..half)
        .map(|i| {
            let target = Uri::parse(&format!("sip:u{}@bench.test", i + half)).unwrap();
            uas[i].call(now, target, Some(Bytes::from_static(b"v=0\r\n")))
        })
        .collect();
    settle(&mut uas, &mut reg, now, &mut incoming, &mut log);
    for i in half..N {
        let call = incoming[i].expect("every callee saw its call");
        uas[i].answer(now, call, Some(Bytes::from_static(b"v=0\r\n")));
    }
    settle(&mut uas, &mut reg, now, &mut incoming, &mut log);
    for (i, c) in calls.iter().enumerate() {
        uas[i].hangup(now, *c);
    }
    settle(&mut uas, &mut reg, now, &mut incoming, &mut log);

    if std::env::var_os("WIRE_TRANSCRIPT_WRITE").is_some() {
        std::fs::write(golden_path(), &log).unwrap();
        return;
    }
    let want = std::fs::read(golden_path()).unwrap();
    let (got, want) = (
        String::from_utf8_lossy(&log),
        String::from_utf8_lossy(&want),
    );
    for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "first difference at line {}", n + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count());
    assert!(got.contains("ACK sip:") && got.contains("BYE sip:") && got.contains("Authorization:"));
}
