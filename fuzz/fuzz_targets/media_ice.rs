//! STUN and ICE: arbitrary bytes as a STUN message (parse, integrity check), as an
//! `a=candidate` value (parse, print, parse again: the same candidate), and as a datagram
//! into an ICE agent with a peer, before and after its description: nothing may panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::ice::{Candidate, Credentials, IceAgent, IceConfig, RemoteIce};
use media::stun::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let _ = m.check_integrity(b"password-of-agent-xxxxxx");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = Candidate::parse_sdp(text)
    {
        assert_eq!(Candidate::parse_sdp(&c.to_sdp()), Ok(c));
    }
    let creds = |n: u8| Credentials {
        ufrag: format!("ufr{n}"),
        pwd: format!("password-of-agent-{n}-xxxxxx"),
    };
    let from = "127.0.0.2:40001".parse().unwrap();
    let now = Instant::now();
    let mut agent = IceAgent::new(IceConfig::new(
        creds(0),
        vec![(1, "127.0.0.1:40001".parse().unwrap())],
        data.first().is_some_and(|b| b & 1 == 1),
        1,
    ));
    let _ = agent.handle_datagram(now, 1, from, data);
    agent.set_remote(
        now,
        RemoteIce {
            credentials: creds(1),
            candidates: vec![Candidate::host(1, from)],
            lite: false,
        },
    );
    let _ = agent.handle_datagram(now, 1, from, data);
    agent.handle_timeout(now + Duration::from_millis(50));
    while agent.poll_transmit().is_some() {}
    while agent.poll_event().is_some() {}
});
