//! `sipmeter run --pcap DIR` read back by Wireshark's `tshark` (Debian package `tshark`):
//! the files must decode as exactly the SIP messages of the report's traces, in order.

use std::path::Path;
use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sipmeter-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// (method, status code, Call-ID) of one SIP message, as `tshark -T fields` prints them.
type Sip = (String, String, String);

/// The message of one trace entry of the JSON report (its `text`).
fn sip_of(text: &str) -> Sip {
    let first = text.lines().next().unwrap_or("");
    let (method, status) = match first.strip_prefix("SIP/2.0 ") {
        Some(rest) => (String::new(), rest[..3].to_owned()),
        None => (
            first.split(' ').next().unwrap_or("").to_owned(),
            String::new(),
        ),
    };
    let call_id = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            (name == "call-id" || name == "i").then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (method, status, call_id)
}

/// The SIP messages of a pcap, as tshark decodes them.
fn tshark(file: &Path) -> Vec<Sip> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", "sip", "-T", "fields"])
        .args([
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t').map(str::to_owned);
            let mut next = || f.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect()
}

/// The frame times of a pcap, in microseconds since the epoch, as tshark reads them.
fn tshark_times_us(file: &Path) -> Vec<u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", "sip", "-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (s, frac) = l.trim().split_once('.').unwrap();
            let us: u64 = frac[..6].parse().unwrap();
            s.parse::<u64>().unwrap() * 1_000_000 + us
        })
        .collect()
}

#[test]
fn run_pcaps_decode_in_tshark_as_the_trace() {
    if !testpeers::available("tshark", "tshark") {
        return;
    }
    let file = tmp("call.toml");
    std::fs::write(
        &file,
        "name = \"pcap\"\nduration = \"500ms\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"callee\"\nendpoints = 2\nregistrar = \"builtin\"\nrole = \"answer\"\n\n[[group]]\nname = \"caller\"\nendpoints = 2\nregistrar = \"builtin\"\ncall = \"group:callee\"\n",
    )
    .unwrap();
    let report = tmp("call.json");
    let dir = tmp("pcaps");
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["run", "--quiet", "--all-traces", "--report"])
        .arg(&report)
        .arg("--pcap")
        .arg(&dir)
        .arg(&file)
        .output()
        .expect("sipmeter runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pcap             4 endpoint file(s) and "),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mut everything = Vec::new();
    for ep in v["endpoints"].as_array().unwrap() {
        let expected: Vec<Sip> = ep["trace"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["direction"] != "note")
            .map(|e| sip_of(e["text"].as_str().unwrap()))
            .collect();
        // REGISTER 401 REGISTER 200, the call, the un-REGISTER: at least 9 messages each.
        assert!(expected.len() >= 9, "{expected:?}");
        let pcap = dir.join(format!(
            "{}-{}.pcap",
            ep["id"],
            ep["user"].as_str().unwrap()
        ));
        let decoded = tshark(&pcap);
        assert_eq!(decoded, expected, "{}", pcap.display());
        everything.extend(expected);
    }
    // The merged file holds every message once, in time order.
    let all = dir.join("all.pcap");
    let mut merged = tshark(&all);
    assert_eq!(merged.len(), everything.len());
    let times = tshark_times_us(&all);
    assert_eq!(times.len(), merged.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    merged.sort();
    everything.sort();
    assert_eq!(merged, everything);
}

#[test]
fn pcap_dir_that_cannot_be_created_is_a_clear_error() {
    let blocker = tmp("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let file = tmp("one.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nduration = \"100ms\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"a\"\nendpoints = 1\nregistrar = \"builtin\"\nrole = \"answer\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["run", "--quiet", "--all-traces", "--pcap"])
        .arg(blocker.join("sub"))
        .arg(&file)
        .output()
        .expect("sipmeter runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "sipmeter: cannot write {}",
            blocker.join("sub").display()
        )),
        "{stderr}"
    );
}

/// `sipmeter registrar` on a free port; killed when dropped.
struct Registrar {
    child: std::process::Child,
    port: u16,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registrar() -> Registrar {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "registrar",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "lab.test",
        ])
        .args(["--account", "1001:right"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sipmeter registrar starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .split("udp:127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok());
    let port = port.unwrap_or_else(|| panic!("no port in {line:?}"));
    Registrar { child, port }
}

#[test]
fn check_pcap_decodes_in_tshark_as_the_trace() {
    if !testpeers::available("tshark", "tshark") {
        return;
    }
    let reg = start_registrar();
    let pcap = tmp("check.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args([
            "check",
            "--domain",
            "127.0.0.1",
            "--port",
            &reg.port.to_string(),
        ])
        .args([
            "--transport",
            "udp",
            "--user",
            "1001",
            "--password",
            "right",
        ])
        .args(["--json", "--pcap"])
        .arg(&pcap)
        .output()
        .expect("sipmeter check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let expected: Vec<Sip> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["direction"] != "note")
        .map(|e| sip_of(e["text"].as_str().unwrap()))
        .collect();
    let decoded = tshark(&pcap);
    assert_eq!(decoded, expected);
    // REGISTER, 401, REGISTER with credentials, 200 — then the un-REGISTER and its 200.
    let firsts: Vec<(&str, &str)> = decoded
        .iter()
        .map(|(m, s, _)| (m.as_str(), s.as_str()))
        .take(4)
        .collect();
    assert_eq!(
        firsts,
        [("REGISTER", ""), ("", "401"), ("REGISTER", ""), ("", "200")]
    );
}

#[test]
fn without_all_traces_only_failed_endpoints_get_a_pcap() {
    let file = tmp("mixed.toml");
    // One endpoint that registers and succeeds, two whose calls fail with 404.
    std::fs::write(
        &file,
        "name = \"mixed\"\nduration = \"100ms\"\n\n[[registrar]]\nid = \"builtin\"\nkind = \"builtin\"\n\n[[group]]\nname = \"ok\"\nendpoints = 1\nregistrar = \"builtin\"\nrole = \"answer\"\n\n[[group]]\nname = \"bad\"\nendpoints = 2\nregistrar = \"builtin\"\ncall = \"sip:nobody{n}@sipmeter.builtin\"\n",
    )
    .unwrap();
    let dir = tmp("mixed-pcaps");
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["run", "--quiet", "--pcap"])
        .arg(&dir)
        .arg(&file)
        .output()
        .expect("sipmeter runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("pcap             2 endpoint file(s) and "),
        "{stdout}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Endpoint 0 ("ok1") succeeded: no file; 1 and 2 failed: one each, named <id>-<user>.
    assert_eq!(names, ["1-bad1.pcap", "2-bad2.pcap", "all.pcap"]);
}
