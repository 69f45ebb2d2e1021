//! RFC 5118 IPv6 torture messages (testdata/rfc5118) get the RFC's verdicts.

use std::path::PathBuf;

use sip_msg::{Host, Message};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc5118")
}

#[test]
fn every_ipv6_case_gets_the_rfc_verdict() {
    let table = std::fs::read_to_string(dir().join("EXPECTED.tsv")).unwrap();
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (file, expect) = (cols.next().unwrap(), cols.next().unwrap());
        let bytes = std::fs::read(dir().join(file)).unwrap();
        let got = Message::parse(&bytes).and_then(|mut m| m.validate().map(|_| m));
        n += 1;
        let ok = matches!(
            (expect, &got),
            ("valid" | "lenient", Ok(_)) | ("invalid", Err(_))
        );
        if !ok {
            wrong.push(format!(
                "{file}: expected {expect}, got {:?}",
                got.map(|m| m.summary())
            ));
        }
    }
    assert_eq!(n, 12);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn ports_and_addresses_read_right() {
    let uri = |f: &str| {
        let m = Message::parse(&std::fs::read(dir().join(f)).unwrap()).unwrap();
        m.request_uri().unwrap().as_sip().unwrap().clone()
    };
    let amb = uri("4.3-port-ambiguous.sip");
    assert_eq!(
        (amb.host, amb.port),
        (Host::V6("2001:db8::10:5070".parse().unwrap()), None)
    );
    let unamb = uri("4.4-port-unambiguous.sip");
    assert_eq!(
        (unamb.host, unamb.port),
        (Host::V6("2001:db8::10".parse().unwrap()), Some(5070))
    );
}
