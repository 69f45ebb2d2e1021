//! What the IVR menu tests check whoever plays the IVR (`events.rs`: our own callees;
//! `sipp.rs`: SIPp): a prompt of 1 s then 2 s of silence, looped, from about the answer on,
//! and callers that press 1 on the first silence and 2 on the second (`nth = 2`).

use agent::engine::EndpointReport;

/// `len` samples at 8 kHz of what the tone tests play: 0.5 s of silence, a fax CED (2100 Hz,
/// about −10 dBm0) for 1 s, 0.5 s of silence, the in-band DTMF digits 4 and 7 (100 ms each,
/// 100 ms apart, from 2 s on), 0.2 s of silence, then, if `busy`, a US busy tone (480+620
/// Hz, 0.5 s on, 0.5 s off) from 2.5 s on, else silence.
#[allow(dead_code)] // Each test binary takes what it needs.
pub fn tones_pcm(len: u32, busy: bool) -> Vec<i16> {
    let sine = |f: &[f64], i: u32| -> i16 {
        f.iter()
            .map(|f| 6000.0 * (2.0 * std::f64::consts::PI * f * f64::from(i) / 8000.0).sin())
            .sum::<f64>()
            .round() as i16
    };
    (0..len)
        .map(|i| match i {
            4000..12_000 => sine(&[2100.0], i),
            16_000..16_800 => sine(&[770.0, 1209.0], i),
            17_600..18_400 => sine(&[852.0, 1209.0], i),
            20_000.. if busy && (i - 20_000) % 8000 < 4000 => sine(&[480.0, 620.0], i),
            _ => 0,
        })
        .collect()
}

/// Asserts `got` (ms after the answer) is about `want`: from 60 ms before (the first packet
/// may come before the caller has the 200 OK) to `late` after (the peer's media start).
pub fn near(got: Option<f64>, want: f64, late: f64) {
    let got = got.unwrap_or(f64::NAN);
    assert!(
        (want - 60.0..want + late).contains(&got),
        "{got} ms, expected about {want} ms"
    );
}

/// A caller walked the menu: its two actions on `silence` fired once each, 2 s and 5 s into
/// the call (a second after each prompt ended), it sent 1 then 2, and it heard the prompts
/// at 0–1 s and 3–4 s of its first call (their loudest frames returned, for the caller to
/// check against what the IVR played).
pub fn walked_the_menu(r: &EndpointReport, late: f64) -> Vec<f64> {
    let [first, second] = &r.event_actions[..] else {
        panic!("{:?}", r.event_actions)
    };
    assert_eq!(
        (first.on.as_str(), first.nth, first.fired),
        ("silence", None, 1)
    );
    assert_eq!(
        (second.on.as_str(), second.nth, second.fired),
        ("silence", Some(2), 1)
    );
    near(first.first_ms, 2000.0, late);
    near(second.first_ms, 5000.0, late);
    assert_eq!(r.dtmf_sent, "12");
    assert!(r.sound_heard.len() >= 2, "{:?}", r.sound_heard);
    r.sound_heard
        .iter()
        .zip([(0.0, 1000.0), (3000.0, 4000.0)])
        .map(|(s, (from, to))| {
            assert_eq!(s.call, 1, "{s:?}");
            near(Some(s.start_ms), from, late);
            near(s.end_ms, to, late);
            s.level_dbov
        })
        .collect()
}
