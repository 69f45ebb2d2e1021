//! Endpoints and the registrar in one process on a virtual clock: REGISTER with digest
//! authentication, a call routed through the proxy, and the refusals (403, 404, 401, 480).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use registrar::{AccountStatus, Accounts, AuthMode, Registrar, RegistrarConfig};
use sip_msg::{Host, Message, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{CallEvent, CallState, Destination, UaConfig, UaEvent, UserAgent};

const NOW_UNIX: u64 = 1_900_000_000;
const SECRET: &[u8] = b"test secret";

fn reg_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

fn registrar(auth: AuthMode) -> Registrar {
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth,
        secret: SECRET.to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

fn ua(user: &str, port: u16, creds: Option<Credentials>) -> UserAgent {
    UserAgent::new(UaConfig {
        user: user.into(),
        domain: "sipmeter.test".into(),
        registrar_uri: Uri::parse("sip:sipmeter.test:5060;transport=udp").unwrap(),
        outbound_proxy: None,
        credentials: creds,
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: port,
        transport: "UDP".into(),
        reliable: false,
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: "sipmeter-test".into(),
        seed: u64::from(port),
        use_100rel: false,
        session_timer: None,
        codecs: None,
    })
}

/// The registrar and some endpoints wired by address on a virtual clock.
struct Net {
    now: Instant,
    reg: Registrar,
    uas: HashMap<SocketAddr, UserAgent>,
    events: HashMap<SocketAddr, Vec<UaEvent>>,
    log: Vec<(SocketAddr, SocketAddr, String)>,
}

impl Net {
    fn new(reg: Registrar) -> Self {
        Self {
            now: Instant::now(),
            reg,
            uas: HashMap::new(),
            events: HashMap::new(),
            log: Vec::new(),
        }
    }

    fn add(&mut self, ua: UserAgent) -> SocketAddr {
        let addr: SocketAddr = format!("127.0.0.1:{}", ua.local_port()).parse().unwrap();
        self.uas.insert(addr, ua);
        addr
    }

    fn ua(&mut self, a: SocketAddr) -> &mut UserAgent {
        self.uas.get_mut(&a).unwrap()
    }

    /// Delivers messages until the network is quiet (no timers are run).
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut packets: Vec<(SocketAddr, SocketAddr, Bytes)> = Vec::new();
            for (&addr, ua) in &mut self.uas {
                while let Some(o) = ua.poll_transmit() {
                    let to = match o.destination {
                        Destination::Registrar | Destination::OutboundProxy => reg_addr(),
                        Destination::Source(a) => a,
                        Destination::Uri(u) => {
                            let s = u.as_sip().unwrap();
                            format!("{}:{}", s.host, s.port.unwrap_or(5060))
                                .parse()
                                .unwrap()
                        }
                    };
                    packets.push((addr, to, o.bytes));
                }
                self.events
                    .entry(addr)
                    .or_default()
                    .extend(std::iter::from_fn(|| ua.poll_event()));
            }
            while let Some((to, bytes)) = self.reg.poll_transmit() {
                packets.push((reg_addr(), to, bytes));
            }
            if packets.is_empty() {
                return;
            }
            for (from, to, bytes) in packets {
                let msg = Message::parse(&bytes).unwrap();
                self.log.push((from, to, msg.summary()));
                if to == reg_addr() {
                    self.reg.handle_message(self.now, NOW_UNIX, msg, from);
                } else if let Some(ua) = self.uas.get_mut(&to) {
                    ua.handle_message(self.now, msg, from);
                }
            }
        }
        panic!("the network never settled: {:?}", self.log);
    }

    fn events(&self, a: SocketAddr) -> &[UaEvent] {
        self.events.get(&a).map_or(&[], Vec::as_slice)
    }
}

fn ephemeral(id: &str) -> Credentials {
    let (u, p) = sip_auth::ephemeral::issue(SECRET, id, NOW_UNIX + 3600);
    Credentials::new(&u, &p)
}

#[test]
fn ephemeral_endpoints_register_and_call_through_the_proxy() {
    let mut net = Net::new(registrar(AuthMode::Ephemeral));
    let alice = net.add(ua("alice", 5071, Some(ephemeral("alice"))));
    let bob = net.add(ua("bob", 5072, Some(ephemeral("bob"))));
    let now = net.now;
    net.ua(alice).register(now);
    net.ua(bob).register(now);
    net.settle();
    for a in [alice, bob] {
        assert!(
            net.events(a)
                .iter()
                .any(|e| matches!(e, UaEvent::Registered { .. })),
            "{:?}",
            net.events(a)
        );
    }
    assert_eq!(net.reg.bindings("bob").len(), 1);

    let call = net.ua(alice).call(
        now,
        Uri::parse("sip:bob@sipmeter.test").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    net.settle();
    let incoming = net.events(bob).iter().find_map(|e| match e {
        UaEvent::Call(id, CallEvent::Incoming { .. }) => Some(*id),
        _ => None,
    });
    let bob_call = incoming.expect("bob is called");
    net.ua(bob)
        .answer(now, bob_call, Some(Bytes::from_static(b"v=0\r\n")));
    net.settle();
    assert_eq!(net.ua(alice).call_state(call), Some(CallState::Confirmed));
    assert_eq!(net.ua(bob).call_state(bob_call), Some(CallState::Confirmed));
    net.ua(bob).hangup(now, bob_call);
    net.settle();
    assert!(net.events(alice).iter().any(|e| matches!(
        e,
        UaEvent::Call(
            _,
            CallEvent::Ended {
                by_remote: true,
                ..
            }
        )
    )));
    assert!(net.events(bob).iter().any(|e| matches!(
        e,
        UaEvent::Call(
            _,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )
    )));

    // The INVITE was challenged (407) and record-routed; BYE went through the proxy too.
    let via_proxy: Vec<&str> = net
        .log
        .iter()
        .filter(|(f, _, _)| *f == reg_addr())
        .map(|(_, _, s)| s.as_str())
        .collect();
    assert!(
        via_proxy.contains(&"407 Proxy Authentication Required (INVITE)"),
        "{via_proxy:?}"
    );
    assert!(
        via_proxy
            .iter()
            .any(|s| s.starts_with("INVITE sip:bob@127.0.0.1:5072")),
        "{via_proxy:?}"
    );
    assert!(
        via_proxy
            .iter()
            .any(|s| s.starts_with("BYE sip:alice@127.0.0.1:5071")),
        "{via_proxy:?}"
    );
    assert!(via_proxy.contains(&"200 OK (BYE)"));
    assert_eq!(
        net.reg.stats().challenged,
        3,
        "two REGISTERs and one INVITE"
    );
}

#[test]
fn static_accounts_refusals() {
    let mut accounts = Accounts::default();
    accounts
        .0
        .insert("1001".into(), ("right".into(), AccountStatus::Enabled));
    accounts
        .0
        .insert("1002".into(), ("right".into(), AccountStatus::Disabled));
    accounts
        .0
        .insert("1003".into(), ("right".into(), AccountStatus::Enabled));
    let mut net = Net::new(registrar(AuthMode::Static(accounts)));
    let wrong = net.add(ua("1001", 5081, Some(Credentials::new("1001", "wrong"))));
    let disabled = net.add(ua("1002", 5082, Some(Credentials::new("1002", "right"))));
    let unknown = net.add(ua("1009", 5083, Some(Credentials::new("1009", "x"))));
    let caller = net.add(ua("1001", 5084, Some(Credentials::new("1001", "right"))));
    let now = net.now;
    for a in [wrong, disabled, unknown, caller] {
        net.ua(a).register(now);
    }
    net.settle();
    let failed = |net: &Net, a| {
        net.events(a).iter().find_map(|e| match e {
            UaEvent::RegistrationFailed { code, .. } => Some(*code),
            _ => None,
        })
    };
    assert_eq!(failed(&net, wrong), Some(401));
    assert_eq!(failed(&net, disabled), Some(403));
    assert_eq!(failed(&net, unknown), Some(404));
    // 1003 exists but is not registered: 480; nobody at all: 404.
    let c1 = net
        .ua(caller)
        .call(now, Uri::parse("sip:1003@sipmeter.test").unwrap(), None);
    let c2 = net
        .ua(caller)
        .call(now, Uri::parse("sip:7777@sipmeter.test").unwrap(), None);
    net.settle();
    let codes: Vec<(u16, bool)> = net
        .events(caller)
        .iter()
        .filter_map(|e| match e {
            UaEvent::Call(id, CallEvent::Failed { code, .. }) => Some((*code, *id == c1)),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [(480, true), (404, false)]);
    let _ = c2;
}

#[test]
fn registration_expires_and_refresh_keeps_it() {
    let mut net = Net::new(registrar(AuthMode::Open));
    let a = net.add(ua("alice", 5091, None));
    let now = net.now;
    net.ua(a).register(now);
    net.settle();
    assert_eq!(net.reg.bindings("alice").len(), 1);
    net.reg.handle_timeout(now + Duration::from_secs(301));
    assert!(
        net.reg.bindings("alice").is_empty(),
        "the binding lapses after its 300 s"
    );
}
