//! Checks on uploaded TLS material: PEM parses, certificates are within their validity period
//! (expired → error, expiring within 30 days → warning), the private key matches the client
//! certificate.
//!
//! The validity dates are read with a small DER walker (RFC 5280 §4.1: `Certificate →
//! tbsCertificate → validity`), enough for this check without a full X.509 parser; the key
//! match is rustls's own check (`CertifiedKey::keys_match`, ring provider).

use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Seconds in 30 days: certificates expiring sooner than this get a warning.
const EXPIRY_WARNING_SECS: i64 = 30 * 86_400;

/// A certificate's validity period, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

/// Result of checking a PEM field: the error to show next to the field, or an optional warning.
pub type Check = Result<Option<String>, String>;

/// Parses every certificate of a PEM bundle.
fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("The {what} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "The {what} holds no certificate (expected a -----BEGIN CERTIFICATE----- block)"
        ));
    }
    Ok(certs)
}

/// Checks the validity period of each certificate at `now` (unix seconds).
fn check_dates(certs: &[CertificateDer<'_>], what: &str, now: i64) -> Check {
    let mut warning = None;
    for (i, cert) in certs.iter().enumerate() {
        let v = validity(cert.as_ref()).ok_or_else(|| {
            format!(
                "The {what} (certificate {}) is not a readable X.509 certificate",
                i + 1
            )
        })?;
        if v.not_after < now {
            return Err(format!("The {what} expired on {}", date(v.not_after)));
        }
        if v.not_before > now {
            return Err(format!(
                "The {what} is not valid before {}",
                date(v.not_before)
            ));
        }
        if v.not_after - now < EXPIRY_WARNING_SECS && warning.is_none() {
            warning = Some(format!(
                "The {what} expires on {} (in {} days)",
                date(v.not_after),
                (v.not_after - now) / 86_400
            ));
        }
    }
    Ok(warning)
}

/// Checks a CA bundle.
pub fn check_ca(pem: &str, now: i64) -> Check {
    let certs = parse_certs(pem, "CA certificate")?;
    check_dates(&certs, "CA certificate", now)
}

/// Checks a client certificate (the first block is the leaf).
pub fn check_client_cert(pem: &str, now: i64) -> Check {
    let certs = parse_certs(pem, "client certificate")?;
    check_dates(&certs, "client certificate", now)
}

/// Checks that a private key parses and matches the client certificate's public key.
/// `cert_pem` must already have passed [`check_client_cert`].
pub fn check_key(key_pem: &str, cert_pem: &str) -> Result<(), String> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        format!("The private key is not a valid PEM key (PKCS#8, PKCS#1 or SEC1): {e}")
    })?;
    let signing = any_supported_type(&key).map_err(|_| {
        "The private key type is not supported (use RSA, ECDSA P-256/P-384 or Ed25519)".to_string()
    })?;
    let certs = parse_certs(cert_pem, "client certificate")?;
    let certified = CertifiedKey::new(certs, Arc::clone(&signing));
    certified
        .keys_match()
        .map_err(|_| "The private key does not match the client certificate".to_string())
}

/// Reads a DER TLV: (tag, content, rest).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The validity period of a DER certificate (RFC 5280 §4.1.2.5).
pub fn validity(der: &[u8]) -> Option<Validity> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    // RFC 5280: version is `[0] EXPLICIT` and optional.
    if tag == 0xa0 {
        rest = r;
    }
    for expected in [0x02, 0x30, 0x30] {
        // serialNumber, signature, issuer
        let (tag, _, r) = tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = r;
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (t1, nb, r) = tlv(validity)?;
    let (t2, na, _) = tlv(r)?;
    Some(Validity {
        not_before: der_time(t1, nb)?,
        not_after: der_time(t2, na)?,
    })
}

/// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`) to unix seconds.
fn der_time(tag: u8, content: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(content).ok()?;
    let s = s.strip_suffix('Z')?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, else 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let num = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, h, m, sec) = (num(0)?, num(2)?, num(4)?, num(6)?, num(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of unix seconds (inverse of [`days_from_civil`]).
pub fn date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_868_800), "2000-03-01");
        assert_eq!(
            date(days_from_civil(2026, 11, 30) * 86_400 + 5),
            "2026-11-30"
        );
        assert_eq!(
            der_time(0x17, b"491231235959Z"),
            Some(days_from_civil(2049, 12, 31) * 86_400 + 86_399)
        );
        assert_eq!(
            der_time(0x17, b"500101000000Z"),
            Some(days_from_civil(1950, 1, 1) * 86_400)
        );
        assert_eq!(der_time(0x18, b"99991231235959Z"), Some(253_402_300_799));
        assert_eq!(der_time(0x17, b"501301000000Z"), None, "month 13");
        assert_eq!(der_time(0x17, b"5001010000Z"), None, "too short");
    }

    #[test]
    fn truncated_der_is_refused_not_panicking() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x82, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = validity(&junk);
        }
    }

    #[test]
    fn garbage_pem_is_named() {
        let e = check_ca("hello", 0).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        let e = check_ca(
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            0,
        )
        .unwrap_err();
        assert!(e.contains("not valid PEM"), "{e}");
        let e = check_key("nope", "nope").unwrap_err();
        assert!(e.contains("not a valid PEM key"), "{e}");
    }
}
