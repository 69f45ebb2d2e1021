//! Server-side validation of a registrar as entered in the form or the API: each invalid field
//! gets its own message, and nothing is saved unless every field is valid.

use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use store::{RegistrarInput, TlsVerify, Transport};

use crate::certs;

/// A registrar as typed by a person (every field a string, as in the HTML form).
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistrarForm {
    /// Name.
    pub name: String,
    /// Domain.
    pub domain: String,
    /// Port (blank = transport default).
    pub port: String,
    /// UDP, TCP, TLS, WSS or AUTO.
    pub transport: String,
    /// `host[:port]`.
    pub outbound_proxy: String,
    /// system, custom or skip.
    pub tls_verify: String,
    /// CA certificate PEM.
    pub tls_ca_pem: String,
    /// Client certificate PEM.
    pub tls_cert_pem: String,
    /// Client key PEM.
    pub tls_key_pem: String,
}

impl std::fmt::Debug for RegistrarForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarForm")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl RegistrarForm {
    /// The form filled with a stored registrar's values.
    pub fn from_input(r: &RegistrarInput) -> RegistrarForm {
        RegistrarForm {
            name: r.name.clone(),
            domain: r.domain.clone(),
            port: r.port.map(|p| p.to_string()).unwrap_or_default(),
            transport: r.transport.as_str().to_string(),
            outbound_proxy: r.outbound_proxy.clone().unwrap_or_default(),
            tls_verify: r.tls_verify.as_str().to_string(),
            tls_ca_pem: r.tls_ca_pem.clone().unwrap_or_default(),
            tls_cert_pem: r.tls_cert_pem.clone().unwrap_or_default(),
            tls_key_pem: r.tls_key_pem.clone().unwrap_or_default(),
        }
    }
}

/// One message about one field (`field` is the camelCase field name used by the form and API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldMessage {
    /// The field.
    pub field: &'static str,
    /// What is wrong (or, for warnings, what to watch).
    pub message: String,
}

/// A valid registrar, with warnings to show (certificates expiring soon).
#[derive(Debug, Clone)]
pub struct Validated {
    /// What to store.
    pub input: RegistrarInput,
    /// Non-blocking remarks.
    pub warnings: Vec<FieldMessage>,
}

fn push(errors: &mut Vec<FieldMessage>, field: &'static str, message: impl Into<String>) {
    errors.push(FieldMessage {
        field,
        message: message.into(),
    });
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Validates every field; `now` is unix seconds (for certificate dates).
pub fn validate(form: &RegistrarForm, now: i64) -> Result<Validated, Vec<FieldMessage>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let name = form.name.trim().to_string();
    if name.is_empty() {
        push(&mut errors, "name", "Name is required");
    } else if name.chars().count() > 100 {
        push(&mut errors, "name", "Name must be at most 100 characters");
    }

    let domain = form.domain.trim();
    let domain = match check_domain(domain) {
        Ok(d) => d,
        Err(e) => {
            push(&mut errors, "domain", e);
            String::new()
        }
    };

    let port = match form.port.trim() {
        "" => None,
        p => match parse_port(p) {
            Some(p) => Some(p),
            None => {
                push(
                    &mut errors,
                    "port",
                    "Port must be a number from 1 to 65535, or blank for the transport's default",
                );
                None
            }
        },
    };

    let transport = match form.transport.trim() {
        "" => {
            push(
                &mut errors,
                "transport",
                "Transport is required (UDP, TCP, TLS, WSS or AUTO)",
            );
            Transport::Udp
        }
        t => Transport::parse(t).unwrap_or_else(|| {
            push(
                &mut errors,
                "transport",
                "Transport must be UDP, TCP, TLS, WSS or AUTO",
            );
            Transport::Udp
        }),
    };

    let outbound_proxy = opt(&form.outbound_proxy);
    if let Some(p) = &outbound_proxy
        && let Err(e) = check_proxy(p)
    {
        push(&mut errors, "outboundProxy", e);
    }

    let mut tls_verify = TlsVerify::System;
    let (mut ca, mut cert, mut key) = (
        opt(&form.tls_ca_pem),
        opt(&form.tls_cert_pem),
        opt(&form.tls_key_pem),
    );
    if transport.uses_tls() {
        tls_verify = match form.tls_verify.trim() {
            "" => TlsVerify::System,
            v => TlsVerify::parse(v).unwrap_or_else(|| {
                push(
                    &mut errors,
                    "tlsVerify",
                    "Verification must be System, Custom or Skip",
                );
                TlsVerify::System
            }),
        };
        if let Some(pem) = &ca {
            match certs::check_ca(pem, now) {
                Ok(Some(w)) => push(&mut warnings, "tlsCaPem", w),
                Ok(None) => {}
                Err(e) => push(&mut errors, "tlsCaPem", e),
            }
        } else if tls_verify == TlsVerify::Custom {
            push(
                &mut errors,
                "tlsCaPem",
                "Custom verification needs a CA certificate",
            );
        }
        match (&cert, &key) {
            (Some(c), Some(k)) => match certs::check_client_cert(c, now) {
                Ok(w) => {
                    if let Some(w) = w {
                        push(&mut warnings, "tlsCertPem", w);
                    }
                    if let Err(e) = certs::check_key(k, c) {
                        push(&mut errors, "tlsKeyPem", e);
                    }
                }
                Err(e) => push(&mut errors, "tlsCertPem", e),
            },
            (Some(_), None) => push(
                &mut errors,
                "tlsKeyPem",
                "A client certificate needs its private key",
            ),
            (None, Some(_)) => push(
                &mut errors,
                "tlsCertPem",
                "A private key needs its client certificate",
            ),
            (None, None) => {}
        }
    } else {
        // TLS settings mean nothing on UDP/TCP: they are not kept.
        (ca, cert, key) = (None, None, None);
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated {
        input: RegistrarInput {
            name,
            domain,
            port,
            transport,
            outbound_proxy,
            tls_verify,
            tls_ca_pem: ca,
            tls_cert_pem: cert,
            tls_key_pem: key,
        },
        warnings,
    })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Validates the Domain field: a host name or an IPv4/IPv6 literal; returns it normalised
/// (IPv6 without brackets).
pub fn check_domain(d: &str) -> Result<String, String> {
    if d.is_empty() {
        return Err("Domain is required".into());
    }
    if d.contains("://")
        || d.to_ascii_lowercase().starts_with("sip:")
        || d.to_ascii_lowercase().starts_with("sips:")
    {
        return Err("Enter the host only (e.g. sip.example.com), without sip: or a scheme".into());
    }
    if let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("{d} is not a valid IPv6 address"));
    }
    if let Ok(ip) = d.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if d.contains(':') {
        if let Some((h, p)) = d.rsplit_once(':')
            && !h.contains(':')
            && p.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("Put the port in the Port field, not in the domain".into());
        }
        return Err(format!("{d} is not a valid host name or IP address"));
    }
    check_hostname(d).map(|()| d.to_string())
}

fn check_hostname(d: &str) -> Result<(), String> {
    let name = d.strip_suffix('.').unwrap_or(d);
    if name.len() > 253 {
        return Err("A host name is at most 253 characters".into());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!("{d} is not a valid host name (empty label)"));
        }
        if label.len() > 63 {
            return Err(format!(
                "{d} is not a valid host name (a label is longer than 63 characters)"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "{d} is not a valid host name (use letters, digits, dots and dashes only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{d} is not a valid host name (a label starts or ends with a dash)"
            ));
        }
    }
    // RFC 3696 §2: a top-level label is never all-numeric, so this was meant as an IPv4 address.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{d} is not a valid IPv4 address"));
    }
    Ok(())
}

/// Validates an outbound proxy: `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
pub fn check_proxy(p: &str) -> Result<(), String> {
    if p.contains("://") || p.to_ascii_lowercase().starts_with("sip:") {
        return Err("Use host:port (e.g. proxy.example.com:5060), without sip: or a scheme".into());
    }
    let (host, port) = if let Some(rest) = p.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| "An IPv6 proxy address needs its closing ]".to_string())?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{inner} is not a valid IPv6 address"))?;
        match after {
            "" => (None, None),
            a => (None, Some(a.strip_prefix(':').ok_or("Use [address]:port")?)),
        }
    } else if p.parse::<Ipv6Addr>().is_ok() {
        (None, None)
    } else {
        match p.rsplit_once(':') {
            Some((h, port)) => (Some(h), Some(port)),
            None => (Some(p), None),
        }
    };
    if let Some(h) = host {
        if h.is_empty() {
            return Err("The proxy host is missing (format host:port)".into());
        }
        if h.parse::<IpAddr>().is_err() {
            check_hostname(h).map_err(|e| format!("Outbound proxy: {e}"))?;
        }
    }
    if let Some(port) = port
        && parse_port(port).is_none()
    {
        return Err("The proxy port must be a number from 1 to 65535".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(domain: &str, port: &str, transport: &str) -> RegistrarForm {
        RegistrarForm {
            name: "R".into(),
            domain: domain.into(),
            port: port.into(),
            transport: transport.into(),
            ..Default::default()
        }
    }

    fn fields(e: &[FieldMessage]) -> Vec<&'static str> {
        e.iter().map(|m| m.field).collect()
    }

    #[test]
    fn seed_examples_are_valid() {
        for (d, p, t) in [
            ("sip.example.com", "", "UDP"),
            ("pbx.corp.net", "5061", "TLS"),
            ("10.0.0.50", "5060", "TCP"),
            ("192.168.1.100", "", "auto"),
            ("[2001:db8::1]", "", "WSS"),
            ("localhost", "65535", "udp"),
        ] {
            let v = validate(&form(d, p, t), 0).unwrap_or_else(|e| panic!("{d}: {e:?}"));
            assert!(v.warnings.is_empty());
        }
        let v = validate(&form("[2001:DB8::1]", "", "TCP"), 0).unwrap();
        assert_eq!(v.input.domain, "2001:db8::1");
    }

    #[test]
    fn each_bad_field_is_named() {
        let f = RegistrarForm {
            name: " ".into(),
            domain: "bad_host!".into(),
            port: "70000".into(),
            transport: "SCTP".into(),
            outbound_proxy: "proxy.example.com:0".into(),
            ..Default::default()
        };
        let e = validate(&f, 0).unwrap_err();
        assert_eq!(
            fields(&e),
            vec!["name", "domain", "port", "transport", "outboundProxy"]
        );
    }

    #[test]
    fn domains() {
        for bad in [
            "",
            "-a.com",
            "a-.com",
            "a..com",
            "300.1.1.1",
            "1.2.3",
            "sip:pbx.example.com",
            "http://x.com",
            "pbx.example.com:5060",
            "[::1",
            "[zz::1]",
            "under_score.com",
            &"a".repeat(64),
        ] {
            assert!(check_domain(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            check_domain("pbx.example.com:5060").unwrap_err(),
            "Put the port in the Port field, not in the domain"
        );
        assert_eq!(
            check_domain("pbx.example.com.").unwrap(),
            "pbx.example.com."
        );
    }

    #[test]
    fn ports_and_proxies() {
        for bad in ["0", "65536", "-1", "5o60", "+5060", "123456"] {
            let e = validate(&form("a.com", bad, "UDP"), 0).unwrap_err();
            assert_eq!(fields(&e), vec!["port"], "{bad}");
        }
        for good in [
            "proxy.example.com:5060",
            "proxy.example.com",
            "10.1.1.1:5080",
            "[::1]:5060",
            "::1",
            "[::1]",
        ] {
            assert_eq!(check_proxy(good), Ok(()), "{good}");
        }
        for bad in [
            ":5060",
            "proxy:",
            "proxy:99999",
            "[::1",
            "[::1]5060",
            "sip:proxy:5060",
            "a b:5060",
        ] {
            assert!(check_proxy(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tls_fields_only_kept_for_tls_transports() {
        let mut f = form("a.com", "", "UDP");
        f.tls_ca_pem = "garbage".into();
        f.tls_verify = "nonsense".into();
        let v = validate(&f, 0).unwrap();
        assert_eq!(v.input.tls_ca_pem, None);
        f.transport = "TLS".into();
        let e = validate(&f, 0).unwrap_err();
        assert_eq!(fields(&e), vec!["tlsVerify", "tlsCaPem"]);
        let mut f = form("a.com", "", "TLS");
        f.tls_verify = "Custom".into();
        assert_eq!(fields(&validate(&f, 0).unwrap_err()), vec!["tlsCaPem"]);
        f.tls_verify = "skip".into();
        f.tls_key_pem = "x".into();
        assert_eq!(fields(&validate(&f, 0).unwrap_err()), vec!["tlsCertPem"]);
    }
}
