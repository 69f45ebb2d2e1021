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
