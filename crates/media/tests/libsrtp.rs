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
//! With an MKI (RFC 3711 §3.1) in every suite, through libsrtp's own C API (ctypes).
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
    let args = [suite.to_owned(), hex(rx.as_bytes()), hex(tx.as_bytes())];
    run_script(SCRIPT, &args, cmds)
}

/// Runs `script` with `args` once over `cmds` (`<op> <hex>` lines); its answers in order.
fn run_script(script: &str, args: &[String], cmds: &[(char, Vec<u8>)]) -> Vec<String> {
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .args(args)
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

/// Whether `probe` runs and succeeds; when not, the test is skipped, unless
/// SIPMETER_REQUIRE_PEERS=1 (then it fails naming `what`).
fn have_peer(probe: &mut Command, what: &str) -> bool {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("SIPMETER_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{what} is required (SIPMETER_REQUIRE_PEERS=1) but not installed"
        );
        eprintln!("skipped: {what} not installed");
    }
    ok
}

fn have_libsrtp() -> bool {
    have_peer(
        Command::new(PYTHON).args(["-c", "import pylibsrtp"]),
        "libsrtp (python3-pylibsrtp)",
    )
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

// ---- MKI (RFC 3711 §3.1) ------------------------------------------------------------------
//
// pylibsrtp's policy has no master-key array, so this script drives libsrtp 2's C API
// through ctypes alone: `srtp_policy_t` as libsrtp 2.5 lays it out, one master key with its
// MKI per direction (`keys`, `num_master_keys`), and `srtp_protect_mki` /
// `srtp_unprotect_mki` and their SRTCP forms. Arguments: suite, receive key, its MKI, send
// key, its MKI (hex).

const MKI_SCRIPT: &str = r#"
import ctypes, sys
so = ctypes.CDLL("libsrtp2.so.1")
class Crypto(ctypes.Structure):
    _fields_ = [("cipher_type", ctypes.c_uint32), ("cipher_key_len", ctypes.c_int),
                ("auth_type", ctypes.c_uint32), ("auth_key_len", ctypes.c_int),
                ("auth_tag_len", ctypes.c_int), ("sec_serv", ctypes.c_int)]
class Ssrc(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("value", ctypes.c_uint)]
class Key(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("mki_id", ctypes.c_char_p), ("mki_size", ctypes.c_uint)]
class Policy(ctypes.Structure):
    pass
Policy._fields_ = [("ssrc", Ssrc), ("rtp", Crypto), ("rtcp", Crypto), ("key", ctypes.c_char_p),
                   ("keys", ctypes.POINTER(ctypes.POINTER(Key))), ("num_master_keys", ctypes.c_ulong),
                   ("deprecated_ekt", ctypes.c_void_p), ("window_size", ctypes.c_ulong),
                   ("allow_repeat_tx", ctypes.c_int), ("enc_xtn_hdr", ctypes.POINTER(ctypes.c_int)),
                   ("enc_xtn_hdr_count", ctypes.c_int), ("next", ctypes.POINTER(Policy))]
# AES_CM_128_HMAC_SHA1_80 is libsrtp's default (its setter is a macro of the defaults).
SETTERS = {"AES_CM_128_HMAC_SHA1_80": ("rtp_default", "rtcp_default"),
           "AES_CM_128_HMAC_SHA1_32": ("aes_cm_128_hmac_sha1_32", "rtcp_default"),
           "AES_256_CM_HMAC_SHA1_80": ("aes_cm_256_hmac_sha1_80", "aes_cm_256_hmac_sha1_80"),
           "AES_256_CM_HMAC_SHA1_32": ("aes_cm_256_hmac_sha1_32", "aes_cm_256_hmac_sha1_80"),
           "AEAD_AES_128_GCM": ("aes_gcm_128_16_auth", "aes_gcm_128_16_auth"),
           "AEAD_AES_256_GCM": ("aes_gcm_256_16_auth", "aes_gcm_256_16_auth")}
assert so.srtp_init() == 0
keep = []
def session(key_hex, mki_hex, ssrc_type):
    p = Policy()
    p.ssrc.type = ssrc_type
    for name, c in zip(SETTERS[sys.argv[1]], (p.rtp, p.rtcp)):
        getattr(so, "srtp_crypto_policy_set_" + name)(ctypes.byref(c))
    key, mki = bytes.fromhex(key_hex), bytes.fromhex(mki_hex)
    k = Key(key=key, mki_id=mki, mki_size=len(mki))
    arr = (ctypes.POINTER(Key) * 1)(ctypes.pointer(k))
    p.keys, p.num_master_keys = arr, 1
    keep.extend([key, mki, k, arr, p])
    s = ctypes.c_void_p()
    rc = so.srtp_create(ctypes.byref(s), ctypes.byref(p))
    assert rc == 0, rc
    return s
rx = session(sys.argv[2], sys.argv[3], 2)
tx = session(sys.argv[4], sys.argv[5], 3)
def run(fn, ctx, data, *extra):
    buf = ctypes.create_string_buffer(data, len(data) + 256)
    n = ctypes.c_int(len(data))
    rc = fn(ctx, buf, ctypes.byref(n), *extra)
    return buf.raw[:n.value].hex() if rc == 0 else "ERR %d" % rc
ops = {"P": lambda d: run(so.srtp_protect_mki, tx, d, 1, 0),
       "C": lambda d: run(so.srtp_protect_rtcp_mki, tx, d, 1, 0),
       "U": lambda d: run(so.srtp_unprotect_mki, rx, d, 1),
       "D": lambda d: run(so.srtp_unprotect_rtcp_mki, rx, d, 1)}
for line in sys.stdin:
    op, data = line.split()
    print(ops[op](bytes.fromhex(data)), flush=True)
"#;

/// Keys with an MKI, each direction its own (4 bytes ours, 2 bytes theirs): our SRTP is
/// libsrtp's byte for byte, MKI included where the suite puts it; libsrtp reads our SRTP and
/// SRTCP, we read its; a packet with another MKI is refused by both.
#[test]
fn mki_packets_are_libsrtps_byte_for_byte_and_read_both_ways() {
    use media::srtp::Mki;
    if !have_libsrtp() {
        return;
    }
    let (our_mki, their_mki) = (
        Mki::new(0x0102_0304, 4).unwrap(),
        Mki::new(0x0a0b, 2).unwrap(),
    );
    for suite in Suite::ALL {
        let name = suite.name();
        let key = |f: fn(usize) -> usize, mki| {
            let bytes: Vec<u8> = (0..suite.master_len()).map(|i| f(i) as u8).collect();
            MasterKey::new(suite, &bytes).unwrap().with_mki(Some(mki))
        };
        let ours = key(|i| i * 5 + 2, our_mki);
        let theirs = key(|i| i * 11 + 9, their_mki);
        let args = |rx: &MasterKey, rx_mki: &str, tx: &MasterKey, tx_mki: &str| {
            [
                name.to_owned(),
                hex(rx.as_bytes()),
                rx_mki.to_owned(),
                hex(tx.as_bytes()),
                tx_mki.to_owned(),
            ]
        };
        let plain: Vec<Vec<u8>> = (0..6u16).map(|s| rtp(100 + s, 0x0bad_cafe, 0x33)).collect();
        let rtcp: Vec<Vec<u8>> = (0..3).map(|n| rtcp_rr(0x0bad_cafe, n)).collect();

        // We protect; libsrtp protects the same under the same key and MKI (equal bytes),
        // then reads ours.
        let mut tx = SrtpStream::new(suite, &ours);
        let protected: Vec<Vec<u8>> = plain
            .iter()
            .map(|p| {
                let mut v = p.clone();
                tx.protect_rtp(&mut v).unwrap();
                v
            })
            .collect();
        // libsrtp's first SRTCP index is 1, ours 0: one thrown away lines them up.
        tx.protect_rtcp(&mut rtcp[0].clone()).unwrap();
        let protected_rtcp: Vec<Vec<u8>> = rtcp
            .iter()
            .map(|p| {
                let mut v = p.clone();
                tx.protect_rtcp(&mut v).unwrap();
                v
            })
            .collect();
        let mut other_mki = protected[5].clone();
        let at = if suite.is_aead() {
            other_mki.len() - 1
        } else {
            other_mki.len() - suite.rtp_tag_len() - 1
        };
        other_mki[at] ^= 1;
        let mut cmds: Vec<(char, Vec<u8>)> = plain.iter().map(|p| ('P', p.clone())).collect();
        cmds.extend(rtcp.iter().map(|p| ('C', p.clone())));
        cmds.push(('U', other_mki));
        cmds.extend(protected.iter().map(|p| ('U', p.clone())));
        cmds.extend(protected_rtcp.iter().map(|p| ('D', p.clone())));
        let out = run_script(
            MKI_SCRIPT,
            &args(&ours, "01020304", &ours, "01020304"),
            &cmds,
        );
        let (n, r) = (plain.len(), rtcp.len());
        for (i, p) in protected.iter().enumerate() {
            assert_eq!(out[i], hex(p), "{name}: SRTP {i} with MKI differs");
            assert_eq!(
                out[n + r + 1 + i],
                hex(&plain[i]),
                "{name}: libsrtp read {i}"
            );
        }
        // The `_32` suites: SRTP's tag is 4 bytes, SRTCP's 10 (RFC 4568 §6.2.2), and libsrtp
        // 2.5 protects SRTCP so (its bytes are ours, checked here) but looks for the MKI of a
        // received SRTCP packet 4 bytes from the end, the SRTP tag's length: it refuses its
        // own packets with srtp_err_status_bad_mki (25). Ours are read by us both ways.
        let libsrtp_reads_its_srtcp = suite.rtp_tag_len() == suite.rtcp_tag_len();
        for (i, p) in protected_rtcp.iter().enumerate() {
            assert_eq!(out[n + i], hex(p), "{name}: SRTCP {i} with MKI differs");
            let read = &out[2 * n + r + 1 + i];
            if libsrtp_reads_its_srtcp {
                assert_eq!(*read, hex(&rtcp[i]), "{name}: libsrtp read SRTCP {i}");
            } else {
                assert_eq!(read, "ERR 25", "{name}: libsrtp 2.5's SRTCP MKI offset");
            }
        }
        assert!(
            out[n + r].starts_with("ERR"),
            "{name}: another MKI: {}",
            out[n + r]
        );

        // libsrtp protects under its key and MKI; we read it, and refuse another MKI.
        let mut cmds: Vec<(char, Vec<u8>)> = plain.iter().map(|p| ('P', p.clone())).collect();
        cmds.extend(rtcp.iter().map(|p| ('C', p.clone())));
        let out = run_script(MKI_SCRIPT, &args(&ours, "01020304", &theirs, "0a0b"), &cmds);
        let mut rx = SrtpStream::new(suite, &theirs);
        for (i, line) in out.iter().enumerate() {
            let mut b = unhex(line);
            let (len, want) = if i < n {
                assert_eq!(b.len(), plain[i].len() + suite.rtp_tag_len() + 2, "{name}");
                (rx.unprotect_rtp(&mut b), &plain[i])
            } else {
                (rx.unprotect_rtcp(&mut b), &rtcp[i - n])
            };
            let len = len.unwrap_or_else(|e| panic!("{name}: their packet {i}: {e}"));
            assert_eq!(b[..len], want[..], "{name}: their packet {i}");
        }
        let mut wrong = SrtpStream::new(suite, &theirs.clone().with_mki(Mki::new(0x0a0c, 2)));
        let mut b = unhex(&out[1]);
        assert_eq!(
            wrong.unprotect_rtp(&mut b),
            Err(media::srtp::SrtpError::UnknownMki),
            "{name}"
        );
    }
}

// ---- DTLS-SRTP (RFC 5764) against OpenSSL ------------------------------------------------
//
// OpenSSL's `s_server` / `s_client` (Debian's `openssl`, DTLS 1.2, an ECDSA P-256
// certificate: dimpl has ECDHE_ECDSA suites only) is the independent DTLS peer over loopback
// UDP; it prints the keying material it exports ("EXTRACTOR-dtls_srtp", 60 bytes for
// SRTP_AES128_CM_SHA1_80). Our keys must be its split per RFC 5764 §4.2, and SRTP under them
// must be what libsrtp, keyed with OpenSSL's export, reads and writes.

mod dtls_openssl {
    use super::*;
    use media::dtls::{DtlsIdentity, DtlsParams, DtlsSrtp, Fingerprint, HashFunction, split_keys};
    use media::srtp::SrtpParams;
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    fn have_openssl() -> bool {
        have_peer(Command::new("openssl").arg("version"), "openssl")
    }

    struct Peer {
        child: std::process::Child,
        lines: mpsc::Receiver<String>,
        fingerprint: Fingerprint,
        _dir: std::path::PathBuf,
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self._dir);
        }
    }

    impl Peer {
        /// Starts `openssl <role> -dtls1_2 …` with a fresh ECDSA certificate.
        fn start(role_args: &[String]) -> Peer {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["openssl".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let dir = std::env::temp_dir().join(format!(
                "sipmeter-dtls-{}-{}",
                std::process::id(),
                role_args[0]
            ));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
            let mut child = Command::new("openssl")
                .args(role_args)
                .args(["-dtls1_2", "-cert"])
                .arg(dir.join("cert.pem"))
                .arg("-key")
                .arg(dir.join("key.pem"))
                .args([
                    "-use_srtp",
                    "SRTP_AES128_CM_SHA1_80",
                    "-keymatexport",
                    "EXTRACTOR-dtls_srtp",
                    "-keymatexportlen",
                    "60",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("openssl runs");
            let out = child.stdout.take().unwrap();
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            Peer {
                child,
                lines,
                fingerprint: Fingerprint::of(HashFunction::Sha256, cert.der()),
                _dir: dir,
            }
        }

        fn wait_for(&self, prefix: &str) -> String {
            let end = Instant::now() + Duration::from_secs(20);
            while let Ok(l) = self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                if let Some(rest) = l.trim().strip_prefix(prefix) {
                    return rest.trim().to_string();
                }
            }
            panic!("openssl never printed {prefix:?}");
        }
    }

    /// Runs our end on `sock` until it has keys or failed (10 s at most).
    fn handshake(d: &mut DtlsSrtp, sock: &UdpSocket, mut peer: Option<SocketAddr>) {
        let mut buf = [0u8; 2048];
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while d.handshaking() && Instant::now() < end {
            d.handle_timeout(Instant::now());
            while let Some(p) = d.poll_datagram() {
                sock.send_to(&p, peer.expect("a client speaks first"))
                    .unwrap();
            }
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                peer = Some(from);
                d.handle_datagram(Instant::now(), &buf[..n]);
                while let Some(p) = d.poll_datagram() {
                    sock.send_to(&p, from).unwrap();
                }
            }
        }
    }

    /// SRTP under the handshake's keys: libsrtp keyed with OpenSSL's export reads ours, and
    /// we read what it protects.
    fn srtp_matches_libsrtp(keys: &SrtpParams) {
        let suite = keys.suite.name();
        let mut ours = SrtpStream::new(keys.suite, &keys.tx_key);
        let mut theirs_rx = SrtpStream::new(keys.suite, &keys.rx_key);
        let plain = rtp(1000, 0x1234_5678, 7);
        let mut p = plain.clone();
        ours.protect_rtp(&mut p).unwrap();
        // libsrtp receives under our tx key and sends under the peer's.
        let out = libsrtp(
            suite,
            &keys.tx_key,
            &keys.rx_key,
            &[('U', p), ('P', rtp(5, 9, 1))],
        );
        assert_eq!(out[0], hex(&plain), "libsrtp reads our SRTP");
        let mut back = unhex(&out[1]);
        let n = theirs_rx.unprotect_rtp(&mut back).unwrap();
        assert_eq!(&back[..n], &rtp(5, 9, 1)[..], "we read libsrtp's");
    }

    fn expected(peer: &Peer, we_active: bool) -> SrtpParams {
        let km = unhex(&peer.wait_for("Keying material:").to_lowercase());
        assert_eq!(km.len(), 60);
        split_keys(&km, dimpl::SrtpProfile::AES128_CM_SHA1_80, we_active).unwrap()
    }

    #[test]
    fn our_client_against_openssl_s_server() {
        if !have_libsrtp() || !have_openssl() {
            return;
        }
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // -verify 1: the server asks for our certificate (RFC 5763 §5 wants both).
        let peer = Peer::start(&[
            "s_server".into(),
            "-accept".into(),
            format!("127.0.0.1:{port}"),
            "-verify".into(),
            "1".into(),
            "-naccept".into(),
            "1".into(),
        ]);
        peer.wait_for("ACCEPT");
        let id = Arc::new(DtlsIdentity::generate().unwrap());
        let p = DtlsParams {
            identity: id,
            remote: peer.fingerprint.clone(),
            active: true,
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = DtlsSrtp::new(&p, Instant::now());
        handshake(&mut d, &sock, Some(([127, 0, 0, 1], port).into()));
        let keys = d.take_keys().unwrap_or_else(|| panic!("{:?}", d.summary()));
        let s = d.summary();
        assert_eq!(
            (s.version, s.suite),
            (Some("DTLS1.2"), Some("AES_CM_128_HMAC_SHA1_80"))
        );
        eprintln!(
            "handshake as client against OpenSSL: {:?}",
            s.handshake.unwrap()
        );
        assert_eq!(
            keys,
            expected(&peer, true),
            "our keys are OpenSSL's export, split"
        );
        srtp_matches_libsrtp(&keys);
    }

    /// `openssl s_client` against our server end on a fresh loopback socket; our end is told
    /// the peer's fingerprint is `remote` (`None`: the real one). Runs the handshake.
    fn against_s_client(remote: Option<Fingerprint>) -> (Peer, DtlsSrtp) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let peer = Peer::start(&[
            "s_client".into(),
            "-connect".into(),
            format!("127.0.0.1:{port}"),
        ]);
        let p = DtlsParams {
            identity: Arc::new(DtlsIdentity::generate().unwrap()),
            remote: remote.unwrap_or_else(|| peer.fingerprint.clone()),
            active: false,
        };
        let mut d = DtlsSrtp::new(&p, Instant::now());
        handshake(&mut d, &sock, None);
        (peer, d)
    }

    #[test]
    fn our_server_against_openssl_s_client() {
        if !have_libsrtp() || !have_openssl() {
            return;
        }
        let (peer, mut d) = against_s_client(None);
        let keys = d.take_keys().unwrap_or_else(|| panic!("{:?}", d.summary()));
        eprintln!(
            "handshake as server against OpenSSL: {:?}",
            d.summary().handshake.unwrap()
        );
        assert_eq!(
            keys,
            expected(&peer, false),
            "our keys are OpenSSL's export, split"
        );
        srtp_matches_libsrtp(&keys);
    }

    #[test]
    fn openssl_with_another_certificate_than_the_sdps_gets_no_keys() {
        if !have_openssl() {
            return;
        }
        let wrong = DtlsIdentity::generate().unwrap().fingerprint().clone();
        let (peer, mut d) = against_s_client(Some(wrong.clone()));
        assert!(d.take_keys().is_none());
        let why = d.summary().failure.clone().unwrap();
        assert!(
            why.contains(&wrong.to_string()) && why.contains(&peer.fingerprint.to_string()),
            "{why}"
        );
    }
}
