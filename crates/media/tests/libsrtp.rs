//! Interop with libsrtp 2 (Cisco's SRTP library, what Asterisk, FreeSWITCH, baresip and
//! most SBCs link), through its Python bindings: a small script protects and unprotects
//! what we hand it over pipes, with keys we give it.
//!
//! Every suite: our SRTP and SRTCP packets are byte for byte libsrtp's (SRTP is deterministic given
//! the key, SSRC and index), across a sequence-number wrap (ROC 0 → 1); libsrtp unprotects
//! our SRTP and SRTCP, we unprotect its; it refuses our tampered and replayed packets.
//!
//! pylibsrtp has profiles for AES_CM_128_HMAC_SHA1_* and AEAD_AES_*_GCM (Debian's libsrtp2
//! does GCM through NSS); RFC 6188's AES_256_CM_HMAC_SHA1_* are set on its policy with
//! libsrtp's own `srtp_crypto_policy_set_aes_cm_256_hmac_sha1_*` through ctypes.
//!
//! Needs `python3-pylibsrtp` (Debian, for `/usr/bin/python3`); skipped when missing unless
//! SIPMETER_REQUIRE_PEERS=1.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use media::srtp::{MasterKey, SrtpStream, Suite};

const PYTHON: &str = "/usr/bin/python3";

/// Reads commands `<op> <hex>` from stdin, one a line, and answers each with a line: the
/// result's hex or `ERR <what>`. `P`/`C`: protect RTP/RTCP under the second key; `U`/`D`:
/// unprotect RTP/RTCP under the first.
const SCRIPT: &str = r#"
import ctypes, sys
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi
PROFILES = {"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
            "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
            "AEAD_AES_256_GCM": Policy.SRTP_PROFILE_AEAD_AES_256_GCM}
# RFC 6188's suites have no profile in pylibsrtp: libsrtp's own policy setters (RTP, RTCP)
# through ctypes on the same library, on the policy pylibsrtp allocated.
SETTERS = {"AES_256_CM_HMAC_SHA1_80": ("srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80",
                                       "srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80"),
           "AES_256_CM_HMAC_SHA1_32": ("srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32",
                                       "srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80")}
keep = []
def session(key, ssrc_type):
    suite = sys.argv[1]
    if suite in PROFILES:
        return Session(policy=Policy(key=key, ssrc_type=ssrc_type, srtp_profile=PROFILES[suite]))
    p = Policy(ssrc_type=ssrc_type)
    so = ctypes.CDLL("libsrtp2.so.1")
    addr = lambda c: ctypes.c_void_p(int(ffi.cast("uintptr_t", c)))
    for setter, policy in zip(SETTERS[suite], (p._policy.rtp, p._policy.rtcp)):
        getattr(so, setter)(addr(ffi.addressof(policy)))
    buf = ffi.new("unsigned char[]", key)
    keep.append(buf)
    p._policy.key = buf
    return Session(policy=p)
rx = session(bytes.fromhex(sys.argv[2]), Policy.SSRC_ANY_INBOUND)
tx = session(bytes.fromhex(sys.argv[3]), Policy.SSRC_ANY_OUTBOUND)
ops = {"P": tx.protect, "C": tx.protect_rtcp, "U": rx.unprotect, "D": rx.unprotect_rtcp}
for line in sys.stdin:
    op, data = line.split()
    try:
        out = ops[op](bytes.fromhex(data)).hex()
    except Exception as e:
        out = "ERR " + type(e).__name__
    print(out, flush=True)
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs the script once over `cmds`; its answers in order.
fn libsrtp(suite: &str, rx: &MasterKey, tx: &MasterKey, cmds: &[(char, Vec<u8>)]) -> Vec<String> {
    let mut child = Command::new(PYTHON)
        .args(["-c", SCRIPT, suite])
        .arg(hex(rx.as_bytes()))
        .arg(hex(tx.as_bytes()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().unwrap();
    let input: String = cmds
        .iter()
        .map(|(op, b)| format!("{op} {}\n", hex(b)))
        .collect();
    // Written from a thread: the answers may fill the pipe before all commands are read.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "the libsrtp script failed");
    assert_eq!(out.len(), cmds.len());
    out
}

fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u8).map(|i| i ^ fill));
    p
}

fn rtcp_rr(ssrc: u32, n: u8) -> Vec<u8> {
    let mut p = vec![
        0x80, 201, 0, 1, 0, 0, 0, 0, 0x81, 202, 0, 2, 0, 0, 0, 0, 1, 2, b'x', n,
    ];
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p[12..16].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn have_libsrtp() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import pylibsrtp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("SIPMETER_REQUIRE_PEERS").as_deref() != Ok("1"),
            "libsrtp is required (SIPMETER_REQUIRE_PEERS=1) but python3-pylibsrtp is not installed"
        );
        eprintln!("skipped: python3-pylibsrtp not installed");
    }
    ok
}

#[test]
fn our_srtp_and_libsrtp_read_each_other() {
    if !have_libsrtp() {
        return;
    }
    for suite in Suite::ALL {
        let name = suite.name();
        let key = |f: fn(usize) -> usize| {
            let bytes: Vec<u8> = (0..suite.master_len()).map(|i| f(i) as u8).collect();
            MasterKey::new(suite, &bytes).unwrap()
        };
        let ours = key(|i| i * 7 + 3);
        let theirs = key(|i| i * 13 + 1);
        // Sequence numbers across the wrap: ROC 0, then 1.
        let seqs: Vec<u16> = (0..24u16).map(|i| 65_524u16.wrapping_add(i)).collect();
        let plain: Vec<Vec<u8>> = seqs.iter().map(|s| rtp(*s, 0x1234_5678, 0x55)).collect();
        let rtcp: Vec<Vec<u8>> = (0..5).map(|n| rtcp_rr(0x1234_5678, n)).collect();

        // 1. We protect (our key); libsrtp protects the same packets under the same key:
        // the bytes must be equal. Then libsrtp unprotects ours.
        let mut tx = SrtpStream::new(suite, &ours);
        let mut protect = |packets: &[Vec<u8>], rtcp: bool| -> Vec<Vec<u8>> {
            let mut out = packets.to_vec();
            for v in &mut out {
                let r = if rtcp {
                    tx.protect_rtcp(v)
                } else {
                    tx.protect_rtp(v)
                };
                r.unwrap();
            }
            out
        };
        let protected = protect(&plain, false);
        // libsrtp's first SRTCP index is 1, ours 0 (RFC 3711 §3.4 leaves room for both):
        // one packet thrown away lines the indices up for the byte comparison.
        protect(&rtcp[..1], true);
        let protected_rtcp = protect(&rtcp, true);
        let mut tampered = protected[3].clone();
        tampered[30] ^= 0x80;
        let mut cmds: Vec<(char, Vec<u8>)> = plain.iter().map(|p| ('P', p.clone())).collect();
        cmds.extend(protected.iter().map(|p| ('U', p.clone())));
        cmds.extend(protected_rtcp.iter().map(|p| ('D', p.clone())));
        cmds.push(('U', tampered));
        cmds.push(('U', protected[10].clone()));
        cmds.extend(rtcp.iter().map(|p| ('C', p.clone())));
        let out = libsrtp(name, &ours, &ours, &cmds);
        let n = plain.len();
        for (i, p) in protected.iter().enumerate() {
            assert_eq!(
                out[i],
                hex(p),
                "{name}: packet {i} (seq {}) differs",
                seqs[i]
            );
            assert_eq!(
                out[n + i],
                hex(&plain[i]),
                "{name}: libsrtp read packet {i}"
            );
        }
        for (i, p) in rtcp.iter().enumerate() {
            assert_eq!(out[2 * n + i], hex(p), "{name}: libsrtp read our SRTCP {i}");
        }
        let k = 2 * n + rtcp.len();
        assert!(out[k].starts_with("ERR"), "{name}: tampered: {}", out[k]);
        assert!(
            out[k + 1].starts_with("ERR"),
            "{name}: replayed: {}",
            out[k + 1]
        );
        for (i, p) in protected_rtcp.iter().enumerate() {
            assert_eq!(out[k + 2 + i], hex(p), "{name}: SRTCP {i} differs");
        }

        // 2. libsrtp protects under its key; we unprotect.
        let mut cmds: Vec<(char, Vec<u8>)> = plain.iter().map(|p| ('P', p.clone())).collect();
        cmds.extend(rtcp.iter().map(|p| ('C', p.clone())));
        let out = libsrtp(name, &ours, &theirs, &cmds);
        let mut rx = SrtpStream::new(suite, &theirs);
        for (i, line) in out.iter().enumerate() {
            let mut b = unhex(line);
            let (len, want) = if i < n {
                assert_eq!(b.len(), plain[i].len() + suite.rtp_tag_len());
                (rx.unprotect_rtp(&mut b), &plain[i])
            } else {
                assert_eq!(b.len(), rtcp[i - n].len() + 4 + suite.rtcp_tag_len());
                (rx.unprotect_rtcp(&mut b), &rtcp[i - n])
            };
            let len = len.unwrap_or_else(|e| panic!("{name}: their packet {i}: {e}"));
            assert_eq!(b[..len], want[..], "{name}: their packet {i}");
        }
        // Theirs again: replayed.
        let mut again = unhex(&out[5]);
        assert!(rx.unprotect_rtp(&mut again).is_err());
    }
}
