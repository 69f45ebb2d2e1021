//! RFC 4733 telephone-event payloads (DTMF digits in RTP).

/// An undecodable telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// Shorter than 4 bytes.
    #[error("telephone-event payload shorter than 4 bytes ({0})")]
    TooShort(usize),
}

/// One telephone-event payload block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 A-D, 16 flash.
    pub event: u8,
    /// E bit: this is the end of the event.
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Encodes the 4-byte payload.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            if self.end { 0x80 } else { 0 } | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// Decodes the first block of a payload (redundant blocks after it are ignored).
    pub fn decode(p: &[u8]) -> Result<Self, DtmfError> {
        if p.len() < 4 {
            return Err(DtmfError::TooShort(p.len()));
        }
        Ok(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3f,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }
}

/// The event code of a DTMF character (RFC 4733 §3.2 Table 7).
pub fn event_of(c: char) -> Option<u8> {
    Some(match c.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        l @ 'A'..='D' => l as u8 - b'A' + 12,
        _ => return None,
    })
}

/// The DTMF character of an event code.
pub fn char_of(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4733_layout() {
        // Digit 5, end, volume 10, 800 samples (100 ms at 8 kHz).
        let e = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.encode(), [5, 0x8a, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::decode(&e.encode()), Ok(e));
        assert_eq!(
            TelephoneEvent::decode(&[1, 2, 3]),
            Err(DtmfError::TooShort(3))
        );
    }

    #[test]
    fn characters() {
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(event_of(c), Some(i as u8));
            assert_eq!(char_of(i as u8), Some(c));
        }
        assert_eq!(event_of('d'), Some(15));
        assert_eq!(event_of('x'), None);
        assert_eq!(char_of(16), None);
    }
}
