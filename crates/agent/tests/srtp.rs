//! SRTP with SDES keys (RFC 4568) end to end over loopback UDP, through the built-in
//! registrar: callers and callees of three pairs of groups in one run.
//!
//! - `srtp = "sdes"` on both sides: RTP/SAVP offer and answer with one `a=crypto` line each,
//!   every RTP and RTCP packet protected, the calls score like plain G.711 on loopback (R
//!   93.2, MOS 4.41) with no authentication failure or replay.
//! - a plain caller to a callee that requires SRTP: 488 with a Warning naming the reason,
//!   NEGOTIATION_FAILED on the callee.
//! - `"optional"` caller to a plain callee: RTP/AVP with `a=crypto` offered, the answer
//!   without, plain RTP, a clean call.

use std::sync::mpsc;
use std::time::Duration;

use agent::builtin::BuiltinRegistrar;
use agent::callmedia::{MediaPlan, SrtpMode};
use agent::engine::{
    EndpointPlan, EndpointReport, GroupPlan, OfferTiming, Outcome, Role, RunPlan, ServerTarget,
    StopHandle, run,
};
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Uri};
use sip_proto::auth::Credentials;

const SECRET: &[u8] = b"srtp secret";

fn endpoint(user: &str) -> Vec<EndpointPlan> {
    let (u, p) = sip_auth::ephemeral::issue(SECRET, user, 4_000_000_000);
    vec![EndpointPlan {
        user: user.to_owned(),
        credentials: Some(Credentials::new(&u, &p)),
    }]
}

fn group(name: &str, srtp: SrtpMode, role: Role) -> GroupPlan {
    GroupPlan {
        server: 0,
        name: name.into(),
        endpoints: endpoint(name),
        prack: false,
        session_timer: None,
        register: true,
        actions: Vec::new(),
        media: Some(MediaPlan {
            srtp,
            ..MediaPlan::default()
        }),
        role,
    }
}

fn caller(name: &str, srtp: SrtpMode, callee: &str) -> GroupPlan {
    let target = Uri::parse(&format!("sip:{callee}@sipmeter.test")).unwrap();
    group(
        name,
        srtp,
        Role::Call {
            targets: vec![target],
            calls: 1,
            pause: Duration::from_millis(100),
            offer: OfferTiming::Early,
        },
    )
}

fn callee(name: &str, srtp: SrtpMode) -> GroupPlan {
    group(
        name,
        srtp,
        Role::Answer {
            answer_delay: Duration::from_millis(20),
        },
    )
}

/// The SDP body of the first message sent or received whose first line starts with `line`.
fn body_of<'a>(r: &'a EndpointReport, dir: Direction, line: &str) -> &'a str {
    let t = r
        .trace
        .iter()
        .find(|t| t.direction == dir && t.first_line().starts_with(line))
        .unwrap_or_else(|| panic!("{}: no {line} {dir:?}", r.user));
    t.text.split("\r\n\r\n").nth(1).unwrap_or_default()
}

#[test]
fn sdes_calls_are_protected_refused_or_fall_back_as_configured() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            RegistrarConfig {
                domain: "sipmeter.test".into(),
                host: Host::parse("127.0.0.1").unwrap(),
                port: 0,
                transport: "UDP".into(),
                auth: AuthMode::Ephemeral,
                secret: SECRET.to_vec(),
                min_expires: 10,
                max_expires: 3600,
            },
        ))
        .unwrap();
    let addr = reg.addr();
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "srtp".into(),
        rtp_ports: None,
        keep_samples: false,
        server: ServerTarget {
            addr,
            domain: "sipmeter.test".into(),
            registrar_uri: Uri::parse(&format!("sip:127.0.0.1:{};transport=udp", addr.port()))
                .unwrap(),
            outbound_proxy: None,
            transport: Default::default(),
        },
        groups: vec![
            caller("sdes-caller", SrtpMode::Sdes, "sdes-callee"),
            callee("sdes-callee", SrtpMode::Sdes),
            caller("plain-caller", SrtpMode::Off, "strict-callee"),
            callee("strict-callee", SrtpMode::Sdes),
            caller("optional-caller", SrtpMode::Optional, "plain-callee"),
            callee("plain-callee", SrtpMode::Off),
        ],
        call_duration: Duration::from_secs(3),
        ramp_per_sec: 100.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 7,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        timers: Default::default(),
    };
    let (tx, _rx) = mpsc::channel();
    let (summary, reports) = run(plan, tx, StopHandle::default()).unwrap();
    let by = |user: &str| reports.iter().find(|r| r.user == user).unwrap();

    // 1. SRTP both ways.
    for user in ["sdes-caller", "sdes-callee"] {
        let r = by(user);
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().unwrap();
        assert_eq!(m.srtp, Some("AES_CM_128_HMAC_SHA1_80"), "{m:?}");
        assert_eq!((m.srtp_auth_failures, m.srtp_replayed), (0, 0), "{m:?}");
        assert!(m.rx_packets >= 140, "≈150 packets in 3 s: {m:?}");
        assert_eq!(m.rx_lost, 0, "{m:?}");
        // A starved generator (timers late) measures itself, and says so.
        eprintln!(
            "{user}: MOS {:?}, late timers {}",
            m.mos, summary.late_timers
        );
        if summary.late_timers == 0 {
            let mos = m.mos.unwrap();
            assert_eq!((mos * 100.0).round() / 100.0, 4.41, "{m:?}");
        }
    }
    let offer = body_of(by("sdes-caller"), Direction::Sent, "INVITE ");
    assert!(offer.contains(" RTP/SAVP "), "{offer}");
    assert!(offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    assert!(offer.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"));
    let answer = body_of(by("sdes-callee"), Direction::Sent, "SIP/2.0 200");
    assert!(answer.contains(" RTP/SAVP "), "{answer}");
    assert_eq!(answer.matches("a=crypto:").count(), 1, "{answer}");
    assert!(answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    // Fresh keys: the answerer's key is not the offerer's.
    let key = |sdp: &str| sdp.split("inline:").nth(1).unwrap()[..40].to_owned();
    assert_ne!(key(offer), key(answer));

    // 2. A plain offer to a callee that requires SRTP: 488 with the reason.
    let strict = by("strict-callee");
    assert_eq!(strict.outcome, Outcome::NegotiationFailed, "{strict:#?}");
    assert!(
        strict
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("no a=crypto"),
        "{strict:#?}"
    );
    let refusal = strict
        .trace
        .iter()
        .find(|t| t.direction == Direction::Sent && t.first_line().starts_with("SIP/2.0 488"))
        .expect("488 sent");
    assert!(
        refusal
            .text
            .contains("Warning: 305 sipmeter \"SDP negotiation failed: srtp is required"),
        "{}",
        refusal.text
    );
    assert_ne!(by("plain-caller").outcome, Outcome::Success);

    // 3. Optional meets plain: plain RTP, a clean call.
    for user in ["optional-caller", "plain-callee"] {
        let r = by(user);
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().unwrap();
        assert_eq!(m.srtp, None, "{m:?}");
        assert!(m.rx_packets >= 140, "{m:?}");
    }
    let offer = body_of(by("optional-caller"), Direction::Sent, "INVITE ");
    assert!(
        offer.contains(" RTP/AVP ") && offer.contains("a=crypto:1 "),
        "{offer}"
    );
    let answer = body_of(by("plain-callee"), Direction::Sent, "SIP/2.0 200");
    assert!(!answer.contains("a=crypto"), "{answer}");
    rt.block_on(reg.stop());
}
