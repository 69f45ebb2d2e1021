//! Capacity search against a real server with a real limit: Kamailio with a channel limit of
//! 8 concurrent calls (dialog profile, 503 beyond it). The search must climb, see the 503s,
//! bisect, and find exactly 8, calling it the server's limit.
//!
//! Skipped with a message when the `kamailio` binary is absent (`./scripts/test` installs it
//! and sets SIPMETER_REQUIRE_PEERS=1, which turns the skip into a failure).

use agent::capacity::{Limit, Overrides, SearchOptions, Vary, range_of, search};
use agent::engine::StopHandle;
use testpeers::{Kamailio, KamailioConfig, User, available};

#[test]
fn finds_kamailios_channel_limit() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let users = (1001..=1040)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect();
    let k = Kamailio::start(&KamailioConfig {
        users,
        max_calls: Some(8),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        r#"
name = "channel limit"
duration = "2s"
seed = 5
shards = 1
time_limit = "30s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}
transport = "udp"

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1040, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "kam"
role = "answer"
answer_delay = "100ms"
media = false

[[group]]
name = "callers"
endpoints = 2
registrar = "kam"
call = "group:callees"
media = false

[pass]
min_asr = 100

[capacity]
vary = "calls"
start = 2
max = 20
"#,
        port = k.port()
    );
    let tf = agent::testfile::parse("capacity.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let range = range_of("capacity.toml", &text, &tf, &Overrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (range.vary, range.start, range.max),
        (Vary::Calls, 2.0, 20.0)
    );
    let opts = SearchOptions {
        secret: b"unused".to_vec(),
        now_unix: 1_700_000_000,
        dns_server: None,
        shards: Some(1),
    };
    let report = search(
        "capacity.toml",
        &text,
        &tf,
        range,
        &opts,
        &StopHandle::default(),
        |s| eprintln!("level {}: passed {} {:?}", s.level, s.passed, s.failures),
    );
    let levels: Vec<f64> = report.steps.iter().map(|s| s.level).collect();
    assert_eq!(
        (report.knee, report.first_failure, &report.limit),
        (Some(8.0), Some(9.0), &Limit::Server),
        "levels {levels:?}\n{report:#?}\nkamailio log:\n{}",
        k.log()
    );
    assert_eq!(levels, [2.0, 4.0, 8.0, 16.0, 12.0, 10.0, 9.0]);
    for s in &report.steps {
        let calls = s.level as u32;
        assert_eq!(s.summary.calls_attempted, calls, "{s:#?}");
        // Up to the limit every call is answered; beyond it exactly the excess is refused.
        assert_eq!(s.summary.calls_answered, calls.min(8), "{s:#?}");
        assert_eq!(s.passed, calls <= 8);
        if calls > 8 {
            assert!(s.failures[0].starts_with("ASR "), "{:?}", s.failures);
        }
    }
}
