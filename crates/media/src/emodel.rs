//! The ITU-T G.107 (06/2015) E-model: R = Ro − Is − Id − Ie-eff + A, and MOS from R (Annex B).
//!
//! Every parameter defaults to G.107 Table 3. With all defaults (and no delay) R = 93.2 and
//! MOS = 4.41, the figures quoted for a lossless G.711 call.
//!
//! Delay: G.107 separates the talker-echo delay `T`, the listener-echo round trip `Tr` and the
//! absolute one-way delay `Ta`. sipmeter's endpoints are software phones with no hybrid or
//! acoustic echo path, so the session scores with `T = Tr = 0` (the residual echo terms of the
//! defaults) and charges the measured one-way delay through `Ta` (Idd, zero up to 100 ms).
//! Callers who model an echo path can pass their own [`Delays`].

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

/// Codec impairment (G.113 Appendix I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.113 Appendix I values. G.711 with packet loss concealment: Ie 0, Bpl 25.1.
    /// G.722 and Opus are wideband; their narrowband-scale figures are not in G.113, so they
    /// are scored with the G.711 values for now (noted in the README).
    pub fn of(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::Opus => {
                CodecImpairment { ie: 0.0, bpl: 25.1 }
            }
        }
    }

    /// G.711 without packet loss concealment (G.113 Appendix I: Bpl 4.3).
    pub const G711_NO_PLC: CodecImpairment = CodecImpairment { ie: 0.0, bpl: 4.3 };
}

/// The terms of one R computation (for tests and traces).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// Basic signal-to-noise ratio Ro.
    pub ro: f64,
    /// Simultaneous impairment Is.
    pub is: f64,
    /// Delay impairment Id = Idte + Idle + Idd.
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

/// Computes R (G.107 §7). `ppl` is the packet-loss probability in percent, `burst_r` the
/// burst ratio (1 for random loss).
pub fn rating(p: &Params, d: Delays, codec: CodecImpairment, ppl: f64, burst_r: f64) -> Terms {
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
    let terv = p.telr - 40.0 * log10((1.0 + d.t / 10.0) / (1.0 + d.t / 150.0))
        + 6.0 * (-0.3 * d.t * d.t).exp();
    let roe = -1.5 * (no - p.rlr);
    let re = 80.0 + 2.5 * (terv - 14.0);
    let idte =
        ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-d.t).exp());
    let rle = 10.5 * (p.wepl + 7.0) * (d.tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = if d.ta <= p.m_t {
        0.0
    } else {
        let x = log10(d.ta / p.m_t) / log10(2.0);
        let k = 6.0 * p.s_t;
        25.0 * ((1.0 + x.powf(k)).powf(1.0 / k) - 3.0 * (1.0 + (x / 3.0).powf(k)).powf(1.0 / k)
            + 2.0)
    };
    let id = idte + idle + idd;

    // §7.5 effective equipment impairment.
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
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_r + codec.bpl);

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

/// MOS (conversational quality estimate) from R, G.107 Annex B (B-4).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
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

    #[test]
    fn mos_bounds() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(round(mos_from_r(50.0), 3), 2.575);
        // Garbage inputs stay finite.
        assert!(g711(f64::NAN, f64::INFINITY, 0.0).r.is_finite());
    }
}
