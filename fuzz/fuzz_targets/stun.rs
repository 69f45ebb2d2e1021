//! Read arbitrary datagrams as STUN (the outbound keep-alive's answers, RFC 5389): errors,
//! never panics; a response we build from what was read parses back to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_proto::stun;

fuzz_target!(|data: &[u8]| {
    let _ = stun::is_stun(data);
    let _ = stun::binding_request_tid(data);
    if let Ok(r) = stun::parse_binding_response(data)
        && let Some(mapped) = r.mapped
    {
        let again = stun::parse_binding_response(&stun::binding_success(r.tid, mapped))
            .expect("our own response parses");
        assert_eq!((again.tid, again.mapped), (r.tid, Some(mapped)));
    }
});
