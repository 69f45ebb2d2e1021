//! The E-model, in the variant that fits the codec: ITU-T G.107 (06/2015) for narrowband
//! (G.711) and ITU-T G.107.1 (06/2019, with Corrigendum 1, 01/2020) for wideband (G.722, Opus).
//!
//! Narrowband: R = Ro − Is − Id − Ie-eff + A, and MOS from R (G.107 Annex B). Every parameter
//! defaults to G.107 Table 3. With all defaults (and no delay) R = 93.2 and MOS = 4.41, the
//! figures quoted for a lossless G.711 call.
//!
//! Wideband: R is on the G.107.1 scale, whose top is Ro,WB = 129 (not 100): a lossless G.722
//! call (Ie,WB 13) rates 116. MOS comes from Rx = R / 1.29 through the same polynomial
//! (G.107.1 Annex A), so MOS is on one 1–4.5 scale for every codec while R is not; see
//! [`Model`]. G.107.1 sets Is,WB = 0 (its loudness, noise and sidetone terms are not yet
//! covered). The talker- and listener-echo terms are not modelled on the wideband path (see
//! below), so Id,WB is the pure-delay term Idd,WB = 1.29 · Idd, with Idd as in G.107.
//!
//! Delay: G.107 separates the talker-echo delay `T`, the listener-echo round trip `Tr` and the
//! absolute one-way delay `Ta`. sipmeter's endpoints are software phones with no hybrid or
//! acoustic echo path, so the session scores with `T = Tr = 0` (the residual echo terms of the
//! defaults) and charges the measured one-way delay through `Ta` (Idd, zero up to 100 ms).
//! Callers who model an echo path can pass their own [`Delays`] (narrowband only: the wideband
//! path reads `Ta` alone).
//!
//! Sources and what could be checked: docs/media.md ("E-model per codec") lists each figure,
//! where it comes from, and which ones this project could not check against the ITU text.

use crate::sdp::Codec;

/// G.107 Table 3 input parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Send loudness rating, dB.
    pub slr: f64,
    /// Receive loudness rating, dB.
    pub rlr: f64,
    /// Sidetone masking rating, dB.
    pub stmr: f64,
    /// Listener sidetone rating, dB.
    pub lstr: f64,
    /// D-value of the telephone, send side.
    pub ds: f64,
    /// D-value of the telephone, receive side.
    pub dr: f64,
    /// Talker echo loudness rating, dB.
    pub telr: f64,
    /// Weighted echo path loss, dB.
    pub wepl: f64,
    /// Quantising distortion units.
    pub qdu: f64,
    /// Circuit noise at the 0 dBr point, dBm0p.
    pub nc: f64,
    /// Noise floor at the receive side, dBmp.
    pub nfor: f64,
    /// Room noise at the send side, dB(A).
    pub ps: f64,
    /// Room noise at the receive side, dB(A).
    pub pr: f64,
    /// Advantage factor.
    pub a: f64,
    /// Delay sensitivity (2015 revision; 1 is the classic curve).
    pub s_t: f64,
    /// Minimum perceivable delay, ms (2015 revision; 100 is the classic curve).
    pub m_t: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            slr: 8.0,
            rlr: 2.0,
            stmr: 15.0,
            lstr: 18.0,
            ds: 3.0,
            dr: 3.0,
            telr: 65.0,
            wepl: 110.0,
            qdu: 1.0,
            nc: -70.0,
            nfor: -64.0,
            ps: 35.0,
            pr: 35.0,
            a: 0.0,
            s_t: 1.0,
            m_t: 100.0,
        }
    }
}

/// The delays of G.107 §7.4, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Delays {
    /// Mean one-way delay of the echo path (talker echo).
    pub t: f64,
    /// Round-trip delay in a 4-wire loop (listener echo).
    pub tr: f64,
    /// Absolute one-way delay.
    pub ta: f64,
}

/// Which E-model a codec is scored with, and so which R scale its `r_factor` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// ITU-T G.107, narrowband: R up to 100 (93.2 for a lossless G.711 call).
    G107,
    /// ITU-T G.107.1, wideband: R up to Ro,WB = 129.
    G1071,
}

impl Model {
    /// The Recommendation's number, as reported ("G.107" or "G.107.1").
    pub fn name(self) -> &'static str {
        match self {
            Model::G107 => "G.107",
            Model::G1071 => "G.107.1",
        }
    }

    /// The top of this model's R scale (the `r_factor_scale` metric): 100 or 129.
    /// R / (scale / 100) puts a wideband R on the narrowband scale (G.107.1 Annex A, Rx).
    pub fn r_scale(self) -> f64 {
        match self {
            Model::G107 => 100.0,
            Model::G1071 => 129.0,
        }
    }

    /// MOS (conversational quality estimate) from an R on this model's scale.
    pub fn mos(self, r: f64) -> f64 {
        match self {
            Model::G107 => mos_from_r(r),
            Model::G1071 => mos_from_r_wb(r),
        }
    }
}

/// A codec's equipment impairment, and the model whose scale it is on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie (narrowband) or Ie,WB (wideband).
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
    /// The model these figures belong to.
    pub model: Model,
}

impl CodecImpairment {
    /// The figures sipmeter scores each codec with (sources in docs/media.md):
    ///
    /// - PCMU, PCMA: G.107, G.113 Appendix I: G.711 with packet loss concealment, Ie 0,
    ///   Bpl 25.1.
    /// - G.722 (64 kbit/s): G.107.1, Ie,WB 13 (G.113 Appendix IV, as quoted: not checked
    ///   against the ITU text here) and Bpl 4.3, the G.107 Table 3 default (no published
    ///   wideband Bpl for G.722 was found; 4.3 is the robustness of a codec without PLC, and
    ///   sipmeter's G.722 decoder conceals nothing).
    /// - Opus (16 kHz wideband, 32 kbit/s VBR as `MediaSession` configures it): G.107.1,
    ///   Ie,WB 19.96 and Bpl 19.50, measured for wideband Opus VBR at 13 kbit/s, random loss
    ///   (Alahmadi, Počta, Melvin, ACM TOMM 17(4) art. 133, 2021). No ITU figure exists for
    ///   Opus; 13 kbit/s is the highest wideband rate measured there, so for our 32 kbit/s
    ///   stream the figure is a pessimistic stand-in.
    pub fn of(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu | Codec::Pcma => Self::G711_PLC,
            Codec::G722 => Self::G722,
            Codec::Opus => Self::OPUS_WB,
        }
    }

    /// G.711 with packet loss concealment (G.113 Appendix I: Ie 0, Bpl 25.1).
    pub const G711_PLC: CodecImpairment = CodecImpairment {
        ie: 0.0,
        bpl: 25.1,
        model: Model::G107,
    };

    /// G.711 without packet loss concealment (G.113 Appendix I: Bpl 4.3).
    pub const G711_NO_PLC: CodecImpairment = CodecImpairment {
        ie: 0.0,
        bpl: 4.3,
        model: Model::G107,
    };

    /// G.722 at 64 kbit/s on the wideband scale (see [`CodecImpairment::of`]).
    pub const G722: CodecImpairment = CodecImpairment {
        ie: 13.0,
        bpl: 4.3,
        model: Model::G1071,
    };

    /// Opus, wideband (see [`CodecImpairment::of`]). The published figures are
    /// Ie,WB 19.958882 and Bpl 19.49608704 (random loss).
    pub const OPUS_WB: CodecImpairment = CodecImpairment {
        ie: 19.958882,
        bpl: 19.49608704,
        model: Model::G1071,
    };
}

/// The terms of one R computation (for tests and traces).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// Basic signal-to-noise ratio Ro.
    pub ro: f64,
    /// Simultaneous impairment Is.
    pub is: f64,
    /// Delay impairment Id = Idte (Idtes when STMR > 20 dB) + Idle + Idd.
    pub id: f64,
    /// Pure-delay part of Id.
    pub idd: f64,
    /// Effective equipment impairment Ie-eff.
    pub ie_eff: f64,
    /// The rating R.
    pub r: f64,
}

fn log10(x: f64) -> f64 {
    x.log10()
}

/// Computes R with the codec's model: G.107 §7 for a narrowband codec, G.107.1 §7 for a
/// wideband one (which reads only `a`, `s_t` and `m_t` of `p` and only `ta` of `d`). `ppl` is
/// the packet-loss probability in percent, `burst_r` the burst ratio (1 for random loss).
pub fn rating(p: &Params, d: Delays, codec: CodecImpairment, ppl: f64, burst_r: f64) -> Terms {
    match codec.model {
        Model::G107 => rating_nb(p, d, codec, ppl, burst_r),
        Model::G1071 => rating_wb(p, d.ta, codec, ppl, burst_r),
    }
}

/// The score of one interval: R on the model's scale and the MOS from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// R on `model`'s scale.
    pub r: f64,
    /// MOS, 1–4.5 whatever the model.
    pub mos: f64,
    /// The model used.
    pub model: Model,
}

/// Scores `codec` with the default parameters, no echo path and one-way delay `ta_ms`: what a
/// `MediaSession` reports each second.
pub fn score(codec: Codec, ppl: f64, burst_r: f64, ta_ms: f64) -> Score {
    let imp = CodecImpairment::of(codec);
    let d = Delays {
        ta: ta_ms,
        ..Delays::default()
    };
    let r = rating(&Params::default(), d, imp, ppl, burst_r).r;
    Score {
        r,
        mos: imp.model.mos(r),
        model: imp.model,
    }
}

/// Ie-eff (G.107 eq. 7-29; G.107.1 uses the same form with the wideband Ie and Bpl, and the
/// same constant 95). Out-of-range inputs are clamped: Ppl to 0..=100, BurstR to > 0.
fn ie_eff(codec: CodecImpairment, ppl: f64, burst_r: f64) -> f64 {
    let ppl = if ppl.is_finite() {
        ppl.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let burst_r = if burst_r.is_finite() && burst_r > 0.0 {
        burst_r
    } else {
        1.0
    };
    codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_r + codec.bpl)
}

/// Idd, the pure-delay impairment (G.107 eq. 7-27/7-28), zero up to `m_t`.
fn delay_impairment(p: &Params, ta: f64) -> f64 {
    // NaN and anything up to mT charge nothing.
    if ta.is_nan() || ta <= p.m_t {
        return 0.0;
    }
    let x = log10(ta / p.m_t) / log10(2.0);
    let k = 6.0 * p.s_t;
    25.0 * ((1.0 + x.powf(k)).powf(1.0 / k) - 3.0 * (1.0 + (x / 3.0).powf(k)).powf(1.0 / k) + 2.0)
}

/// G.107.1 R: Ro,WB 129, Is,WB 0, Id,WB = 1.29 · Idd (no echo path), Ie-eff,WB.
fn rating_wb(p: &Params, ta: f64, codec: CodecImpairment, ppl: f64, burst_r: f64) -> Terms {
    let ro = 129.0;
    let idd = 1.29 * delay_impairment(p, ta);
    let ie_eff = ie_eff(codec, ppl, burst_r);
    Terms {
        ro,
        is: 0.0,
        id: idd,
        idd,
        ie_eff,
        r: ro - idd - ie_eff + p.a,
    }
}

/// G.107 R (§7).
fn rating_nb(p: &Params, d: Delays, codec: CodecImpairment, ppl: f64, burst_r: f64) -> Terms {
    // §7.2 basic signal-to-noise ratio.
    let olr = p.slr + p.rlr;
    let nfo = p.nfor + p.rlr;
    let pre = p.pr + 10.0 * log10(1.0 + 10f64.powf((10.0 - p.lstr) / 10.0));
    let nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0).powi(2);
    let no = 10.0
        * log10(
            10f64.powf(p.nc / 10.0)
                + 10f64.powf(nos / 10.0)
                + 10f64.powf(nor / 10.0)
                + 10f64.powf(nfo / 10.0),
        );
    let ro = 15.0 - 1.5 * (p.slr + no);

    // §7.3 simultaneous impairment.
    let xolr = olr + 0.2 * (64.0 + no - p.rlr);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro =
        -10.0 * log10(10f64.powf(-p.stmr / 10.0) + (-d.t / 4.0).exp() * 10f64.powf(-p.telr / 10.0));
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * log10(p.qdu);
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let z = 46.0 / 30.0 - g / 40.0;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let iq = 15.0 * log10(1.0 + 10f64.powf(y) + 10f64.powf(z));
    let is = iolr + ist + iq;

    // §7.4 delay impairment.
    let mut terv = p.telr - 40.0 * log10((1.0 + d.t / 10.0) / (1.0 + d.t / 150.0))
        + 6.0 * (-0.3 * d.t * d.t).exp();
    // G.107 §7.4: with STMR < 9 dB, TERV in Re becomes TERVs = TERV + Ist/2.
    if p.stmr < 9.0 {
        terv += ist / 2.0;
    }
    let roe = -1.5 * (no - p.rlr);
    let re = 80.0 + 2.5 * (terv - 14.0);
    let mut idte =
        ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-d.t).exp());
    // G.107 §7.4: with STMR > 20 dB, Idte becomes Idtes = √(Idte² + Ist²).
    if p.stmr > 20.0 {
        idte = idte.hypot(ist);
    }
    let rle = 10.5 * (p.wepl + 7.0) * (d.tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = delay_impairment(p, d.ta);
    let id = idte + idle + idd;

    // §7.5 effective equipment impairment.
    let ie_eff = ie_eff(codec, ppl, burst_r);

    let r = ro - is - id - ie_eff + p.a;
    Terms {
        ro,
        is,
        id,
        idd,
        ie_eff,
        r,
    }
}

/// MOS (conversational quality estimate) from a narrowband R, G.107 Annex B (B-4).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// MOS from a wideband R (0..=129), G.107.1 Annex A: the G.107 polynomial applied to
/// Rx = R / 1.29, so R 129 gives 4.5 and a lossless G.722 call (R 116) 4.34.
pub fn mos_from_r_wb(r: f64) -> f64 {
    mos_from_r(r / 1.29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g711(ppl: f64, burst_r: f64, ta: f64) -> Terms {
        let d = Delays {
            ta,
            ..Delays::default()
        };
        rating(
            &Params::default(),
            d,
            CodecImpairment::of(Codec::Pcmu),
            ppl,
            burst_r,
        )
    }

    fn round(x: f64, places: i32) -> f64 {
        let m = 10f64.powi(places);
        (x * m).round() / m
    }

    #[test]
    fn defaults_give_93_2_and_4_41() {
        // G.107 defaults, T = Tr = Ta = 0: No = −61.18 dBm0p, Ro = 94.77, Is = 1.41
        // (Iolr 0.44 + Ist 0.00 + Iq 0.97), Id = Idle = 0.15 → R = 93.21, MOS 4.409.
        // Ta up to 100 ms (mT) adds nothing, so any one-way delay ≤ 100 ms gives 93.2.
        let t = g711(0.0, 1.0, 0.0);
        assert_eq!(round(t.ro, 2), 94.77);
        assert_eq!(round(t.is, 2), 1.41);
        assert_eq!(round(t.id, 2), 0.15);
        assert_eq!(round(t.r, 1), 93.2);
        assert_eq!(round(mos_from_r(t.r), 2), 4.41);
        assert_eq!(g711(0.0, 1.0, 100.0).r, t.r);
    }

    #[test]
    fn random_loss_g711_plc() {
        // Ie-eff = Ie + (95 − Ie)·Ppl / (Ppl/BurstR + Bpl), Ie 0, Bpl 25.1, BurstR 1:
        //   1 %: 95·1/26.1 = 3.640 → R = 93.206 − 3.640 = 89.57, MOS 4.33
        //   2 %: 95·2/27.1 = 7.011 → R = 86.20, MOS 4.24 (4.235)
        //   5 %: 95·5/30.1 = 15.781 → R = 77.43, MOS 3.92
        let cases = [
            (1.0, 3.64, 89.57, 4.33),
            (2.0, 7.01, 86.20, 4.24),
            (5.0, 15.78, 77.43, 3.92),
        ];
        for (ppl, ie_eff, r, mos) in cases {
            let t = g711(ppl, 1.0, 0.0);
            assert_eq!(round(t.ie_eff, 2), ie_eff, "ppl {ppl}");
            assert_eq!(round(t.r, 2), r, "ppl {ppl}");
            assert_eq!(round(mos_from_r(t.r), 2), mos, "ppl {ppl}");
        }
    }

    #[test]
    fn bursty_loss_and_delay() {
        // BurstR 2 at 5 %: 95·5/(2.5 + 25.1) = 17.210 → R = 76.00.
        assert_eq!(round(g711(5.0, 2.0, 0.0).r, 2), 76.00);
        // Ta = 200 ms: X = log2(2) = 1, Idd = 25·((1+1)^(1/6) − 3·(1+(1/3)^6)^(1/6) + 2) = 3.044.
        let t = g711(0.0, 1.0, 200.0);
        assert_eq!(round(t.idd, 3), 3.044);
        assert_eq!(round(t.r, 2), 90.16);
        // With an echo path (T = 50 ms, Tr = 100 ms): Idte 1.02 + Idle 0.58 → R = 91.76.
        let d = Delays {
            t: 50.0,
            tr: 100.0,
            ta: 50.0,
        };
        let t = rating(
            &Params::default(),
            d,
            CodecImpairment::of(Codec::Pcma),
            0.0,
            1.0,
        );
        assert_eq!(round(t.r, 2), 91.76);
    }

    /// G.107 §7.4, the two sidetone cases of the talker-echo term: for STMR > 20 dB, Idte
    /// is replaced by Idtes = √(Idte² + Ist²); for STMR < 9 dB, TERV in Re is replaced by
    /// TERVs = TERV + Ist/2. The defaults (STMR 15) take neither.
    #[test]
    fn sidetone_outside_9_to_20_db_changes_the_talker_echo_term() {
        let with = |stmr: f64, d: Delays| {
            let p = Params {
                stmr,
                ..Params::default()
            };
            rating(&p, d, CodecImpairment::G711_PLC, 0.0, 1.0)
        };
        // STMR 25, T = Tr = Ta = 0. STMRo = −10·lg(10^−2.5 + 10^−6.5) = 25.00;
        // Ist = 12·(1 + 2^8)^(1/8) − 28·(1 + (26/19.4)^35)^(1/35) − 13·(1 + (22/33)^13)^(1/13)
        // + 29 = 24.012 − 37.526 − 13.005 + 29 = 2.48. Idte = 0 (T = 0), so Idtes = Ist
        // = 2.48 and Id = 2.48 + Idle 0.15 = 2.63; Is = 0.44 + 2.48 + 0.97 = 3.89;
        // R = 94.77 − 3.89 − 2.63 = 88.24 (90.73 without Idtes).
        let t = with(25.0, Delays::default());
        assert_eq!(round(t.is, 2), 3.89);
        assert_eq!(round(t.id, 2), 2.63);
        assert_eq!(round(t.r, 2), 88.24);
        // STMR 5, T = 50 ms, Tr = 100 ms. STMRo = 5.00, Ist = 4.19; TERV = 65 − 40·lg(6 /
        // 1.333) + 0 = 38.87, TERVs = 38.87 + 4.19/2 = 40.97; Re = 80 + 2.5·(40.97 − 14) =
        // 147.42, Roe = 94.77; Idte = ((Roe − Re)/2 + √((Roe − Re)²/4 + 100) − 1)·(1 − e^−50)
        // = 0.84 (1.02 with TERV); Idle 0.58; R = 94.77 − 5.61 − 1.41 = 87.75 (87.56 with TERV).
        let d = Delays {
            t: 50.0,
            tr: 100.0,
            ta: 50.0,
        };
        let t = with(5.0, d);
        assert_eq!(round(t.is, 2), 5.61);
        assert_eq!(round(t.id, 2), 1.41);
        assert_eq!(round(t.r, 2), 87.75);
        // Inside 9..=20 dB nothing changes: the echo-path case of `bursty_loss_and_delay`.
        assert_eq!(round(with(15.0, d).r, 2), 91.76);
        assert_eq!(round(with(20.0, Delays::default()).id, 2), 0.15);
    }

    #[test]
    fn mos_bounds() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(round(mos_from_r(50.0), 3), 2.575);
        // Garbage inputs stay finite.
        assert!(g711(f64::NAN, f64::INFINITY, 0.0).r.is_finite());
    }
    fn wb(codec: Codec, ppl: f64, burst_r: f64, ta: f64) -> Terms {
        let d = Delays {
            ta,
            ..Delays::default()
        };
        rating(
            &Params::default(),
            d,
            CodecImpairment::of(codec),
            ppl,
            burst_r,
        )
    }

    #[test]
    fn each_codec_is_scored_with_its_model() {
        assert_eq!(CodecImpairment::of(Codec::Pcmu).model, Model::G107);
        assert_eq!(CodecImpairment::of(Codec::Pcma).model, Model::G107);
        assert_eq!(CodecImpairment::of(Codec::G722).model, Model::G1071);
        assert_eq!(CodecImpairment::of(Codec::Opus).model, Model::G1071);
        assert_eq!(Model::G107.name(), "G.107");
        assert_eq!(Model::G1071.name(), "G.107.1");
        assert_eq!(Model::G107.r_scale(), 100.0);
        assert_eq!(Model::G1071.r_scale(), 129.0);
        // G.711 keeps its narrowband figures exactly.
        let s = score(Codec::Pcma, 0.0, 1.0, 60.0);
        assert_eq!((round(s.r, 1), round(s.mos, 2)), (93.2, 4.41));
    }

    #[test]
    fn lossless_g722_is_116_on_the_wideband_scale() {
        // G.107.1: Ro,WB 129, Is,WB 0, Id,WB 0 up to 100 ms, Ie,WB 13 → R = 116;
        // Annex A: Rx = 116 / 1.29 = 89.92 → MOS = 1 + 0.035·Rx + Rx(Rx−60)(100−Rx)·7e-6
        // = 4.337.
        let t = wb(Codec::G722, 0.0, 1.0, 0.0);
        assert_eq!(t.ro, 129.0);
        assert_eq!(t.is, 0.0);
        assert_eq!(t.id, 0.0);
        assert_eq!(t.r, 116.0);
        assert_eq!(round(mos_from_r_wb(t.r), 3), 4.337);
        assert_eq!(wb(Codec::G722, 0.0, 1.0, 100.0).r, 116.0);
        let s = score(Codec::G722, 0.0, 1.0, 45.0);
        assert_eq!((s.r, round(s.mos, 2), s.model), (116.0, 4.34, Model::G1071));
    }

    #[test]
    fn random_loss_g722() {
        // Ie-eff,WB = 13 + (95 − 13)·Ppl / (Ppl + 4.3):
        //   1 %: 82/5.3 = 15.472 → Ie-eff 28.47, R 100.53, Rx 77.93, MOS 3.94
        //   2 %: 164/6.3 = 26.032 → 39.03, R 89.97, Rx 69.74, MOS 3.58 (3.585)
        //   5 %: 410/9.3 = 44.086 → 57.09, R 71.91, Rx 55.75, MOS 2.88
        let cases = [
            (1.0, 28.47, 100.53, 3.94),
            (2.0, 39.03, 89.97, 3.58),
            (5.0, 57.09, 71.91, 2.88),
        ];
        for (ppl, ie_eff, r, mos) in cases {
            let t = wb(Codec::G722, ppl, 1.0, 0.0);
            assert_eq!(round(t.ie_eff, 2), ie_eff, "ppl {ppl}");
            assert_eq!(round(t.r, 2), r, "ppl {ppl}");
            assert_eq!(round(mos_from_r_wb(t.r), 2), mos, "ppl {ppl}");
        }
        // BurstR 2 at 2 %: 164 / (1 + 4.3) = 30.943 → R = 85.06.
        assert_eq!(round(wb(Codec::G722, 2.0, 2.0, 0.0).r, 2), 85.06);
    }

    #[test]
    fn opus_wideband() {
        // Ie,WB 19.958882, Bpl 19.49608704 (Alahmadi et al. 2021, wideband VBR, random loss).
        //   lossless: R = 129 − 19.96 = 109.04, Rx 84.53, MOS 4.18
        //   2 %: (95 − 19.96)·2 / 21.496 = 6.982 → R 102.06, MOS 3.99
        let t = wb(Codec::Opus, 0.0, 1.0, 0.0);
        assert_eq!(round(t.r, 2), 109.04);
        assert_eq!(round(mos_from_r_wb(t.r), 2), 4.18);
        let t = wb(Codec::Opus, 2.0, 1.0, 0.0);
        assert_eq!(round(t.ie_eff, 2), 26.94);
        assert_eq!(round(t.r, 2), 102.06);
        assert_eq!(round(mos_from_r_wb(t.r), 2), 3.99);
    }

    #[test]
    fn wideband_delay_and_bounds() {
        // Ta 200 ms: Idd = 3.044 (as narrowband), ×1.29 on the wideband scale = 3.927.
        let t = wb(Codec::G722, 0.0, 1.0, 200.0);
        assert_eq!(round(t.idd, 3), 3.927);
        assert_eq!(round(t.r, 2), 112.07);
        // The ends of the scale: R 129 → 4.5, R ≤ 0 → 1; the MOS curve is G.107's at R/1.29.
        assert_eq!(mos_from_r_wb(129.0), 4.5);
        assert_eq!(mos_from_r_wb(0.0), 1.0);
        assert_eq!(mos_from_r_wb(f64::NAN), 1.0);
        assert_eq!(mos_from_r_wb(64.5), mos_from_r(50.0));
        // Garbage inputs stay finite.
        assert!(
            wb(Codec::Opus, f64::NAN, f64::INFINITY, f64::NAN)
                .r
                .is_finite()
        );
        assert!(wb(Codec::G722, 1e9, 0.0, -5.0).r.is_finite());
    }
}
