//! A speech-like test signal with talk spurts and pauses at known levels, and a level meter
//! for decoded audio (RMS, VAD-gated speech level, noise level, all in dBov).
//!
//! dBov: 0 dBov is the RMS of a full-scale square wave (ITU-T G.100.1), so
//! `dBov = 20·log10(rms / 32768)`; a full-scale sine is −3.01 dBov.

use std::sync::{Arc, OnceLock};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::wav::WavAudio;

/// The floor reported for digital silence.
pub const FLOOR_DBOV: f64 = -120.0;

/// Frames at or above this level count as speech in the level meter.
pub const VAD_THRESHOLD_DBOV: f64 = -45.0;

/// dBov of a mean energy (mean of squared samples).
pub fn dbov(mean_energy: f64) -> f64 {
    if mean_energy <= 0.0 {
        return FLOOR_DBOV;
    }
    (10.0 * (mean_energy / (32768.0 * 32768.0)).log10()).max(FLOOR_DBOV)
}

/// What a session sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// The generated speech-like signal described by [`SourceConfig`]'s levels and timing.
    #[default]
    Generated,
    /// A WAV clip, resampled to the codec's rate and looped for the call's duration (one
    /// talk spurt: the RTP marker is set on the first packet only).
    Wav(WavAudio),
}

/// How the sent signal sounds.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Generated signal or a WAV clip; the fields below only apply to the generated signal.
    pub kind: SourceKind,
    /// Length of a talk spurt, ms.
    pub talk_ms: u32,
    /// Length of a pause, ms.
    pub pause_ms: u32,
    /// RMS level during talk spurts, dBov.
    pub speech_dbov: f64,
    /// RMS level of the background noise in pauses, dBov.
    pub noise_dbov: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SourceConfig {
    /// Talk 1.2 s / pause 0.8 s at −20 dBov speech over −60 dBov noise.
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Generated,
            talk_ms: 1200,
            pause_ms: 800,
            speech_dbov: -20.0,
            noise_dbov: -60.0,
            seed: 1,
        }
    }
}

/// Harmonics of the voiced signal: (multiple of f0, relative amplitude).
const HARMONICS: [(f64, f64); 4] = [(1.0, 1.0), (2.0, 0.6), (3.0, 0.35), (5.0, 0.2)];
/// The fundamental, Hz.
const F0: f64 = 140.0;

fn voiced(n: u64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * F0 * n as f64 / rate;
    HARMONICS.iter().map(|(k, a)| a * (k * w).sin()).sum()
}

/// One second of the unit-gain voiced signal at 8 or 16 kHz: 140 whole periods, so it repeats
/// exactly. Shared by all sessions (sin() per sample was most of a packet's cost).
fn table(rate: u32) -> Option<&'static [f32]> {
    static T8: OnceLock<Vec<f32>> = OnceLock::new();
    static T16: OnceLock<Vec<f32>> = OnceLock::new();
    let cell = match rate {
        8000 => &T8,
        16000 => &T16,
        _ => return None,
    };
    Some(cell.get_or_init(|| {
        (0..u64::from(rate))
            .map(|n| voiced(n, f64::from(rate)) as f32)
            .collect()
    }))
}

/// Generates 16-bit PCM: a harmonic "voiced" complex during talk spurts, white noise in pauses;
/// or plays a WAV clip in a loop.
#[derive(Debug, Clone)]
pub struct SpeechSource {
    cfg: SourceConfig,
    clip: Option<Arc<[i16]>>,
    sample_rate: u32,
    n: u64,
    speech_gain: f64,
    /// One second of the talk-spurt signal at this gain, rounded to samples: shared by every
    /// source of the same rate and level (`None` where there is no table).
    speech: Option<Arc<[i16]>>,
    noise_amp: f64,
    rng: SmallRng,
}

/// The talk-spurt samples of one second at `rate` and `gain` (what `fill` computes sample by
/// sample), built once per (rate, gain) and shared: the sessions of a run all use the same.
fn speech_samples(rate: u32, gain: f64) -> Option<Arc<[i16]>> {
    type Cache = Vec<((u32, u64), Arc<[i16]>)>;
    static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
    let t = table(rate)?;
    let key = (rate, gain.to_bits());
    let build = || -> Arc<[i16]> { t.iter().map(|u| to_i16(gain * f64::from(*u))).collect() };
    let Ok(mut cache) = CACHE.lock() else {
        return Some(build());
    };
    if let Some((_, s)) = cache.iter().find(|(k, _)| *k == key) {
        return Some(Arc::clone(s));
    }
    let s = build();
    // A handful of levels per run at most; past that, sources keep their own copy.
    if cache.len() < 16 {
        cache.push((key, Arc::clone(&s)));
    }
    Some(s)
}

impl SpeechSource {
    /// A source at this sample rate.
    pub fn new(cfg: SourceConfig, sample_rate: u32) -> Self {
        let full = 32768.0;
        // RMS of Σ aᵢ·sin = sqrt(Σ aᵢ² / 2).
        let unit_rms = (HARMONICS.iter().map(|(_, a)| a * a).sum::<f64>() / 2.0).sqrt();
        let speech_gain = full * 10f64.powf(cfg.speech_dbov / 20.0) / unit_rms;
        // Uniform noise in [−a, a] has RMS a/√3.
        let noise_amp = full * 10f64.powf(cfg.noise_dbov / 20.0) * 3f64.sqrt();
        let clip = match &cfg.kind {
            SourceKind::Generated => None,
            // An empty clip (only possible through `WavAudio::new`) plays silence.
            SourceKind::Wav(w) => Some(w.at_rate(sample_rate.max(1)))
                .map(|c| if c.is_empty() { Arc::from([0i16]) } else { c }),
        };
        let seed = cfg.seed;
        SpeechSource {
            cfg,
            clip,
            sample_rate: sample_rate.max(1),
            n: 0,
            speech_gain,
            speech: speech_samples(sample_rate.max(1), speech_gain),
            noise_amp,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn talking_at(&self, n: u64) -> bool {
        let ms = n * 1000 / u64::from(self.sample_rate);
        let cycle = u64::from(self.cfg.talk_ms) + u64::from(self.cfg.pause_ms);
        cycle == 0 || ms % cycle < u64::from(self.cfg.talk_ms)
    }

    /// True if the next sample starts a talk spurt (the RTP marker, RFC 3551 §4.1).
    pub fn spurt_starts(&self) -> bool {
        if self.clip.is_some() {
            return self.n == 0;
        }
        self.talking_at(self.n) && (self.n == 0 || !self.talking_at(self.n - 1))
    }

    /// Fills `out` with the next samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        if let Some(clip) = &self.clip {
            let len = clip.len() as u64;
            for s in out.iter_mut() {
                *s = clip[(self.n % len) as usize];
                self.n += 1;
            }
            return;
        }
        let rate = u64::from(self.sample_rate);
        let mut rest = out;
        // Runs of samples inside one talk spurt or one pause: the state is worked out once
        // per run, not per sample (the samples are the same as `talking_at` per sample).
        while !rest.is_empty() {
            let (talking, run_end) = self.run_at(self.n);
            let len = usize::try_from(run_end.saturating_sub(self.n))
                .unwrap_or(usize::MAX)
                .clamp(1, rest.len());
            let (run, tail) = rest.split_at_mut(len);
            rest = tail;
            if talking {
                match &self.speech {
                    Some(t) => {
                        // Copies from the shared second, wrapping at its end.
                        let mut i = (self.n % rate) as usize;
                        let mut to = &mut run[..];
                        while !to.is_empty() {
                            let k = to.len().min(t.len() - i);
                            let (head, tail) = to.split_at_mut(k);
                            head.copy_from_slice(&t[i..i + k]);
                            to = tail;
                            i = (i + k) % t.len();
                        }
                    }
                    None => {
                        for (k, s) in run.iter_mut().enumerate() {
                            let unit = voiced(self.n + k as u64, rate as f64);
                            *s = to_i16(self.speech_gain * unit);
                        }
                    }
                }
            } else {
                noise_into(&mut self.rng, self.noise_amp, run);
            }
            self.n += len as u64;
        }
    }

    /// Whether sample `n` is in a talk spurt, and the first sample after `n` where that
    /// changes (`u64::MAX`: never).
    fn run_at(&self, n: u64) -> (bool, u64) {
        let talk = u64::from(self.cfg.talk_ms);
        let cycle = talk + u64::from(self.cfg.pause_ms);
        let talking = self.talking_at(n);
        if cycle == 0 {
            return (true, u64::MAX);
        }
        let rate = u64::from(self.sample_rate);
        let ms = n.saturating_mul(1000) / rate;
        let phase = ms % cycle;
        // The millisecond at which the state flips, then its first sample:
        // the least m with m·1000/rate ≥ that millisecond.
        let flip_ms = ms - phase + if talking { talk } else { cycle };
        let end = flip_ms.saturating_mul(rate).div_ceil(1000);
        (talking, end.max(n + 1))
    }
}

/// Uniform white noise in [−amp, amp], rounded, one generator draw per sample: in 16.16 fixed
/// point from the draw's top 32 bits when `amp` ≤ 65,536 (the defaults: −60 dBov is amp ≈ 57),
/// else in `f64`. Sample k of a seed's sequence is the same however the samples are split
/// into frames.
fn noise_into(rng: &mut SmallRng, amp: f64, out: &mut [i16]) {
    if !(0.0..=65536.0).contains(&amp) {
        for s in out.iter_mut() {
            *s = to_i16(amp * (rng.random::<f64>() * 2.0 - 1.0));
        }
        return;
    }
    let amp_fx = (amp * 65536.0) as i64; // ≤ 2³²
    let span = 2 * amp_fx;
    for s in out.iter_mut() {
        *s = noise_sample(rng.next_u64(), amp_fx, span);
    }
}

/// One noise sample from one draw: `floor((x >> 32) · span / 2³²) − amp`, rounded half up.
#[inline]
fn noise_sample(x: u64, amp_fx: i64, span: i64) -> i16 {
    // One widening multiply: (x >> 32) · span < 2⁶⁵.
    let v = ((i128::from(x >> 32) * i128::from(span)) >> 32) as i64 - amp_fx;
    ((v + (1 << 15)) >> 16).clamp(-32768, 32767) as i16
}

/// `v.round().clamp(-32768.0, 32767.0) as i16` without the libm call (`round` is not an
/// instruction on baseline x86-64): the same result for every `f64`, NaN included (0).
fn to_i16(v: f64) -> i16 {
    if !(-40000.0..=40000.0).contains(&v) {
        return v.round().clamp(-32768.0, 32767.0) as i16;
    }
    // Exact: |v| < 2^52, so `v - t` has no rounding error.
    let t = v as i32;
    let f = v - f64::from(t);
    // Without branches: for noise the three cases come in random order, and a mispredicted
    // branch per sample was most of `fill`'s time.
    let r = t + i32::from(f >= 0.5) - i32::from(f <= -0.5);
    r.clamp(-32768, 32767) as i16
}

/// Levels measured over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    /// RMS of everything, dBov.
    pub rms_dbov: Option<f64>,
    /// RMS of frames classed as speech (VAD-gated), dBov.
    pub speech_dbov: Option<f64>,
    /// RMS of the other frames, dBov.
    pub noise_dbov: Option<f64>,
    /// Share of frames classed as speech.
    pub activity: Option<f64>,
    /// Sign changes per sample of everything (a crude spectral centroid: a sine of f Hz at
    /// rate r gives 2f/r).
    pub zero_crossings: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    energy: f64,
    samples: u64,
    frames: u64,
}

impl Acc {
    fn add(&mut self, energy: f64, samples: u64) {
        self.energy += energy;
        self.samples += samples;
        self.frames += 1;
    }

    fn level(&self) -> Option<f64> {
        (self.samples > 0).then(|| dbov(self.energy / self.samples as f64))
    }
}

/// Measures decoded audio frame by frame. A frame (one packet's worth) is speech when its own
/// level is at or above [`VAD_THRESHOLD_DBOV`]: a fixed-threshold VAD, simple and predictable
/// for a test signal (not a P.56 active speech level).
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    speech: Acc,
    noise: Acc,
    crossings: u64,
    last_negative: Option<bool>,
}

impl LevelMeter {
    /// Adds one decoded frame; its RMS level in dBov (`None` for an empty frame).
    pub fn add_frame(&mut self, pcm: &[i16]) -> Option<f64> {
        if pcm.is_empty() {
            return None;
        }
        // Integer squares (≤ 2³⁰) summed in u64: exact, as the f64 sum was while it stays
        // under 2⁵³ (any frame shorter than 2²³ samples), and it vectorises.
        let energy = pcm
            .iter()
            .map(|s| u64::from(s.unsigned_abs()).pow(2))
            .sum::<u64>() as f64;
        let n = pcm.len() as u64;
        if self.last_negative.is_some_and(|l| l != (pcm[0] < 0)) {
            self.crossings += 1;
        }
        self.crossings += pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as u64;
        self.last_negative = pcm.last().map(|s| *s < 0);
        let level = dbov(energy / n as f64);
        if level >= VAD_THRESHOLD_DBOV {
            self.speech.add(energy, n);
        } else {
            self.noise.add(energy, n);
        }
        Some(level)
    }

    /// Levels since the last call, and a fresh interval.
    pub fn take(&mut self) -> Levels {
        let (s, n) = (
            std::mem::take(&mut self.speech),
            std::mem::take(&mut self.noise),
        );
        let all = Acc {
            energy: s.energy + n.energy,
            samples: s.samples + n.samples,
            frames: s.frames + n.frames,
        };
        Levels {
            rms_dbov: all.level(),
            speech_dbov: s.level(),
            noise_dbov: n.level(),
            activity: (all.frames > 0).then(|| s.frames as f64 / all.frames as f64),
            zero_crossings: (all.samples > 0)
                .then(|| std::mem::take(&mut self.crossings) as f64 / all.samples as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-sample definition `fill` must keep producing, bit for bit.
    fn fill_reference(src: &mut SpeechSource, out: &mut [i16]) {
        let rate = f64::from(src.sample_rate);
        let table = table(src.sample_rate);
        for s in out.iter_mut() {
            let v = if src.talking_at(src.n) {
                let unit = match table {
                    Some(t) => f64::from(t[(src.n % u64::from(src.sample_rate)) as usize]),
                    None => voiced(src.n, rate),
                };
                src.speech_gain * unit
            } else {
                if src.noise_amp > 65536.0 {
                    src.noise_amp * (src.rng.random::<f64>() * 2.0 - 1.0)
                } else {
                    // Uniform in [−amp, amp] from the draw's top 32 bits, in exact rationals
                    // (i128): floor(u·2a/2³²) in 16.16 units, less a, rounded half up.
                    let amp_fx = (src.noise_amp * 65536.0) as i128;
                    let u = i128::from(src.rng.next_u64() >> 32);
                    let v = (u * 2 * amp_fx) >> 32;
                    let v = (v - amp_fx + (1 << 15)) >> 16;
                    *s = v.clamp(-32768, 32767) as i16;
                    src.n += 1;
                    continue;
                }
            };
            *s = v.round().clamp(-32768.0, 32767.0) as i16;
            src.n += 1;
        }
    }

    #[test]
    fn fill_in_runs_gives_the_per_sample_signal() {
        let cases = [
            (SourceConfig::default(), 8000, 160),
            (SourceConfig::default(), 16000, 320),
            (SourceConfig::default(), 48000, 960),
            (SourceConfig::default(), 44100, 441),
            (
                SourceConfig {
                    talk_ms: 7,
                    pause_ms: 3,
                    speech_dbov: 3.0,
                    noise_dbov: -10.0,
                    seed: 9,
                    ..SourceConfig::default()
                },
                8000,
                97,
            ),
            (
                SourceConfig {
                    talk_ms: 0,
                    pause_ms: 0,
                    ..SourceConfig::default()
                },
                8000,
                160,
            ),
            (
                // Noise past the fixed-point range (amp > 65,536): the f64 path.
                SourceConfig {
                    talk_ms: 2,
                    pause_ms: 8,
                    noise_dbov: 6.0,
                    seed: 3,
                    ..SourceConfig::default()
                },
                8000,
                160,
            ),
            (
                SourceConfig {
                    talk_ms: 0,
                    pause_ms: 5,
                    ..SourceConfig::default()
                },
                11025,
                100,
            ),
        ];
        for (cfg, rate, frame) in cases {
            let mut fast = SpeechSource::new(cfg.clone(), rate);
            let mut slow = SpeechSource::new(cfg.clone(), rate);
            let (mut a, mut b) = (vec![0i16; frame], vec![0i16; frame]);
            // 5 s: several talk/pause cycles of the default, many of the short ones.
            for _ in 0..(5 * rate as usize / frame) {
                fast.fill(&mut a);
                fill_reference(&mut slow, &mut b);
                assert_eq!(a, b, "{cfg:?} at {rate} Hz, sample {}", slow.n);
            }
        }
        for v in [
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.4999,
            -2.5,
            0.49999999999999994,
            32767.5,
            -32768.5,
            39999.9,
            -40000.0,
            1e300,
            -1e300,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(to_i16(v), v.round().clamp(-32768.0, 32767.0) as i16, "{v}");
        }
    }

    #[test]
    fn generated_levels_are_the_configured_ones() {
        let mut src = SpeechSource::new(SourceConfig::default(), 8000);
        let mut meter = LevelMeter::default();
        let mut frame = [0i16; 160];
        let mut markers = 0;
        // Two full 2-second cycles: 60 talk frames and 40 pause frames each.
        for _ in 0..200 {
            markers += usize::from(src.spurt_starts());
            src.fill(&mut frame);
            meter.add_frame(&frame);
        }
        assert_eq!(markers, 2);
        let l = meter.take();
        assert_eq!(l.activity, Some(0.6));
        // 140 Hz harmonics over whole 20 ms frames: within rounding of the target.
        let speech = l.speech_dbov.unwrap();
        assert!((speech + 20.0).abs() < 0.05, "{speech}");
        // Uniform noise at −60 dBov from 12 800 samples: the estimate's spread is ~0.04 dB.
        let noise = l.noise_dbov.unwrap();
        assert!((noise + 60.0).abs() < 0.2, "{noise}");
        // The mix: 10·log10(0.6·10^-2 + 0.4·10^-6) = −22.22 dBov.
        let rms = l.rms_dbov.unwrap();
        assert!((rms + 22.218).abs() < 0.05, "{rms}");
        assert_eq!(meter.take(), Levels::default());
    }

    #[test]
    fn a_wav_clip_loops_and_an_empty_one_is_silence() {
        let clip = WavAudio::new(Arc::from([100i16, -200, 300]), 8000);
        let cfg = SourceConfig {
            kind: SourceKind::Wav(clip),
            ..SourceConfig::default()
        };
        let mut src = SpeechSource::new(cfg, 8000);
        assert!(src.spurt_starts());
        let mut out = [0i16; 7];
        src.fill(&mut out);
        assert_eq!(out, [100, -200, 300, 100, -200, 300, 100]);
        assert!(!src.spurt_starts());
        let cfg = SourceConfig {
            kind: SourceKind::Wav(WavAudio::new(Arc::from([]), 8000)),
            ..SourceConfig::default()
        };
        let mut src = SpeechSource::new(cfg, 16000);
        let mut out = [1i16; 5];
        src.fill(&mut out);
        assert_eq!(out, [0; 5]);
    }

    #[test]
    fn dbov_reference_points() {
        assert_eq!(dbov(32768.0 * 32768.0), 0.0);
        // Full-scale sine: mean energy A²/2 → −3.01 dBov.
        assert!((dbov(32768.0 * 32768.0 / 2.0) + 3.0103).abs() < 1e-4);
        assert_eq!(dbov(0.0), FLOOR_DBOV);
    }
}
