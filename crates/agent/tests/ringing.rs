//! How phones ring and answer beyond `answer_delay`, end to end over loopback sockets through
//! the built-in registrar: callees that refuse a share of their calls (`reject`,
//! `reject_percent`) after ringing, callees that never answer (`answer_delay = "never"`),
//! and callers that give up on an unanswered call (`ring_timeout`: CANCEL).

use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::engine::{CallResult, EndpointReport, Outcome, RunSummary, StopHandle};
use agent::trace::Direction;

fn execute(text: &str) -> (RunSummary, Vec<EndpointReport>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("ringing.toml", text, b"ringing secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    // Every trace kept (`--all-traces`): a call that ends as planned keeps none otherwise.
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The first lines of the messages `r` sent or received (`dir`).
fn first_lines(r: &EndpointReport, dir: Direction) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|t| t.direction == dir)
        .filter_map(|t| t.text.lines().next())
        .collect()
}

/// Four callees refuse half their calls with 486 after ringing 200 ms: two of the four
/// callers hear busy (CALL_FAILED, `busy`, 486), two talk; the callees all succeed, having
/// refused two calls between them, and say so in their traces.
#[test]
fn callees_refuse_the_share_of_calls_their_group_asks() {
    let (_, reports) = execute(
        r#"name = "reject"
duration = "1s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 4
registrar = "builtin"
role = "answer"
answer_delay = "200ms"
reject = 486
reject_percent = 50
media = false

[[group]]
name = "callers"
endpoints = 4
registrar = "builtin"
call = "group:callees"
media = false
"#,
    );
    let (callees, callers): (Vec<_>, Vec<_>) = reports.iter().partition(|r| r.group == "callees");
    for r in &callees {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.calls_received, 1, "{r:#?}");
    }
    let refusing: Vec<_> = callees.iter().filter(|r| r.calls_refused == 1).collect();
    assert_eq!(refusing.len(), 2, "{callees:#?}");
    for r in &refusing {
        assert_eq!(r.call_code, Some(486));
        assert_eq!(r.call_result, Some(CallResult::Busy));
        assert!(
            r.trace.iter().any(|t| t
                .text
                .contains("refused with 486 as the group's reject asks")),
            "{r:#?}"
        );
        assert!(
            first_lines(r, Direction::Sent).contains(&"SIP/2.0 486 Busy Here"),
            "{r:#?}"
        );
    }
    let busy: Vec<_> = callers
        .iter()
        .filter(|r| r.call_code == Some(486))
        .collect();
    assert_eq!(busy.len(), 2, "{callers:#?}");
    for r in &busy {
        assert_eq!(r.outcome, Outcome::CallFailed, "{r:#?}");
        assert_eq!(r.call_result, Some(CallResult::Busy));
        // It rang first: the 180 came, then the refusal after the answer delay.
        assert!(r.timings.time_to_180_ms.is_some(), "{r:#?}");
    }
    for r in callers.iter().filter(|r| r.call_code != Some(486)) {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.calls_answered, 1);
    }
}

/// Callees that never answer and callers that give up after 700 ms: every caller CANCELs
/// its ringing call (CALL_FAILED, `cancelled`, 487, the ring_timeout named in its error),
/// every callee succeeds with the call's result `cancelled`, and nobody waits for the
/// run's time limit.
#[test]
fn callers_cancel_calls_nobody_answers_after_their_ring_timeout() {
    let started = std::time::Instant::now();
    let (_, reports) = execute(
        r#"name = "no answer"
duration = "1s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 3
registrar = "builtin"
role = "answer"
answer_delay = "never"
media = false

[[group]]
name = "callers"
endpoints = 3
registrar = "builtin"
call = "group:callees"
ring_timeout = "700ms"
media = false
"#,
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the run ended with its calls"
    );
    for r in &reports {
        assert_eq!(r.call_code, Some(487), "{r:#?}");
        assert_eq!(r.call_result, Some(CallResult::Cancelled), "{r:#?}");
        if r.group == "callers" {
            assert_eq!(r.outcome, Outcome::CallFailed, "{r:#?}");
            let error = r.error.as_deref().unwrap_or_default();
            assert!(
                error.contains("not answered within the ring_timeout (700ms)"),
                "{error}"
            );
            assert!(
                first_lines(r, Direction::Sent)
                    .iter()
                    .any(|l| l.starts_with("CANCEL ")),
                "{r:#?}"
            );
            // CANCEL went 700 ms after the INVITE, not before: the phone rang that long.
            assert!(
                r.timings.time_to_180_ms.is_some_and(|t| t < 700.0),
                "{r:#?}"
            );
        } else {
            assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
            assert_eq!(r.calls_refused, 0);
            assert!(
                r.trace
                    .iter()
                    .any(|t| t.text.contains("the caller gave up before the answer")),
                "{r:#?}"
            );
        }
    }
}
