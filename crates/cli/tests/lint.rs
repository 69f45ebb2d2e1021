//! `sipmeter sip lint` as a user runs it: the real binary, a file or standard input.

use std::io::Write;
use std::process::{Command, Stdio};

fn lint(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["sip", "lint"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sipmeter binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("sipmeter exits");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const REGISTER: &str = "REGISTER sip:registrar.biloxi.com SIP/2.0\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\n\
Max-Forwards: 70\n\
To: Bob <sip:bob@biloxi.com>\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\n\
Call-ID: 843817637684230@998sdasdh09\n\
CSeq: 1826 REGISTER\n\
Contact: <sip:bob@192.0.2.4>\n\
Expires: 7200\n\
Content-Length: 0\n\n";

#[test]
fn summarises_a_message_copied_with_bare_line_feeds() {
    let (code, out, err) = lint(&[], REGISTER.as_bytes());
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("request   REGISTER sip:registrar.biloxi.com"),
        "{out}"
    );
    assert!(
        out.contains("call-id   843817637684230@998sdasdh09"),
        "{out}"
    );
    assert!(
        out.contains("from      sip:bob@biloxi.com tag=456248"),
        "{out}"
    );
    assert!(
        out.contains("via[0]    SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7"),
        "{out}"
    );
}

#[test]
fn json_summary_and_file_argument() {
    let dir = std::env::temp_dir().join(format!("sipmeter-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("register.sip");
    std::fs::write(&path, REGISTER.replace('\n', "\r\n")).unwrap();
    let (code, out, _) = lint(&["--json", path.to_str().unwrap()], b"");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["method"], "REGISTER");
    assert_eq!(v["cseq"], "1826 REGISTER");
    assert_eq!(v["contact"][0], "<sip:bob@192.0.2.4>");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn malformed_message_names_line_and_header() {
    let bad = REGISTER.replace("CSeq: 1826 REGISTER", "CSeq: 1826 INVITE");
    let (code, _, err) = lint(&[], bad.as_bytes());
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "malformed SIP message: line 7: CSeq: cseq method does not match the request method"
    );
    let (code, out, _) = lint(
        &["--json"],
        b"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n",
    );
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["line"], 2);
    assert_eq!(v["kind"], "BadHeaderLine");
}

#[test]
fn unreadable_file_exits_2() {
    let (code, _, err) = lint(&["/nonexistent/message.sip"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("cannot read input"), "{err}");
}
