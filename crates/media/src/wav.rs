//! WAV files as a media source: a small RIFF/WAVE reader and a windowed-sinc resampler.
//!
//! Supported: PCM 8-bit (unsigned) and 16-bit, G.711 A-law (format 6) and µ-law (format 7),
//! each also inside WAVE_FORMAT_EXTENSIBLE; one or two channels (stereo is mixed down to mono
//! by averaging); any sample rate from 1 Hz to 384 kHz. Everything else is a precise
//! [`WavError`]; the reader never panics on garbage.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::g711::{alaw_to_linear, ulaw_to_linear};

/// Why a WAV file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WavError {
    /// The first 12 bytes are not `RIFF....WAVE`.
    NotRiffWave,
    /// A chunk header or body runs past the end of the file.
    Truncated {
        /// The chunk's four-character id.
        chunk: String,
        /// Bytes the chunk declares.
        declared: u64,
        /// Bytes actually present.
        present: u64,
    },
    /// No `fmt ` chunk before the `data` chunk.
    MissingFmt,
    /// No `data` chunk.
    MissingData,
    /// The `fmt ` chunk is shorter than 16 bytes.
    ShortFmt(u32),
    /// A format tag other than PCM (1), A-law (6), µ-law (7) or extensible (0xFFFE) of those.
    UnsupportedFormat(u16),
    /// Bits per sample this format does not support.
    UnsupportedBits {
        /// The format tag.
        format: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// Channel counts other than 1 or 2.
    UnsupportedChannels(u16),
    /// A sample rate of 0 or above 384 kHz.
    BadSampleRate(u32),
    /// The block alignment does not match channels × bytes per sample.
    BadBlockAlign {
        /// Declared.
        declared: u16,
        /// Expected.
        expected: u16,
    },
    /// The data chunk holds no complete sample frame.
    Empty,
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::NotRiffWave => write!(f, "not a WAV file (no RIFF/WAVE header)"),
            WavError::Truncated {
                chunk,
                declared,
                present,
            } => write!(
                f,
                "truncated: chunk {chunk:?} declares {declared} bytes, {present} present"
            ),
            WavError::MissingFmt => write!(f, "no \"fmt \" chunk before the \"data\" chunk"),
            WavError::MissingData => write!(f, "no \"data\" chunk"),
            WavError::ShortFmt(n) => write!(f, "\"fmt \" chunk of {n} bytes (at least 16)"),
            WavError::UnsupportedFormat(t) => write!(
                f,
                "unsupported format tag {t:#06x} (PCM 1, A-law 6 and µ-law 7 are supported)"
            ),
            WavError::UnsupportedBits { format, bits } => write!(
                f,
                "unsupported {bits} bits per sample for format {format} \
                 (PCM: 8 or 16; G.711: 8)"
            ),
            WavError::UnsupportedChannels(c) => {
                write!(f, "{c} channels (mono or stereo are supported)")
            }
            WavError::BadSampleRate(r) => write!(f, "sample rate {r} Hz (1 to 384000)"),
            WavError::BadBlockAlign { declared, expected } => {
                write!(f, "block align {declared}, expected {expected}")
            }
            WavError::Empty => write!(f, "no audio samples"),
        }
    }
}

impl std::error::Error for WavError {}

const PCM: u16 = 1;
const ALAW: u16 = 6;
const ULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

struct Fmt {
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

fn parse_fmt(body: &[u8]) -> Result<Fmt, WavError> {
    let short = || WavError::ShortFmt(body.len() as u32);
    let mut format = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)?;
    let rate = u32_at(body, 4).ok_or_else(short)?;
    let align = u16_at(body, 12).ok_or_else(short)?;
    let bits = u16_at(body, 14).ok_or_else(short)?;
    if format == EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first two
        // bytes are the format tag.
        format = u16_at(body, 24).ok_or(WavError::ShortFmt(body.len() as u32))?;
    }
    if !matches!(format, PCM | ALAW | ULAW) {
        return Err(WavError::UnsupportedFormat(format));
    }
    let bits_ok = match format {
        PCM => bits == 8 || bits == 16,
        _ => bits == 8,
    };
    if !bits_ok {
        return Err(WavError::UnsupportedBits { format, bits });
    }
    if !(1..=2).contains(&channels) {
        return Err(WavError::UnsupportedChannels(channels));
    }
    if rate == 0 || rate > 384_000 {
        return Err(WavError::BadSampleRate(rate));
    }
    let expected = channels * (bits / 8);
    if align != expected {
        return Err(WavError::BadBlockAlign {
            declared: align,
            expected,
        });
    }
    Ok(Fmt {
        format,
        channels,
        rate,
        bits,
    })
}

/// Mono 16-bit audio read from a WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// The samples (stereo mixed down).
    pub samples: Vec<i16>,
    /// Their rate, Hz.
    pub rate: u32,
}

impl Wav {
    /// Parses a whole WAV file.
    pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(WavError::NotRiffWave);
        }
        let mut pos = 12usize;
        let mut fmt: Option<Fmt> = None;
        while pos < bytes.len() {
            let id = bytes.get(pos..pos + 4);
            let size = u32_at(bytes, pos + 4);
            let (Some(id), Some(size)) = (id, size) else {
                return Err(WavError::Truncated {
                    chunk: String::from_utf8_lossy(&bytes[pos..]).into_owned(),
                    declared: 8,
                    present: (bytes.len() - pos) as u64,
                });
            };
            let start = pos + 8;
            let present = bytes.len() - start;
            if size as usize > present {
                return Err(WavError::Truncated {
                    chunk: String::from_utf8_lossy(id).into_owned(),
                    declared: u64::from(size),
                    present: present as u64,
                });
            }
            let body = &bytes[start..start + size as usize];
            match id {
                b"fmt " => {
                    if body.len() < 16 {
                        return Err(WavError::ShortFmt(size));
                    }
                    fmt = Some(parse_fmt(body)?);
                }
                b"data" => {
                    let f = fmt.ok_or(WavError::MissingFmt)?;
                    return decode(&f, body);
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            pos = start + size as usize + (size as usize & 1);
        }
        Err(WavError::MissingData)
    }
}

fn decode(f: &Fmt, data: &[u8]) -> Result<Wav, WavError> {
    let bytes_per = usize::from(f.bits / 8);
    let channels = usize::from(f.channels);
    let one = |b: &[u8]| -> i32 {
        match (f.format, f.bits) {
            (PCM, 8) => (i32::from(b[0]) - 128) << 8,
            (PCM, _) => i32::from(i16::from_le_bytes([b[0], b[1]])),
            (ALAW, _) => i32::from(alaw_to_linear(b[0])),
            _ => i32::from(ulaw_to_linear(b[0])),
        }
    };
    let samples: Vec<i16> = data
        .chunks_exact(bytes_per * channels)
        .map(|frame| {
            let sum: i32 = frame.chunks_exact(bytes_per).map(one).sum();
            // Averaging stays within i16; round half away from zero.
            let n = channels as i32;
            ((sum + sum.signum() * n / 2) / n) as i16
        })
        .collect();
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(Wav {
        samples,
        rate: f.rate,
    })
}

/// Writes mono 16-bit PCM as a WAV file (for tests and tools).
pub fn write_pcm16(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Zero crossings of the windowed sinc on each side of an output sample.
const SINC_ZEROS: f64 = 16.0;

/// Resamples `input` (treated as periodic, as it is looped) from `from` Hz to `to` Hz with a
/// Blackman-windowed sinc low-pass at 0.95 × the lower Nyquist frequency, 16 zero crossings
/// on each side. The output has `round(len × to / from)` samples.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if input.is_empty() || from == 0 || to == 0 {
        return Vec::new();
    }
    if from == to {
        return input.to_vec();
    }
    let len = input.len();
    let ratio = f64::from(to) / f64::from(from);
    let out_len = ((len as f64 * ratio).round() as usize).max(1);
    // Cutoff relative to the input's Nyquist frequency.
    let fc = ratio.min(1.0) * 0.95;
    let half = (SINC_ZEROS / fc).ceil() as i64;
    let pi = std::f64::consts::PI;
    (0..out_len)
        .map(|i| {
            let t = i as f64 / ratio;
            let center = t.floor() as i64;
            let mut acc = 0.0;
            for k in (center - half + 1)..=(center + half) {
                let x = t - k as f64;
                let w_pos = x / (half as f64);
                if w_pos.abs() >= 1.0 {
                    continue;
                }
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    (pi * fc * x).sin() / (pi * fc * x)
                };
                // Blackman window over [−half, half].
                let p = pi * (w_pos + 1.0);
                let win = 0.42 - 0.5 * p.cos() + 0.08 * (2.0 * p).cos();
                let idx = k.rem_euclid(len as i64) as usize;
                acc += f64::from(input[idx]) * fc * sinc * win;
            }
            acc.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// A WAV clip as a session source: shared between sessions, resampled once per codec rate.
#[derive(Debug, Clone)]
pub struct WavAudio {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    samples: Arc<[i16]>,
    rate: u32,
    at8k: OnceLock<Arc<[i16]>>,
    at16k: OnceLock<Arc<[i16]>>,
}

impl PartialEq for WavAudio {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.rate == other.inner.rate && self.inner.samples == other.inner.samples)
    }
}

impl Eq for WavAudio {}

impl WavAudio {
    /// A clip of mono samples at `rate` Hz (rate 0 counts as 8 kHz).
    pub fn new(samples: Arc<[i16]>, rate: u32) -> Self {
        WavAudio {
            inner: Arc::new(Inner {
                samples,
                rate: rate.max(1),
                at8k: OnceLock::new(),
                at16k: OnceLock::new(),
            }),
        }
    }

    /// Parses a WAV file into a clip.
    pub fn from_wav_bytes(bytes: &[u8]) -> Result<Self, WavError> {
        let w = Wav::parse(bytes)?;
        Ok(WavAudio::new(w.samples.into(), w.rate))
    }

    /// The original samples.
    pub fn samples(&self) -> &Arc<[i16]> {
        &self.inner.samples
    }

    /// Their rate, Hz.
    pub fn rate(&self) -> u32 {
        self.inner.rate
    }

    /// Length, seconds.
    pub fn duration_secs(&self) -> f64 {
        self.inner.samples.len() as f64 / f64::from(self.inner.rate)
    }

    /// RMS level of the clip, dBov.
    pub fn level_dbov(&self) -> f64 {
        let s = &self.inner.samples;
        let e: f64 = s.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        crate::audio::dbov(e / s.len().max(1) as f64)
    }

    /// The clip at `rate` Hz (cached for 8 and 16 kHz).
    pub fn at_rate(&self, rate: u32) -> Arc<[i16]> {
        let i = &self.inner;
        let make = || -> Arc<[i16]> { resample(&i.samples, i.rate, rate).into() };
        match rate {
            8000 => i.at8k.get_or_init(make).clone(),
            16000 => i.at16k.get_or_init(make).clone(),
            _ => make(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// A `f` Hz sine at `dbov` dBov, `secs` long, at `rate`.
    pub(crate) fn tone(f: f64, dbov: f64, rate: u32, secs: f64) -> Vec<i16> {
        // A sine's RMS is A/√2; 0 dBov is RMS 32768.
        let amp = 32768.0 * 10f64.powf(dbov / 20.0) * 2f64.sqrt();
        let n = (secs * f64::from(rate)) as usize;
        (0..n)
            .map(|i| {
                let x = amp * (2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate)).sin();
                x.round() as i16
            })
            .collect()
    }

    fn level(s: &[i16]) -> f64 {
        let e: f64 = s.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        crate::audio::dbov(e / s.len() as f64)
    }

    /// Sign changes per second.
    fn zcr(s: &[i16], rate: u32) -> f64 {
        let c = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        c as f64 * f64::from(rate) / s.len() as f64
    }

    #[test]
    fn pcm16_round_trip_and_resampled_tone_keeps_level_and_pitch() {
        let t = tone(1000.0, -20.0, 44100, 1.0);
        let w = Wav::parse(&write_pcm16(&t, 44100)).unwrap();
        assert_eq!((w.rate, w.samples.len()), (44100, 44100));
        assert_eq!(w.samples, t);
        assert!((level(&t) + 20.0).abs() < 0.01);
        for rate in [8000, 16000] {
            let clip = WavAudio::new(t.clone().into(), 44100);
            let r = clip.at_rate(rate);
            assert_eq!(r.len(), rate as usize);
            let l = level(&r);
            assert!((l + 20.0).abs() < 0.05, "{rate}: {l}");
            let z = zcr(&r, rate);
            assert!((z - 2000.0).abs() < 5.0, "{rate}: {z}");
        }
    }

    #[test]
    fn resampler_removes_content_above_the_new_nyquist() {
        // 6 kHz at 44.1 kHz cannot exist at 8 kHz: it must be filtered, not aliased to 2 kHz.
        let t = tone(6000.0, -20.0, 44100, 0.5);
        let r = resample(&t, 44100, 8000);
        let l = level(&r[200..r.len() - 200]);
        assert!(l < -70.0, "{l}");
        // Upsampling 8 → 16 kHz keeps a 3 kHz tone.
        let t = tone(3000.0, -10.0, 8000, 0.5);
        let r = resample(&t, 8000, 16000);
        assert!((level(&r) + 10.0).abs() < 0.1, "{}", level(&r));
    }

    fn header(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let align = channels * (bits / 8).max(1);
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&format.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        v.extend_from_slice(&align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // an odd chunk, padded
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn formats_stereo_and_g711() {
        // Stereo 16-bit: L = 1000, R = 3000 → 2000; L = −1, R = −2 → −2 (half away from 0).
        let d: Vec<u8> = [1000i16, 3000, -1, -2]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let w = Wav::parse(&header(1, 2, 22050, 16, &d)).unwrap();
        assert_eq!(
            w,
            Wav {
                samples: vec![2000, -2],
                rate: 22050
            }
        );
        // 8-bit unsigned: 128 is zero, 255 is +127·256, 0 is −32768.
        let w = Wav::parse(&header(1, 1, 8000, 8, &[128, 255, 0])).unwrap();
        assert_eq!(w.samples, vec![0, 32512, -32768]);
        // G.711: µ-law 0xFF and A-law 0xD5 are (near) zero; 0x80 is the largest µ-law value.
        let w = Wav::parse(&header(7, 1, 8000, 8, &[0xFF, 0x80])).unwrap();
        assert_eq!(w.samples, vec![0, 32124]);
        let w = Wav::parse(&header(6, 1, 8000, 8, &[0xD5])).unwrap();
        assert_eq!(w.samples, vec![alaw_to_linear(0xD5)]);
        assert!(w.samples[0].abs() <= 8);
    }

    #[test]
    fn precise_errors() {
        assert_eq!(Wav::parse(b"RIFX"), Err(WavError::NotRiffWave));
        assert_eq!(
            Wav::parse(&header(3, 1, 8000, 32, &[0; 4])),
            Err(WavError::UnsupportedFormat(3))
        );
        assert_eq!(
            Wav::parse(&header(1, 1, 8000, 24, &[0; 3])),
            Err(WavError::UnsupportedBits {
                format: 1,
                bits: 24
            })
        );
        assert_eq!(
            Wav::parse(&header(1, 6, 8000, 16, &[0; 12])),
            Err(WavError::UnsupportedChannels(6))
        );
        assert_eq!(
            Wav::parse(&header(1, 1, 0, 16, &[0; 2])),
            Err(WavError::BadSampleRate(0))
        );
        assert_eq!(
            Wav::parse(&header(1, 1, 8000, 16, &[0])),
            Err(WavError::Empty)
        );
        let good = header(1, 1, 8000, 16, &[1, 0, 2, 0]);
        assert_eq!(
            Wav::parse(&good[..good.len() - 1]),
            Err(WavError::Truncated {
                chunk: "data".into(),
                declared: 4,
                present: 3
            })
        );
        // Data before fmt; no data at all.
        let mut v = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
        assert_eq!(Wav::parse(&v), Err(WavError::MissingFmt));
        v.truncate(12);
        assert_eq!(Wav::parse(&v), Err(WavError::MissingData));
        let msg = WavError::UnsupportedBits {
            format: 1,
            bits: 24,
        }
        .to_string();
        assert!(msg.contains("24 bits"), "{msg}");
    }

    #[test]
    fn never_panics_on_truncated_or_garbled_files() {
        let t = tone(440.0, -10.0, 11025, 0.01);
        let good = write_pcm16(&t, 11025);
        let stereo = header(1, 2, 48000, 16, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut rng = SmallRng::seed_from_u64(5);
        let mut ok = 0;
        for base in [&good, &stereo] {
            // Every truncation: never a panic, and an error unless the whole file is there
            // (or the cut only removes trailing bytes of an odd final frame).
            for n in 0..base.len() {
                if Wav::parse(&base[..n]).is_ok() {
                    ok += 1;
                }
            }
            // Random byte flips over the header area and random garbage.
            for _ in 0..20_000 {
                let mut v = base.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..v.len().min(60));
                    v[i] = rng.random();
                }
                if let Ok(w) = Wav::parse(&v) {
                    assert!(!w.samples.is_empty() && w.rate > 0);
                }
                let g: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
                let _ = Wav::parse(&g);
                let mut h = b"RIFF\0\0\0\0WAVE".to_vec();
                h.extend_from_slice(&g);
                let _ = Wav::parse(&h);
            }
        }
        assert_eq!(ok, 0);
    }
}
