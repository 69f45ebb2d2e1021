//! Review of `Headers` holding one head text and `HeaderRef` (c000c69, 95064c0): headers
//! edited after parsing (pushed, removed, replaced, moved), folded lines and compact names,
//! printing after edits, clone semantics, and `push_ref` sharing another message's text (an
//! edit to one message never changes the other, and each outlives the other).

use sip_msg::{Header, HeaderName, Message};

const A: &[u8] = b"INVITE sip:bob@b.example SIP/2.0\r\n\
v: SIP/2.0/UDP a.example:5060;branch=z9hG4bKa1\r\n\
Max-Forwards: 70\r\n\
Subject: first\r\n  folded\r\n\
f: <sip:alice@a.example>;tag=ta\r\n\
To:   <sip:bob@b.example>  \r\n\
i: call-a\r\n\
CSeq: 1 INVITE\r\n\
l: 0\r\n\
\r\n";

const B: &[u8] = b"OPTIONS sip:carol@c.example SIP/2.0\r\n\
Via: SIP/2.0/UDP c.example;branch=z9hG4bKb1\r\n\
From: <sip:carol@c.example>;tag=tb\r\n\
To: <sip:dave@d.example>\r\n\
Call-ID: call-b\r\n\
CSeq: 9 OPTIONS\r\n\
Content-Length: 0\r\n\
\r\n";

fn text(m: &Message) -> String {
    String::from_utf8(m.to_bytes()).unwrap()
}

/// `(name, value)` of every header, in order.
fn lines(m: &Message) -> Vec<(String, String)> {
    m.headers
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_owned()))
        .collect()
}

#[test]
fn folded_lines_and_compact_names_read_and_print_as_received() {
    let a = Message::parse(A).unwrap();
    assert_eq!(a.to_bytes(), A);
    assert_eq!(a.headers.value(&HeaderName::Subject), Some("first folded"));
    assert_eq!(
        a.headers.get(&HeaderName::Subject).unwrap().raw(),
        Some(b"Subject: first\r\n  folded".as_slice())
    );
    assert_eq!(
        a.headers.value(&HeaderName::To),
        Some("<sip:bob@b.example>")
    );
    assert_eq!(a.headers.value(&HeaderName::CallId), Some("call-a"));
    assert_eq!(
        a.headers.get(&HeaderName::CallId).unwrap().raw(),
        Some(b"i: call-a".as_slice())
    );
    // Every edit below prints what the headers hold, and reads back the same.
    let check = |m: &Message, want: &[&str]| {
        let printed = text(m);
        let head: Vec<&str> = printed
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(head, want, "{printed}");
        assert_eq!(
            lines(&Message::parse(printed.as_bytes()).unwrap()),
            lines(m)
        );
    };
    // Removed: the first, a middle one (the folded line), the last.
    let mut m = a.clone();
    m.headers.remove_first(&HeaderName::Via).unwrap();
    m.headers.remove(&HeaderName::Subject);
    m.headers.remove(&HeaderName::ContentLength);
    check(
        &m,
        &[
            "Max-Forwards: 70",
            "f: <sip:alice@a.example>;tag=ta",
            "To:   <sip:bob@b.example>  ",
            "i: call-a",
            "CSeq: 1 INVITE",
        ],
    );
    // Replaced in place, pushed in front, inserted, appended; a line moved to the end.
    let mut m = a.clone();
    m.headers
        .set(Header::new(HeaderName::MaxForwards, "69".to_owned()));
    let via = m.headers.remove_first(&HeaderName::Via).unwrap();
    m.headers.push_front(Header::new(
        HeaderName::Via,
        "SIP/2.0/UDP p.example;branch=z9hG4bKp".to_owned(),
    ));
    m.headers.push(via);
    m.headers
        .insert(2, Header::new(HeaderName::Subject, "x".to_owned()));
    check(
        &m,
        &[
            "Via: SIP/2.0/UDP p.example;branch=z9hG4bKp",
            "Max-Forwards: 69",
            "Subject: x",
            "Subject: first",
            "  folded",
            "f: <sip:alice@a.example>;tag=ta",
            "To:   <sip:bob@b.example>  ",
            "i: call-a",
            "CSeq: 1 INVITE",
            "l: 0",
            "v: SIP/2.0/UDP a.example:5060;branch=z9hG4bKa1",
        ],
    );
    // A line of the message copied again into it (after a gap, and twice in a row).
    let mut m = Message::parse(B).unwrap();
    let call_id = m.headers.get(&HeaderName::CallId).unwrap().to_header();
    let to = m.headers.get(&HeaderName::To).unwrap().to_header();
    m.headers.push_ref(to.by_ref());
    m.headers.push_ref(call_id.by_ref());
    m.headers.push_ref(call_id.by_ref());
    let b = Message::parse(B).unwrap();
    let same = b.headers.get(&HeaderName::From).unwrap();
    m.headers.push_ref(same);
    check(
        &m,
        &[
            "Via: SIP/2.0/UDP c.example;branch=z9hG4bKb1",
            "From: <sip:carol@c.example>;tag=tb",
            "To: <sip:dave@d.example>",
            "Call-ID: call-b",
            "CSeq: 9 OPTIONS",
            "Content-Length: 0",
            "To: <sip:dave@d.example>",
            "Call-ID: call-b",
            "Call-ID: call-b",
            "From: <sip:carol@c.example>;tag=tb",
        ],
    );
}

/// A clone is a message of its own: editing it leaves the original as it was, and the
/// other way round; either outlives the other.
#[test]
fn a_clone_and_its_original_are_edited_apart() {
    let a = Message::parse(A).unwrap();
    let mut c = a.clone();
    c.headers.remove(&HeaderName::Subject);
    c.headers.set(Header::new(
        HeaderName::To,
        "<sip:x@x.example>;tag=1".to_owned(),
    ));
    assert_eq!(a.to_bytes(), A);
    assert_eq!(a.headers.value(&HeaderName::Subject), Some("first folded"));
    let mut a2 = a.clone();
    drop(a);
    a2.headers.remove_first(&HeaderName::Via);
    assert_eq!(
        c.headers.value(&HeaderName::To),
        Some("<sip:x@x.example>;tag=1")
    );
    assert_eq!(c.headers.value(&HeaderName::Subject), None);
    assert!(text(&c).starts_with("INVITE sip:bob@b.example SIP/2.0\r\nv: SIP/2.0/UDP a.example"));
    assert!(text(&a2).starts_with("INVITE sip:bob@b.example SIP/2.0\r\nMax-Forwards: 70\r\n"));
}

/// `push_ref` shares the other message's text: lines of two messages in one, editing and
/// dropping either message changes nothing in the other.
#[test]
fn push_ref_shares_text_but_not_edits() {
    let a = Message::parse(A).unwrap();
    let b = Message::parse(B).unwrap();
    // A built message (no head text yet) takes lines of A, then lines of B.
    let mut m = Message::new_request(
        sip_msg::Method::Ack,
        sip_msg::Uri::parse("sip:bob@b.example").unwrap(),
    );
    m.headers
        .push(Header::new(HeaderName::MaxForwards, "70".to_owned()));
    for name in [HeaderName::Via, HeaderName::Subject, HeaderName::From] {
        m.headers.push_ref(a.headers.get(&name).unwrap());
    }
    for name in [HeaderName::To, HeaderName::CallId] {
        m.headers.push_ref(b.headers.get(&name).unwrap());
    }
    let want = "ACK sip:bob@b.example SIP/2.0\r\nMax-Forwards: 70\r\n\
v: SIP/2.0/UDP a.example:5060;branch=z9hG4bKa1\r\nSubject: first\r\n  folded\r\n\
f: <sip:alice@a.example>;tag=ta\r\nTo: <sip:dave@d.example>\r\nCall-ID: call-b\r\n\r\n";
    assert_eq!(text(&m), want);
    // Edits to A and B (and dropping them) leave M as it was.
    let (mut a, mut b) = (a, b);
    a.headers.remove(&HeaderName::Via);
    a.headers.set(Header::new(
        HeaderName::From,
        "<sip:z@z.example>".to_owned(),
    ));
    b.headers.remove(&HeaderName::CallId);
    assert_eq!(text(&m), want);
    drop((a, b));
    assert_eq!(text(&m), want);
    assert_eq!(m.headers.value(&HeaderName::Subject), Some("first folded"));
    // Edits to M leave a fresh parse of A as it was.
    let a = Message::parse(A).unwrap();
    let mut m2 = Message::new_request(
        sip_msg::Method::Ack,
        sip_msg::Uri::parse("sip:bob@b.example").unwrap(),
    );
    for h in a.headers.iter() {
        m2.headers.push_ref(h);
    }
    assert_eq!(text(&m2), text(&a).replacen("INVITE", "ACK", 1));
    m2.headers.remove(&HeaderName::Subject);
    m2.headers
        .set(Header::new(HeaderName::CSeq, "1 ACK".to_owned()));
    assert_eq!(a.to_bytes(), A);
    assert!(text(&m2).contains("\r\ni: call-a\r\nCSeq: 1 ACK\r\nl: 0\r\n\r\n"));
}
