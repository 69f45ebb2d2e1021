//! RFC 5626 SIP Outbound, the client's side: what a phone registering with `+sip.instance`
//! and `reg-id` needs besides the REGISTER itself (which [`crate::ua::UserAgent`] writes once
//! [`crate::ua::UserAgent::enable_outbound`] is called): its instance URN, what the
//! registrar's 2xx granted, when to send the next keep-alive and how long to wait before a
//! new flow after failures.
//!
//! Pure functions: the randomness is a number in `[0, 1)` the driver draws from its seeded
//! RNG, so a run replays exactly.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// RFC 5626 §4.4.1: a CRLF ping whose CRLF pong has not come within 10 s means the flow
/// failed.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 5626 §4.5: base-time when every flow failed (ours: a phone has one flow).
pub const RECOVERY_BASE_ALL_FAILED: Duration = Duration::from_secs(30);

/// RFC 5626 §4.5: the upper bound of the wait (max-time).
pub const RECOVERY_MAX: Duration = Duration::from_secs(1800);

/// The `reg-id` of our one flow (RFC 5626 §4.2: one per outbound-proxy-set URI; we have one).
pub const REG_ID: u32 = 1;

/// The instance ID of a phone (RFC 5626 §4.1): a `urn:uuid:` URN holding an RFC 4122 version 4
/// UUID drawn from `seed` (stable for a run: the same seed gives the same URN).
pub fn instance_urn(seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut b: [u8; 16] = rng.random();
    // RFC 4122 §4.4: version 4 in the high nibble of octet 6, variant 10 in octet 8.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(45);
    s.push_str("urn:uuid:");
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(byte >> 4)]));
        s.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    s
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What the registrar's 2xx to an outbound REGISTER said (RFC 5626 §4.2.1, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// `Require: outbound` was in the 2xx: the registrar (with its edge proxy) uses the flow.
    pub in_use: bool,
    /// Its `Flow-Timer` in seconds, if any: keep-alives at most this far apart.
    pub flow_timer: Option<u32>,
}

/// When to send the next keep-alive on a flow (RFC 5626 §4.4.1): a random time between 80 %
/// and 100 % of `period` (the Flow-Timer, else the configured interval); `r` in `[0, 1)`.
pub fn keepalive_after(period: Duration, r: f64) -> Duration {
    period.mul_f64(0.8 + 0.2 * r.clamp(0.0, 1.0))
}

/// How long to wait before forming a new flow after `consecutive_failures` failed attempts
/// (RFC 5626 §4.5): `min(max-time, base-time × 2^failures)` with base-time 30 s (every flow
/// failed: a phone here has one), then a random time between 50 % and 100 % of it; `r` in
/// `[0, 1)`. No wait before the first attempt (`consecutive_failures` 0 still waits: §4.5
/// applies it only once forming a flow failed, which the caller decides).
pub fn recovery_wait(consecutive_failures: u32, r: f64) -> Duration {
    let factor = 2u32.saturating_pow(consecutive_failures.min(16));
    let wait = RECOVERY_BASE_ALL_FAILED
        .saturating_mul(factor)
        .min(RECOVERY_MAX);
    wait.mul_f64(0.5 + 0.5 * r.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urn_is_a_stable_version_4_uuid() {
        let a = instance_urn(7);
        assert_eq!(a, instance_urn(7), "the same seed gives the same instance");
        assert_ne!(a, instance_urn(8));
        let uuid = a.strip_prefix("urn:uuid:").expect("a urn:uuid");
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "version 4: {uuid}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC 4122 variant: {uuid}"
        );
        assert!(uuid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn keepalives_fall_between_80_and_100_percent_of_the_period() {
        let p = Duration::from_secs(20);
        assert_eq!(keepalive_after(p, 0.0), Duration::from_secs(16));
        assert_eq!(keepalive_after(p, 0.5), Duration::from_secs(18));
        assert!(keepalive_after(p, 0.999_999) <= p);
    }

    #[test]
    fn recovery_waits_double_from_30_s_up_to_1800_s_with_half_randomness() {
        assert_eq!(recovery_wait(0, 0.999_999).as_secs(), 29);
        assert_eq!(recovery_wait(0, 0.0), Duration::from_secs(15));
        assert_eq!(recovery_wait(1, 0.0), Duration::from_secs(30));
        assert_eq!(recovery_wait(2, 0.0), Duration::from_secs(60));
        // 30 × 2^6 = 1920 > 1800: capped.
        assert_eq!(recovery_wait(6, 0.0), Duration::from_secs(900));
        assert_eq!(recovery_wait(40, 0.0), Duration::from_secs(900));
    }
}
