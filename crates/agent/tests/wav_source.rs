//! A test file whose callers send a WAV file: a whole run through the built-in registrar,
//! and the callees receive the file's level.

use std::time::{SystemTime, UNIX_EPOCH};

use agent::engine::{EndpointReport, Outcome, StopHandle};

fn samples_of(r: &EndpointReport, name: &str) -> Vec<f64> {
    r.samples
        .iter()
        .filter_map(|s| s.metrics.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
        .collect()
}

#[test]
fn callees_receive_the_wav_files_level() {
    let dir = std::env::temp_dir().join(format!("sipmeter-wavrun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 1 s of 1 kHz at −20 dBov, 48 kHz mono 16-bit (1000 whole periods).
    let amp = 32768.0 * 0.1 * 2f64.sqrt();
    let tone: Vec<i16> = (0..48_000)
        .map(|i| {
            (amp * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 48_000.0).sin()).round()
                as i16
        })
        .collect();
    let wav = media::wav::write_pcm16(&tone, 48_000);
    let file_level = media::wav::WavAudio::from_wav_bytes(&wav)
        .unwrap()
        .level_dbov();
    assert!((file_level + 20.0).abs() < 0.01, "{file_level}");
    std::fs::write(dir.join("tone.wav"), wav).unwrap();
    let text = r#"name = "wav"
duration = "3s"

[[registrar]]
id = "builtin"
kind = "builtin"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"
codecs = ["G722", "PCMA"]

[[group]]
name = "narrow"
endpoints = 1
registrar = "builtin"
call = "sip:callees1@sipmeter.builtin"
codecs = ["PCMA"]
source = "tone.wav"

[[group]]
name = "wide"
endpoints = 1
registrar = "builtin"
call = "sip:callees2@sipmeter.builtin"
codecs = ["G722"]
source = "tone.wav"
"#;
    let file = dir.join("wav.toml").display().to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared =
        agent::testfile::prepare(&file, text, b"wav secret", now).unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_samples = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.calls_answered, 2, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let levels = samples_of(r, "rx_level_dbov");
        eprintln!(
            "{} {:?} {levels:?}",
            r.user,
            r.media.as_ref().and_then(|m| m.codec)
        );
        assert!(levels.len() >= 2, "{}: {levels:?}", r.user);
        if r.group == "callees" {
            // The WAV tone, resampled to 8 kHz (A-law) or 16 kHz (G.722): its level within 1 dB.
            for l in &levels {
                assert!((l - file_level).abs() < 1.0, "{}: {levels:?}", r.user);
            }
        } else {
            let codec = if r.group == "narrow" { "PCMA" } else { "G722" };
            assert_eq!(
                r.media.as_ref().and_then(|m| m.codec),
                Some(codec),
                "{r:#?}"
            );
            // The callees send the generated signal: −20 dBov talk spurts.
            for l in &levels {
                assert!((l + 20.0).abs() < 1.0, "{}: {levels:?}", r.user);
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
