//! RFC 4028 session timers end to end over loopback UDP: our callers call our answering
//! endpoints through the built-in registrar, set up from a test file. The refresh schedule
//! is tested on the virtual clock (`sip-proto`'s `tests/session_timers.rs`): RFC 4028 §4
//! puts every interval at 90 s or more, so a real refresh takes 45 s and a missed one 60 s.
//! This test takes a few seconds: the 422 exchange (§7.4, §8.1) and the headers agreed (§9)
//! through a real proxy.

use agent::engine::{EndpointReport, Outcome, StopHandle};

const TEST: &str = r#"
name = "session timers"
duration = "2s"
seed = 7

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "udp"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"
media = false
session_expires = "30m"
min_se = "120s"

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
media = false
session_expires = "90s"
"#;

fn lines<'a>(r: &'a EndpointReport, first: &str) -> Vec<&'a str> {
    r.trace
        .iter()
        .filter(|t| t.text.starts_with(first))
        .map(|t| t.text.as_str())
        .collect()
}

#[test]
fn a_callee_with_a_higher_min_se_gets_the_invite_again_and_agrees_on_the_interval() {
    // The built-in registrar's credentials are issued for a day from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("timers.toml", TEST, b"timers", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default()).unwrap();
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    assert_eq!(summary.asr, Some(100.0));
    for r in reports.iter().filter(|r| r.group == "callers") {
        // The proxy challenges the first (407), refuses the one with credentials (422),
        // takes the third: the same INVITE asking for the callee's Min-SE, still with its
        // credentials.
        let invites = lines(r, "INVITE ");
        assert_eq!(invites.len(), 3, "{r:#?}");
        assert!(invites[0].contains("Supported: replaces, timer\r\n"));
        assert!(
            invites[1].contains("Session-Expires: 90\r\n"),
            "{}",
            invites[1]
        );
        assert!(
            invites[2].contains("Session-Expires: 120\r\n"),
            "{}",
            invites[2]
        );
        assert!(invites[2].contains("Min-SE: 120\r\n"), "{}", invites[2]);
        assert!(
            invites[2].contains("Proxy-Authorization: "),
            "{}",
            invites[2]
        );
        let refused = lines(r, "SIP/2.0 422 ");
        assert_eq!(refused.len(), 1, "{r:#?}");
        assert!(refused[0].contains("Min-SE: 120\r\n"), "{}", refused[0]);
        let ok = lines(r, "SIP/2.0 200 ")
            .into_iter()
            .find(|t| t.contains(" INVITE\r\n"))
            .expect("the INVITE's 200");
        // §9: the caller supports timers and named no refresher: the callee (auto) lets it
        // refresh, and requires timers.
        assert!(
            ok.contains("Session-Expires: 120;refresher=uac\r\n"),
            "{ok}"
        );
        assert!(ok.contains("Require: timer\r\n"), "{ok}");
        assert_eq!((r.calls_attempted, r.calls_answered), (1, 1));
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert_eq!(r.calls_received, 1, "{r:#?}");
        assert_eq!(lines(r, "SIP/2.0 422 ").len(), 1, "{r:#?}");
    }
}
