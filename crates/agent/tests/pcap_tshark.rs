//! The synthesised TCP streams and IPv6 packets of `agent::pcap`, read back by Wireshark's
//! `tshark` (Debian package `tshark`): traces built by hand for every address family, and
//! the traces of a real run over TCP through the built-in registrar.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use agent::flow::FlowKind;
use agent::pcap::write_trace_file;
use agent::trace::{Direction, TraceEntry};
use bytes::Bytes;

fn message(method_or_status: &str, call_id: &str, cseq: &str, body: &str) -> String {
    let first = if method_or_status.chars().all(|c| c.is_ascii_digit()) {
        format!("SIP/2.0 {method_or_status} Whatever")
    } else {
        format!("{method_or_status} sip:bob@lab.test SIP/2.0")
    };
    format!(
        "{first}\r\nVia: SIP/2.0/TCP 192.0.2.1:40000;branch=z9hG4bK{call_id}{cseq}\r\nFrom: <sip:alice@lab.test>;tag=1\r\nTo: <sip:bob@lab.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn tshark(file: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", "sip", "-T", "fields"])
        .args([
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "tcp.srcport",
            "-e",
            "udp.srcport",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.replace('\t', "/"))
        .collect()
}

fn tshark_expert_warnings(file: &Path) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        // Checksum validation is off by default in Wireshark: turn it on.
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args(["-q", "-z", "expert,warn"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entry(
    kind: FlowKind,
    dir: Direction,
    (local, remote): (&str, &str),
    text: &str,
    ms: u64,
) -> TraceEntry {
    let at = Duration::from_millis(ms);
    TraceEntry::new(
        dir,
        kind,
        local.parse().unwrap(),
        remote.parse().unwrap(),
        Bytes::from(text.to_owned()),
        at,
        SystemTime::now() + at,
        false,
    )
}

#[test]
fn tcp_and_udp_over_ipv4_and_ipv6_decode_in_tshark_with_clean_streams() {
    if !testpeers::available("tshark", "tshark") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sipmeter-pcap-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Over TCP a large body makes one message longer than a segment: Wireshark must
    // reassemble it. Over UDP the message stays within one datagram.
    let big = "v=0\r\n".repeat(14_000);
    let v4 = ("192.0.2.1:40000", "192.0.2.2:5060");
    // Not 5060: Wireshark must recognise SIP by its heuristics.
    let v6 = ("[2001:db8::1]:40000", "[2001:db8::2]:5999");
    for (kind, addrs) in [
        (FlowKind::Tcp, v4),
        (FlowKind::Tcp, v6),
        (FlowKind::Udp, v4),
        (FlowKind::Udp, v6),
    ] {
        let body = if kind == FlowKind::Tcp {
            &big[..]
        } else {
            &big[..5_000]
        };
        let e = |d, text: &str, ms| entry(kind, d, addrs, text, ms);
        let trace = vec![
            e(
                Direction::Sent,
                &message("REGISTER", "c1", "1 REGISTER", ""),
                0,
            ),
            e(
                Direction::Received,
                &message("401", "c1", "1 REGISTER", ""),
                2,
            ),
            TraceEntry::note("a note".into(), Duration::from_millis(3)),
            e(
                Direction::Sent,
                &message("REGISTER", "c1", "2 REGISTER", ""),
                4,
            ),
            e(
                Direction::Received,
                &message("200", "c1", "2 REGISTER", ""),
                6,
            ),
            e(
                Direction::Sent,
                &message("MESSAGE", "c2", "1 MESSAGE", body),
                8,
            ),
            e(
                Direction::Received,
                &message("200", "c2", "1 MESSAGE", ""),
                9,
            ),
        ];
        let file = dir.join("trace.pcap");
        write_trace_file(&file, &trace).unwrap();
        // tshark prints the IPv4 source in the ip.src column, IPv6 in ipv6.src; the port in
        // tcp.srcport or udp.srcport.
        let col = |addr: &str| {
            let a: std::net::SocketAddr = addr.parse().unwrap();
            let ip = if a.is_ipv4() {
                format!("{}/", a.ip())
            } else {
                format!("/{}", a.ip())
            };
            if kind == FlowKind::Tcp {
                format!("{ip}/{}/", a.port())
            } else {
                format!("{ip}//{}", a.port())
            }
        };
        let (us, peer) = (col(addrs.0), col(addrs.1));
        let want = [
            format!("REGISTER//c1/{us}"),
            format!("/401/c1/{peer}"),
            format!("REGISTER//c1/{us}"),
            format!("/200/c1/{peer}"),
            format!("MESSAGE//c2/{us}"),
            format!("/200/c2/{peer}"),
        ];
        assert_eq!(tshark(&file), want, "{kind:?} {addrs:?}");
        // Consistent sequence numbers (no "previous segment not captured"), good checksums.
        let warn = tshark_expert_warnings(&file);
        assert!(!warn.contains("Warning"), "{kind:?} {addrs:?}: {warn}");
        assert!(!warn.contains("Error"), "{kind:?} {addrs:?}: {warn}");
    }
}

/// A real run over TCP (one connection per endpoint, through the built-in registrar):
/// `run --pcap`'s files decode in tshark as SIP over TCP, every message of every trace,
/// with clean streams and checksums.
#[test]
fn a_run_over_tcp_exports_pcaps_that_tshark_decodes() {
    if !testpeers::available("tshark", "tshark") {
        return;
    }
    let text = r#"
name = "pcap over tcp"
duration = "300ms"
shards = 1
time_limit = "20s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "tcp"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"
media = false

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
media = false
"#;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("pcap.toml", text, b"pcap secret", now).unwrap();
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) =
        agent::runner::execute(prepared, tx, agent::engine::StopHandle::default()).unwrap();
    assert_eq!(summary.calls_answered, 2, "{reports:#?}");
    let dir = testpeers::TempDir::new("sipmeter-run-pcap").unwrap();
    let pcaps = agent::pcap::write_run_pcaps(dir.path(), &reports).unwrap();
    assert_eq!(pcaps.endpoint_files.len(), 4);
    let messages: usize = reports
        .iter()
        .map(|r| {
            r.trace
                .iter()
                .filter(|e| e.direction != Direction::Note)
                .count()
        })
        .sum();
    let decoded = tshark(&pcaps.all);
    assert_eq!(decoded.len(), messages, "{decoded:#?}");
    // Every SIP message rode TCP (a TCP source port, no UDP one).
    assert!(
        decoded.iter().all(|l| {
            let f: Vec<&str> = l.split('/').collect();
            !f[5].is_empty() && f[6].is_empty()
        }),
        "{decoded:#?}"
    );
    for file in pcaps.endpoint_files.iter().chain([&pcaps.all]) {
        let warn = tshark_expert_warnings(file);
        assert!(!warn.contains("Warning"), "{}: {warn}", file.display());
        assert!(!warn.contains("Error"), "{}: {warn}", file.display());
    }
}
