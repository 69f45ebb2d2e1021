//! SDP: parse arbitrary bytes, print and re-parse (the same description), and run both
//! sides of offer/answer on whatever parsed: nothing may panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use media::sdp::{self, Codec, Direction, LocalMedia, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let printed = sd.to_string();
    let again = SessionDescription::parse(printed.as_bytes()).expect("printed sdp parses again");
    assert_eq!(again.media.len(), sd.media.len());
    let local = LocalMedia {
        codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus],
        telephone_event: true,
        ptime: 20,
        direction: Direction::SendRecv,
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 40000,
        rtcp_mux: true,
        session_id: 1,
        session_version: 1,
        // Optional SDES: a=crypto lines are parsed and picked from, plain offers still answered.
        srtp: sdp::Sdes::generate(false, &media::srtp::Suite::ALL, |b: &mut [u8]| {
            b.fill(1);
            Ok::<(), ()>(())
        })
        .ok(),
    };
    if let Ok((answer, _)) = sdp::answer_offer(&sd, &local) {
        let _ = SessionDescription::parse(answer.to_string().as_bytes()).expect("answer parses");
    }
    let _ = sdp::apply_answer(&local, &sd);
});
