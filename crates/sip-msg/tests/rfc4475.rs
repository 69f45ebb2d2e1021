// NOTE for the engineer assigned to the conformance tests: the lead already wrote this file,
// the RFC 4475/5118 vectors under testdata/ (with EXPECTED.tsv in the format your brief gave)
// and fuzz/. Please extend rather than replace them.

//! RFC 4475 torture messages (testdata/rfc4475): valid ones parse and validate, invalid ones
//! are rejected with a precise error, lenient ones are accepted with a warning or rejected
//! precisely; none panics, whole or fed to the stream framer in odd-sized chunks.

use std::path::PathBuf;

use sip_msg::{ErrorKind, Frame, Framer, HeaderError, Message, ParseError, WarningKind};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475")
}

fn cases() -> Vec<(String, String, Vec<u8>)> {
    let table = std::fs::read_to_string(dir().join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let file = cols.next().unwrap().to_owned();
            let expect = cols.next().unwrap().to_owned();
            let bytes = std::fs::read(dir().join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            (file, expect, bytes)
        })
        .collect()
}

fn check(bytes: &[u8]) -> Result<(Message, Vec<sip_msg::Warning>), ParseError> {
    let mut m = Message::parse(bytes)?;
    let w = m.validate()?;
    Ok((m, w))
}

#[test]
fn every_message_gets_the_rfc_verdict() {
    let cases = cases();
    assert_eq!(cases.len(), 48);
    let mut wrong = Vec::new();
    for (file, expect, bytes) in &cases {
        let got = check(bytes);
        let ok = match (expect.as_str(), &got) {
            ("valid", Ok(_)) | ("invalid", Err(_)) => true,
            ("lenient", Ok((m, w))) => !w.is_empty() || !m.warnings().is_empty(),
            ("lenient", Err(_)) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!("{file}: expected {expect}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn kind(file: &str) -> ErrorKind {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    check(&bytes).map(|_| ()).unwrap_err().kind()
}

#[test]
fn invalid_messages_fail_for_the_rfc_reason() {
    use ErrorKind::*;
    assert_eq!(
        kind("3.1.2.2-clerr.sip"),
        BodyTooShort {
            declared: 9999,
            available: 154
        }
    );
    assert_eq!(
        kind("3.1.2.3-ncl.sip"),
        BadHeaderValue(HeaderError::BadNumber)
    );
    assert_eq!(
        kind("3.1.2.4-scalar02.sip"),
        BadHeaderValue(HeaderError::BadNumber)
    );
    assert_eq!(
        kind("3.1.2.5-scalarlg.sip"),
        BadHeaderValue(HeaderError::BadNumber)
    );
    assert_eq!(
        kind("3.1.2.6-quotbal.sip"),
        BadHeaderValue(HeaderError::UnterminatedQuote)
    );
    assert!(matches!(kind("3.1.2.7-ltgtruri.sip"), BadRequestUri(_)));
    assert!(matches!(kind("3.1.2.8-lwsruri.sip"), BadRequestUri(_)));
    assert_eq!(kind("3.1.2.9-lwsstart.sip"), BadStartLine);
    assert_eq!(kind("3.1.2.11-escruri.sip"), RequestUriHeaders);
    assert!(matches!(
        kind("3.1.2.13-regbadct.sip"),
        BadHeaderValue(HeaderError::Uri(_))
    ));
    assert!(matches!(kind("3.1.2.14-badaspec.sip"), BadHeaderValue(_)));
    assert_eq!(
        kind("3.1.2.15-baddn.sip"),
        BadHeaderValue(HeaderError::BadDisplayName)
    );
    assert_eq!(kind("3.1.2.16-badvers.sip"), BadVersion);
    assert_eq!(kind("3.1.2.17-mismatch01.sip"), CSeqMethodMismatch);
    assert_eq!(kind("3.1.2.18-mismatch02.sip"), CSeqMethodMismatch);
    assert_eq!(kind("3.1.2.19-bigcode.sip"), BadStatusCode);
    assert_eq!(kind("3.3.1-insuf.sip"), MissingHeader);
    assert_eq!(kind("3.3.8-multi01.sip"), DuplicateHeader);
    assert_eq!(kind("3.3.9-mcl01.sip"), DuplicateHeader);
}

#[test]
fn valid_messages_read_as_the_rfc_describes() {
    let read = |f: &str| check(&std::fs::read(dir().join(f)).unwrap()).unwrap().0;
    let wsinv = read("3.1.1.1-wsinv.sip");
    assert_eq!(wsinv.cseq().unwrap().seq, 9);
    assert_eq!(wsinv.headers.typed_all::<sip_msg::typed::Via>().len(), 3);
    assert_eq!(wsinv.from().unwrap().tag().as_deref(), Some("98asjd8"));
    assert_eq!(wsinv.to().unwrap().tag().as_deref(), Some("1918181833n"));
    assert_eq!(
        wsinv.headers.value(&"NewFangledHeader".into()),
        Some("newfangled value continued newfangled value")
    );
    let longreq = read("3.1.1.7-longreq.sip");
    assert_eq!(longreq.headers.typed_all::<sip_msg::typed::Via>().len(), 34);
    let semi = read("3.1.1.9-semiuri.sip");
    assert_eq!(
        semi.request_uri()
            .unwrap()
            .as_sip()
            .unwrap()
            .user_unescaped()
            .as_deref(),
        Some("user;par=u@example.net")
    );
    let esc02 = read("3.1.1.5-esc02.sip");
    assert_eq!(esc02.method().unwrap().as_str(), "RE%47IST%45R");
    assert_eq!(
        esc02.headers.typed_all::<sip_msg::typed::Contact>().len(),
        2,
        "C%6Fntact is not Contact"
    );
    let dbl = read("3.1.1.8-dblreq.sip");
    assert!(dbl.body().is_empty());
    assert!(
        dbl.warnings()
            .iter()
            .any(|w| w.kind == WarningKind::ExtraBytes)
    );
    let noreason = read("3.1.1.13-noreason.sip");
    assert_eq!(
        (noreason.status(), noreason.reason()),
        (Some(100), Some(""))
    );
}

#[test]
fn printing_a_valid_message_gives_its_bytes_back() {
    for (file, expect, bytes) in cases() {
        if expect != "valid" || file.contains("dblreq") {
            continue;
        }
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.to_bytes(), bytes, "{file}");
    }
}

#[test]
fn the_framer_never_panics_and_frames_what_has_a_length() {
    for (file, _, bytes) in cases() {
        for chunk in [1, 3, 7, 64, 1500] {
            let mut f = Framer::new(64 * 1024);
            let mut frames = Vec::new();
            for c in bytes.chunks(chunk) {
                f.push(c);
                while let Some(r) = f.next_frame() {
                    let failed = r.is_err();
                    frames.push(r);
                    if failed {
                        break;
                    }
                }
            }
            // A message with a usable Content-Length that its bytes cover is framed whole.
            if let Some(Ok(Frame::Message(m))) = frames.first() {
                let _ = Message::parse(m);
                assert!(
                    bytes.starts_with(m),
                    "{file}: frame is a prefix of the stream"
                );
            }
        }
    }
}
