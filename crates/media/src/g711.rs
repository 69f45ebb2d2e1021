//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA), 16-bit linear PCM in and out.
//!
//! The segment/quantisation arithmetic of the G.711 tables (as in the well-known public-domain
//! Sun reference `g711.c`); decoding goes through 256-entry tables built at compile time.

const BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;
const SEG_UEND: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
const SEG_AEND: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];

fn segment(v: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|e| v <= *e).unwrap_or(8)
}

/// Encodes one sample to µ-law.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    let mut v = i32::from(pcm) >> 2;
    let mask: i32 = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    let v = v.min(ULAW_CLIP) + (BIAS >> 2);
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    (((seg as i32) << 4 | ((v >> (seg + 1)) & 0xf)) ^ mask) as u8
}

/// Every 16-bit sample's code (indexed by the sample's bits), built once: a lookup per
/// sample instead of the segment search.
fn encode_table(alaw: bool) -> &'static [u8; 65536] {
    static ULAW: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    static ALAW: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    let cell = if alaw { &ALAW } else { &ULAW };
    cell.get_or_init(|| {
        let mut t = Box::new([0u8; 65536]);
        for (i, code) in t.iter_mut().enumerate() {
            let pcm = i as u16 as i16;
            *code = if alaw {
                linear_to_alaw(pcm)
            } else {
                linear_to_ulaw(pcm)
            };
        }
        t
    })
}

const fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let mut t = (((u & 0x0f) as i32) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Encodes one sample to A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    let mut v = i32::from(pcm) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let q = if seg < 2 {
        (v >> 1) & 0xf
    } else {
        (v >> seg) & 0xf
    };
    (((seg as i32) << 4 | q) ^ mask) as u8
}

const fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode(i as u8)
        } else {
            ulaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = table(false);
static ALAW_TABLE: [i16; 256] = table(true);

/// Decodes one µ-law byte.
pub fn ulaw_to_linear(u: u8) -> i16 {
    ULAW_TABLE[usize::from(u)]
}

/// Decodes one A-law byte.
pub fn alaw_to_linear(a: u8) -> i16 {
    ALAW_TABLE[usize::from(a)]
}

/// The G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU).
    Ulaw,
    /// A-law (PCMA).
    Alaw,
}

impl Law {
    /// Appends the encoding of `pcm` to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            Law::Ulaw => {
                let t = encode_table(false);
                out.extend(pcm.iter().map(|s| t[usize::from(*s as u16)]));
            }
            Law::Alaw => {
                let t = encode_table(true);
                out.extend(pcm.iter().map(|s| t[usize::from(*s as u16)]));
            }
        }
    }

    /// Appends the decoding of `bytes` to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let t = match self {
            Law::Ulaw => &ULAW_TABLE,
            Law::Alaw => &ALAW_TABLE,
        };
        out.extend(bytes.iter().map(|b| t[usize::from(*b)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_table_values() {
        // G.711 Table 2a decoder outputs (14-bit values × 4 for 16-bit PCM).
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124); // 8031 × 4
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xfe), 8); // 2 × 4
        assert_eq!(ulaw_to_linear(0xef), 132); // 33 × 4, first step of segment 1
        assert_eq!(linear_to_ulaw(0), 0xff);
        // The reference shifts arithmetically, so -1 lands on the first negative step (-8).
        assert_eq!(linear_to_ulaw(-1), 0x7e);
        assert_eq!(ulaw_to_linear(0x7e), -8);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_table_values() {
        // G.711 Table 1a decoder outputs (13-bit values × 8 for 16-bit PCM); even bits
        // inverted on the wire (0xd5 is the "zero" code).
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256); // 4032 × 8
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn table_encoder_matches_the_formula_for_every_sample() {
        let pcm: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for (law, f) in [
            (Law::Ulaw, linear_to_ulaw as fn(i16) -> u8),
            (Law::Alaw, linear_to_alaw),
        ] {
            let mut out = vec![7u8];
            law.encode(&pcm, &mut out);
            assert_eq!(out.len(), 1 + pcm.len());
            assert_eq!(out[0], 7, "appends");
            for (s, code) in pcm.iter().zip(&out[1..]) {
                assert_eq!(*code, f(*s), "{law:?} {s}");
            }
        }
    }

    #[test]
    fn decode_then_encode_is_identity() {
        for b in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw {b:#x}");
            // 0x7f (negative zero) decodes to 0, which encodes as positive zero 0xff.
            let expect = if b == 0x7f { 0xff } else { b };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), expect, "ulaw {b:#x}");
        }
    }

    #[test]
    fn monotonic_and_bounded_error() {
        // Quantisation error stays within a step of the segment (a step is 1/16 of the
        // segment's top value), and encoding is monotonic.
        let mut last_u = ulaw_to_linear(linear_to_ulaw(i16::MIN));
        let mut last_a = alaw_to_linear(linear_to_alaw(i16::MIN));
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_to_linear(linear_to_ulaw(x));
            let a = alaw_to_linear(linear_to_alaw(x));
            assert!(u >= last_u && a >= last_a, "monotonic at {x}");
            let tol = (i32::from(x).abs() / 16).max(16);
            assert!((i32::from(u) - i32::from(x)).abs() <= tol, "u {x} {u}");
            assert!((i32::from(a) - i32::from(x)).abs() <= tol, "a {x} {a}");
            last_u = u;
            last_a = a;
        }
        let mut out = Vec::new();
        Law::Ulaw.encode(&[0, 1000, -1000], &mut out);
        let mut back = Vec::new();
        Law::Ulaw.decode(&out, &mut back);
        assert_eq!(back, vec![0, 988, -988]);
    }
}
