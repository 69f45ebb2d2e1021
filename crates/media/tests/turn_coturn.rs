//! media::turn against a real TURN server: coturn (Debian `coturn`) on loopback, started per
//! test. The client is driven over a real UDP socket; a plain UDP socket is the peer.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media::turn::{TurnClient, TurnConfig, TurnError, TurnEvent, TurnState};
use testpeers::{Coturn, CoturnConfig, available};

/// Generous: every step is one loopback round trip; only a broken server takes this long.
const DEADLINE: Duration = Duration::from_secs(20);

struct Driver {
    sock: UdpSocket,
    turn: TurnClient,
    events: Vec<TurnEvent>,
    received: Vec<(SocketAddr, Vec<u8>)>,
}

impl Driver {
    fn new(server: SocketAddr, user: &str, password: &str, seed: u64) -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let turn = TurnClient::new(
            TurnConfig {
                server,
                username: user.into(),
                password: password.into(),
            },
            seed,
        );
        Driver {
            sock,
            turn,
            events: Vec::new(),
            received: Vec::new(),
        }
    }

    fn flush(&mut self) {
        while let Some(d) = self.turn.poll_transmit() {
            self.sock.send_to(&d, self.turn.server()).expect("send");
        }
        self.events
            .extend(std::iter::from_fn(|| self.turn.poll_event()));
    }

    /// Runs the client until `done` holds (checked after every input), or panics at the
    /// deadline with what happened.
    fn until(&mut self, what: &str, done: impl Fn(&Driver) -> bool) {
        let end = Instant::now() + DEADLINE;
        let mut buf = [0u8; 2048];
        loop {
            self.flush();
            if done(self) {
                return;
            }
            let now = Instant::now();
            assert!(
                now < end,
                "{what}: not within {DEADLINE:?}; events {:?}",
                self.events
            );
            let wait = self
                .turn
                .poll_timeout()
                .map_or(Duration::from_millis(50), |t| {
                    t.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    assert_eq!(from, self.turn.server(), "only the server talks to us");
                    let got = self
                        .turn
                        .handle_datagram(Instant::now(), &buf[..n])
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    if let Some((peer, data)) = got {
                        self.received.push((peer, data.to_vec()));
                    }
                }
                Err(_) => self.turn.handle_timeout(Instant::now()),
            }
        }
    }

    fn allocate(&mut self) -> SocketAddr {
        self.turn.allocate(Instant::now());
        self.until("allocate", |d| d.turn.state() != TurnState::Allocating);
        self.turn
            .relayed()
            .unwrap_or_else(|| panic!("no allocation: {:?}", self.events))
    }
}

fn coturn(config: &CoturnConfig) -> Option<Coturn> {
    if !available("turnserver", "coturn") {
        return None;
    }
    Some(Coturn::start(config).unwrap_or_else(|e| panic!("{e}")))
}

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("the relayed datagram");
    (buf[..n].to_vec(), from)
}

#[test]
fn coturn_allocates_and_relays_both_ways_by_indication_and_by_channel() {
    let Some(server) = coturn(&CoturnConfig::default()) else {
        return;
    };
    let mut c = Driver::new(server.addr(), "u", "p", 1);
    let relayed = c.allocate();
    assert_eq!(relayed.ip(), server.addr().ip(), "relayed on --relay-ip");
    assert!(matches!(c.events[0], TurnEvent::Challenged { ref realm } if realm == "sipmeter.test"));
    assert!(matches!(
        c.events[1],
        TurnEvent::Allocated { mapped: Some(m), .. } if m == c.sock.local_addr().expect("addr")
    ));

    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let peer_addr = peer.local_addr().expect("addr");
    c.turn.create_permission(Instant::now(), peer_addr);
    c.until("permission", |d| d.turn.has_permission(peer_addr));

    // Send indication → the peer, from the relayed address.
    let d = c.turn.send(peer_addr, b"by indication").expect("allocated");
    c.sock.send_to(&d, server.addr()).expect("send");
    assert_eq!(recv(&peer), (b"by indication".to_vec(), relayed));
    // The peer → a Data indication.
    peer.send_to(b"back by indication", relayed).expect("send");
    c.until("data indication", |d| !d.received.is_empty());
    assert_eq!(
        c.received.remove(0),
        (peer_addr, b"back by indication".to_vec())
    );

    // ChannelBind, then ChannelData both ways.
    let channel = c
        .turn
        .bind_channel(Instant::now(), peer_addr)
        .expect("a channel");
    c.until("channel", |d| d.turn.channel(peer_addr).is_some());
    let d = c.turn.send(peer_addr, b"by channel").expect("allocated");
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), channel, "ChannelData");
    c.sock.send_to(&d, server.addr()).expect("send");
    assert_eq!(recv(&peer), (b"by channel".to_vec(), relayed));
    peer.send_to(b"back by channel", relayed).expect("send");
    c.until("channel data", |d| !d.received.is_empty());
    assert_eq!(
        c.received.remove(0),
        (peer_addr, b"back by channel".to_vec())
    );

    c.turn.close(Instant::now());
    c.until("release", |d| d.turn.state() == TurnState::Closed);
    assert_eq!(c.events.last(), Some(&TurnEvent::Closed));
    // coturn's own account of it.
    let log = server.log();
    for step in [
        "incoming packet ALLOCATE processed, success",
        "incoming packet CREATE_PERMISSION processed, success",
        "incoming packet CHANNEL_BIND processed, success",
        "refreshed, realm=<sipmeter.test>, username=<u>, lifetime=0",
    ] {
        assert!(log.contains(step), "{step:?} not in coturn's log:\n{log}");
    }
}

#[test]
fn coturn_refuses_a_wrong_password_with_401() {
    let Some(server) = coturn(&CoturnConfig::default()) else {
        return;
    };
    let mut c = Driver::new(server.addr(), "u", "wrong", 2);
    c.turn.allocate(Instant::now());
    c.until("401", |d| d.turn.state() != TurnState::Allocating);
    assert_eq!(c.turn.error(), Some(&TurnError::Unauthorized("u".into())));
    assert!(
        c.turn
            .error()
            .expect("error")
            .to_string()
            .contains("TURN 401")
    );
}

#[test]
fn coturn_quota_gives_486_to_the_second_allocation() {
    let Some(server) = coturn(&CoturnConfig {
        user_quota: 1,
        ..Default::default()
    }) else {
        return;
    };
    let mut first = Driver::new(server.addr(), "u", "p", 3);
    first.allocate();
    let mut second = Driver::new(server.addr(), "u", "p", 4);
    second.turn.allocate(Instant::now());
    second.until("486", |d| d.turn.state() != TurnState::Allocating);
    assert_eq!(second.turn.error(), Some(&TurnError::QuotaReached));
}

#[test]
fn coturn_stale_nonce_is_retried() {
    let Some(server) = coturn(&CoturnConfig {
        stale_nonce: 1,
        ..Default::default()
    }) else {
        return;
    };
    let mut c = Driver::new(server.addr(), "u", "p", 5);
    c.allocate();
    // The nonce lives 1 s: a request after that gets 438, retried with the new nonce.
    std::thread::sleep(Duration::from_millis(2100));
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    c.turn.create_permission(Instant::now(), peer);
    c.until("permission", |d| {
        d.turn.has_permission(peer) || d.turn.state() == TurnState::Failed
    });
    assert!(c.events.contains(&TurnEvent::StaleNonce), "{:?}", c.events);
    assert!(c.turn.has_permission(peer));
}

/// Two relay-only ICE agents (`iceTransportPolicy: "relay"`), each with its own coturn
/// allocation: checks go through coturn both ways (Send indications, then ChannelData once
/// the channel to the peer's relayed address is bound), both select the relayed pair, and
/// media sent on it arrives through the relay.
#[test]
fn two_relay_only_ice_agents_connect_through_coturn() {
    use media::ice::{CandidateType, Credentials, IceAgent, IceConfig, IceState, RemoteIce};
    let Some(server) = coturn(&CoturnConfig::default()) else {
        return;
    };
    let mut sides: Vec<Driver> = (0..2)
        .map(|i| Driver::new(server.addr(), "u", "p", 10 + i))
        .collect();
    let relays: Vec<SocketAddr> = sides.iter_mut().map(Driver::allocate).collect();
    let mut agents: Vec<IceAgent> = (0..2)
        .map(|i| {
            let creds = Credentials {
                ufrag: format!("ufr{i}"),
                pwd: format!("password-of-agent-{i}-xxxxxx"),
            };
            let host = sides[i].sock.local_addr().expect("addr");
            let mapped = sides[i].turn.mapped().expect("XOR-MAPPED-ADDRESS");
            let mut cfg = IceConfig::new(creds, vec![(1, host)], i == 0, i as u64);
            cfg.relay = vec![(1, relays[i], mapped)];
            cfg.relay_only = true;
            IceAgent::new(cfg)
        })
        .collect();
    let remotes: Vec<RemoteIce> = agents
        .iter()
        .map(|a| RemoteIce {
            credentials: a.credentials().clone(),
            candidates: a.local_candidates().to_vec(),
            lite: false,
        })
        .collect();
    let now = Instant::now();
    for i in 0..2 {
        agents[i].set_remote(now, remotes[1 - i].clone());
        // RFC 8656 §10: the peer's relayed address may send to us once permitted; the
        // channel carries the checks once bound.
        sides[i].turn.create_permission(now, relays[1 - i]);
        sides[i].turn.bind_channel(now, relays[1 - i]);
    }
    let end = Instant::now() + DEADLINE;
    let mut buf = [0u8; 2048];
    let mut media_got = [false; 2];
    loop {
        let now = Instant::now();
        assert!(
            now < end,
            "not connected: {:?} {:?}",
            agents[0].state(),
            agents[1].state()
        );
        for i in 0..2 {
            if agents[i].poll_timeout().is_some_and(|t| t <= now) {
                agents[i].handle_timeout(now);
            }
            while let Some(t) = agents[i].poll_transmit() {
                assert_eq!(t.local, relays[i], "relay only: through the allocation");
                if let Some(d) = sides[i].turn.send(t.to, &t.bytes) {
                    sides[i].sock.send_to(&d, server.addr()).expect("send");
                }
            }
            if sides[i].turn.poll_timeout().is_some_and(|t| t <= now) {
                sides[i].turn.handle_timeout(now);
            }
            sides[i].flush();
            sides[i]
                .sock
                .set_read_timeout(Some(Duration::from_millis(5)))
                .expect("timeout");
            while let Ok((n, _)) = sides[i].sock.recv_from(&mut buf) {
                let got = sides[i]
                    .turn
                    .handle_datagram(Instant::now(), &buf[..n])
                    .expect("readable");
                if let Some((peer, data)) = got {
                    if media::stun::is_stun(data) {
                        agents[i]
                            .handle_relayed(Instant::now(), relays[i], peer, data)
                            .expect("STUN");
                    } else {
                        assert_eq!((peer, data), (relays[1 - i], &b"\x80media"[..]));
                        media_got[i] = true;
                    }
                }
                sides[i].flush();
            }
        }
        let connected = agents.iter().all(|a| a.state() == IceState::Connected);
        if connected {
            // Media on the selected pair, over the bound channel.
            for i in 0..2 {
                let (to, kind) = agents[i].selected(1).expect("selected");
                assert_eq!((to, kind), (relays[1 - i], CandidateType::Relayed));
                assert_eq!(
                    agents[i].selected_local(1),
                    Some((relays[i], CandidateType::Relayed))
                );
                if !media_got[1 - i] && sides[i].turn.channel(to).is_some() {
                    let d = sides[i].turn.send(to, b"\x80media").expect("allocated");
                    assert!((0x40..=0x4f).contains(&d[0]), "ChannelData");
                    sides[i].sock.send_to(&d, server.addr()).expect("send");
                }
            }
            if media_got == [true, true] {
                break;
            }
        }
    }
    for s in &mut sides {
        s.turn.close(Instant::now());
        s.until("release", |d| d.turn.state() == TurnState::Closed);
    }
}

/// coturn answers a plain STUN Binding (RFC 8489) on the same port: on loopback the
/// server-reflexive address is the host address itself, which the agent drops (RFC 8445
/// §5.1.3) rather than offering it twice.
#[test]
fn coturn_srflx_on_loopback_equals_host_and_is_dropped() {
    use media::ice::{CandidateType, Credentials, IceAgent, IceConfig};
    use media::stun::{BINDING, Builder, Class, Message, TransactionId};
    let Some(server) = coturn(&CoturnConfig::default()) else {
        return;
    };
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let host = sock.local_addr().expect("addr");
    let req = Builder::new(Class::Request, BINDING, TransactionId([7; 12])).fingerprint();
    sock.send_to(&req, server.addr()).expect("send");
    let (raw, from) = recv(&sock);
    assert_eq!(from, server.addr());
    let m = Message::parse(&raw).expect("a STUN response");
    assert_eq!(m.class, Class::Success);
    let srflx = m.xor_mapped_address.expect("XOR-MAPPED-ADDRESS");
    assert_eq!(srflx, host, "no NAT on loopback");
    let creds = Credentials {
        ufrag: "ufr0".into(),
        pwd: "password-of-agent-0-xxxxxx".into(),
    };
    let mut cfg = IceConfig::new(creds, vec![(1, host)], true, 1);
    cfg.srflx = vec![(1, srflx, host)];
    let agent = IceAgent::new(cfg);
    assert_eq!(agent.dropped_srflx(), [srflx]);
    let kinds: Vec<_> = agent.local_candidates().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [CandidateType::Host]);
}
