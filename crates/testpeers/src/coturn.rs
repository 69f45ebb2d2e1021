//! A coturn TURN/STUN server (RFC 8656, RFC 8489) on a free loopback UDP port, long-term
//! credentials, relaying to loopback peers.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{Group, PeerError, TempDir, find_binary, free_port};

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct CoturnConfig {
    /// The REALM.
    pub realm: String,
    /// `(user, password)` pairs (`--user=u:p`).
    pub users: Vec<(String, String)>,
    /// `--user-quota`: concurrent allocations per user (0: no limit).
    pub user_quota: u32,
    /// `--stale-nonce`: a nonce's lifetime in seconds (0: nonces never go stale).
    pub stale_nonce: u32,
}

impl Default for CoturnConfig {
    fn default() -> Self {
        CoturnConfig {
            realm: "sipmeter.test".into(),
            users: vec![("u".into(), "p".into())],
            user_quota: 0,
            stale_nonce: 0,
        }
    }
}

/// A running coturn (`turnserver`) on 127.0.0.1:`port()`, UDP only, relaying on 127.0.0.1;
/// stopped on drop.
#[derive(Debug)]
pub struct Coturn {
    group: Group,
    port: u16,
    dir: TempDir,
}

impl Coturn {
    /// Starts turnserver on a free loopback port and waits until it answers a STUN Binding.
    pub fn start(config: &CoturnConfig) -> Result<Coturn, PeerError> {
        let binary = find_binary("turnserver").ok_or(PeerError::Missing {
            binary: "turnserver",
            package: "coturn",
        })?;
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&binary, config) {
                Ok(c) => return Ok(c),
                Err(e @ (PeerError::Exited(..) | PeerError::NotReady(..))) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(PeerError::Exited("turnserver", "no attempt".into())))
    }

    fn try_start(binary: &std::path::Path, config: &CoturnConfig) -> Result<Coturn, PeerError> {
        let port = free_port()?;
        let dir = TempDir::new("sipmeter-coturn")?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut cmd = Command::new(binary);
        // `-c /dev/null`: Debian's /etc/turnserver.conf sends the log to syslog.
        cmd.args(["-c", "/dev/null"])
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--lt-cred-mech",
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
                "--no-tcp-relay",
                "--no-cli",
                "--allow-loopback-peers",
                "--simple-log",
                "--no-stdout-log",
                // Sessions, allocations and their usage counts in the log.
                "--verbose",
            ])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--realm={}", config.realm))
            .arg(format!("--log-file={}", path("turn.log")))
            .arg(format!("--pidfile={}", path("turnserver.pid")))
            .arg(format!("--userdb={}", path("turndb")));
        for (user, password) in &config.users {
            cmd.arg(format!("--user={user}:{password}"));
        }
        if config.user_quota > 0 {
            cmd.arg(format!("--user-quota={}", config.user_quota));
        }
        if config.stale_nonce > 0 {
            cmd.arg(format!("--stale-nonce={}", config.stale_nonce));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let group = Group::spawn("turnserver", cmd)?;
        let mut c = Coturn { group, port, dir };
        let limit = Duration::from_secs(10);
        let end = Instant::now() + limit;
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut id = 0u8;
        while Instant::now() < end {
            if let Some(status) = c.group.exited() {
                return Err(PeerError::Exited(
                    "turnserver",
                    format!("{status}; log:\n{}", c.log()),
                ));
            }
            id = id.wrapping_add(1);
            if stun_ping(&probe, c.addr(), id) {
                return Ok(c);
            }
        }
        Err(PeerError::NotReady("turnserver", limit, c.log()))
    }

    /// The UDP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address (TURN and STUN).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What turnserver logged so far: sessions, allocations, and at each session's end its
    /// `usage: … rp=…, rb=…, sp=…, sb=…` (packets and bytes received and sent).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("turn.log")).unwrap_or_default()
    }
}

/// Sends a STUN Binding request (RFC 8489 §5: type 0x0001, length 0, the magic cookie, a
/// transaction ID) and waits briefly for a response with that ID.
fn stun_ping(sock: &UdpSocket, to: SocketAddr, id: u8) -> bool {
    let mut req = [0u8; 20];
    req[1] = 0x01;
    req[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    req[8..20].fill(id);
    if sock.send_to(&req, to).is_err() {
        std::thread::sleep(Duration::from_millis(100));
        return false;
    }
    let mut buf = [0u8; 512];
    match sock.recv_from(&mut buf) {
        Ok((len, _)) => len >= 20 && buf[8..20] == req[8..20],
        Err(_) => {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    }
}
