//! RTP fixed header (RFC 3550 §5.1): zero-copy parse and a writer. CSRC lists, header
//! extensions (§5.3.1) and padding are handled; malformed input is an error, never a panic.

/// An undecodable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("rtp packet shorter than 12 bytes ({0})")]
    TooShort(usize),
    /// Version is not 2.
    #[error("rtp version {0} (2 expected)")]
    BadVersion(u8),
    /// The CSRC list runs past the end.
    #[error("rtp csrc list truncated")]
    CsrcTruncated,
    /// The header extension runs past the end.
    #[error("rtp header extension truncated")]
    ExtensionTruncated,
    /// The padding count is 0 or longer than the payload.
    #[error("rtp padding length {0} invalid")]
    BadPadding(u8),
}

/// A header extension (RFC 3550 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The profile-defined 16 bits (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    csrc: &'a [u8],
    /// Header extension if the X bit is set.
    pub extension: Option<Extension<'a>>,
    /// The payload without padding.
    pub payload: &'a [u8],
    /// Padding bytes removed from the end (0 if none).
    pub padding: u8,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < 12 {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_ext = buf[0] & 0x10 != 0;
        let cc = usize::from(buf[0] & 0x0f);
        let mut off = 12 + 4 * cc;
        if buf.len() < off {
            return Err(RtpError::CsrcTruncated);
        }
        let csrc = &buf[12..off];
        let extension = if has_ext {
            if buf.len() < off + 4 {
                return Err(RtpError::ExtensionTruncated);
            }
            let profile = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            let start = off + 4;
            let end = start + 4 * words;
            if buf.len() < end {
                return Err(RtpError::ExtensionTruncated);
            }
            off = end;
            Some(Extension {
                profile,
                data: &buf[start..end],
            })
        } else {
            None
        };
        let mut end = buf.len();
        let mut padding = 0;
        if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding, itself included.
            padding = buf[buf.len() - 1];
            let p = usize::from(padding);
            if p == 0 || p > buf.len() - off {
                return Err(RtpError::BadPadding(padding));
            }
            end -= p;
        }
        Ok(RtpPacket {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: be32(&buf[4..8]),
            ssrc: be32(&buf[8..12]),
            csrc,
            extension,
            payload: &buf[off..end],
            padding,
        })
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.csrc.chunks_exact(4).map(be32)
    }
}

/// What to put in an RTP header we send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// Marker bit (first packet of a talk spurt, RFC 3551 §4.1).
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// CSRCs (at most 15 are written).
    pub csrcs: Vec<u32>,
    /// Extension profile and data (data is zero-padded to a multiple of 4).
    pub extension: Option<(u16, Vec<u8>)>,
    /// Pad the packet to a multiple of this many bytes (0 or 1: no padding).
    pub pad_to: u8,
}

impl RtpHeader {
    /// Appends header + payload (+ padding) to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let cc = self.csrcs.len().min(15);
        out.push(0x80 | if self.extension.is_some() { 0x10 } else { 0 } | cc as u8);
        out.push(if self.marker { 0x80 } else { 0 } | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs[..cc] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = &self.extension {
            let words = data.len().div_ceil(4).min(usize::from(u16::MAX));
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&(words as u16).to_be_bytes());
            let n = (words * 4).min(data.len());
            out.extend_from_slice(&data[..n]);
            out.resize(out.len() + words * 4 - n, 0);
        }
        out.extend_from_slice(payload);
        if self.pad_to > 1 {
            let len = out.len() - start;
            let pad = usize::from(self.pad_to) - len % usize::from(self.pad_to);
            // Always at least one byte when padding is asked for, so the P bit is honest.
            out.resize(out.len() + pad - 1, 0);
            out.push(pad as u8);
            out[start] |= 0x20;
        }
    }
}

/// RFC 5761 §4: on a muxed port, second-byte values 192..=223 (payload types 64..95 with the
/// marker bit) are RTCP; everything else is RTP.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_csrc_extension_padding() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xfffe,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            csrcs: vec![1, 2],
            extension: Some((0xbede, vec![0x10, 0xaa, 0, 0, 0x20])),
            pad_to: 16,
        };
        let mut out = Vec::new();
        h.write(&[1, 2, 3], &mut out);
        // 12 + 8 csrc + 4 ext hdr + 8 ext data + 3 payload = 35 → padded to 48.
        assert_eq!(out.len(), 48);
        assert_eq!(out[0], 0x80 | 0x20 | 0x10 | 2);
        let p = RtpPacket::parse(&out).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.sequence, 0xfffe);
        assert_eq!(p.timestamp, 0xdead_beef);
        assert_eq!(p.ssrc, 0x1234_5678);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        let ext = p.extension.unwrap();
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0xaa, 0, 0, 0x20, 0, 0, 0]);
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.padding, 13);
    }

    #[test]
    fn known_bytes() {
        // A PCMU packet as captured: V=2, PT 0, seq 1, ts 160, SSRC 0x0a0b0c0d.
        let b = [
            0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0x0a, 0x0b, 0x0c, 0x0d, 0xff, 0x7f,
        ];
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!((p.payload_type, p.sequence, p.timestamp), (0, 1, 160));
        assert_eq!(p.ssrc, 0x0a0b_0c0d);
        assert_eq!(p.payload, &[0xff, 0x7f]);
        assert!(!is_rtcp(&b));
        assert!(is_rtcp(&[0x80, 200]));
        assert!(is_rtcp(&[0x81, 201]));
        assert!(!is_rtcp(&[0x80, 0x80 | 96]));
    }

    #[test]
    fn errors() {
        let mut b = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(RtpPacket::parse(&b[..11]), Err(RtpError::TooShort(11)));
        b[0] = 0x40;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadVersion(1)));
        b[0] = 0x81;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::CsrcTruncated));
        b[0] = 0x90;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::ExtensionTruncated));
        b.extend_from_slice(&[0xbe, 0xde, 0, 2, 0, 0, 0, 0]);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::ExtensionTruncated));
        b[0] = 0xa0;
        b.truncate(12);
        b.push(0);
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(0)));
        *b.last_mut().unwrap() = 2;
        assert_eq!(RtpPacket::parse(&b), Err(RtpError::BadPadding(2)));
        *b.last_mut().unwrap() = 1;
        assert_eq!(RtpPacket::parse(&b).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn never_panics() {
        let mut seed = 7u32;
        for len in 0..64 {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 16) as u8
                    })
                    .collect();
                let _ = RtpPacket::parse(&b);
                let mut v = b.clone();
                if !v.is_empty() {
                    v[0] = 0x80 | (v[0] & 0x3f);
                }
                let _ = RtpPacket::parse(&v);
            }
        }
    }
}
