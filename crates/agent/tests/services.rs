//! The built-in registrar's service numbers over real loopback sockets: our callers call
//! `echo` and `tone` (the registrar answers and runs the media itself), a test file names
//! them `builtin:echo`, a raw TCP client sees its RTP reflected byte for byte, unusable offers
//! get 488, and a caller that goes silent is hung up on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::builtin::{BuiltinRegistrar, Listen, ServiceOptions};
use agent::callmedia::{MediaPlan, SrtpMode};
use agent::engine::{
    ActionKind, CallAction, CallResult, CallTrigger, EndpointPlan, EndpointReport, EventAction,
    GroupPlan, OfferTiming, Outcome, Phase, Role, RunPlan, RunSummary, ServerTarget, StopHandle,
    run,
};
use agent::trace::Direction;
use media::sdp::Codec;
use media::srtp::Suite;
use registrar::services::TONE_DBOV;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Message, Uri};
use sip_proto::auth::Credentials;

const SECRET: &[u8] = b"services secret";

fn config(auth: AuthMode) -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "UDP".into(),
        auth,
        secret: SECRET.to_vec(),
        min_expires: 10,
        max_expires: 3600,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The registrar over UDP on a free loopback port with these service options.
fn udp_registrar(
    rt: &tokio::runtime::Runtime,
    auth: AuthMode,
    services: ServiceOptions,
) -> BuiltinRegistrar {
    rt.block_on(BuiltinRegistrar::start_udp_with(
        "127.0.0.1:0".parse().unwrap(),
        config(auth),
        services,
    ))
    .unwrap()
}

fn callers(group: &str, n: usize, service: &str, codecs: Vec<Codec>) -> GroupPlan {
    GroupPlan {
        server: 0,
        name: group.into(),
        endpoints: (0..n)
            .map(|i| {
                let user = format!("{group}{i}");
                let (u, p) = sip_auth::ephemeral::issue(SECRET, &user, 4_000_000_000);
                EndpointPlan {
                    user,
                    credentials: Some(Credentials::new(&u, &p)),
                }
            })
            .collect(),
        role: Role::Call {
            targets: vec![Uri::parse(&format!("sip:{service}@sipmeter.test")).unwrap()],
            calls: 1,
            pause: Duration::ZERO,
            offer: OfferTiming::Early,
        },
        prack: false,
        ringing: Default::default(),
        identity: Default::default(),
        session_timer: None,
        register: true,
        event_actions: Vec::new(),
        actions: Vec::new(),
        media: Some(MediaPlan {
            codecs,
            ..MediaPlan::default()
        }),
    }
}

fn run_against(
    reg: &BuiltinRegistrar,
    groups: Vec<GroupPlan>,
    call: Duration,
) -> (RunSummary, Vec<EndpointReport>) {
    run_at(&[reg.addr()], groups, call)
}

/// The server entry of the registrar listening at `addr` over UDP.
fn server_at(addr: SocketAddr) -> ServerTarget {
    ServerTarget {
        addr,
        domain: "sipmeter.test".into(),
        registrar_uri: Uri::parse(&format!("sip:{addr};transport=udp")).unwrap(),
        outbound_proxy: None,
        transport: Default::default(),
    }
}

/// The run against the registrar listening at `addrs` (a group's `server` indexes them;
/// every endpoint's trace kept).
fn run_at(
    addrs: &[SocketAddr],
    groups: Vec<GroupPlan>,
    call: Duration,
) -> (RunSummary, Vec<EndpointReport>) {
    let plan = RunPlan {
        more_servers: addrs[1..].iter().map(|&a| server_at(a)).collect(),
        name: "services".into(),
        rtp_ports: None,
        keep_samples: true,
        server: server_at(addrs[0]),
        groups,
        call_duration: call,
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 11,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        timers: Default::default(),
    };
    let (tx, _rx) = mpsc::channel();
    run(plan, tx, StopHandle::default()).unwrap()
}

fn samples_of(r: &EndpointReport, name: &str) -> Vec<f64> {
    r.samples
        .iter()
        .filter_map(|s| s.metrics.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
        .collect()
}

#[test]
fn five_callers_call_echo() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            config(AuthMode::Ephemeral),
        ))
        .unwrap();
    // 5 s: the callers' first RTCP report goes out 1.25–3.75 s in (RFC 3550 §6.3.1).
    let (summary, reports) = run_against(
        &reg,
        vec![callers("caller", 5, "echo", vec![Codec::Pcmu])],
        Duration::from_secs(5),
    );
    assert_eq!(reports.len(), 5);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.phase, Phase::Closed);
        assert_eq!(r.calls_answered, 1);
        let m = r.media.as_ref().expect("media measured");
        assert_eq!(m.codec, Some("PCMU"));
        // What came back is what went out: ≈250 packets of 20 ms, none lost.
        assert!(m.rx_packets >= 200, "{m:?}");
        assert_eq!(m.rx_lost, 0, "{m:?}");
        assert!(m.tx_packets >= m.rx_packets, "{m:?}");
        // The echo answers RTCP, so the caller measures the real round trip.
        let rtt = m
            .rtt_ms
            .unwrap_or_else(|| panic!("rtt from the echo's reports: {m:?}"));
        eprintln!(
            "{}: rx {} lost {} mos {:?} rtt {rtt:.3} ms jitter {:.3} ms",
            r.user, m.rx_packets, m.rx_lost, m.mos, m.jitter_ms
        );
        assert!((0.0..50.0).contains(&rtt), "{m:?}");
        // A starved generator (timers late) measures itself, and says so.
        if summary.late_timers == 0 {
            assert!(m.mos.is_some_and(|mos| mos >= 4.3), "{m:?}");
        }
        // The echo's receiver reports describe the caller → echo leg: nothing lost there.
        let tx_lost = samples_of(r, "tx_lost");
        assert!(
            !tx_lost.is_empty() && tx_lost.iter().all(|l| *l == 0.0),
            "{tx_lost:?}"
        );
    }
    assert_eq!(summary.asr, Some(100.0));
    let stats = rt.block_on(reg.stop());
    let s = stats.services;
    assert_eq!(
        (s.answered, s.active, s.ended_bye, s.ended_by_us),
        (5, 0, 5, 0),
        "every call answered and hung up by its caller: {s:?}"
    );
}

/// A registrar listening on IPv4 and IPv6 loopback, a group of callers on each in one run
/// (one shard: its UDP socket is dual-stack): every call gets the echo's media on the
/// address family of the listener its INVITE came in on (the echo binds there, not on the
/// first listener; our SDP offers the address facing that listener), and its RTP back.
#[test]
fn callers_on_ipv4_and_ipv6_listeners_get_echo_media_on_their_own() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_many(
            vec![
                Listen::Udp("127.0.0.1:0".parse().unwrap()),
                Listen::Udp("[::1]:0".parse().unwrap()),
            ],
            config(AuthMode::Ephemeral),
            ServiceOptions::default(),
        ))
        .unwrap();
    assert!(reg.addrs()[1].is_ipv6());
    let mut v6 = callers("six", 2, "echo", vec![Codec::Pcmu]);
    v6.server = 1;
    let (summary, reports) = run_at(
        reg.addrs(),
        vec![callers("four", 2, "echo", vec![Codec::Pcmu]), v6],
        Duration::from_secs(3),
    );
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        assert!(m.rx_packets >= 100, "{m:?}");
        assert_eq!(m.rx_lost, 0, "{m:?}");
        let (ours, theirs) = if r.group == "six" {
            ("c=IN IP6 ::1", "[::1]")
        } else {
            ("c=IN IP4 127.0.0.1", "127.0.0.1")
        };
        let sent = |start: &str| {
            r.trace
                .iter()
                .find(|t| t.text.starts_with(start) && t.text.contains("m=audio"))
                .unwrap_or_else(|| panic!("{start} with SDP in the trace: {r:#?}"))
        };
        // Our offer and the echo's answer are both of the listener's family, and every
        // message went to that listener.
        let invite = sent("INVITE ");
        assert!(invite.text.contains(ours), "{}", invite.text);
        assert!(sent("SIP/2.0 200").text.contains(ours));
        assert!(
            r.trace
                .iter()
                .filter_map(|t| t.remote)
                .all(|a| a.to_string().starts_with(theirs)),
            "{r:#?}"
        );
    }
    assert_eq!(summary.asr, Some(100.0));
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.ended_bye), (4, 4), "{s:?}");
}

/// A registrar listening on every address (`[::]`, dual-stack) advertising `config.host`
/// (`--advertise 127.0.0.1`): IPv4 callers are heard as IPv4 (not `::ffff:127.0.0.1`), its
/// Via and Record-Route name the advertised address (not `[::]`), the echo's media faces
/// them, and their calls get their RTP back.
#[test]
fn a_registrar_on_every_address_serves_ipv4_callers_at_its_advertised_address() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp_with(
            "[::]:0".parse().unwrap(),
            config(AuthMode::Ephemeral),
            ServiceOptions::default(),
        ))
        .unwrap();
    let v4 = SocketAddr::from(([127, 0, 0, 1], reg.addr().port()));
    let (summary, reports) = run_at(
        &[v4],
        vec![callers("any", 2, "echo", vec![Codec::Pcmu])],
        Duration::from_secs(3),
    );
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        assert!(m.rx_packets >= 100, "{m:?}");
        for t in &r.trace {
            assert!(
                !t.text.contains("::ffff:") && !t.text.contains("[::]"),
                "{}",
                t.text
            );
        }
        let answer = r
            .trace
            .iter()
            .find(|t| t.text.starts_with("SIP/2.0 200") && t.text.contains("m=audio"))
            .unwrap_or_else(|| panic!("the echo's 200 in the trace: {r:#?}"));
        assert!(
            answer.text.contains("c=IN IP4 127.0.0.1"),
            "{}",
            answer.text
        );
        // The echo's Contact (where the BYE goes) is the advertised address.
        assert!(answer.text.contains("@127.0.0.1:"), "{}", answer.text);
    }
    assert_eq!(summary.asr, Some(100.0));
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.ended_bye), (2, 2), "{s:?}");
}

#[test]
fn five_callers_hear_the_tone_at_its_level() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            config(AuthMode::Ephemeral),
        ))
        .unwrap();
    // Narrowband and wideband: the tone is encoded in the negotiated codec.
    let (summary, reports) = run_against(
        &reg,
        vec![
            callers("narrow", 3, "tone", vec![Codec::Pcma]),
            callers("wide", 2, "tone", vec![Codec::G722]),
        ],
        Duration::from_secs(3),
    );
    assert_eq!(summary.calls_answered, 5, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        let want = if r.group == "narrow" { "PCMA" } else { "G722" };
        assert_eq!(m.codec, Some(want));
        assert_eq!(m.rx_lost, 0, "{m:?}");
        let levels = samples_of(r, "rx_level_dbov");
        eprintln!("{} {want}: rx_level_dbov {levels:?}", r.user);
        assert!(levels.len() >= 2, "a level every second: {levels:?}");
        for l in &levels {
            assert!((l - TONE_DBOV).abs() <= 1.0, "{}: {levels:?}", r.user);
        }
    }
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active, s.ended_bye), (5, 0, 5), "{s:?}");
}

/// `builtin:sit`: the registrar answers with a 183 and its SDP, plays a SIT IC (intercept) in
/// early media and refuses the call with 404 2.5 s later. Callers with `on = "sit:ic", do =
/// "hangup"` hear it before any answer and CANCEL the call at its end (the registrar answers
/// 200 and the INVITE 487: result `cancelled`, CALL_FAILED naming the SIT); callers whose
/// action waits for another kind (`sit:nc`) send nothing, get the 404 (result `rejected`),
/// and their report names the SIT heard (`sit:ic`); watching sound, they report it too, as
/// a sound of a call never answered, timed from the INVITE. No call is answered.
#[test]
fn sit_callers_cancel_on_the_sit_or_get_its_404() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            config(AuthMode::Ephemeral),
        ))
        .unwrap();
    let hangup = |on: &str| EventAction {
        on: CallTrigger::parse(on).unwrap(),
        repeat: false,
        nth: None,
        name: "hangup".into(),
        steps: vec![CallAction {
            at: Duration::ZERO,
            kind: ActionKind::Hangup,
        }],
    };
    let mut cancel = callers("cancel", 2, "sit", vec![Codec::Pcmu]);
    cancel.event_actions = vec![hangup("sit:ic")];
    let mut listen = callers("listen", 2, "sit", vec![Codec::Pcma]);
    listen.event_actions = vec![hangup("sit:nc")];
    if let Some(m) = listen.media.as_mut() {
        m.sound = Some(media::sound::SoundConfig::default());
    }
    let (summary, reports) = run_against(&reg, vec![cancel, listen], Duration::from_secs(3));
    assert_eq!(summary.calls_answered, 0, "{summary:?}");
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::CallFailed, "{r:#?}");
        assert_eq!(r.calls_answered, 0, "{r:#?}");
        let [sit] = &r.tones_heard[..] else {
            panic!("{}: {:?}", r.user, r.tones_heard)
        };
        assert_eq!(
            (sit.tone.as_str(), sit.unanswered),
            ("sit:ic", true),
            "{sit:?}"
        );
        // 274 + 274 + 380 ms, to a 20 ms block.
        let d = sit.duration_ms.unwrap_or(f64::NAN);
        assert!((880.0..960.0).contains(&d), "{sit:?}");
        let a = &r.event_actions[0];
        if r.group == "cancel" {
            assert_eq!(
                (r.call_code, r.call_result),
                (Some(487), Some(CallResult::Cancelled)),
                "{r:#?}"
            );
            assert_eq!(
                r.error.as_deref(),
                Some("SIT IC (intercept) heard in early media: cancelled (on sit:ic: hangup)")
            );
            assert_eq!((a.fired, a.before_answer), (1, 1));
        } else {
            assert_eq!(
                (r.call_code, r.call_result),
                (Some(404), Some(CallResult::Rejected)),
                "{r:#?}"
            );
            assert!(
                r.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("call failed: 404 Not Found")),
                "{r:#?}"
            );
            assert_eq!((a.fired, a.before_answer), (0, 0));
            // The SIT, 0.2 s after the 183, then 1.5 s of silence; the 404 2.5 s after the
            // 183 (the sound had stopped: quiet for more than the watch's 1 s gap).
            let [s] = &r.sound_heard[..] else {
                panic!("{}: {:?}", r.user, r.sound_heard)
            };
            assert!(s.unanswered, "{s:?}");
            assert!((150.0..500.0).contains(&s.start_ms), "{s:?}");
            let end = s.end_ms.unwrap_or(f64::NAN);
            assert!((1050.0..1400.0).contains(&end), "{s:?}");
            let notes: Vec<&str> = r
                .trace
                .iter()
                .filter(|t| t.direction == Direction::Note)
                .map(|t| t.text.as_str())
                .collect();
            assert!(
                notes
                    .iter()
                    .any(|n| n.starts_with("sound heard in early media from 0.")),
                "{notes:#?}"
            );
        }
    }
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active), (0, 0), "{s:?}");
}

/// The same from a test file, as a user writes it: `call = "builtin:sit"` and `actions = [{
/// on = "tone:sit", do = "hangup" }]` — each call CANCELled on the SIT in early media.
#[test]
fn a_test_file_cancels_builtin_sit_on_its_sit() {
    let text = r#"name = "sit"
duration = "2s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "alone"
endpoints = 2
registrar = "builtin"
call = "builtin:sit"
actions = [{ on = "tone:sit", do = "hangup" }]
"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let prepared = agent::testfile::prepare("sit.toml", text, b"file secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, _rx) = mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.calls_answered, 0, "{summary:?}");
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.call_result, Some(CallResult::Cancelled), "{r:#?}");
        assert_eq!(
            r.error.as_deref(),
            Some("SIT IC (intercept) heard in early media: cancelled (on tone:sit: hangup)"),
            "{r:#?}"
        );
        let tones: Vec<&str> = r.tones_heard.iter().map(|t| t.tone.as_str()).collect();
        assert_eq!(tones, ["sit:ic"]);
    }
}

/// SRTP with SDES keys to the service numbers: `srtp = "sdes"` callers (RTP/SAVP) to echo
/// and tone, an `"optional"` one (RTP/AVP with keys) to echo, and an `"sdes"` one with a
/// delayed offer (echo offers RTP/AVP with its keys in the 200). Each is answered with one
/// `a=crypto` line of the offer's tag and suite and a key of the service's own; echo's
/// reflected SRTP and its SRTCP reports, and the tone's SRTP, authenticate under it: calls
/// score like plain G.711, with no authentication failure or replay. A suite per group:
/// echo callers offer every suite (AEAD_AES_256_GCM taken), tone callers only
/// AEAD_AES_128_GCM, the optional one only AES_256_CM_HMAC_SHA1_80, the delayed-offer one
/// accepts only AES_CM_128_HMAC_SHA1_32 (echo's offer's sixth line).
/// What a caller of `echo` or `tone` (its group named after the service) with SRTP heard:
/// MOS ≥ 4.3 unless the generator was starved (timers late: it measures itself, and says
/// so); the tone at its level (it decrypts to itself), or echo's SRTCP reports authenticated
/// (the caller has the round trip).
fn heard_the_service(r: &EndpointReport, late_timers: u64) {
    let m = r.media.as_ref().expect("media measured");
    if late_timers == 0 {
        assert!(m.mos.is_some_and(|mos| mos >= 4.3), "{m:?}");
    }
    if r.group == "tone" {
        let levels = samples_of(r, "rx_level_dbov");
        assert!(levels.len() >= 2, "{levels:?}");
        assert!(
            levels.iter().all(|l| (l - TONE_DBOV).abs() <= 1.0),
            "the tone decrypts to itself: {levels:?}"
        );
    } else {
        assert!(m.rtt_ms.is_some_and(|rtt| rtt < 50.0), "{m:?}");
    }
}

#[test]
fn sdes_callers_call_echo_and_tone() {
    let rt = runtime();
    let reg = udp_registrar(&rt, AuthMode::Ephemeral, ServiceOptions::default());
    let suite_of = |group: &str| match group {
        "tone" => Suite::AeadAes128Gcm,
        "optional" => Suite::AesCm256HmacSha1_80,
        "late" => Suite::AesCm128HmacSha1_32,
        _ => Suite::AeadAes256Gcm,
    };
    let with_srtp = |mut g: GroupPlan, srtp| {
        if let Some(m) = g.media.as_mut() {
            m.srtp = srtp;
            if g.name != "echo" {
                m.srtp_suites = vec![suite_of(&g.name)];
            }
        }
        g
    };
    // A delayed offer: echo offers RTP/AVP with its keys in the 200, the caller answers one.
    let mut late = callers("late", 1, "echo", vec![Codec::Pcmu]);
    if let Role::Call { offer, .. } = &mut late.role {
        *offer = OfferTiming::Late;
    }
    // 5 s: the callers' first RTCP report goes out 1.25–3.75 s in (RFC 3550 §6.3.1).
    let (summary, reports) = run_against(
        &reg,
        vec![
            with_srtp(
                callers("echo", 2, "echo", vec![Codec::Pcmu]),
                SrtpMode::Sdes,
            ),
            with_srtp(
                callers("tone", 2, "tone", vec![Codec::Pcma]),
                SrtpMode::Sdes,
            ),
            with_srtp(
                callers("optional", 1, "echo", vec![Codec::Pcmu]),
                SrtpMode::Optional,
            ),
            with_srtp(late, SrtpMode::Sdes),
        ],
        Duration::from_secs(5),
    );
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        let suite = suite_of(&r.group);
        assert_eq!(m.srtp, Some(suite.name()), "{m:?}");
        assert_eq!((m.srtp_auth_failures, m.srtp_replayed), (0, 0), "{m:?}");
        assert!(m.rx_packets >= 200, "≈250 packets in 5 s: {m:?}");
        assert_eq!(m.rx_lost, 0, "{m:?}");
        eprintln!(
            "{}: rx {} mos {:?} rtt {:?} late timers {}",
            r.user, m.rx_packets, m.mos, m.rtt_ms, summary.late_timers
        );
        heard_the_service(r, summary.late_timers);
        // The first SDP sent and received: the offer and the answer (the other way round
        // for the delayed offer).
        let sdp = |dir: Direction| {
            r.trace
                .iter()
                .filter(|t| t.direction == dir)
                .filter_map(|t| t.text.split("\r\n\r\n").nth(1))
                .find(|body| body.contains("m=audio"))
                .unwrap_or_else(|| panic!("{}: no sdp {dir:?}", r.user))
        };
        let (offer, answer) = if r.group == "late" {
            (sdp(Direction::Received), sdp(Direction::Sent))
        } else {
            (sdp(Direction::Sent), sdp(Direction::Received))
        };
        let proto = if r.group == "optional" || r.group == "late" {
            " RTP/AVP "
        } else {
            " RTP/SAVP "
        };
        assert!(answer.contains(proto), "the offer's proto: {answer}");
        assert_eq!(answer.matches("a=crypto:").count(), 1, "{answer}");
        let tag = if r.group == "late" { 6 } else { 1 };
        let line = format!("a=crypto:{tag} {} inline:", suite.name());
        assert!(answer.contains(&line), "{answer}");
        let key = |sdp: &str| sdp.split("inline:").nth(1).unwrap()[..40].to_owned();
        assert_ne!(key(offer), key(answer), "a key of the service's own");
    }
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.refused_488, s.ended_bye), (6, 0, 6), "{s:?}");
    assert_eq!((s.srtp_auth_failures, s.srtp_replayed), (0, 0), "{s:?}");
}

/// DTLS-SRTP callers (`srtp = "dtls"`) call `echo` and `tone`: the service answers
/// `UDP/TLS/RTP/SAVP` with its own fingerprint and `a=setup:active`, runs the handshake as
/// the client, and the keys it gives carry the media both ways: the callers hear their own
/// packets back (with RTCP round trips) or the tone at its level, nothing fails to
/// authenticate, nothing is lost.
#[test]
fn dtls_callers_call_echo_and_tone() {
    let rt = runtime();
    let reg = udp_registrar(&rt, AuthMode::Ephemeral, ServiceOptions::default());
    let dtls = |mut g: GroupPlan| {
        if let Some(m) = g.media.as_mut() {
            m.srtp = SrtpMode::Dtls;
        }
        g
    };
    let (summary, reports) = run_against(
        &reg,
        vec![
            dtls(callers("echo", 2, "echo", vec![Codec::Pcmu])),
            dtls(callers("tone", 2, "tone", vec![Codec::Pcma])),
        ],
        Duration::from_secs(5),
    );
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        assert!(m.dtls.is_some() && m.srtp.is_some(), "keyed by DTLS: {m:?}");
        assert!(m.dtls_handshake_ms.is_some(), "{m:?}");
        assert_eq!(m.dtls_failures, 0, "{m:?}");
        assert_eq!((m.srtp_auth_failures, m.srtp_replayed), (0, 0), "{m:?}");
        assert!(m.rx_packets >= 200, "≈250 packets in 5 s: {m:?}");
        assert_eq!(m.rx_lost, 0, "{m:?}");
        heard_the_service(r, summary.late_timers);
        let answer = r
            .trace
            .iter()
            .filter(|t| t.direction == Direction::Received)
            .filter_map(|t| t.text.split("\r\n\r\n").nth(1))
            .find(|body| body.contains("m=audio"))
            .unwrap_or_else(|| panic!("{}: no answer", r.user));
        assert!(answer.contains(" UDP/TLS/RTP/SAVP "), "{answer}");
        assert!(answer.contains("a=setup:active"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256 "), "{answer}");
        assert!(!answer.contains("a=crypto:"), "{answer}");
    }
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.refused_488, s.ended_bye), (4, 0, 4), "{s:?}");
    assert_eq!((s.srtp_auth_failures, s.srtp_replayed), (0, 0), "{s:?}");
    assert_eq!((s.dtls_keyed, s.dtls_failures), (4, 0), "{s:?}");
}

#[test]
fn echo_is_held_and_resumed_by_re_invite() {
    let rt = runtime();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            config(AuthMode::Ephemeral),
        ))
        .unwrap();
    // Plain, SRTP and DTLS-SRTP (the re-INVITEs keep the keys: echo keeps its SRTP state,
    // and its DTLS association's keys).
    let groups = [
        ("holder", SrtpMode::Off),
        ("srtp-holder", SrtpMode::Sdes),
        ("dtls-holder", SrtpMode::Dtls),
    ]
    .map(|(name, srtp)| {
        let mut group = callers(name, 1, "echo", vec![Codec::Pcmu]);
        group.actions = vec![
            CallAction {
                at: Duration::from_millis(1000),
                kind: ActionKind::Hold,
            },
            CallAction {
                at: Duration::from_millis(2000),
                kind: ActionKind::Resume,
            },
        ];
        if let Some(m) = group.media.as_mut() {
            m.srtp = srtp;
        }
        group
    });
    let (_, reports) = run_against(&reg, groups.into(), Duration::from_secs(3));
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        // On hold (we sendonly, the echo recvonly) nothing comes back: about a second of the
        // three is missing from what was received, yet no packet counts as lost (the echo
        // continues the sequence after the pause, like a peer that stopped sending).
        assert!(m.tx_packets >= 140, "{m:?}");
        assert!(
            m.rx_packets + 30 < m.tx_packets && m.rx_packets >= 80,
            "the held second was not reflected: {m:?}"
        );
        assert_eq!(m.rx_lost, 0, "{m:?}");
        assert_eq!(m.srtp.is_some(), r.group != "holder", "{m:?}");
        assert_eq!(m.dtls.is_some(), r.group == "dtls-holder", "{m:?}");
        assert_eq!((m.srtp_auth_failures, m.srtp_replayed), (0, 0), "{m:?}");
    }
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active, s.ended_bye), (3, 0, 3), "{s:?}");
    assert_eq!((s.srtp_auth_failures, s.srtp_replayed), (0, 0), "{s:?}");
}

/// RFC 3264 §4: no new offer while ours waits for its answer. A hold and a resume due at the
/// same moment: the resume's re-INVITE waits for the final response to the hold's (the
/// response re-schedules it), then goes; neither is dropped and neither is refused.
#[test]
fn a_resume_due_while_the_holds_offer_is_open_waits_for_its_answer() {
    let rt = runtime();
    let reg = udp_registrar(&rt, AuthMode::Ephemeral, ServiceOptions::default());
    let mut group = callers("holder", 1, "echo", vec![Codec::Pcmu]);
    group.actions = [ActionKind::Hold, ActionKind::Resume]
        .into_iter()
        .map(|kind| CallAction {
            at: Duration::from_millis(500),
            kind,
        })
        .collect();
    let (summary, mut reports) = run_against(&reg, vec![group], Duration::from_secs(2));
    let r = reports.remove(0);
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    assert_eq!(summary.calls_answered, 1);
    // The two re-INVITEs, each sent after the final response to the one before.
    let lines: Vec<&str> = r.trace.iter().map(|t| t.first_line()).collect();
    let sent: Vec<usize> = r
        .trace
        .iter()
        .enumerate()
        .filter(|(_, t)| t.direction == Direction::Sent && t.first_line().starts_with("INVITE "))
        .map(|(i, _)| i)
        .collect();
    // The INVITE (again with credentials after the proxy's 407), the hold, the resume.
    assert_eq!(sent.len(), 4, "{lines:#?}");
    let sent = &sent[2..];
    let answered = |i: usize| {
        r.trace[i..]
            .iter()
            .position(|t| {
                t.direction == Direction::Received
                    && t.first_line().starts_with("SIP/2.0 200")
                    && t.text.contains(" INVITE\r\n")
                    && t.text
                        .contains(&format!("CSeq: {} INVITE", cseq(&r.trace[i].text)))
            })
            .map(|p| p + i)
    };
    let hold_ok = answered(sent[0]).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        hold_ok < sent[1],
        "the resume waited for the hold's 200: {lines:#?}"
    );
    assert!(answered(sent[1]).is_some(), "{lines:#?}");
    assert!(r.trace[sent[0]].text.contains("a=sendonly"));
    assert!(r.trace[sent[1]].text.contains("a=sendrecv"));
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active, s.ended_bye), (1, 0, 1), "{s:?}");
}

/// The CSeq number of a request's text.
fn cseq(text: &str) -> u32 {
    text.lines()
        .find_map(|l| l.strip_prefix("CSeq: "))
        .and_then(|v| v.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_test_file_calls_builtin_echo() {
    let text = r#"name = "echo"
duration = "2s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "alone"
endpoints = 2
registrar = "builtin"
call = "builtin:echo"
"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let prepared = agent::testfile::prepare("echo.toml", text, b"file secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, _rx) = mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.calls_answered, 2, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let m = r.media.as_ref().expect("media measured");
        assert!(m.rx_packets >= 80 && m.rx_lost == 0, "{m:?}");
    }
}

/// A minimal SIP-over-TCP client: sends requests, reads whole responses.
struct TcpSip {
    stream: BufReader<TcpStream>,
    local: SocketAddr,
}

impl TcpSip {
    fn connect(to: SocketAddr) -> Self {
        let s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let local = s.local_addr().unwrap();
        Self {
            stream: BufReader::new(s),
            local,
        }
    }

    fn send(&mut self, text: &str) {
        self.stream.get_mut().write_all(text.as_bytes()).unwrap();
    }

    fn read(&mut self) -> Message {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(self.stream.read_line(&mut line).unwrap() > 0, "closed");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        let mut bytes = head.into_bytes();
        bytes.extend(body);
        Message::parse(&bytes).unwrap()
    }
}

fn sdp(port: u16, formats: &str, rtpmaps: &str) -> String {
    format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{rtpmaps}a=sendrecv\r\n"
    )
}

/// A raw client's side of one dialog.
struct Raw<'a> {
    transport: &'a str,
    local: SocketAddr,
    call: &'a str,
}

impl Raw<'_> {
    fn req(
        &self,
        method: &str,
        uri: &str,
        branch: &str,
        cseq: u32,
        to_tag: Option<&str>,
        body: &str,
    ) -> String {
        let Raw {
            transport,
            local,
            call,
        } = self;
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:raw@sipmeter.test>;tag=raw1\r\n\
             To: <sip:echo@sipmeter.test>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:raw@{local};transport={}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            transport.to_ascii_lowercase(),
            body.len()
        )
    }
}

/// The registrar over TCP on a free loopback port, without authentication (a raw client
/// needs no credentials).
fn open_tcp_registrar(rt: &tokio::runtime::Runtime) -> BuiltinRegistrar {
    let mut cfg = config(AuthMode::Open);
    cfg.transport = "TCP".into();
    rt.block_on(BuiltinRegistrar::start(
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        cfg,
    ))
    .unwrap()
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5, 160));
    p
}

#[test]
fn over_tcp_echo_reflects_rtp_byte_for_byte_and_refuses_unknown_codecs() {
    let rt = runtime();
    let reg = open_tcp_registrar(&rt);
    let mut sip = TcpSip::connect(reg.addr());
    let local = sip.local;
    let uri = "sip:echo@sipmeter.test";

    // Only GSM: 488 with a Warning naming the problem, no 100 first.
    let gsm = sdp(40_000, "3", "a=rtpmap:3 GSM/8000\r\n");
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c488",
        }
        .req("INVITE", uri, "a1", 1, None, &gsm),
    );
    let r = sip.read();
    assert_eq!(r.status(), Some(488), "{}", r.summary());
    let warning = r.headers.value(&sip_msg::HeaderName::Warning).unwrap_or("");
    assert!(
        warning.starts_with("305 ") && warning.contains("no common codec"),
        "{warning}"
    );
    let tag = r.to().and_then(|t| t.tag()).unwrap();
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c488",
        }
        .req("ACK", uri, "a1", 1, Some(&tag), ""),
    );

    // PCMU: 100, 180, 200 with our SDP; RTP sent to it comes back unchanged.
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let offer = sdp(
        media.local_addr().unwrap().port(),
        "0 101",
        "a=rtpmap:101 telephone-event/8000\r\n",
    );
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c200",
        }
        .req("INVITE", uri, "b1", 1, None, &offer),
    );
    let codes: Vec<u16> = (0..3)
        .map(|_| sip.read())
        .map(|m| m.status().unwrap())
        .collect();
    assert_eq!(codes, [100, 180, 200]);
    // The INVITE again (a retransmission, same branch): the same 200 comes back; its SDP
    // and Contact are read from this copy.
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c200",
        }
        .req("INVITE", uri, "b1", 1, None, &offer),
    );
    let ok = sip.read();
    assert_eq!(ok.status(), Some(200));
    let contact = ok
        .headers
        .value(&sip_msg::HeaderName::Contact)
        .unwrap()
        .to_owned();
    assert!(
        contact.ends_with(";transport=tcp>"),
        "in-dialog requests come back over TCP: {contact}"
    );
    let answer = media::sdp::SessionDescription::parse(ok.body()).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "101"]);
    let echo: SocketAddr = (answer.connection.unwrap(), answer.media[0].port).into();
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    let target = contact
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c200",
        }
        .req("ACK", &target, "b2", 1, Some(&tag), ""),
    );
    let mut buf = [0u8; 2048];
    for seq in 0..20u16 {
        let p = rtp_packet(seq);
        media.send_to(&p, echo).unwrap();
        let (n, from) = media.recv_from(&mut buf).unwrap();
        assert_eq!(from, echo, "symmetric: from the port in the SDP");
        assert_eq!(&buf[..n], &p[..], "reflected unchanged");
    }
    // BYE: 200, and the call is gone.
    sip.send(
        &Raw {
            transport: "TCP",
            local,
            call: "c200",
        }
        .req("BYE", &target, "b3", 2, Some(&tag), ""),
    );
    let bye_ok = sip.read();
    assert_eq!(
        (bye_ok.status(), bye_ok.cseq().map(|c| c.seq)),
        (Some(200), Some(2))
    );
    media.send_to(&rtp_packet(99), echo).unwrap();
    assert!(
        media.recv_from(&mut buf).is_err(),
        "the port is closed after BYE"
    );
    let s = rt.block_on(reg.stop()).services;
    assert_eq!(
        (s.answered, s.active, s.refused_488, s.ended_bye),
        (1, 0, 1, 1),
        "{s:?}"
    );
}

/// A raw client's call `call` over TCP to the open registrar: the runtime, the registrar, the
/// SIP connection, the dialog's writer and the client's media socket (reads time out after
/// 500 ms).
fn raw_media_call(
    call: &'static str,
) -> (
    tokio::runtime::Runtime,
    BuiltinRegistrar,
    TcpSip,
    Raw<'static>,
    UdpSocket,
) {
    let rt = runtime();
    let reg = open_tcp_registrar(&rt);
    let sip = TcpSip::connect(reg.addr());
    let raw = Raw {
        transport: "TCP",
        local: sip.local,
        call,
    };
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    (rt, reg, sip, raw, media)
}

/// Echo's SRTP on real sockets, from a raw client: an RTP/SAVP offer with one key is
/// answered with the same tag and suite and echo's own key; each SRTP packet comes back
/// under that key, the caller's very packet once decrypted; a tampered and a replayed packet
/// are dropped (nothing comes back) and land in the registrar's service counters.
#[test]
fn echo_reflects_srtp_under_its_own_key_and_counts_what_fails() {
    use media::srtp::{Crypto, MasterKey, SrtpContext, SrtpParams};
    let (rt, reg, mut sip, raw, media) = raw_media_call("srtp");
    let uri = "sip:echo@sipmeter.test";
    let ours = Crypto {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_32,
        key: MasterKey::from_bytes([7; 30]),
    };
    let offer = sdp(media.local_addr().unwrap().port(), "0", "").replace("RTP/AVP", "RTP/SAVP")
        + &format!("a=crypto:{}\r\n", ours.value());
    sip.send(&raw.req("INVITE", uri, "s1", 1, None, &offer));
    let ok = (0..3).map(|_| sip.read()).last().unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.summary());
    let answer = media::sdp::SessionDescription::parse(ok.body()).unwrap();
    let m = &answer.media[0];
    assert_eq!(m.proto, "RTP/SAVP");
    let line = m.attributes.iter().find(|a| a.name == "crypto").unwrap();
    let theirs = Crypto::parse(line.value.as_deref().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((theirs.tag, theirs.suite), (1, Suite::AesCm128HmacSha1_32));
    assert_ne!(theirs.key, ours.key);
    let mut ctx = SrtpContext::new(&SrtpParams {
        suite: ours.suite,
        tx_key: ours.key,
        rx_key: theirs.key,
    });
    let echo: SocketAddr = (answer.connection.unwrap(), m.port).into();
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    sip.send(&raw.req("ACK", uri, "s2", 1, Some(&tag), ""));
    let mut buf = [0u8; 2048];
    let mut replay = Vec::new();
    for seq in 0..10u16 {
        let mut p = rtp_packet(seq);
        ctx.tx.protect_rtp(&mut p).unwrap();
        if seq == 4 {
            let mut tampered = p.clone();
            tampered[30] ^= 0x40;
            media.send_to(&tampered, echo).unwrap();
            replay.clone_from(&p);
        }
        if seq == 6 {
            media.send_to(&replay, echo).unwrap();
        }
        media.send_to(&p, echo).unwrap();
        let (n, from) = media.recv_from(&mut buf).unwrap();
        assert_eq!(from, echo);
        assert_eq!(n, p.len(), "the same suite: the same length");
        let len = ctx.rx.unprotect_rtp(&mut buf[..n]).unwrap();
        assert_eq!(
            buf[..len],
            rtp_packet(seq),
            "the caller's packet, under echo's key"
        );
    }
    assert!(
        media.recv_from(&mut buf).is_err(),
        "nothing came back for the tampered and replayed copies"
    );
    sip.send(&raw.req("BYE", uri, "s3", 2, Some(&tag), ""));
    assert_eq!(sip.read().status(), Some(200));
    let s = rt.block_on(reg.stop()).services;
    assert_eq!(
        (
            s.answered,
            s.ended_bye,
            s.srtp_auth_failures,
            s.srtp_replayed
        ),
        (1, 1, 1, 1),
        "{s:?}"
    );
}

/// `req` sent; its final response, which must be a 200, and the SDP answer in it.
fn answered(sip: &mut TcpSip, req: &str) -> (Message, media::sdp::SessionDescription) {
    sip.send(req);
    let ok = std::iter::from_fn(|| Some(sip.read()))
        .find(|m| m.status().is_some_and(|c| c >= 200))
        .unwrap();
    assert_eq!(ok.status(), Some(200), "{}", ok.summary());
    let answer = media::sdp::SessionDescription::parse(ok.body()).unwrap();
    (ok, answer)
}

/// The tone takes new SDES keys inside the call (RFC 4568 §7.1.4), as echo and our endpoints
/// do: a raw client re-INVITEs with a new key under the same tag; the tone's SRTP after the
/// 200 is under the key of that 200's answer, and the client's packets under its new key all
/// authenticate (the registrar's service counters stay at 0). Before: the tone kept the first
/// keys, and every packet under the new one failed.
#[test]
fn tone_takes_new_srtp_keys_inside_the_call() {
    use media::srtp::{Crypto, MasterKey, SrtpContext, SrtpParams};
    let (rt, reg, mut sip, raw, media) = raw_media_call("tone-rekey");
    let uri = "sip:tone@sipmeter.test";
    let port = media.local_addr().unwrap().port();
    let offer_with = |key: u8| {
        let c = Crypto {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            key: MasterKey::from_bytes([key; 30]),
        };
        sdp(port, "0", "").replace("RTP/AVP", "RTP/SAVP") + &format!("a=crypto:{}\r\n", c.value())
    };
    // The final response to a request, the SRTP context under its answer, the tone's address.
    let exchange = |sip: &mut TcpSip, req: String, key: u8| {
        let (ok, answer) = answered(sip, &req);
        let m = &answer.media[0];
        let line = m.attributes.iter().find(|a| a.name == "crypto").unwrap();
        let theirs = Crypto::parse(line.value.as_deref().unwrap())
            .unwrap()
            .unwrap();
        let ctx = SrtpContext::new(&SrtpParams {
            suite: Suite::AesCm128HmacSha1_80,
            tx_key: MasterKey::from_bytes([key; 30]),
            rx_key: theirs.key,
        });
        let tone: SocketAddr = (answer.connection.unwrap(), m.port).into();
        (ok, ctx, tone)
    };
    let first = raw.req("INVITE", uri, "t1", 1, None, &offer_with(7));
    let (ok, mut ctx, tone) = exchange(&mut sip, first, 7);
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    sip.send(&raw.req("ACK", uri, "t2", 1, Some(&tag), ""));
    // Its tone, under the key of its first answer; ours under key 7.
    let mut buf = [0u8; 2048];
    let mut heard = |ctx: &mut SrtpContext, media: &UdpSocket| {
        let (n, _) = media.recv_from(&mut buf).unwrap();
        ctx.rx.unprotect_rtp(&mut buf[..n]).is_ok()
    };
    for seq in 0..5u16 {
        let mut p = rtp_packet(seq);
        ctx.tx.protect_rtp(&mut p).unwrap();
        media.send_to(&p, tone).unwrap();
    }
    assert!(heard(&mut ctx, &media), "the tone under its first key");

    let reoffer = raw.req("INVITE", uri, "t3", 2, Some(&tag), &offer_with(9));
    let (_, mut ctx, _) = exchange(&mut sip, reoffer, 9);
    sip.send(&raw.req("ACK", uri, "t4", 2, Some(&tag), ""));
    for seq in 5..15u16 {
        let mut p = rtp_packet(seq);
        ctx.tx.protect_rtp(&mut p).unwrap();
        media.send_to(&p, tone).unwrap();
    }
    // Packets already on their way under the first key may come first: within a few, the
    // tone is heard under its new answer's key, and stays so.
    let first_good = (0..10).find(|_| heard(&mut ctx, &media));
    assert!(
        first_good.is_some(),
        "the tone under the key of its new answer"
    );
    assert!((0..5).all(|_| heard(&mut ctx, &media)));
    sip.send(&raw.req("BYE", uri, "t5", 3, Some(&tag), ""));
    assert_eq!(sip.read().status(), Some(200));
    let s = rt.block_on(reg.stop()).services;
    assert_eq!(
        (s.answered, s.srtp_auth_failures, s.srtp_replayed),
        (1, 0, 0),
        "every packet under the new key authenticated: {s:?}"
    );
}

/// The in-call rules of DTLS-SRTP at the services, for a raw caller (no handshake needed to
/// see them): a DTLS offer is answered `UDP/TLS/RTP/SAVP` with `a=setup:active`, the
/// service's fingerprint and rtcp-mux; a re-offer keeping DTLS (a hold) is answered the same
/// way with the same fingerprint; re-offers that would drop DTLS (plain RTP, or SDES) get 488
/// and the call goes on; in a plain call, a DTLS re-offer gets 488 (no new association inside
/// a call); a DTLS offer without rtcp-mux is refused with 488 at once.
#[test]
fn services_keep_dtls_inside_a_call_and_refuse_what_would_change_it() {
    use media::dtls::DtlsIdentity;
    let print = DtlsIdentity::generate().unwrap().fingerprint().to_string();
    for service in ["echo", "tone"] {
        let (rt, reg, mut sip, raw, media) = raw_media_call(service);
        let uri = format!("sip:{service}@sipmeter.test");
        let port = media.local_addr().unwrap().port();
        let plain = sdp(port, "0", "");
        let dtls = |dir: &str| {
            plain
                .replace("RTP/AVP", "UDP/TLS/RTP/SAVP")
                .replace("a=sendrecv", dir)
                + &format!("a=fingerprint:{print}\r\na=setup:actpass\r\na=rtcp-mux\r\n")
        };
        let sdes = plain.replace("RTP/AVP", "RTP/SAVP")
            + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
        let (ok, answer) = answered(
            &mut sip,
            &raw.req("INVITE", &uri, "d1", 1, None, &dtls("a=sendrecv")),
        );
        let tag = ok.to().and_then(|t| t.tag()).unwrap();
        sip.send(&raw.req("ACK", &uri, "d2", 1, Some(&tag), ""));
        let m = &answer.media[0];
        let attr = |a: &media::sdp::MediaDescription, name: &str| {
            a.attributes
                .iter()
                .find(|x| x.name == name)
                .and_then(|x| x.value.clone())
        };
        assert_eq!(m.proto, "UDP/TLS/RTP/SAVP", "{service}: {answer}");
        assert_eq!(attr(m, "setup").as_deref(), Some("active"), "{answer}");
        assert!(m.rtcp_mux, "{answer}");
        assert!(attr(m, "crypto").is_none(), "{answer}");
        let theirs = attr(m, "fingerprint").expect("the service's fingerprint");
        assert!(theirs.starts_with("sha-256 "), "{theirs}");
        // A hold keeping DTLS: the same association.
        let (_, held) = answered(
            &mut sip,
            &raw.req("INVITE", &uri, "d3", 2, Some(&tag), &dtls("a=sendonly")),
        );
        sip.send(&raw.req("ACK", &uri, "d4", 2, Some(&tag), ""));
        assert_eq!(held.media[0].proto, "UDP/TLS/RTP/SAVP", "{held}");
        assert_eq!(attr(&held.media[0], "fingerprint"), Some(theirs.clone()));
        // Re-offers dropping DTLS: 488, and the call goes on.
        for (n, (branch, body)) in [("d5", &plain), ("d6", &sdes)].into_iter().enumerate() {
            sip.send(&raw.req("INVITE", &uri, branch, 3 + n as u32, Some(&tag), body));
            let refused = std::iter::from_fn(|| Some(sip.read()))
                .find(|m| m.status().is_some_and(|c| c >= 200))
                .unwrap();
            assert_eq!(
                refused.status(),
                Some(488),
                "{service}: {}",
                refused.summary()
            );
            sip.send(&raw.req("ACK", &uri, branch, 3 + n as u32, Some(&tag), ""));
        }
        sip.send(&raw.req("BYE", &uri, "d7", 5, Some(&tag), ""));
        assert_eq!(sip.read().status(), Some(200));
        let s = rt.block_on(reg.stop()).services;
        assert_eq!((s.answered, s.refused_488, s.ended_bye), (1, 2, 1), "{s:?}");
        // The raw caller never answered the service's ClientHello: no keys, counted.
        assert_eq!((s.dtls_keyed, s.dtls_failures), (0, 1), "{s:?}");
    }
    // A plain call offered DTLS inside it; a DTLS offer without rtcp-mux.
    let (rt, reg, mut sip, raw, media) = raw_media_call("echo");
    let port = media.local_addr().unwrap().port();
    let plain = sdp(port, "0", "");
    let dtls = plain.replace("RTP/AVP", "UDP/TLS/RTP/SAVP")
        + &format!("a=fingerprint:{print}\r\na=setup:actpass\r\na=rtcp-mux\r\n");
    let uri = "sip:echo@sipmeter.test";
    let (ok, _) = answered(&mut sip, &raw.req("INVITE", uri, "e1", 1, None, &plain));
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    sip.send(&raw.req("ACK", uri, "e2", 1, Some(&tag), ""));
    sip.send(&raw.req("INVITE", uri, "e3", 2, Some(&tag), &dtls));
    let refused = std::iter::from_fn(|| Some(sip.read()))
        .find(|m| m.status().is_some_and(|c| c >= 200))
        .unwrap();
    assert_eq!(refused.status(), Some(488), "{}", refused.summary());
    sip.send(&raw.req("ACK", uri, "e3", 2, Some(&tag), ""));
    sip.send(&raw.req("BYE", uri, "e4", 3, Some(&tag), ""));
    assert_eq!(sip.read().status(), Some(200));
    let raw2 = Raw {
        call: "no-mux",
        ..raw
    };
    sip.send(&raw2.req(
        "INVITE",
        uri,
        "f1",
        1,
        None,
        &dtls.replace("a=rtcp-mux\r\n", ""),
    ));
    let refused = std::iter::from_fn(|| Some(sip.read()))
        .find(|m| m.status().is_some_and(|c| c >= 200))
        .unwrap();
    assert_eq!(refused.status(), Some(488), "{}", refused.summary());
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.refused_488), (1, 2), "{s:?}");
    assert_eq!(
        (s.dtls_keyed, s.dtls_failures),
        (0, 0),
        "a plain call: {s:?}"
    );
}

/// Echo and tone follow a caller's re-INVITE to plain RTP and back to SRTP, as a phone
/// set to optional SRTP does (RFC 4568 §7.1.4; a music-on-hold server or gateway without
/// SRTP re-anchoring the call): the answer to the plain re-offer is `RTP/AVP` without
/// `a=crypto` and from then on the service sends plain RTP (172 bytes for 20 ms of PCMU, no
/// tag; echo: the caller's plain packet byte for byte); the answer to a later SRTP re-offer
/// carries a fresh key of the service's (not its first one) and what it sends is SRTP under
/// it. No packet fails. Before: the tone kept sending SRTP (182 bytes) after the plain
/// re-INVITE, and echo answered the SRTP re-offer with its first key again (keys reused
/// after a plain spell, their streams restarted).
#[test]
fn echo_and_tone_follow_a_re_invite_to_plain_rtp_and_back_to_srtp() {
    use media::srtp::{Crypto, MasterKey, SrtpContext, SrtpParams};
    for service in ["echo", "tone"] {
        let (rt, reg, mut sip, raw, media) = raw_media_call(service);
        let uri = format!("sip:{service}@sipmeter.test");
        let port = media.local_addr().unwrap().port();
        let offer_with = |key: Option<u8>| {
            let plain = sdp(port, "0", "");
            match key {
                None => plain,
                Some(k) => {
                    let c = Crypto {
                        tag: 1,
                        suite: Suite::AesCm128HmacSha1_80,
                        key: MasterKey::from_bytes([k; 30]),
                    };
                    plain.replace("RTP/AVP", "RTP/SAVP") + &format!("a=crypto:{}\r\n", c.value())
                }
            }
        };
        // The answer to `req` (200), and the SRTP context under it (`None`: plain).
        let exchange = |sip: &mut TcpSip, req: String, key: Option<u8>| {
            let (ok, answer) = answered(sip, &req);
            let m = &answer.media[0];
            let line = m.attributes.iter().find(|a| a.name == "crypto");
            let theirs = line.map(|l| {
                Crypto::parse(l.value.as_deref().unwrap())
                    .unwrap()
                    .unwrap()
                    .key
            });
            assert_eq!(theirs.is_some(), key.is_some(), "{service}: {answer}");
            assert_eq!(m.proto, if key.is_some() { "RTP/SAVP" } else { "RTP/AVP" });
            let to: SocketAddr = (answer.connection.unwrap(), m.port).into();
            let ctx = key.zip(theirs.clone()).map(|(k, rx_key)| {
                SrtpContext::new(&SrtpParams {
                    suite: Suite::AesCm128HmacSha1_80,
                    tx_key: MasterKey::from_bytes([k; 30]),
                    rx_key,
                })
            });
            (ok, ctx, theirs, to)
        };
        let (ok, mut ctx, first_key, to) = exchange(
            &mut sip,
            raw.req("INVITE", &uri, "p1", 1, None, &offer_with(Some(7))),
            Some(7),
        );
        let tag = ok.to().and_then(|t| t.tag()).unwrap();
        sip.send(&raw.req("ACK", &uri, "p2", 1, Some(&tag), ""));
        let mut buf = [0u8; 2048];
        let mut seq = 0u16;
        // Sends 5 packets (under `ctx`, else plain); what comes back: (length, authenticated
        // under `ctx` or, plain, the caller's packet for echo).
        let mut round = |ctx: &mut Option<SrtpContext>| -> Vec<(usize, bool)> {
            let mut got = Vec::new();
            for _ in 0..5 {
                let mut p = rtp_packet(seq);
                if let Some(c) = ctx.as_mut() {
                    c.tx.protect_rtp(&mut p).unwrap();
                }
                media.send_to(&p, to).unwrap();
                let (n, _) = media.recv_from(&mut buf).unwrap();
                let ok = match ctx.as_mut() {
                    Some(c) => c.rx.unprotect_rtp(&mut buf[..n]).is_ok(),
                    None => service == "tone" || buf[..n] == rtp_packet(seq)[..],
                };
                got.push((n, ok));
                seq += 1;
            }
            got
        };
        let srtp = round(&mut ctx);
        assert!(
            srtp.iter().any(|&(n, ok)| n == 182 && ok),
            "{service}: {srtp:?}"
        );
        // A re-INVITE of CSeq `n` (`key`: with SRTP under it) and its ACK: the SRTP
        // context under the answer, and the service's key.
        let mut reinvite = |n: u32, key: Option<u8>| {
            let invite = raw.req(
                "INVITE",
                &uri,
                &format!("r{n}"),
                n,
                Some(&tag),
                &offer_with(key),
            );
            let (_, ctx, theirs, _) = exchange(&mut sip, invite, key);
            sip.send(&raw.req("ACK", &uri, &format!("a{n}"), n, Some(&tag), ""));
            (ctx, theirs)
        };
        // Plain: after packets still on their way (the tone's), only plain RTP.
        let (mut plain_ctx, _) = reinvite(2, None);
        let _settle = round(&mut plain_ctx);
        let plain = round(&mut plain_ctx);
        assert!(
            plain.iter().all(|&(n, ok)| n == 172 && ok),
            "{service}: {plain:?}"
        );
        // SRTP again, under a fresh key of the service's.
        let (mut ctx, again) = reinvite(3, Some(9));
        assert_ne!(again, first_key, "{service}: a fresh key");
        let _settle = round(&mut ctx);
        let srtp = round(&mut ctx);
        assert!(
            srtp.iter().all(|&(n, ok)| n == 182 && ok),
            "{service}: {srtp:?}"
        );
        sip.send(&raw.req("BYE", &uri, "p7", 4, Some(&tag), ""));
        assert_eq!(sip.read().status(), Some(200));
        let s = rt.block_on(reg.stop()).services;
        assert_eq!(
            (
                s.answered,
                s.refused_488,
                s.srtp_auth_failures,
                s.srtp_replayed
            ),
            (1, 0, 0, 0),
            "{service}: {s:?}"
        );
    }
}

#[test]
fn a_silent_caller_is_hung_up_on() {
    let rt = runtime();
    let reg = udp_registrar(
        &rt,
        AuthMode::Open,
        ServiceOptions {
            inactivity: Duration::from_secs(1),
            ..ServiceOptions::default()
        },
    );
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sip.local_addr().unwrap();
    let uri = "sip:tone@sipmeter.test";
    let offer = sdp(9, "8", "");
    sip.send_to(
        Raw {
            transport: "UDP",
            local,
            call: "silent",
        }
        .req("INVITE", uri, "s1", 1, None, &offer)
        .as_bytes(),
        reg.addr(),
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut read = || {
        let (n, _) = sip.recv_from(&mut buf).unwrap();
        Message::parse(&buf[..n]).unwrap()
    };
    let ok = loop {
        let m = read();
        if m.status() == Some(200) {
            break m;
        }
    };
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    let started = Instant::now();
    sip.send_to(
        Raw {
            transport: "UDP",
            local,
            call: "silent",
        }
        .req("ACK", uri, "s2", 1, Some(&tag), "")
        .as_bytes(),
        reg.addr(),
    )
    .unwrap();
    // We send no RTP: after a second of silence the registrar hangs up.
    let bye = read();
    assert_eq!(
        bye.method(),
        Some(sip_msg::Method::Bye),
        "{}",
        bye.summary()
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(bye.call_id().as_deref(), Some("silent"));
    let mut resp = Message::response_to(&bye, 200, "OK", None);
    resp.set_body("", bytes::Bytes::new());
    sip.send_to(&resp.to_bytes(), reg.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stats = rt.block_on(reg.stop());
    let s = stats.services;
    assert_eq!((s.answered, s.active, s.ended_by_us), (1, 0, 1), "{s:?}");
    assert_eq!(stats.dropped, 0, "the 200 to our BYE is taken, not dropped");
}

/// A media timeout too long for the clock (`Duration::MAX`) means none: the call's media
/// runs and its BYE is answered (the driver does not die adding it to an `Instant`).
#[test]
fn an_unbounded_media_timeout_is_no_timeout() {
    let rt = runtime();
    let reg = udp_registrar(
        &rt,
        AuthMode::Open,
        ServiceOptions {
            inactivity: Duration::MAX,
            ..ServiceOptions::default()
        },
    );
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sip.local_addr().unwrap();
    let raw = Raw {
        transport: "UDP",
        local,
        call: "forever",
    };
    let uri = "sip:tone@sipmeter.test";
    let send = |text: String| sip.send_to(text.as_bytes(), reg.addr()).unwrap();
    let mut buf = [0u8; 4096];
    let mut read_until = |done: &dyn Fn(&Message) -> bool| loop {
        let (n, _) = sip.recv_from(&mut buf).expect("the registrar answers");
        let m = Message::parse(&buf[..n]).unwrap();
        if done(&m) {
            break m;
        }
    };
    send(raw.req("INVITE", uri, "f1", 1, None, &sdp(9, "8", "")));
    let ok = read_until(&|m| m.status() == Some(200));
    let tag = ok.to().and_then(|t| t.tag()).unwrap();
    send(raw.req("ACK", uri, "f2", 1, Some(&tag), ""));
    std::thread::sleep(Duration::from_millis(200));
    send(raw.req("BYE", uri, "f3", 2, Some(&tag), ""));
    let bye_ok = read_until(&|m| m.status().is_some() && m.cseq().is_some_and(|c| c.seq == 2));
    assert_eq!(bye_ok.status(), Some(200), "{}", bye_ok.summary());
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active, s.ended_bye), (1, 0, 1), "{s:?}");
}

/// An even port below the system's ephemeral range whose pair (it and the next) is free now,
/// so no socket of the callers (system-chosen ports) takes it during the test.
fn free_pair() -> u16 {
    let start = 20_000 + 2 * (std::process::id() % 4_000) as u16;
    (0..2_000u16)
        .map(|i| start + 2 * i)
        .find(|p| {
            UdpSocket::bind(("127.0.0.1", *p)).is_ok_and(|_rtp| {
                let rtcp = UdpSocket::bind(("127.0.0.1", *p + 1));
                rtcp.is_ok()
            })
        })
        .expect("a free port pair below 28000")
}

#[test]
fn echo_ports_are_free_again_when_calls_end() {
    // One RTP/RTCP port pair for the services: each call can be answered (not 503) only
    // when the previous call's sockets were closed at its end.
    let pair = free_pair();
    let rt = runtime();
    let reg = udp_registrar(
        &rt,
        AuthMode::Ephemeral,
        ServiceOptions {
            rtp_ports: Some((pair, pair + 1)),
            ..ServiceOptions::default()
        },
    );
    let mut group = callers("again", 1, "echo", vec![Codec::Pcmu]);
    group.role = Role::Call {
        targets: vec![Uri::parse("sip:echo@sipmeter.test").unwrap()],
        calls: 3,
        pause: Duration::from_millis(300),
        offer: OfferTiming::Early,
    };
    let (_, reports) = run_against(&reg, vec![group], Duration::from_secs(1));
    let r = &reports[0];
    assert_eq!(r.calls_answered, 3, "{r:#?}");
    let m = r.media.as_ref().expect("media measured");
    assert!(
        m.rx_packets >= 40 && m.rx_lost == 0,
        "the last call echoed: {m:?}"
    );
    let s = rt.block_on(reg.stop()).services;
    assert_eq!((s.answered, s.active, s.ended_bye), (3, 0, 3), "{s:?}");
}
