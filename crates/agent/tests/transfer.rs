//! Call transfer end to end over loopback UDP, set up from a test file: our callers call our
//! callees through the built-in registrar and transfer them a second into the call
//! (`do = "transfer"`, REFER) to a third group; the callees follow the REFER (202, NOTIFYs,
//! an INVITE to the target through the proxy, challenged with 407 and sent again) and the
//! callers hang up once the final NOTIFY says 200. The protocol's edges are tested on the
//! virtual clock (`sip-proto`'s `tests/transfer.rs`) and against SIPp (`tests/sipp.rs`).

use agent::engine::{Outcome, StopHandle};

const TEST: &str = r#"
name = "transfer"
duration = "2s"
seed = 11

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "udp"

[[group]]
name = "targets"
endpoints = 2
registrar = "builtin"
role = "answer"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [{ at = "1s", do = "transfer", to = "group:targets" }]
"#;

#[test]
fn callers_transfer_their_callees_to_a_third_group_through_the_builtin_registrar() {
    // The built-in registrar's credentials are issued for a day from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("transfer.toml", TEST, b"transfer", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default()).unwrap();
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        let t = r.transfer.as_ref().expect("a transfer");
        assert_eq!((t.sent, t.accepted, t.succeeded), (1, 1, 1), "{t:?}");
        assert_eq!(
            (t.refer_code, t.final_code),
            (Some(202), Some(200)),
            "{t:?}"
        );
        assert!(t.target.starts_with("sip:targets"), "{t:?}");
        // Hung up at the final NOTIFY, not at the planned 2 s.
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!(lasted < 1900.0, "{lasted} ms");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        let t = r.transfer.as_ref().expect("a REFER followed");
        assert_eq!((t.followed, t.followed_answered), (1, 1), "{t:?}");
        // Our audio went on with the target: a second with the caller, two with the target.
        let m = r.media.as_ref().expect("media");
        assert!(m.rx_packets >= 120, "{m:?}");
    }
    for r in reports.iter().filter(|r| r.group == "targets") {
        assert_eq!(r.calls_received, 1, "{r:#?}");
    }
    assert_eq!(summary.transfers.succeeded, 2);
    assert_eq!(summary.transfers.followed_answered, 2);
}
