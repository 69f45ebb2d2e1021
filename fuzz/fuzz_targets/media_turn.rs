//! TURN: arbitrary bytes as a datagram from the TURN server into a client that is
//! allocating and into one that has an allocation with a bound channel (responses, Data
//! indications, ChannelData): errors or ignored, nothing may panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::stun::{Builder, Class, Message, attr};
use media::turn::{TurnClient, TurnConfig, long_term_key, method};

fuzz_target!(|data: &[u8]| {
    let server = "127.0.0.1:3478".parse().unwrap();
    let peer = "127.0.0.2:5000".parse().unwrap();
    let now = Instant::now();
    let cfg = TurnConfig {
        server,
        username: "u".into(),
        password: "p".into(),
    };
    let mut c = TurnClient::new(cfg, 1);
    c.allocate(now);
    let first = c.poll_transmit().expect("the Allocate");
    let _ = c.handle_datagram(now, data);
    // An allocation with a channel to `peer`, then the bytes again.
    let mut c = TurnClient::new(
        TurnConfig {
            server,
            username: "u".into(),
            password: "p".into(),
        },
        1,
    );
    c.allocate(now);
    let _ = c.poll_transmit();
    let m = Message::parse(&first).expect("our Allocate parses");
    let challenge = Builder::new(Class::Error, method::ALLOCATE, m.transaction)
        .error_code(401, "Unauthorized")
        .realm("r")
        .nonce(b"n")
        .fingerprint();
    let _ = c.handle_datagram(now, &challenge);
    let second = c.poll_transmit().expect("the Allocate with credentials");
    let m = Message::parse(&second).expect("parses");
    let ok = Builder::new(Class::Success, method::ALLOCATE, m.transaction)
        .xor_address(attr::XOR_RELAYED_ADDRESS, server)
        .integrity(&long_term_key("u", "r", "p"))
        .fingerprint();
    let _ = c.handle_datagram(now, &ok);
    c.bind_channel(now, peer);
    let _ = c.handle_datagram(now, data);
    let _ = c.send(peer, data);
    while c.poll_transmit().is_some() {}
    while c.poll_event().is_some() {}
});
