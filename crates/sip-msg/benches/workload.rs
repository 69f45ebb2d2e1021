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
