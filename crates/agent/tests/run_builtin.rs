//! A whole run over real loopback UDP: callers call callees through the built-in registrar.

use std::sync::mpsc;
use std::time::Duration;

use agent::builtin::BuiltinRegistrar;
use agent::callmedia::MediaPlan;
use agent::engine::{
    EndpointPlan, GroupPlan, OfferTiming, Outcome, Phase, Role, RunEvent, RunPlan, ServerTarget,
    StopHandle, run,
};
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Uri};
use sip_proto::auth::Credentials;

const SECRET: &[u8] = b"run secret";

fn endpoints(prefix: &str, n: usize) -> Vec<EndpointPlan> {
    (0..n)
        .map(|i| {
            let user = format!("{prefix}{i}");
            let (u, p) = sip_auth::ephemeral::issue(SECRET, &user, 4_000_000_000);
            EndpointPlan {
                user,
                credentials: Some(Credentials::new(&u, &p)),
            }
        })
        .collect()
}

#[test]
fn ten_callers_call_ten_callees_through_the_builtin_registrar() {
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
    let targets = (0..10)
        .map(|i| Uri::parse(&format!("sip:callee{i}@sipmeter.test")).unwrap())
        .collect();
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "loopback".into(),
        rtp_ports: None,
        keep_samples: true,
        server: ServerTarget {
            addr,
            domain: "sipmeter.test".into(),
            registrar_uri: Uri::parse(&format!("sip:127.0.0.1:{};transport=udp", addr.port()))
                .unwrap(),
            outbound_proxy: None,
            transport: Default::default(),
        },
        groups: vec![
            GroupPlan {
                server: 0,
                name: "callers".into(),
                endpoints: endpoints("caller", 10),
                prack: true,
                session_timer: None,
                register: true,
                actions: Vec::new(),
                media: Some(MediaPlan::default()),
                role: Role::Call {
                    targets,
                    calls: 2,
                    pause: Duration::from_millis(100),
                    offer: OfferTiming::Early,
                },
            },
            GroupPlan {
                server: 0,
                name: "callees".into(),
                endpoints: endpoints("callee", 10),
                prack: true,
                session_timer: None,
                register: true,
                actions: Vec::new(),
                media: Some(MediaPlan::default()),
                role: Role::Answer {
                    answer_delay: Duration::from_millis(50),
                },
            },
        ],
        call_duration: Duration::from_millis(1500),
        ramp_per_sec: 200.0,
        cps: 0.0,
        register_expires: 60,
        shards: 2,
        seed: 42,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        timers: Default::default(),
    };
    let (tx, rx) = mpsc::channel();
    let (summary, reports) = run(plan, tx, StopHandle::default()).unwrap();
    let events: Vec<RunEvent> = rx.try_iter().collect();
    assert_eq!(reports.len(), 20);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.phase, Phase::Closed);
        assert_eq!(r.registration_code, Some(200));
    }
    let callers: Vec<_> = reports.iter().filter(|r| r.group == "callers").collect();
    assert!(
        callers
            .iter()
            .all(|r| r.calls_attempted == 2 && r.calls_answered == 2)
    );
    assert!(
        callers
            .iter()
            .all(|r| r.timings.call_setup_ms.is_some() && r.timings.time_to_180_ms.is_some())
    );
    assert_eq!(summary.calls_attempted, 20, "ten callers, two calls each");
    assert!(
        reports
            .iter()
            .filter(|r| r.group == "callees")
            .all(|r| r.calls_received == 2)
    );
    assert_eq!(summary.asr, Some(100.0));
    assert!(summary.setup_p95_ms.unwrap() < 1000.0);
    // Phases came in order for each endpoint.
    let mut last = std::collections::HashMap::new();
    for e in &events {
        if let RunEvent::Phase { endpoint, phase } = e {
            let prev = last.insert(*endpoint, *phase);
            assert!(prev.is_none_or(|p| p < *phase), "phases go forward only");
        }
    }
    assert!(matches!(events.last(), Some(RunEvent::Done(_))));
    // Each trace holds the exact bytes: the caller's first line is its REGISTER.
    assert!(
        callers[0].trace[0]
            .first_line()
            .starts_with("REGISTER sip:127.0.0.1:")
    );
    // Both groups use 100rel: every call's 180 was PRACKed through the proxy.
    for r in &callers {
        let pracks = r
            .trace
            .iter()
            .filter(|t| t.first_line().starts_with("PRACK sip:"))
            .count();
        assert_eq!(pracks, 2, "one PRACK per call: {:?}", r.user);
    }
    // Media flowed both ways in every call and scores like a clean G.711 path (G.107: a
    // lossless G.711 call at low delay rates R 93.2, MOS 4.41).
    for r in &reports {
        let m = r
            .media
            .as_ref()
            .unwrap_or_else(|| panic!("media measured: {r:#?}"));
        assert_eq!(m.calls, 2, "{m:?}");
        assert_eq!(m.codec, Some("PCMU"));
        assert!(
            m.rx_packets >= 2 * 60,
            "≈75 packets of 20 ms per 1.5 s call: {m:?}"
        );
        assert_eq!(m.rx_lost, 0, "{m:?}");
        // A starved generator (timers late) measures itself, and says so.
        if summary.late_timers == 0 {
            assert!(m.mos.is_some_and(|mos| mos > 4.3), "{m:?}");
            assert!(m.jitter_ms < 5.0, "{m:?}");
        }
        assert!(!r.samples.is_empty(), "per-second samples kept");
    }
    if summary.late_timers == 0 {
        assert!(summary.mos_avg.unwrap() > 4.3);
    }
    assert!(
        events.iter().any(
            |e| matches!(e, RunEvent::Sample(s) if s.metrics.iter().any(|(k, _)| *k == "rx_mos"))
        ),
        "samples are streamed as events"
    );
    let stats = rt.block_on(reg.stop());
    assert!(
        stats.forwarded >= 20 * 3,
        "INVITE, ACK and BYE of each call went through the proxy: {stats:?}"
    );
}
