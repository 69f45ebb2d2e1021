//! Scenario actions on an event (`on = "dtmf:5"`, `held`, `resumed`, `reinvite`,
//! `answered`) and the `hangup` action, end to end over loopback UDP through the built-in
//! registrar, set up from test files: one group's actions answer what the other group's
//! actions did in the call, and the reports and traces of both sides say what happened.

use agent::engine::{EndpointReport, Outcome, StopHandle};
use agent::trace::Direction;

mod ivr_common;

/// A test file's head: the built-in registrar over the shard's shared UDP socket (callers
/// and callees share each call's Call-ID there: the callees' own requests, from their
/// actions, must get their responses, routed by the transaction they answer) and two
/// answering callees, whose `actions` come next.
fn head(name: &str, duration: &str, seed: u32) -> String {
    format!(
        "name = \"{name}\"\nduration = \"{duration}\"\nseed = {seed}\n\n[[registrar]]\n\
         id = \"builtin\"\nkind = \"builtin\"\ntransport = \"udp\"\n\n[[group]]\nname = \"callees\"\nendpoints = 2\n\
         registrar = \"builtin\"\nrole = \"answer\"\n"
    )
}

/// Runs a test file (traces kept) and returns its reports: two callers and two callees, each
/// SUCCESS.
fn run(name: &str, file: &str) -> Vec<EndpointReport> {
    // The built-in registrar's credentials are issued for a day from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare(name, file, name.as_bytes(), now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (_, reports) = agent::runner::execute(prepared, tx, StopHandle::default()).unwrap();
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    reports
}

/// How often the action `on` → `action` ran, and when first (ms after the answer).
fn fired(r: &EndpointReport, on: &str, action: &str) -> (u32, Option<f64>) {
    let a = r
        .event_actions
        .iter()
        .find(|a| a.on == on && a.action == action)
        .unwrap_or_else(|| panic!("no action {action} on {on}: {:?}", r.event_actions));
    (a.fired, a.first_ms)
}

fn notes(r: &EndpointReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Note)
        .map(|e| e.text.as_str())
        .collect()
}

fn has_note(r: &EndpointReport, text: &str) -> bool {
    notes(r).iter().any(|n| n.contains(text))
}

/// The first line of each message of `direction` in the trace that starts with `start`.
fn messages<'a>(r: &'a EndpointReport, direction: Direction, start: &str) -> Vec<&'a str> {
    r.trace
        .iter()
        .filter(|e| e.direction == direction && e.text.starts_with(start))
        .map(|e| e.text.lines().next().unwrap_or(""))
        .collect()
}

/// The callers send DTMF 5 in the RTP a second into the call; the callees hold them on it;
/// held, the callers send 7 by INFO; on 7 the callees take them off hold half a second
/// later; resumed, the callers send 8. A second 5 (by INFO) holds nobody again: an action
/// fires once per call unless it repeats.
#[test]
fn a_digit_holds_the_caller_and_the_caller_answers_its_hold_and_resume() {
    let file = head("events-hold", "4s", 21)
        + r#"actions = [
  { on = "dtmf:5", do = "hold" },
  { on = "dtmf:7", after = "500ms", do = "resume" },
]

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [
  { at = "1s", do = "dtmf", digits = "5" },
  { at = "2500ms", do = "dtmf", digits = "5", method = "info" },
  { on = "held", do = "dtmf", digits = "7", method = "info" },
  { on = "resumed", do = "dtmf", digits = "8", method = "info" },
]
"#;
    let reports = run("events-hold.toml", &file);
    for r in reports.iter().filter(|r| r.group == "callees") {
        let (n, first) = fired(r, "dtmf:5", "hold");
        assert_eq!(
            n, 1,
            "the second 5 holds nobody again: {:?}",
            r.event_actions
        );
        // On the digit sent a second into the call, not before.
        assert!(first.unwrap() >= 1000.0, "{first:?}");
        let (n, first_resume) = fired(r, "dtmf:7", "resume");
        assert_eq!(n, 1, "{:?}", r.event_actions);
        assert!(
            first_resume.unwrap() >= first.unwrap() + 500.0,
            "{first_resume:?}"
        );
        // 7 and 8 by INFO as they came, the RTP 5 at the call's end, the INFO 5.
        let mut digits: Vec<char> = r.dtmf_received.chars().collect();
        digits.sort_unstable();
        assert_eq!(digits, ['5', '5', '7', '8'], "{}", r.dtmf_received);
        assert!(
            has_note(r, "action on dtmf:5: hold (re-INVITE a=sendonly)"),
            "{:#?}",
            notes(r)
        );
        assert!(
            has_note(r, "event dtmf:7: resume in 500 ms"),
            "{:#?}",
            notes(r)
        );
        assert!(
            has_note(r, "action on dtmf:7: resume (re-INVITE a=sendrecv)"),
            "{:#?}",
            notes(r)
        );
        assert_eq!(
            messages(r, Direction::Sent, "INVITE ").len(),
            2,
            "hold and resume"
        );
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        // The callee's hold and resume, seen by the caller: its actions on them ran.
        assert_eq!(fired(r, "held", "dtmf").0, 1, "{:?}", r.event_actions);
        assert_eq!(fired(r, "resumed", "dtmf").0, 1, "{:?}", r.event_actions);
        // In the order sent: 5 (RTP), 7 on the hold, 8 on the resume, 5 (INFO).
        assert_eq!(r.dtmf_sent, "5785");
        assert!(
            has_note(r, "action on held: DTMF 7 (INFO)"),
            "{:#?}",
            notes(r)
        );
        assert!(
            has_note(r, "action on resumed: DTMF 8 (INFO)"),
            "{:#?}",
            notes(r)
        );
        // Both re-INVITEs came from the callee: sendonly, then sendrecv.
        let reinvites: Vec<&str> = r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Received && e.text.starts_with("INVITE "))
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(reinvites.len(), 2);
        assert!(reinvites[0].contains("a=sendonly"), "{}", reinvites[0]);
        assert!(reinvites[1].contains("a=sendrecv"), "{}", reinvites[1]);
    }
}

/// A caller dials `1#` by INFO a second into each of its two 5 s calls; the callee hangs up
/// on the `#`: each call ends early, with the callee's BYE (the action fires once in each
/// call), and every endpoint ends SUCCESS.
#[test]
fn the_callee_hangs_up_on_a_hash() {
    let file = head("events-hangup", "5s", 22)
        + r#"actions = [{ on = "dtmf:#", do = "hangup" }]

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
calls = 2
pause = "200ms"
actions = [{ at = "1s", do = "dtmf", digits = "1#", method = "info", duration = "50ms" }]
"#;
    let reports = run("events-hangup.toml", &file);
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert_eq!(r.dtmf_received, "1#1#");
        let (n, first) = fired(r, "dtmf:#", "hangup");
        assert_eq!(n, 2, "once in each call");
        // `#` goes 2 × 50 ms after `1`, 1.1 s after the caller's answer (the 200 OK); the
        // callee's answer (the ACK) is a moment later.
        assert!((1050.0..1500.0).contains(&first.unwrap()), "{first:?}");
        assert!(
            has_note(r, "action on dtmf:#: hang-up (BYE)"),
            "{:#?}",
            notes(r)
        );
        assert_eq!(messages(r, Direction::Sent, "BYE ").len(), 2);
        assert!(messages(r, Direction::Received, "BYE ").is_empty());
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        // The first call's length (timings are the first call's).
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!((1100.0..3000.0).contains(&lasted), "{lasted} ms of 5 s");
        assert_eq!(messages(r, Direction::Received, "BYE ").len(), 2);
        assert!(messages(r, Direction::Sent, "BYE ").is_empty());
        assert_eq!((r.calls_attempted, r.calls_answered), (2, 2));
        assert_eq!(r.dtmf_sent, "1#1#", "the second call's actions ran too");
    }
}

/// `answered` and `reinvite`, repeated: the callers re-INVITE half a second after the answer
/// and again at 1.5 s; the callees answer each re-INVITE with a digit (`repeat = true`); the
/// callers hang up at 2.5 s of a 6 s call (a timed `hangup`).
#[test]
fn every_reinvite_is_answered_with_a_digit_and_the_caller_hangs_up_early() {
    let file = head("events-reinvite", "6s", 23)
        + r#"actions = [
  { on = "reinvite", do = "dtmf", digits = "1", method = "info", repeat = true },
  { on = "held", do = "dtmf", digits = "9", method = "info" },
]

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [
  { on = "answered", after = "500ms", do = "reinvite" },
  { at = "1500ms", do = "reinvite" },
  { at = "2500ms", do = "hangup" },
]
"#;
    let reports = run("events-reinvite.toml", &file);
    for r in reports.iter().filter(|r| r.group == "callers") {
        let (n, first) = fired(r, "answered", "reinvite");
        assert_eq!(n, 1);
        assert!((500.0..1000.0).contains(&first.unwrap()), "{first:?}");
        assert_eq!(r.dtmf_received, "11", "one digit per re-INVITE");
        assert!(has_note(r, "action: hang-up (BYE)"), "{:#?}", notes(r));
        assert_eq!(messages(r, Direction::Sent, "BYE ").len(), 1);
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!((2500.0..4000.0).contains(&lasted), "{lasted} ms of 6 s");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert_eq!(fired(r, "reinvite", "dtmf").0, 2, "{:?}", r.event_actions);
        // A re-INVITE keeping the direction is no hold.
        assert_eq!(fired(r, "held", "dtmf").0, 0, "{:?}", r.event_actions);
        assert_eq!(r.dtmf_sent, "11");
    }
}

/// An IVR's prompts as a WAV the test writes: 1 s of a 400 Hz tone at −20 dBov, then 2 s of
/// digital silence, 8 kHz (looped by the sender: prompts at 0–1 s, 3–4 s, 6–7 s …); the
/// path of a test file `name` beside it.
fn ivr_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("sipmeter-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ivr.wav"), prompt_wav(8000, 24_000)).unwrap();
    dir.join(format!("{name}.toml")).display().to_string()
}

/// A WAV of `len` samples at 8 kHz: a 400 Hz tone at −20 dBov for the first `tone`, then
/// digital silence.
fn prompt_wav(tone: u32, len: u32) -> Vec<u8> {
    let amp = 32768.0 * 0.1 * 2f64.sqrt();
    let pcm: Vec<i16> = (0..len)
        .map(|i| {
            if i < tone {
                (amp * (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 8000.0).sin()).round()
                    as i16
            } else {
                0
            }
        })
        .collect();
    media::wav::write_pcm16(&pcm, 8000)
}

/// An IVR menu, sipmeter against sipmeter: the callees play the prompts (`source`, a tone
/// then silence, looped) and hang up on `12`; the callers wait for the first prompt to end
/// (`on = "silence"`, a second of quiet after sound) and press 1 (RFC 4733), then for the
/// second prompt to end (`nth = 2`) and press 2. The reports put each step where the audio
/// put it: the first silence a second after the first prompt ended (2 s into the call), the
/// second 5 s in, the hang-up on the 2, and the sounds heard at 0–1 s and 3–4 s. The callees
/// hear the callers' speech-like signal start (`on = "audio"`).
#[test]
fn an_ivr_menu_is_walked_on_the_silences_after_its_prompts() {
    let path = ivr_dir("events-ivr");
    let file = head("events-ivr", "10s", 24)
        + r#"source = "ivr.wav"
actions = [
  { on = "dtmf:12", do = "hangup" },
  { on = "audio", do = "dtmf", digits = "*", method = "info" },
]

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [
  { on = "silence", do = "dtmf", digits = "1" },
  { on = "silence", nth = 2, do = "dtmf", digits = "2" },
]
"#;
    let reports = run(&path, &file);
    // The callee's media starts on its answer (its 200 OK), up to a 20 ms slot later;
    // packets are read on the caller's 20 ms media passes.
    let near = |got: Option<f64>, want: f64| ivr_common::near(got, want, 160.0);
    for r in reports.iter().filter(|r| r.group == "callers") {
        // Two prompts at −20 dBov, at 0–1 s and 3–4 s; 1 at 2 s, 2 at 5 s.
        let levels = ivr_common::walked_the_menu(r, 160.0);
        assert_eq!(r.sound_heard.len(), 2, "{:?}", r.sound_heard);
        for l in levels {
            assert!((-20.5..-19.5).contains(&l), "{l}");
        }
        assert_eq!(r.dtmf_received, "*", "the callee heard our audio start");
        // The callee hung up on the 2 (sent 5 s in, 100 ms long).
        assert_eq!(messages(r, Direction::Received, "BYE ").len(), 1);
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!((5000.0..6000.0).contains(&lasted), "{lasted} ms of 10 s");
        // The trace says why each fired: the event, the quiet it waited for, the sounds.
        let said = notes(r);
        let heard: Vec<&&str> = said
            .iter()
            .filter(|n| n.starts_with("sound ") || n.starts_with("event silence"))
            .collect();
        assert_eq!(heard.len(), 6, "{said:#?}");
        for (n, (start, want)) in heard.iter().zip([
            ("sound started ", 0.0),
            ("sound stopped ", 1000.0),
            ("event silence: dtmf, quiet since ", 1000.0),
            ("sound started ", 3000.0),
            ("sound stopped ", 4000.0),
            ("event silence (its #2): dtmf, quiet since ", 4000.0),
        ]) {
            // "… 0.99 s into the call …"
            let secs = n
                .strip_prefix(start)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|x| x.parse::<f64>().ok());
            near(secs.map(|x| x * 1000.0), want);
        }
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert_eq!(r.dtmf_received, "12");
        let (n, at) = fired(r, "dtmf:12", "hangup");
        assert_eq!(n, 1);
        near(at, 5100.0);
        let (n, at) = fired(r, "audio", "dtmf");
        assert_eq!(
            n, 1,
            "the callers' signal starts with a talk spurt, heard once"
        );
        near(at, 0.0);
        assert_eq!(messages(r, Direction::Sent, "BYE ").len(), 1);
    }
}

/// An IVR test that never hears its silence says why: the callees play a tone that never
/// stops (the WAV is all tone); the callers' `silence` action never fires, the call runs its
/// full 3 s, and the report's one sound started at the answer and had not stopped.
#[test]
fn a_prompt_that_never_ends_is_in_the_report() {
    let path = ivr_dir("events-endless");
    let dir = std::path::Path::new(&path).parent().unwrap().to_owned();
    std::fs::write(dir.join("tone.wav"), prompt_wav(8000, 8000)).unwrap();
    let file = head("events-endless", "3s", 25)
        + r#"source = "tone.wav"

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [{ on = "silence", do = "hangup" }]
"#;
    let reports = run(&path, &file);
    for r in reports.iter().filter(|r| r.group == "callers") {
        assert_eq!(fired(r, "silence", "hangup"), (0, None));
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!((3000.0..3500.0).contains(&lasted), "{lasted} ms of 3 s");
        let [s] = &r.sound_heard[..] else {
            panic!("{:?}", r.sound_heard)
        };
        ivr_common::near(Some(s.start_ms), 0.0, 160.0);
        assert_eq!(s.end_ms, None, "still sounding at the call's end: {s:?}");
        assert!(has_note(r, "sound started"), "{:#?}", notes(r));
        assert!(!has_note(r, "sound stopped"), "{:#?}", notes(r));
    }
}

/// A WAV of 4 s at 8 kHz: a CED at 0.5-1.5 s, the in-band digits 4 and 7 from 2 s on
/// ([`ivr_common::tones_pcm`], no busy tone).
fn tones_wav() -> Vec<u8> {
    media::wav::write_pcm16(&ivr_common::tones_pcm(32_000, false), 8000)
}

/// Tones and in-band DTMF, sipmeter against sipmeter: the callees play a CED then the digits
/// 4 and 7 in their audio (`source`); the callers press 9 (RFC 4733) on the CED
/// (`tone:2100`, heard for 200 ms) and hang up on the in-band `47`; a busy tone they also
/// wait for never comes. The callers' reports put the CED at 0.5–1.5 s, the 9 at 0.7 s, the
/// digits heard in-band and the hang-up on the 7 (2.2 s in).
#[test]
fn callers_act_on_a_tone_and_on_in_band_digits() {
    let path = ivr_dir("events-tones");
    let dir = std::path::Path::new(&path).parent().unwrap().to_owned();
    std::fs::write(dir.join("tones.wav"), tones_wav()).unwrap();
    let file = head("events-tones", "6s", 26)
        + r#"source = "tones.wav"

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [
  { on = "tone:2100", do = "dtmf", digits = "9" },
  { on = "tone:480+620", do = "hold" },
  { on = "inband_dtmf:47", do = "hangup" },
]
"#;
    let reports = run(&path, &file);
    let near = |got: Option<f64>, want: f64| ivr_common::near(got, want, 160.0);
    for r in reports.iter().filter(|r| r.group == "callers") {
        let (n, at) = fired(r, "tone:2100", "dtmf");
        assert_eq!(n, 1, "{:#?}", notes(r));
        near(at, 700.0);
        assert_eq!(fired(r, "tone:480+620", "hold"), (0, None));
        let (n, at) = fired(r, "inband_dtmf:47", "hangup");
        assert_eq!(n, 1, "{:#?}", notes(r));
        near(at, 2200.0);
        let [ced] = &r.tones_heard[..] else {
            panic!("{:?}", r.tones_heard)
        };
        assert_eq!((ced.call, ced.tone.as_str()), (1, "2100"), "{ced:?}");
        near(Some(ced.start_ms), 500.0);
        // Whole 40 ms blocks, timed by the packets' arrival (±20 ms of jitter allowed): 1 s
        // or its last partial block short.
        let d = ced.duration_ms.unwrap_or(f64::NAN);
        assert!((940.0..1020.0).contains(&d), "{ced:?}");
        assert_eq!(r.dtmf_inband, "47");
        assert_eq!(r.dtmf_sent, "9");
        assert!(has_note(r, "tone 2100 Hz heard from "), "{:#?}", notes(r));
        assert!(has_note(r, "in-band DTMF 7 heard "), "{:#?}", notes(r));
        assert_eq!(messages(r, Direction::Sent, "BYE ").len(), 1);
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert_eq!(r.dtmf_received, "9");
        assert!(r.tones_heard.is_empty() && r.dtmf_inband.is_empty());
    }
}

/// MESSAGE as an action and as a condition, sipmeter against sipmeter: the callers send
/// "hello" half a second into the call and "the menu, please" at 1 s (RFC 3428, in the
/// dialog); the callees hang up on the message that contains `menu` (not on the first).
/// The callers count both MESSAGEs sent and answered 200.
#[test]
fn a_message_is_sent_in_the_call_and_its_text_is_a_condition() {
    let file = head("events-message", "4s", 27)
        + r#"actions = [{ on = "message:menu", do = "hangup" }]

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
actions = [
  { at = "500ms", do = "message", text = "hello" },
  { at = "1s", do = "message", text = "the menu, please" },
]
"#;
    let reports = run("events-message", &file);
    for r in reports.iter().filter(|r| r.group == "callers") {
        let m = r.messages.unwrap_or_else(|| panic!("{r:#?}"));
        assert_eq!((m.sent, m.answered_2xx, m.failed), (2, 2, 0), "{r:#?}");
        let sent = messages(r, Direction::Sent, "MESSAGE ");
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(
            has_note(r, "action: MESSAGE (text/plain, 5 bytes)"),
            "{:#?}",
            notes(r)
        );
        assert_eq!(messages(r, Direction::Received, "BYE ").len(), 1);
        let lasted = r.timings.call_duration_ms.unwrap();
        assert!((1000.0..2000.0).contains(&lasted), "{lasted} ms of 4 s");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        let (n, at) = fired(r, "message:menu", "hangup");
        assert_eq!(n, 1);
        ivr_common::near(at, 1000.0, 160.0);
        assert!(
            has_note(
                r,
                "MESSAGE received in the call (text/plain, 5 bytes): answered 200"
            ),
            "{:#?}",
            notes(r)
        );
        assert!(r.messages.is_none());
    }
}
