//! The trace retention rule against a real peer: a SIPp UAS (Debian's `sip-tester`) answers
//! two calls and refuses the third with 486. The endpoint's report then carries the failing
//! call whole and one note in place of the two calls that ended well; with every trace kept
//! (`--all-traces`) it carries all three calls.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::engine::{
    EndpointPlan, EndpointReport, GroupPlan, OfferTiming, Outcome, Role, RunPlan, ServerTarget,
    StopHandle, run,
};
use agent::trace::Direction;
use sip_msg::Uri;

/// A SIPp process, killed when dropped even if the test fails.
struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sipp/uas-two-calls-then-busy.xml")
}

/// One endpoint places three calls straight to a fresh SIPp UAS (no registration).
fn three_calls(keep_all_traces: bool) -> EndpointReport {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let scenario = scenario();
    let child = Command::new("sipp")
        .args(["-sf", &scenario.display().to_string(), "-i", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-m",
            "3",
            "-timeout",
            "25s",
            "-nostdin",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run sipp ({e}): install the Debian package `sip-tester`")
        });
    let mut sipp = Sipp(child);
    // SIPp binds its port while starting: wait until the kernel lists it (bounded; reading
    // /proc/net/udp takes no port, so it cannot race SIPp's bind).
    let deadline = Instant::now() + Duration::from_secs(10);
    let bound = format!("0100007F:{port:04X} ");
    while !std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .contains(&bound)
    {
        assert!(Instant::now() < deadline, "sipp did not bind port {port}");
        assert!(sipp.0.try_wait().unwrap().is_none(), "sipp exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "trace retention".into(),
        rtp_ports: None,
        keep_samples: false,
        server: ServerTarget {
            addr,
            domain: "127.0.0.1".into(),
            registrar_uri: Uri::parse(&format!("sip:127.0.0.1:{port};transport=udp")).unwrap(),
            outbound_proxy: None,
            transport: Default::default(),
        },
        groups: vec![GroupPlan {
            server: 0,
            name: "caller".into(),
            endpoints: vec![EndpointPlan {
                user: "caller0".into(),
                credentials: None,
            }],
            prack: false,
            ringing: Default::default(),
            identity: Default::default(),
            session_timer: None,
            register: false,
            event_actions: Vec::new(),
            actions: Vec::new(),
            media: None,
            role: Role::Call {
                targets: vec![Uri::parse(&format!("sip:service@127.0.0.1:{port}")).unwrap()],
                calls: 3,
                pause: Duration::ZERO,
                offer: OfferTiming::Early,
            },
        }],
        call_duration: Duration::ZERO,
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 5,
        time_limit: Duration::from_secs(30),
        keep_all_traces,
        timers: Default::default(),
    };
    let (tx, _rx) = mpsc::channel();
    let (_, mut reports) = run(plan, tx, StopHandle::default()).unwrap();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

/// How many `method` requests the endpoint sent, a retransmission not counted again (the
/// same top Via branch): SIPp binds its port before it reads it, so under load the first
/// INVITE may go again at T1.
fn sent_requests(r: &EndpointReport, method: &str) -> usize {
    let mut branches: Vec<&str> = r
        .trace
        .iter()
        .filter(|t| t.direction == Direction::Sent && t.first_line().starts_with(method))
        .filter_map(|t| t.text.split("branch=").nth(1))
        .map(|b| b.split([';', '\r', ',']).next().unwrap_or(b))
        .collect();
    branches.sort_unstable();
    branches.dedup();
    branches.len()
}

fn first_lines(r: &EndpointReport, direction: Direction) -> Vec<String> {
    r.trace
        .iter()
        .filter(|t| t.direction == direction)
        .map(|t| t.first_line().to_owned())
        .collect()
}

#[test]
fn a_failed_endpoint_keeps_its_failing_call_and_counts_the_calls_left_out() {
    let r = three_calls(false);
    assert_eq!(r.outcome, Outcome::CallFailed, "{r:#?}");
    assert_eq!((r.calls_attempted, r.calls_answered), (3, 2));
    assert_eq!(r.call_code, Some(486));
    let sent = first_lines(&r, Direction::Sent);
    let invites = sent_requests(&r, "INVITE ");
    assert_eq!(invites, 1, "only the failing call's INVITE: {sent:?}");
    assert!(sent.iter().all(|l| !l.starts_with("BYE ")), "{sent:?}");
    let received = first_lines(&r, Direction::Received);
    assert!(
        received.iter().any(|l| l == "SIP/2.0 486 Busy Here"),
        "{received:?}"
    );
    assert!(
        received.iter().all(|l| l != "SIP/2.0 180 Ringing"),
        "{received:?}"
    );
    // The note stands first, where the first call's records began.
    let first = &r.trace[0];
    assert_eq!(first.direction, Direction::Note);
    assert!(
        first
            .text
            .starts_with("2 call(s) that ended well left out of this trace ("),
        "{}",
        first.text
    );
    assert!(
        first.text.ends_with("records; --all-traces keeps them)"),
        "{}",
        first.text
    );
}

#[test]
fn all_traces_keeps_every_call() {
    let r = three_calls(true);
    assert_eq!(r.outcome, Outcome::CallFailed, "{r:#?}");
    let sent = first_lines(&r, Direction::Sent);
    assert_eq!(sent_requests(&r, "INVITE "), 3, "{sent:?}");
    assert_eq!(sent_requests(&r, "BYE "), 2, "{sent:?}");
    assert!(r.trace.iter().all(|t| !t.text.contains("left out")));
}
