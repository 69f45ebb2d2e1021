//! Runs the bench's workload a fixed number of times, for instruction-level profiling:
//! `valgrind --tool=callgrind target/release/examples/parse_loop typed 10000`
//! (modes: `parse`, `typed`, `validate`). Counts are deterministic, unlike wall-clock time.

use std::hint::black_box;

use sip_msg::Message;
use sip_msg::typed::{Contact, Via};

const INVITE: &[u8] = b"INVITE sip:1002@pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK6c2f8a9e1b7d4;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:sbc.example.com:5060;lr>\r\n\
From: \"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60\r\n\
To: <sip:1002@pbx.example.com>\r\n\
Call-ID: 5b1e9d0c7a6f4e23b8c1d2e3f4a5b6c7@192.0.2.10\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:1001@192.0.2.10:5062;transport=udp>\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
User-Agent: sipmeter/0.1.0\r\n\
Proxy-Authorization: Digest username=\"1001\", realm=\"pbx.example.com\", nonce=\"1732450000.q2YtV1bEoQ8\", uri=\"sip:1002@pbx.example.com\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 260\r\n\
\r\n\
v=0\r\n\
o=sipmeter 4242 4242 IN IP4 192.0.2.10\r\n\
s=sipmeter\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn parse_and_read(bytes: &[u8]) -> usize {
    let msg = Message::parse(bytes).expect("the bench message parses");
    let via = msg.top_via().expect("via");
    let branch = via.branch().expect("branch");
    let from_tag = msg.from().and_then(|f| f.tag()).expect("from tag");
    let to_tag = msg.to().and_then(|t| t.tag());
    let call_id = msg.call_id().expect("call-id");
    let cseq = msg.cseq().expect("cseq");
    let contacts = msg.headers.typed_all::<Contact>().len();
    let vias = msg.headers.typed_all::<Via>().len();
    branch.len()
        + from_tag.len()
        + to_tag.map_or(0, |t| t.len())
        + call_id.len()
        + cseq.seq as usize
        + contacts
        + vias
        + msg.body().len()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "typed".to_owned());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut acc = 0usize;
    for _ in 0..n {
        acc += match mode.as_str() {
            "parse" => Message::parse(black_box(INVITE))
                .expect("parses")
                .headers
                .len(),
            "validate" => {
                let mut m = Message::parse(black_box(INVITE)).expect("parses");
                m.validate().expect("valid").len()
            }
            _ => parse_and_read(black_box(INVITE)),
        };
    }
    println!("{mode} x{n}: {acc}");
}
