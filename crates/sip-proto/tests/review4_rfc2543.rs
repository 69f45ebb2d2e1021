//! RFC 3261 §17.2.3: a request whose top Via branch lacks the magic cookie `z9hG4bK` (or
//! has none: an RFC 2543 client) is matched to its server transaction by its Request-URI,
//! From tag, Call-ID, CSeq number and top Via, not by its branch alone (RFC 2543 clients
//! reuse one branch value, e.g. `branch=0`, for all their requests). ACK and CANCEL match
//! their INVITE the same way (the method aside). Bob's agent through the public API, on a
//! virtual clock.

use std::net::SocketAddr;
use std::time::Instant;

use sip_msg::{Host, Message, Uri};
use sip_proto::timer::TimerConfig;
use sip_proto::ua::{CallEvent, Outgoing, UaConfig, UaEvent, UserAgent};

const OLD: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5070);

fn bob() -> UserAgent {
    UserAgent::new(UaConfig {
        user: "bob".into(),
        domain: "example.test".into(),
        registrar_uri: Uri::parse("sip:example.test:5060").unwrap(),
        outbound_proxy: None,
        credentials: None,
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: 5064,
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: "review4".into(),
        seed: 2,
        use_100rel: false,
        session_timer: None,
        codecs: None,
    })
}

fn drain(ua: &mut UserAgent) -> (Vec<Outgoing>, Vec<UaEvent>) {
    let out = std::iter::from_fn(|| ua.poll_transmit()).collect();
    let ev = std::iter::from_fn(|| ua.poll_event()).collect();
    (out, ev)
}

/// A request of the old client: `via_params` after the sent-by (`;branch=0`, or nothing).
fn request(method: &str, via_params: &str, call_id: &str, seq: u32, cseq_method: &str) -> Message {
    let text = format!(
        "{method} sip:bob@127.0.0.1:5064 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070{via_params}\r\n\
Max-Forwards: 70\r\n\
From: <sip:old@example.test>;tag=o1\r\n\
To: <sip:bob@example.test>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {seq} {cseq_method}\r\n\
Contact: <sip:old@127.0.0.1:5070>\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(text.as_bytes()).unwrap()
}

/// The responses in `out`: (code, Call-ID, CSeq number and method).
fn responses(out: &[Outgoing]) -> Vec<(u16, String, String)> {
    out.iter()
        .map(|o| {
            let m = Message::parse(&o.bytes).unwrap();
            (
                m.status().unwrap(),
                m.call_id().unwrap().to_string(),
                m.headers
                    .value(&sip_msg::HeaderName::CSeq)
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn requests_reusing_one_branch_without_the_magic_cookie_are_each_answered() {
    let now = Instant::now();
    for via_params in [";branch=0", ""] {
        let mut ua = bob();
        for (call_id, seq) in [("c1", 1), ("c2", 1), ("c2", 2)] {
            ua.handle_message(
                now,
                request("OPTIONS", via_params, call_id, seq, "OPTIONS"),
                OLD,
            );
            let (out, ev) = drain(&mut ua);
            assert_eq!(
                responses(&out),
                [(200, call_id.to_owned(), format!("{seq} OPTIONS"))],
                "{via_params:?} {call_id} {seq}: {ev:?}"
            );
            assert!(!out[0].retransmission);
            // The same request again: the same response again.
            ua.handle_message(
                now,
                request("OPTIONS", via_params, call_id, seq, "OPTIONS"),
                OLD,
            );
            let (again, _) = drain(&mut ua);
            assert_eq!(again.len(), 1, "{again:?}");
            assert_eq!(again[0].bytes, out[0].bytes);
        }
    }
}

/// An old client's INVITE, CANCELed: the CANCEL matches the INVITE (200 to it, 487 to the
/// INVITE), and the ACK of the 487 is absorbed by the INVITE's transaction.
#[test]
fn an_old_clients_cancel_and_ack_match_its_invite() {
    let now = Instant::now();
    for via_params in [";branch=0", ""] {
        let mut ua = bob();
        ua.handle_message(now, request("INVITE", via_params, "ci", 7, "INVITE"), OLD);
        let (_, ev) = drain(&mut ua);
        let Some(UaEvent::Call(call, CallEvent::Incoming { .. })) = ev.first() else {
            panic!("{via_params:?}: no incoming call: {ev:?}");
        };
        ua.ring(now, *call);
        drain(&mut ua);
        ua.handle_message(now, request("CANCEL", via_params, "ci", 7, "CANCEL"), OLD);
        let (out, _) = drain(&mut ua);
        let mut got = responses(&out);
        got.sort();
        assert_eq!(
            got,
            [
                (200, "ci".to_owned(), "7 CANCEL".to_owned()),
                (487, "ci".to_owned(), "7 INVITE".to_owned())
            ],
            "{via_params:?}"
        );
        let mut ack = request("ACK", via_params, "ci", 7, "ACK");
        let to_tag = Message::parse(
            &out.iter()
                .find(|o| o.bytes.starts_with(b"SIP/2.0 487"))
                .unwrap()
                .bytes,
        )
        .unwrap()
        .headers
        .value(&sip_msg::HeaderName::To)
        .unwrap()
        .to_owned();
        ack.headers
            .set(sip_msg::Header::new(sip_msg::HeaderName::To, to_tag));
        ua.handle_message(now, ack, OLD);
        let (out, ev) = drain(&mut ua);
        assert!(out.is_empty(), "{out:?}");
        assert!(
            !ev.iter().any(|e| matches!(e, UaEvent::Ignored { .. })),
            "{via_params:?}: {ev:?}"
        );
        // The 487 is no longer retransmitted (the ACK reached its transaction).
        let later = now + std::time::Duration::from_secs(5);
        while let Some(t) = ua.poll_timeout().filter(|&t| t <= later) {
            ua.handle_timeout(t);
            let (out, _) = drain(&mut ua);
            assert!(out.is_empty(), "{via_params:?}: {out:?}");
        }
    }
}
