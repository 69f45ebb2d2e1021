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
