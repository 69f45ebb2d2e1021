//! The synthesised TCP streams and IPv6 packets of `agent::pcap`, read back by Wireshark's
//! `tshark` (Debian package `tshark`): `sipmeter run` only drives UDP today, so the stream
//! transports are checked here from traces built by hand.

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
        .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport"])
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
        ])
        .args(["-q", "-z", "expert,warn"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn entry(dir: Direction, local: &str, remote: &str, text: &str, ms: u64) -> TraceEntry {
    let at = Duration::from_millis(ms);
    TraceEntry::new(
        dir,
        FlowKind::Tcp,
        local.parse().unwrap(),
        remote.parse().unwrap(),
        Bytes::from(text.to_owned()),
        at,
        SystemTime::now() + at,
        false,
    )
}

#[test]
fn tcp_over_ipv4_and_ipv6_decodes_in_tshark_with_a_clean_stream() {
    if !testpeers::available("tshark", "tshark") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sipmeter-pcap-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A large body makes one message longer than a segment: Wireshark must reassemble it.
    let big = "v=0\r\n".repeat(14_000);
    for (local, remote, src_field) in [
        ("192.0.2.1:40000", "192.0.2.2:5060", "192.0.2.1//40000"),
        (
            "[2001:db8::1]:40000",
            "[2001:db8::2]:5060",
            "/2001:db8::1/40000",
        ),
    ] {
        let trace = vec![
            entry(
                Direction::Sent,
                local,
                remote,
                &message("REGISTER", "c1", "1 REGISTER", ""),
                0,
            ),
            entry(
                Direction::Received,
                local,
                remote,
                &message("401", "c1", "1 REGISTER", ""),
                2,
            ),
            TraceEntry::note("a note".into(), Duration::from_millis(3)),
            entry(
                Direction::Sent,
                local,
                remote,
                &message("REGISTER", "c1", "2 REGISTER", ""),
                4,
            ),
            entry(
                Direction::Received,
                local,
                remote,
                &message("200", "c1", "2 REGISTER", ""),
                6,
            ),
            entry(
                Direction::Sent,
                local,
                remote,
                &message("MESSAGE", "c2", "1 MESSAGE", &big),
                8,
            ),
            entry(
                Direction::Received,
                local,
                remote,
                &message("200", "c2", "1 MESSAGE", ""),
                9,
            ),
        ];
        let file = dir.join("tcp.pcap");
        write_trace_file(&file, &trace).unwrap();
        let got = tshark(&file);
        let peer = if src_field.starts_with('/') {
            "/2001:db8::2/5060"
        } else {
            "192.0.2.2//5060"
        };
        let want = [
            format!("REGISTER//c1/{src_field}"),
            format!("/401/c1/{peer}"),
            format!("REGISTER//c1/{src_field}"),
            format!("/200/c1/{peer}"),
            format!("MESSAGE//c2/{src_field}"),
            format!("/200/c2/{peer}"),
        ];
        assert_eq!(got, want, "{local}");
        // Consistent sequence numbers: no "previous segment not captured", no bad checksums.
        let warn = tshark_expert_warnings(&file);
        assert!(!warn.contains("Warning"), "{local}: {warn}");
        assert!(!warn.contains("Error"), "{local}: {warn}");
    }
}
