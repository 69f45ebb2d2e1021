//! Plain-language hints for failure codes (the seed page's table, extended).

/// What a VoIP engineer should check when a request ends with `code`.
pub fn hint_for(code: u16) -> &'static str {
    match code {
        401 | 407 => "authentication failed: check the SIP account's username, password and realm",
        403 => "the server refused this account: IP not allow-listed or account disabled",
        404 => "not found: check the SIP domain and the username (extension)",
        408 => {
            "request timeout: the server is unreachable; check the address, port, transport and firewall"
        }
        420 | 421 => {
            "the server requires or refuses a SIP extension: compare Require/Supported in the trace"
        }
        423 => "interval too brief: the server wants a longer registration (Min-Expires)",
        // RFC 5626 §5.3 / §11.5: the proxy knew the callee's flow had failed.
        430 => {
            "flow failed: the callee's RFC 5626 outbound connection to its registrar or edge proxy closed; it must register again on a new flow"
        }
        // RFC 5626 §6 / §11.6: the registrar saw the REGISTER come through a proxy (more
        // than one Via) whose Path has no `ob` (or no Path at all).
        439 => {
            "the first hop (outbound proxy) lacks RFC 5626 outbound support: set outbound = false, or use an edge proxy that supports it (its Path URI carries ob)"
        }
        480 => "the user is known but not reachable now (not registered)",
        483 => "too many hops: a routing loop between proxies",
        486 | 600 => "busy: the callee is in another call",
        488 | 606 => {
            "not acceptable: no common codec or media setting; compare the SDP offer and answer"
        }
        500 => "the server failed internally: look at its logs",
        502 | 504 => "an upstream server failed or timed out: the next hop behind this server",
        503 => "service unavailable: the server is overloaded or not running",
        _ => "see the SIP trace for the exact response",
    }
}

/// What to check when a call we received ends with our own final response `code`: the
/// reason names it; [`hint_for`] is about a response a server sent us.
pub fn hint_for_incoming(code: u16) -> &'static str {
    match code {
        // RFC 3262 §3: our reliable 1xx went unacknowledged for 64·T1 (the user agent's
        // only 500 of its own; one after our own failure, no RTP ports, is OSERROR first).
        500 => {
            "the caller (or a proxy on its path) never acknowledged our reliable 180/183 with PRACK: check that it supports 100rel and that its PRACKs reach us"
        }
        // RFC 3261 §13.3.1.4: our 2xx went again until 64·T1 and no ACK came; we ended the
        // call with BYE (the user agent's only 408 of its own on a call it received).
        408 => {
            "the caller never acknowledged our 200 with ACK: check that its ACK reaches us (the Contact and Record-Route we sent, NAT, a proxy that drops it)"
        }
        _ => hint_for(code),
    }
}

#[cfg(test)]
mod tests {
    use super::{hint_for, hint_for_incoming};

    /// The RFC 5626 codes name what failed and, for 439, the fix.
    #[test]
    fn outbound_codes_have_their_hints() {
        assert!(hint_for(439).contains("set outbound = false"));
        assert!(hint_for(439).contains("first hop (outbound proxy)"));
        assert!(hint_for(430).starts_with("flow failed"));
    }

    /// Our own 500 to a caller blames its missing PRACK, our 408 its missing ACK, not a
    /// server; other codes are as for a response received.
    #[test]
    fn incoming_calls_500_names_the_missing_prack() {
        assert!(hint_for_incoming(500).contains("never acknowledged our reliable 180/183"));
        assert!(hint_for_incoming(408).contains("never acknowledged our 200 with ACK"));
        assert_eq!(hint_for_incoming(486), hint_for(486));
    }
}
