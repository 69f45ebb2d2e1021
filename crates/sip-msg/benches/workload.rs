//! The benchmark's workload, shared by `benches/parse.rs` and `examples/parse_loop.rs` (the
//! same code measured by time and by instruction count).

use sip_msg::Message;
use sip_msg::typed::{
    CSeq, CallIdRef, Contact, ContactRef, ContentLength, ContentType, ContentTypeRef, FromRef,
    MaxForwards, ToRef, Via, ViaRef,
};

/// A realistic INVITE with SDP: 1,054 bytes, a little larger than the 900-byte INVITE of the
/// target, so the figure is conservative.
pub const INVITE: &[u8] = include_bytes!("invite.sip");

/// Parse, then read the headers a user agent reads on every request through the borrowed
/// views (no allocation): top Via (branch, received, rport), From/To tags, Call-ID, CSeq,
/// every Contact, every Via, Max-Forwards, Content-Length, Content-Type and the body.
pub fn parse_and_view(bytes: &[u8]) -> usize {
    let msg = Message::parse(bytes).expect("the bench message parses");
    let h = &msg.headers;
    let via = h.view::<ViaRef>().expect("via").expect("valid via");
    let branch = via.branch().expect("branch");
    let received = via.received().map_or(0, |r| r.len());
    let rport = via.rport().map_or(0, |p| 1 + usize::from(p.unwrap_or(0)));
    let from_tag = h.view::<FromRef>().and_then(Result::ok);
    let from_tag = from_tag.and_then(|f| f.tag()).expect("from tag");
    let to_tag = h.view::<ToRef>().and_then(Result::ok).and_then(|t| t.tag());
    let call_id = h.view::<CallIdRef>().and_then(Result::ok).expect("call-id");
    let cseq = h.typed::<CSeq>().and_then(Result::ok).expect("cseq");
    let contacts = h.view_all::<ContactRef>().filter(Result::is_ok).count();
    let vias = h.view_all::<ViaRef>().filter(Result::is_ok).count();
    let max_forwards = h.typed::<MaxForwards>().and_then(Result::ok).expect("mf");
    let length = h.typed::<ContentLength>().and_then(Result::ok).expect("cl");
    let ctype = h.view::<ContentTypeRef>().and_then(Result::ok);
    let sdp = ctype.expect("content-type").is("application", "sdp");
    branch.len()
        + received
        + rport
        + from_tag.len()
        + to_tag.map_or(0, |t| t.len())
        + call_id.0.len()
        + cseq.seq as usize
        + contacts
        + vias
        + usize::from(max_forwards.0)
        + length.0 as usize
        + usize::from(sdp)
        + msg.body().len()
}

/// The same reads through the owned views (`Message::top_via`, `typed_all` …), which copy
/// every string they return.
pub fn parse_and_read_owned(bytes: &[u8]) -> usize {
    let msg = Message::parse(bytes).expect("the bench message parses");
    let via = msg.top_via().expect("via");
    let branch = via.branch().expect("branch");
    let received = via.received().map_or(0, |r| r.len());
    let rport = via.rport().map_or(0, |p| 1 + usize::from(p.unwrap_or(0)));
    let from_tag = msg.from().and_then(|f| f.tag()).expect("from tag");
    let to_tag = msg.to().and_then(|t| t.tag());
    let call_id = msg.call_id().expect("call-id");
    let cseq = msg.cseq().expect("cseq");
    let contacts = msg.headers.typed_all::<Contact>().len();
    let vias = msg.headers.typed_all::<Via>().len();
    let h = &msg.headers;
    let max_forwards = h.typed::<MaxForwards>().and_then(Result::ok).expect("mf");
    let length = h.typed::<ContentLength>().and_then(Result::ok).expect("cl");
    let ctype = h.typed::<ContentType>().and_then(Result::ok);
    let sdp = ctype.expect("content-type").media_type == "application/sdp";
    branch.len()
        + received
        + rport
        + from_tag.len()
        + to_tag.map_or(0, |t| t.len())
        + call_id.len()
        + cseq.seq as usize
        + contacts
        + vias
        + usize::from(max_forwards.0)
        + length.0 as usize
        + usize::from(sdp)
        + msg.body().len()
}

/// The other messages of a registration and a call as sipmeter's phones and registrar print
/// them (the fleet bench's traffic), by kind: (name, bytes). Parsed one by one by
/// `examples/parse_loop.rs kinds` for instructions per parse of each kind.
pub const KINDS: &[(&str, &[u8])] = &[
    (
        "REGISTER",
        b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKa81c07f3d2e94b56;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@pbx.example.com>;tag=4c7e19a0b2d35f86\r\n\
To: <sip:1001@pbx.example.com>\r\n\
Call-ID: 7d3f0e1c2b4a59687c0d1e2f3a4b5c6d@192.0.2.10\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10:5062;transport=udp>;expires=3600\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    (
        "401",
        b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKa81c07f3d2e94b56;rport=5062;received=192.0.2.10\r\n\
From: <sip:1001@pbx.example.com>;tag=4c7e19a0b2d35f86\r\n\
To: <sip:1001@pbx.example.com>;tag=e5b1c2d3\r\n\
Call-ID: 7d3f0e1c2b4a59687c0d1e2f3a4b5c6d@192.0.2.10\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"pbx.example.com\", nonce=\"1732450000.q2YtV1bEoQ8\", algorithm=MD5, qop=\"auth\"\r\n\
Server: sipmeter-registrar\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    (
        "REGISTER+auth",
        b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK0f9e8d7c6b5a4132;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@pbx.example.com>;tag=4c7e19a0b2d35f86\r\n\
To: <sip:1001@pbx.example.com>\r\n\
Call-ID: 7d3f0e1c2b4a59687c0d1e2f3a4b5c6d@192.0.2.10\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10:5062;transport=udp>;expires=3600\r\n\
Authorization: Digest username=\"1001\", realm=\"pbx.example.com\", nonce=\"1732450000.q2YtV1bEoQ8\", uri=\"sip:pbx.example.com\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    (
        "200 REGISTER",
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK0f9e8d7c6b5a4132;rport=5062;received=192.0.2.10\r\n\
From: <sip:1001@pbx.example.com>;tag=4c7e19a0b2d35f86\r\n\
To: <sip:1001@pbx.example.com>;tag=e5b1c2d4\r\n\
Call-ID: 7d3f0e1c2b4a59687c0d1e2f3a4b5c6d@192.0.2.10\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10:5062;transport=udp>;expires=3600\r\n\
Server: sipmeter-registrar\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    ("INVITE+auth", INVITE),
    (
        "100",
        b"SIP/2.0 100 Trying\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK6c2f8a9e1b7d4;rport=5062;received=192.0.2.10\r\n\
From: \"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60\r\n\
To: <sip:1002@pbx.example.com>\r\n\
Call-ID: 5b1e9d0c7a6f4e23b8c1d2e3f4a5b6c7@192.0.2.10\r\n\
CSeq: 2 INVITE\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    (
        "200 INVITE",
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK6c2f8a9e1b7d4;rport=5062;received=192.0.2.10\r\n\
Record-Route: <sip:192.0.2.1:5060;lr>\r\n\
From: \"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60\r\n\
To: <sip:1002@pbx.example.com>;tag=71d2e3f4a5b6c708\r\n\
Call-ID: 5b1e9d0c7a6f4e23b8c1d2e3f4a5b6c7@192.0.2.10\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:1002@192.0.2.11:5064;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 132\r\n\
\r\n\
v=0\r\n\
o=sipmeter 4343 4343 IN IP4 192.0.2.11\r\n\
s=sipmeter\r\n\
c=IN IP4 192.0.2.11\r\n\
t=0 0\r\n\
m=audio 40002 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n",
    ),
    (
        "ACK",
        b"ACK sip:1002@192.0.2.11:5064;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK3e4f5a6b7c8d9e0f;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:192.0.2.1:5060;lr>\r\n\
From: \"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60\r\n\
To: <sip:1002@pbx.example.com>;tag=71d2e3f4a5b6c708\r\n\
Call-ID: 5b1e9d0c7a6f4e23b8c1d2e3f4a5b6c7@192.0.2.10\r\n\
CSeq: 2 ACK\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
    (
        "BYE",
        b"BYE sip:1002@192.0.2.11:5064;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1a2b3c4d5e6f7a8b;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:192.0.2.1:5060;lr>\r\n\
From: \"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60\r\n\
To: <sip:1002@pbx.example.com>;tag=71d2e3f4a5b6c708\r\n\
Call-ID: 5b1e9d0c7a6f4e23b8c1d2e3f4a5b6c7@192.0.2.10\r\n\
CSeq: 3 BYE\r\n\
Content-Length: 0\r\n\
\r\n",
    ),
];
