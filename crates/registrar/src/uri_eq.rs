//! SIP URI comparison (RFC 3261 §19.1.4) for the location service.
//!
//! - The scheme must be the same (`sip` is never `sips`).
//! - User and password compare case-sensitively; an escaped character is the character,
//!   except for the reserved characters (`;/?:@&=+$,`) and `%` itself: `b%6Fb` is `bob`, `%2B`
//!   is not `+`. Hex digits of an escape compare in any case.
//! - The host compares case-insensitively (addresses as addresses).
//! - A port written is never the port omitted, even the default one ([`equivalent`]); when
//!   looking for where to send a request, the omitted port is the default one ([`reaches`]).
//! - Parameters compare by name and value case-insensitively; one both carry must match; a
//!   `user`, `ttl`, `method` or `maddr` carried by one side only never matches; any other
//!   carried by one side only is ignored (`transport` too). Order does not count.
//! - URI headers (`?Subject=x`) must be present on both sides and match.

use sip_msg::{Host, Scheme, SipUri, Uri};

/// True when `a` and `b` are the same URI under RFC 3261 §19.1.4: a binding whose contact is
/// the same as a REGISTER's contact is that contact's binding (§10.3 step 7).
pub(crate) fn equivalent(a: &Uri, b: &Uri) -> bool {
    compare(a, b, false)
}

/// [`equivalent`], with an omitted port read as the scheme's default (5060, 5061 for `sips`):
/// both reach the same place. Used to find the registered contact a request is sent to.
pub(crate) fn reaches(a: &Uri, b: &Uri) -> bool {
    compare(a, b, true)
}

fn compare(a: &Uri, b: &Uri, default_port: bool) -> bool {
    match (a.as_sip(), b.as_sip()) {
        (Some(a), Some(b)) => sip_equivalent(a, b, default_port),
        (None, None) => a == b,
        _ => false,
    }
}

fn default_port(u: &SipUri) -> u16 {
    match u.scheme {
        Scheme::Sips => 5061,
        Scheme::Sip => 5060,
    }
}

fn sip_equivalent(a: &SipUri, b: &SipUri, port_defaulted: bool) -> bool {
    let ports = if port_defaulted {
        a.port.unwrap_or(default_port(a)) == b.port.unwrap_or(default_port(b))
    } else {
        a.port == b.port
    };
    a.scheme == b.scheme
        && ports
        && hosts_equal(&a.host, &b.host)
        && opt_escaped_eq(a.user.as_deref(), b.user.as_deref(), false)
        && opt_escaped_eq(a.password.as_deref(), b.password.as_deref(), false)
        && params_equal(a, b)
        && headers_equal(&a.headers, &b.headers)
}

fn hosts_equal(a: &Host, b: &Host) -> bool {
    match (a, b) {
        (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
        _ => a == b,
    }
}

/// The parameters a URI with it never equals a URI without it (RFC 3261 §19.1.4).
fn must_be_on_both(name: &str) -> bool {
    ["user", "ttl", "method", "maddr"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

fn params_equal(a: &SipUri, b: &SipUri) -> bool {
    if a.params.is_empty() && b.params.is_empty() {
        return true;
    }
    let one_way = |x: &SipUri, y: &SipUri, check_values: bool| {
        x.params
            .iter()
            .all(|(name, value)| match y.params.get(name) {
                Some(other) => {
                    !check_values
                        || match (value, other) {
                            (Some(v), Some(w)) => escaped_eq(v, w, true),
                            (None, None) => true,
                            _ => false,
                        }
                }
                None => !must_be_on_both(name),
            })
    };
    one_way(a, b, true) && one_way(b, a, false)
}

fn headers_equal(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len()
        && a.iter().all(|(name, value)| {
            b.iter()
                .any(|(n, v)| escaped_eq(name, n, true) && escaped_eq(value, v, false))
        })
}

fn opt_escaped_eq(a: Option<&str>, b: Option<&str>, fold_case: bool) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => escaped_eq(a, b, fold_case),
        (None, None) => true,
        _ => false,
    }
}

/// One character of a URI component: as written, or written as a `%XX` escape.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Plain(u8),
    Escaped(u8),
}

/// RFC 3261 §25.1 `reserved`: an escape of one of these is not the character itself.
fn reserved(c: u8) -> bool {
    matches!(
        c,
        b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
    )
}

fn units(s: &str) -> impl Iterator<Item = Unit> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'%'
            && let Some(&[h, l]) = b.get(i + 1..i + 3)
            && let (Some(h), Some(l)) = (hex_value(h), hex_value(l))
        {
            i += 3;
            return Some(Unit::Escaped(h << 4 | l));
        }
        i += 1;
        Some(Unit::Plain(c))
    })
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// True when `a` and `b` are the same text with escapes read as §19.1.4 says; `fold_case`
/// compares letters in any case.
fn escaped_eq(a: &str, b: &str, fold_case: bool) -> bool {
    if a == b {
        return true;
    }
    let fold = |c: u8| if fold_case { c.to_ascii_lowercase() } else { c };
    let (mut x, mut y) = (units(a), units(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(u), Some(v)) => {
                let same = match (u, v) {
                    (Unit::Plain(p), Unit::Plain(q)) | (Unit::Escaped(p), Unit::Escaped(q)) => {
                        fold(p) == fold(q)
                    }
                    (Unit::Plain(p), Unit::Escaped(q)) | (Unit::Escaped(q), Unit::Plain(p)) => {
                        fold(p) == fold(q) && !reserved(p) && p != b'%'
                    }
                };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// `s` written so that two texts [`escaped_eq`] (case-sensitively) give the same key: an
/// escape of a character that may stand as written becomes the character; reserved
/// characters' escapes, `%` and bytes that are not printable ASCII become `%XX` (upper case).
pub(crate) fn push_canonical(out: &mut String, s: &str) {
    if !s.contains('%') && s.bytes().all(|c| c.is_ascii_graphic()) {
        out.push_str(s);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for u in units(s) {
        let (c, plain) = match u {
            Unit::Plain(c) => (c, c != b'%' && c.is_ascii_graphic()),
            Unit::Escaped(c) => (c, !reserved(c) && c != b'%' && c.is_ascii_graphic()),
        };
        if plain {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        Uri::parse(s).unwrap()
    }

    #[test]
    fn rfc_3261_examples() {
        // §19.1.4's own pairs that are equivalent.
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ] {
            assert!(equivalent(&uri(a), &uri(b)), "{a} = {b}");
            assert!(equivalent(&uri(b), &uri(a)), "{b} = {a}");
        }
        // And those that are not.
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com;transport=udp;user=phone",
            ),
            ("sip:bob@biloxi.com;maddr=1.2.3.4", "sip:bob@biloxi.com"),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            ("sip:a%2Bb@h", "sip:a+b@h"),
            ("sip:bob@h", "sips:bob@h"),
        ] {
            assert!(!equivalent(&uri(a), &uri(b)), "{a} ≠ {b}");
            assert!(!equivalent(&uri(b), &uri(a)), "{b} ≠ {a}");
        }
        // An omitted port reaches the default one.
        assert!(reaches(&uri("sip:bob@h"), &uri("sip:bob@h:5060")));
        assert!(reaches(&uri("sips:bob@h"), &uri("sips:bob@h:5061")));
        assert!(!reaches(&uri("sips:bob@h"), &uri("sips:bob@h:5060")));
    }

    #[test]
    fn canonical_keys_agree_with_the_comparison() {
        let texts = [
            "bob",
            "b%6Fb",
            "b%6fb",
            "%62%6F%62",
            "Bob",
            "a+b",
            "a%2Bb",
            "a%2bb",
            "a%",
            "a%2",
            "%25",
            "%2541",
            "%41",
            "A",
            "j%C3%B6rg",
            "jörg",
            "a%20b",
            "a b",
            "",
        ];
        for a in texts {
            for b in texts {
                let (mut ka, mut kb) = (String::new(), String::new());
                push_canonical(&mut ka, a);
                push_canonical(&mut kb, b);
                assert_eq!(escaped_eq(a, b, false), ka == kb, "{a:?} {b:?}: {ka} {kb}");
            }
        }
    }
}
