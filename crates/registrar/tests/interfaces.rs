//! One registrar core serving two listeners (UDP and TCP) with one location service: a
//! phone on UDP calls a phone on TCP and back, on a virtual clock. Every message the core
//! sends must leave on the interface of the phone's transport, and every hop a phone picks
//! from its route set must name an interface of its own transport (RFC 5658 §4).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use registrar::{AuthMode, Flow, Registrar, RegistrarConfig};
use sip_msg::{HeaderName, Host, Message, Uri};
use sip_proto::ua::{CallEvent, CallState, Destination, UaEvent, UserAgent};

mod common;
use common::NOW_UNIX;

/// The interfaces: (transport, port), index = `Flow::iface`. Two are UDP (two listeners of
/// one transport, as `--listen udp:… --listen udp:…` on two addresses or ports).
const IFACES: [(&str, u16); 3] = [("UDP", 5060), ("TCP", 5061), ("UDP", 5062)];

fn iface_addr(iface: u8) -> SocketAddr {
    SocketAddr::new([127, 0, 0, 1].into(), IFACES[usize::from(iface)].1)
}

fn registrar() -> Registrar {
    let mut reg = Registrar::new(common::config(
        IFACES[0].0,
        IFACES[0].1,
        AuthMode::Ephemeral,
    ));
    let tcp = reg.add_interface(IFACES[1].0, Host::parse("127.0.0.1").unwrap(), IFACES[1].1);
    assert_eq!(tcp, Some(1));
    let udp2 = reg.add_interface(IFACES[2].0, Host::parse("127.0.0.1").unwrap(), IFACES[2].1);
    assert_eq!(udp2, Some(2));
    reg
}

fn ua(user: &str, port: u16, iface: u8) -> UserAgent {
    let (transport, reg_port) = IFACES[usize::from(iface)];
    common::phone(user, port, transport, reg_port, false)
}

struct Phone {
    ua: UserAgent,
    iface: u8,
    events: Vec<UaEvent>,
    /// Every message it received, as text.
    received: Vec<String>,
}

/// The registrar and the phones, wired by address; a phone reaches the registrar only on
/// the interface of its own transport.
struct Net {
    now: Instant,
    reg: Registrar,
    phones: HashMap<SocketAddr, Phone>,
}

impl Net {
    fn new() -> Self {
        Net {
            now: Instant::now(),
            reg: registrar(),
            phones: HashMap::new(),
        }
    }

    fn add(&mut self, user: &str, port: u16, iface: u8) -> SocketAddr {
        let addr = SocketAddr::new([127, 0, 0, 1].into(), port);
        let phone = Phone {
            ua: ua(user, port, iface),
            iface,
            events: Vec::new(),
            received: Vec::new(),
        };
        self.phones.insert(addr, phone);
        addr
    }

    fn ua(&mut self, a: SocketAddr) -> &mut UserAgent {
        &mut self.phones.get_mut(&a).unwrap().ua
    }

    /// The interface a phone sends to when it picks `to`: the one at that address, which must
    /// be of the phone's transport (a TCP phone cannot send a datagram, and vice versa).
    fn iface_at(phone: &Phone, to: SocketAddr) -> u8 {
        let iface = (0..IFACES.len() as u8)
            .find(|i| iface_addr(*i) == to)
            .unwrap_or_else(|| panic!("a phone sends to {to}, not the registrar"));
        assert_eq!(
            iface,
            phone.iface,
            "a phone on {} was sent to the {} interface",
            IFACES[usize::from(phone.iface)].0,
            IFACES[usize::from(iface)].0
        );
        iface
    }

    /// Delivers messages until the network is quiet (no timers are run).
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut to_reg: Vec<(Flow, Bytes)> = Vec::new();
            for (&addr, phone) in &mut self.phones {
                while let Some(o) = phone.ua.poll_transmit() {
                    let to = match o.destination {
                        Destination::Registrar | Destination::OutboundProxy => {
                            iface_addr(phone.iface)
                        }
                        Destination::Source(a) => a,
                        Destination::Uri(u) => {
                            let s = u.as_sip().unwrap();
                            format!("{}:{}", s.host, s.port.unwrap_or(5060))
                                .parse()
                                .unwrap()
                        }
                    };
                    let iface = Self::iface_at(phone, to);
                    to_reg.push((Flow { addr, iface }, o.bytes));
                }
                phone
                    .events
                    .extend(std::iter::from_fn(|| phone.ua.poll_event()));
            }
            let mut to_phones: Vec<(Flow, Bytes)> = Vec::new();
            while let Some(out) = self.reg.poll_transmit_flow() {
                to_phones.push(out);
            }
            if to_reg.is_empty() && to_phones.is_empty() {
                return;
            }
            for (from, bytes) in to_reg {
                let msg = Message::parse(&bytes).unwrap();
                self.reg.handle_message_on(self.now, NOW_UNIX, msg, from);
            }
            for (to, bytes) in to_phones {
                let phone = self
                    .phones
                    .get_mut(&to.addr)
                    .unwrap_or_else(|| panic!("the registrar sent to {}", to.addr));
                assert_eq!(
                    to.iface,
                    phone.iface,
                    "sent on the wrong interface: {}",
                    String::from_utf8_lossy(&bytes)
                );
                let msg = Message::parse(&bytes).unwrap();
                phone
                    .received
                    .push(String::from_utf8_lossy(&bytes).into_owned());
                phone.ua.handle_message(self.now, msg, iface_addr(to.iface));
            }
        }
        panic!("the network never settled");
    }

    fn phone(&self, a: SocketAddr) -> &Phone {
        &self.phones[&a]
    }
}

/// A call from `caller` to `callee` (both registered), answered; returns the caller's and
/// the callee's call ids.
fn call(
    net: &mut Net,
    caller: SocketAddr,
    callee: SocketAddr,
    callee_user: &str,
) -> (sip_proto::ua::CallId, sip_proto::ua::CallId) {
    let now = net.now;
    let ours = net.ua(caller).call(
        now,
        Uri::parse(&format!("sip:{callee_user}@sipmeter.test")).unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    net.settle();
    let theirs = net
        .phone(callee)
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            UaEvent::Call(id, CallEvent::Incoming { .. }) => Some(*id),
            _ => None,
        })
        .expect("the callee is called");
    net.ua(callee)
        .answer(now, theirs, Some(Bytes::from_static(b"v=0\r\n")));
    net.settle();
    assert_eq!(net.ua(caller).call_state(ours), Some(CallState::Confirmed));
    assert_eq!(
        net.ua(callee).call_state(theirs),
        Some(CallState::Confirmed)
    );
    (ours, theirs)
}

/// Calls that ended by the other side's BYE (`by_remote`), or by ours answered 200.
fn ended(phone: &Phone, by_remote: bool) -> usize {
    phone
        .events
        .iter()
        .filter(|e| match e {
            UaEvent::Call(_, CallEvent::Ended { by_remote: b, code }) => {
                *b == by_remote && (by_remote || *code == 200)
            }
            _ => false,
        })
        .count()
}

#[test]
fn a_udp_phone_and_a_tcp_phone_call_each_other_through_one_registrar() {
    let mut net = Net::new();
    let alice = net.add("alice", 5071, 0);
    let bob = net.add("bob", 5072, 1);
    let now = net.now;
    net.ua(alice).register(now);
    net.ua(bob).register(now);
    net.settle();
    for a in [alice, bob] {
        assert!(
            net.phone(a)
                .events
                .iter()
                .any(|e| matches!(e, UaEvent::Registered { .. })),
            "{:?}",
            net.phone(a).events
        );
    }
    let bound: Vec<u8> = ["alice", "bob"]
        .iter()
        .map(|u| net.reg.bindings(u)[0].iface)
        .collect();
    assert_eq!(bound, [0, 1], "each binding remembers its interface");

    // alice (UDP) calls bob (TCP); alice hangs up.
    let (a_call, _) = call(&mut net, alice, bob, "bob");
    let invite = net
        .phone(bob)
        .received
        .iter()
        .find(|m| m.starts_with("INVITE"))
        .unwrap();
    let invite = Message::parse(invite.as_bytes()).unwrap();
    let rr: Vec<&str> = invite
        .headers
        .get_all(&HeaderName::RecordRoute)
        .map(|h| h.value())
        .collect();
    // RFC 5658 §4: the outgoing (TCP) interface's entry above the incoming (UDP) one's.
    assert_eq!(
        rr,
        ["<sip:127.0.0.1:5061;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>"]
    );
    let top_via = invite.headers.get(&HeaderName::Via).unwrap().value();
    assert!(
        top_via.starts_with("SIP/2.0/TCP 127.0.0.1:5061;branch="),
        "our Via names the interface the INVITE leaves on: {top_via}"
    );
    net.ua(alice).hangup(now, a_call);
    net.settle();
    assert_eq!(ended(net.phone(bob), true), 1);
    assert_eq!(ended(net.phone(alice), false), 1);
    let bye = net
        .phone(bob)
        .received
        .iter()
        .find(|m| m.starts_with("BYE"))
        .unwrap();
    let bye = Message::parse(bye.as_bytes()).unwrap();
    assert!(
        bye.headers.get(&HeaderName::Route).is_none(),
        "both of our Route entries are removed: {bye:?}"
    );

    // bob (TCP) calls alice (UDP); bob hangs up, then alice's re-registration is untouched.
    let (b_call, _) = call(&mut net, bob, alice, "alice");
    let invite = net
        .phone(alice)
        .received
        .iter()
        .rfind(|m| m.starts_with("INVITE"))
        .unwrap();
    assert!(
        invite.contains(
            "Record-Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5061;transport=tcp;lr>\r\n"
        ),
        "{invite}"
    );
    net.ua(bob).hangup(now, b_call);
    net.settle();
    assert_eq!(ended(net.phone(alice), true), 1);
    assert_eq!(ended(net.phone(bob), false), 1);
    assert_eq!(net.reg.stats().dropped, 0);
}

/// A phone on the second UDP listener is answered there: a response goes back on the
/// interface its request came in on (RFC 3261 §18.2.2, RFC 3581 §4), not on the first
/// listener of its Via's transport.
#[test]
fn a_phone_on_the_second_listener_of_a_transport_gets_its_responses_there() {
    let mut net = Net::new();
    let alice = net.add("alice", 5071, 0);
    let bob = net.add("bob", 5072, 1);
    let carol = net.add("carol", 5073, 2);
    let now = net.now;
    for a in [alice, bob, carol] {
        net.ua(a).register(now);
    }
    net.settle();
    assert_eq!(net.reg.bindings("carol")[0].iface, 2);
    // carol (second UDP) calls bob (TCP), then alice (first UDP); she hangs up both.
    for (callee, user) in [(bob, "bob"), (alice, "alice")] {
        let (c_call, _) = call(&mut net, carol, callee, user);
        net.ua(carol).hangup(now, c_call);
        net.settle();
    }
    assert_eq!(ended(net.phone(carol), false), 2);
    assert_eq!(net.reg.stats().dropped, 0);
}

/// A registrar with no authentication on the interfaces `ifaces` (host, transport, port),
/// the first the config's.
fn open_registrar(ifaces: &[(&str, &str, u16)]) -> Registrar {
    let (host, transport, port) = ifaces[0];
    let mut reg = Registrar::new(RegistrarConfig {
        host: Host::parse(host).unwrap(),
        ..common::config(transport, port, AuthMode::Open)
    });
    for &(host, transport, port) in &ifaces[1..] {
        reg.add_interface(transport, Host::parse(host).unwrap(), port)
            .unwrap();
    }
    reg
}

/// Hands `text` to the registrar as received from `from` and returns what it sends.
fn exchange(reg: &mut Registrar, from: Flow, text: &str) -> Vec<(Flow, String)> {
    let msg = Message::parse(text.as_bytes()).unwrap();
    reg.handle_message_on(Instant::now(), NOW_UNIX, msg, from);
    std::iter::from_fn(|| reg.poll_transmit_flow())
        .map(|(to, b)| (to, String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// alice's initial INVITE to `uri`, sent over `transport`, in dialog `call_id`.
fn alice_invite(transport: &str, uri: &str, call_id: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5071;branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@sipmeter.test>;tag=a\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:5071>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// `addr` on interface `iface`.
fn flow(addr: &str, iface: u8) -> Flow {
    Flow {
        addr: addr.parse().unwrap(),
        iface,
    }
}

/// The one message in `sent`, checked to go to `to`.
fn only_to(sent: &[(Flow, String)], to: Flow) -> &str {
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, to, "{}", sent[0].1);
    &sent[0].1
}

/// A UDP phone calls a TCP peer that did not register here (its Contact names no
/// transport, as SIPp's stock UAC's does): the dialog is double record-routed, and the
/// UDP side's BYE, whose route set names our TCP interface last, goes out on that
/// interface, where the peer is, and not as a datagram to its TCP port.
#[test]
fn an_in_dialog_request_to_an_unregistered_peer_leaves_on_the_interface_our_route_named() {
    let mut reg = open_registrar(&[("127.0.0.1", "UDP", 5060), ("127.0.0.1", "TCP", 5061)]);
    let alice = flow("127.0.0.1:5071", 0);
    let dave = flow("127.0.0.1:5090", 1);
    let sent = exchange(
        &mut reg,
        alice,
        &alice_invite("UDP", "sip:dave@127.0.0.1:5090;transport=tcp", "c1"),
    );
    let text = only_to(&sent, dave);
    assert!(
        text.contains(
            "Record-Route: <sip:127.0.0.1:5061;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>\r\n"
        ),
        "{text}"
    );
    let sent = exchange(
        &mut reg,
        alice,
        "BYE sip:dave@127.0.0.1:5090 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKa2;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5061;transport=tcp;lr>\r\n\
         From: <sip:alice@sipmeter.test>;tag=a\r\n\
         To: <sip:dave@127.0.0.1:5090>;tag=d\r\n\
         Call-ID: c1\r\n\
         CSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let text = only_to(&sent, dave);
    assert!(text.contains("Via: SIP/2.0/TCP 127.0.0.1:5061;"), "{text}");
}

/// IPv4 and IPv6 listeners of one transport: a request to a peer named by an IPv6 address
/// leaves on the IPv6 listener (a datagram to an IPv6 address cannot leave on an IPv4
/// socket), and our Via names that listener.
#[test]
fn a_next_hop_named_by_an_ipv6_address_leaves_on_the_ipv6_listener() {
    let mut reg = open_registrar(&[("127.0.0.1", "UDP", 5060), ("[::1]", "UDP", 5060)]);
    let alice = flow("127.0.0.1:5071", 0);
    let sent = exchange(
        &mut reg,
        alice,
        &alice_invite("UDP", "sip:erin@[::1]:5092", "c2"),
    );
    let text = only_to(&sent, flow("[::1]:5092", 1));
    assert!(text.contains("Via: SIP/2.0/UDP [::1]:5060;"), "{text}");
}

/// A `sips:` URI with `transport=tcp` names TLS (RFC 3261 §26.2.2, RFC 5630 §3.1.3: the
/// `transport=tls` form is deprecated), and with `transport=ws` secure WebSocket (RFC 7118
/// §5.2): such a next hop leaves on the TLS (WSS) listener, not on the plain one.
#[test]
fn a_sips_uri_with_transport_tcp_or_ws_leaves_on_the_secure_listener() {
    let mut reg = open_registrar(&[
        ("127.0.0.1", "TCP", 5060),
        ("127.0.0.1", "TLS", 5061),
        ("127.0.0.1", "WS", 8080),
        ("127.0.0.1", "WSS", 8443),
    ]);
    let alice = flow("127.0.0.1:5071", 1);
    for (n, (transport, iface)) in [("tcp", 1), ("ws", 3)].into_iter().enumerate() {
        let sent = exchange(
            &mut reg,
            alice,
            &alice_invite(
                "TLS",
                &format!("sips:erin@127.0.0.1:5093;transport={transport}"),
                &format!("s{n}"),
            ),
        );
        only_to(&sent, flow("127.0.0.1:5093", iface));
    }
}

/// RFC 3261 §18.2.2: a response to a request that came over a stream goes back on that
/// connection, whose port is the caller's source port, not its Via's sent-by port (a TCP
/// caller that did not ask for `rport`, as many do, listens on the Via port but sends from
/// an ephemeral one).
#[test]
fn a_response_to_a_tcp_caller_without_rport_goes_back_on_its_connection() {
    let mut reg = open_registrar(&[("127.0.0.1", "UDP", 5060), ("127.0.0.1", "TCP", 5061)]);
    let alice = flow("127.0.0.1:40001", 1);
    let erin = flow("127.0.0.1:5092", 0);
    let invite = alice_invite("TCP", "sip:erin@127.0.0.1:5092", "t1").replace(";rport\r\n", "\r\n");
    let sent = exchange(&mut reg, alice, &invite);
    let forwarded = Message::parse(only_to(&sent, erin).as_bytes()).unwrap();
    // erin rings: the 180 echoes the forwarded INVITE's Vias.
    let mut ringing = Message::response_to(&forwarded, 180, "Ringing", Some("e"));
    ringing.set_body("", Bytes::new());
    let sent = exchange(
        &mut reg,
        erin,
        &String::from_utf8_lossy(&ringing.to_bytes()),
    );
    let text = only_to(&sent, alice);
    assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"), "{text}");
}
