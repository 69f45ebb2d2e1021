//! Runs over connection-oriented transports (TCP, TLS, WS, WSS) through the built-in
//! registrar, from test files: one connection per endpoint, calls with media both ways.

use agent::engine::{EndpointReport, Outcome, RunSummary, StopHandle};
use agent::flow::FlowKind;
use agent::trace::Direction;

fn run_file(text: &str) -> (RunSummary, Vec<EndpointReport>) {
    // Ephemeral credentials of the built-in registrar expire a day after `now`.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("streams.toml", text, b"stream secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap()
}

fn ten_to_ten(transport: &str) -> String {
    format!(
        r#"
name = "builtin over {transport}"
duration = "1s"
seed = 7
shards = 2
time_limit = "30s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "{transport}"

[[group]]
name = "callees"
endpoints = 10
registrar = "builtin"
role = "answer"
answer_delay = "50ms"

[[group]]
name = "callers"
endpoints = 10
registrar = "builtin"
call = "group:callees"
"#
    )
}

/// Every endpoint succeeded with media, and its trace shows its own connection: the real
/// transport on every message, one local port for all of them, the connection notes.
fn assert_ten_to_ten(kind: FlowKind, summary: &RunSummary, reports: &[EndpointReport]) {
    assert_ten_to_ten_noted(kind, summary, reports, "");
}

/// [`assert_ten_to_ten`], with the connection notes starting with `noted`.
fn assert_ten_to_ten_noted(
    kind: FlowKind,
    summary: &RunSummary,
    reports: &[EndpointReport],
    noted: &str,
) {
    assert_eq!(reports.len(), 20);
    for r in reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.registration_code, Some(200));
        let m = r.media.as_ref().unwrap_or_else(|| panic!("media: {r:#?}"));
        assert_eq!(m.calls, 1, "{m:?}");
        assert!(m.rx_packets >= 40, "≈50 packets of 20 ms in 1 s: {m:?}");
        let messages: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction != Direction::Note)
            .collect();
        assert!(
            messages.iter().all(|e| e.transport == Some(kind)),
            "{kind:?}: {messages:#?}"
        );
        let locals: std::collections::HashSet<_> = messages.iter().map(|e| e.local).collect();
        assert_eq!(locals.len(), 1, "one connection per endpoint: {locals:?}");
        let notes: Vec<&str> = r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Note)
            .filter_map(|e| e.text.strip_prefix(noted))
            .collect();
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("TCP connected to 127.0.0.1:")),
            "{notes:?}"
        );
        if kind.secure() {
            assert!(
                notes
                    .iter()
                    .any(|n| n.starts_with("TLS handshake done with 127.0.0.1:")
                        && n.contains("TLSv1.3")
                        && n.contains("verification: Custom CA")),
                "{notes:?}"
            );
        }
        if kind.websocket() {
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains("subprotocol sip (RFC 7118)")),
                "{notes:?}"
            );
        }
        let via = format!("Via: SIP/2.0/{} ", kind.via_token());
        let register = messages
            .iter()
            .find(|e| e.first_line().starts_with("REGISTER "))
            .unwrap();
        assert!(register.text.contains(&via), "{}", register.text);
        let port = register.local.unwrap().port();
        assert!(
            register.text.contains(&format!(
                ":{port};transport={}>",
                kind.via_token().to_ascii_lowercase()
            )),
            "Contact names the connection's port: {}",
            register.text
        );
        // No retransmissions over a reliable transport (RFC 3261 §17.1.1.2).
        assert!(messages.iter().all(|e| !e.retransmission));
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    assert_eq!(summary.dropped_sends, 0);
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.group == "callees")
            .map(|r| r.calls_received)
            .sum::<u32>(),
        10
    );
}

#[test]
fn ten_callers_call_ten_callees_over_tcp() {
    let (summary, reports) = run_file(&ten_to_ten("tcp"));
    assert_ten_to_ten(FlowKind::Tcp, &summary, &reports);
}

#[test]
fn ten_callers_call_ten_callees_over_tls() {
    let (summary, reports) = run_file(&ten_to_ten("tls"));
    assert_ten_to_ten(FlowKind::Tls, &summary, &reports);
}

#[test]
fn ten_callers_call_ten_callees_over_ws() {
    let (summary, reports) = run_file(&ten_to_ten("ws"));
    assert_ten_to_ten(FlowKind::Ws, &summary, &reports);
}

#[test]
fn ten_callers_call_ten_callees_over_wss() {
    let (summary, reports) = run_file(&ten_to_ten("wss"));
    assert_ten_to_ten(FlowKind::Wss, &summary, &reports);
}

/// A free port: nothing listens there.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A callee and a caller over TCP to `port`; `extra` goes in the registrar.
fn refused_file(port: u16, extra: &str) -> String {
    format!(
        r#"
name = "refused"
duration = "1s"
shards = 1
time_limit = "20s"

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
port = {port}
transport = "tcp"
{extra}

[[accounts]]
registrar = "pbx"
range = {{ from = 1, to = 2, password = "p" }}

[[group]]
name = "callees"
endpoints = 1
registrar = "pbx"
role = "answer"

[[group]]
name = "callers"
endpoints = 1
registrar = "pbx"
call = "group:callees"
"#
    )
}

/// Nothing listens: each endpoint ends OSERROR with the words and hint of `check`, fast.
#[test]
fn a_refused_connection_is_an_oserror_with_the_hint() {
    let port = free_port();
    let (summary, reports) = run_file(&refused_file(port, ""));
    assert!(summary.duration_ms < 10_000.0, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Oserror, "{r:#?}");
        let e = r.error.as_deref().unwrap();
        assert!(
            e.contains(&format!("connection refused by 127.0.0.1:{port}"))
                && e.contains("check the address, port, transport and firewall"),
            "{e}"
        );
    }
}

/// Two callees and two callers over TCP to the built-in registrar, two calls each; between
/// them the registrar's TCP listener stops (dropping every connection) and starts again on
/// the same port. `shared`: `connections = "shared"`.
fn drop_connections_between_calls(shared: bool) -> (RunSummary, Vec<EndpointReport>) {
    use agent::builtin::{BuiltinRegistrar, Listen};
    use agent::callmedia::MediaPlan;
    use agent::engine::{
        EndpointPlan, GroupPlan, OfferTiming, Role, RunPlan, ServerTarget, TransportPlan,
    };
    use registrar::{AuthMode, RegistrarConfig};
    use sip_msg::{Host, Uri};
    use sip_proto::auth::Credentials;
    use std::time::Duration;

    const SECRET: &[u8] = b"reconnect secret";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "TCP".into(),
        auth: AuthMode::Ephemeral,
        secret: SECRET.to_vec(),
        min_expires: 10,
        max_expires: 3600,
    };
    let first = rt
        .block_on(BuiltinRegistrar::start(
            Listen::Tcp("127.0.0.1:0".parse().unwrap()),
            config.clone(),
        ))
        .unwrap();
    let addr = first.addr();
    let endpoints = |prefix: &str| -> Vec<EndpointPlan> {
        (0..2)
            .map(|i| {
                let user = format!("{prefix}{i}");
                let (u, p) = sip_auth::ephemeral::issue(SECRET, &user, 4_000_000_000);
                EndpointPlan {
                    user,
                    credentials: Some(Credentials::new(&u, &p)),
                }
            })
            .collect()
    };
    let group = |name: &str, role: Role| GroupPlan {
        server: 0,
        name: name.into(),
        endpoints: endpoints(name),
        prack: false,
        ringing: Default::default(),
        identity: Default::default(),
        session_timer: None,
        register: true,
        event_actions: Vec::new(),
        actions: Vec::new(),
        media: Some(MediaPlan::default()),
        role,
    };
    let plan = RunPlan {
        more_servers: Vec::new(),
        name: "reconnect".into(),
        rtp_ports: None,
        keep_samples: false,
        server: ServerTarget {
            addr,
            domain: "sipmeter.test".into(),
            registrar_uri: Uri::parse(&format!("sip:127.0.0.1:{};transport=tcp", addr.port()))
                .unwrap(),
            outbound_proxy: None,
            transport: TransportPlan {
                kind: FlowKind::Tcp,
                shared_connection: shared,
                ..TransportPlan::default()
            },
        },
        groups: vec![
            group(
                "callee",
                Role::Answer {
                    answer_delay: Duration::from_millis(50),
                },
            ),
            group(
                "caller",
                Role::Call {
                    targets: (0..2)
                        .map(|i| Uri::parse(&format!("sip:callee{i}@sipmeter.test")).unwrap())
                        .collect(),
                    calls: 2,
                    pause: Duration::from_millis(1500),
                    offer: OfferTiming::Early,
                },
            ),
        ],
        call_duration: Duration::from_millis(300),
        ramp_per_sec: 0.0,
        cps: 0.0,
        register_expires: 60,
        shards: 1,
        seed: 9,
        time_limit: Duration::from_secs(30),
        keep_all_traces: true,
        timers: Default::default(),
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let engine = std::thread::spawn(move || agent::engine::run(plan, tx, StopHandle::default()));
    // The first calls end at about 0.4 s, the second ones start at about 1.9 s.
    std::thread::sleep(Duration::from_millis(900));
    rt.block_on(first.stop());
    // The stopped listener is closed by its aborted task: retry the bind briefly.
    let mut tries = 0;
    let second = loop {
        match rt.block_on(BuiltinRegistrar::start(Listen::Tcp(addr), config.clone())) {
            Ok(r) => break r,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("rebinding {addr}: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let results = engine.join().unwrap().unwrap();
    rt.block_on(second.stop());
    results
}

/// `r` succeeded, lost its connection, registered again after reconnecting: two REGISTERs
/// answered 200, one per connection, from two different local ports. Its notes, and those
/// ports.
fn reregistered(r: &EndpointReport) -> (Vec<&str>, Vec<Option<std::net::SocketAddr>>) {
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    let notes: Vec<&str> = r
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Note)
        .map(|e| e.text.as_str())
        .collect();
    let at = |prefix: &str| {
        notes
            .iter()
            .position(|n| n.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {notes:#?}"))
    };
    assert!(
        at("connection closed: the server closed the connection")
            < at("registered again after reconnecting"),
        "{notes:#?}"
    );
    let registered: Vec<_> = r
        .trace
        .iter()
        .filter(|e| {
            e.direction == Direction::Received
                && e.first_line() == "SIP/2.0 200 OK"
                && e.text.contains(" REGISTER\r\n")
                && e.text.contains("Contact:")
        })
        .map(|e| e.local)
        .collect();
    assert_eq!(registered.len(), 2, "{notes:#?}");
    assert_ne!(registered[0], registered[1]);
    (notes, registered)
}

/// The server drops every connection between two calls: each endpoint reconnects, registers
/// again, and the second call goes through. The trace shows the loss and the reconnect.
#[test]
fn endpoints_reconnect_and_register_again_when_the_server_drops_connections() {
    let (summary, reports) = drop_connections_between_calls(false);
    assert_eq!(summary.reconnects, 4, "{reports:#?}");
    assert_eq!(summary.connections_opened, 8, "two per endpoint");
    assert_eq!((summary.calls_attempted, summary.calls_answered), (4, 4));
    for r in &reports {
        let (notes, _) = reregistered(r);
        let closed = notes
            .iter()
            .position(|n| n.starts_with("connection closed: the server closed the connection"))
            .unwrap();
        let reconnect = notes
            .iter()
            .position(|n| {
                n.starts_with("connecting over TCP to 127.0.0.1:") && n.ends_with(" (reconnect)")
            })
            .unwrap_or_else(|| panic!("{notes:#?}"));
        assert!(closed < reconnect, "{notes:#?}");
    }
}

/// `udp_socket = "per-endpoint"`: each endpoint sends and receives on its own UDP socket
/// (its own source port, as servers that tell phones apart by port need), with the socket
/// buffer sizes asked for; calls go through as over the shared socket.
#[test]
fn udp_with_one_socket_per_endpoint_and_buffer_sizes() {
    let text = ten_to_ten("udp").replace(
        "transport = \"udp\"",
        "transport = \"udp\"\nudp_socket = \"per-endpoint\"\nudp_recv_buffer = 262144\nudp_send_buffer = 131072",
    );
    let (summary, reports) = run_file(&text);
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    let mut ports = std::collections::HashSet::new();
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let note = &r.trace[0];
        assert_eq!(note.direction, Direction::Note);
        assert!(
            note.text.starts_with("own UDP socket 127.0.0.1:")
                && note.text.contains(" bytes for 262144 asked")
                && note.text.contains(" bytes for 131072 asked"),
            "{}",
            note.text
        );
        let locals: std::collections::HashSet<_> = r
            .trace
            .iter()
            .filter(|e| e.direction != Direction::Note)
            .map(|e| e.local.unwrap())
            .collect();
        assert_eq!(locals.len(), 1, "{locals:?}");
        let local = *locals.iter().next().unwrap();
        assert!(note.text.contains(&local.to_string()), "{}", note.text);
        assert!(ports.insert(local.port()), "a port of its own: {local}");
        // The server's requests (the callee's INVITE) reach it on its own socket.
        if r.group == "callees" {
            assert!(r.trace.iter().any(|e| e.direction == Direction::Received
                && e.first_line().starts_with("INVITE ")
                && e.local == Some(local)));
        }
    }
    assert_eq!(ports.len(), 20);
    // The shared socket (the default) says what it was granted too.
    let shared = ten_to_ten("udp").replace(
        "transport = \"udp\"",
        "transport = \"udp\"\nudp_recv_buffer = 262144",
    );
    let (_, reports) = run_file(&shared);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert!(
            r.trace[0].text.starts_with("shared UDP socket 127.0.0.1:")
                && r.trace[0].text.contains(" bytes for 262144 asked"),
            "{}",
            r.trace[0].text
        );
    }
}

/// The 10 → 10 run with `connections = "shared"` over `transport`.
fn ten_to_ten_shared(transport: &str) -> String {
    ten_to_ten(transport).replace(
        &format!("transport = \"{transport}\""),
        &format!("transport = \"{transport}\"\nconnections = \"shared\""),
    )
}

/// `connections = "shared"` (trunk style): every call succeeds, and the endpoints of a shard
/// share one connection: one local address per shard in the traces (Via and Contact carry
/// it, Contact's user tells endpoints apart), one connection opened per shard.
fn assert_shared(kind: FlowKind, summary: &RunSummary, reports: &[EndpointReport]) {
    assert_ten_to_ten_noted(kind, summary, reports, "shared connection: ");
    assert_eq!(summary.connections_opened, 2, "one per shard: {summary:?}");
    assert_eq!(summary.reconnects, 0);
    let mut shard_locals = std::collections::HashSet::new();
    for r in reports {
        let register = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
            .unwrap();
        let local = register.local.unwrap();
        shard_locals.insert(local);
        assert!(
            register.text.contains(&format!(
                "<sip:{}@{local};transport={}>",
                r.user,
                kind.via_token().to_ascii_lowercase()
            )),
            "Contact: the endpoint's user at the shared connection's address: {}",
            register.text
        );
        if r.group == "callees" {
            // The registrar's INVITE came over the shared connection, to this endpoint.
            assert!(r.trace.iter().any(|e| {
                e.direction == Direction::Received
                    && e.first_line()
                        .starts_with(&format!("INVITE sip:{}@", r.user))
                    && e.local == Some(local)
            }));
        }
    }
    assert_eq!(
        shard_locals.len(),
        2,
        "one connection per shard: {shard_locals:?}"
    );
}

#[test]
fn shared_connections_over_tcp_carry_ten_calls_on_one_connection_per_shard() {
    let (summary, reports) = run_file(&ten_to_ten_shared("tcp"));
    assert_shared(FlowKind::Tcp, &summary, &reports);
}

#[test]
fn shared_connections_over_ws_carry_ten_calls_on_one_connection_per_shard() {
    // One upgrade per connection, its note handed to each endpoint on it.
    let (summary, reports) = run_file(&ten_to_ten_shared("ws"));
    assert_shared(FlowKind::Ws, &summary, &reports);
}

#[test]
fn shared_connections_over_tls_and_wss_carry_ten_calls_on_one_connection_per_shard() {
    // One TLS handshake (and WebSocket upgrade) per connection.
    for (transport, kind) in [("tls", FlowKind::Tls), ("wss", FlowKind::Wss)] {
        let (summary, reports) = run_file(&ten_to_ten_shared(transport));
        assert_shared(kind, &summary, &reports);
    }
}

/// A shared connection refused (nothing listens): every endpoint waiting on it ends OSERROR
/// with the words and hint of `check`, as with a connection of its own.
#[test]
fn a_refused_shared_connection_is_an_oserror_for_every_endpoint() {
    let port = free_port();
    let (summary, reports) = run_file(&refused_file(port, "connections = \"shared\""));
    assert_eq!(reports.len(), 2);
    assert_eq!(summary.connections_opened, 0, "{reports:#?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Oserror, "{r:#?}");
        let e = r.error.as_deref().unwrap();
        assert!(
            e.starts_with(&format!("cannot connect over TCP to 127.0.0.1:{port}: "))
                && e.contains(&format!("connection refused by 127.0.0.1:{port}"))
                && e.contains("check the address, port, transport and firewall"),
            "{e}"
        );
    }
}

/// The server drops the shared connection between two calls: it is reopened once (one
/// reconnect for the shard, not one per endpoint), every endpoint on it registers again,
/// and the second calls go through over the new connection.
#[test]
fn a_dropped_shared_connection_is_reopened_and_every_endpoint_registers_again() {
    let (summary, reports) = drop_connections_between_calls(true);
    assert_eq!(summary.reconnects, 1, "{reports:#?}");
    assert_eq!(summary.connections_opened, 2, "{reports:#?}");
    assert_eq!((summary.calls_attempted, summary.calls_answered), (4, 4));
    let locals: std::collections::HashSet<_> =
        reports.iter().flat_map(|r| reregistered(r).1).collect();
    assert_eq!(
        locals.len(),
        2,
        "all four on the same two connections: {locals:?}"
    );
}
