//! A dnsmasq serving test zones on a free loopback port.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{Group, PeerError, TempDir, find_binary, free_port};

/// A NAPTR record (`--naptr-record`), with flag "s" and no regexp, as RFC 3263 uses them.
#[derive(Debug, Clone)]
pub struct Naptr {
    /// Owner name, e.g. `sip.test`.
    pub name: String,
    /// Order.
    pub order: u16,
    /// Preference.
    pub preference: u16,
    /// Service, e.g. `SIP+D2U`.
    pub service: String,
    /// The SRV owner name the record points to.
    pub replacement: String,
}

/// An SRV record (`--srv-host`).
#[derive(Debug, Clone)]
pub struct Srv {
    /// Owner name, e.g. `_sip._udp.sip.test`.
    pub name: String,
    /// Target host name.
    pub target: String,
    /// Port.
    pub port: u16,
    /// Priority.
    pub priority: u16,
    /// Weight.
    pub weight: u16,
}

/// The zones dnsmasq serves.
#[derive(Debug, Clone, Default)]
pub struct DnsmasqConfig {
    /// Domains answered from local data only (NXDOMAIN/NODATA for the rest, never forwarded).
    pub local_domains: Vec<String>,
    /// NAPTR records.
    pub naptr: Vec<Naptr>,
    /// SRV records.
    pub srv: Vec<Srv>,
    /// Address records (`--host-record`).
    pub hosts: Vec<(String, IpAddr)>,
}

/// A running dnsmasq on 127.0.0.1:`port()` (UDP and TCP); stopped on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    group: Group,
    port: u16,
    dir: TempDir,
}

impl Dnsmasq {
    /// The command-line options serving `config` (without the port and process options).
    pub fn record_args(config: &DnsmasqConfig) -> Vec<String> {
        let mut args = Vec::new();
        for d in &config.local_domains {
            args.push(format!("--local=/{d}/"));
        }
        for n in &config.naptr {
            args.push(format!(
                "--naptr-record={},{},{},S,{},,{}",
                n.name, n.order, n.preference, n.service, n.replacement
            ));
        }
        for s in &config.srv {
            args.push(format!(
                "--srv-host={},{},{},{},{}",
                s.name, s.target, s.port, s.priority, s.weight
            ));
        }
        for (name, ip) in &config.hosts {
            args.push(format!("--host-record={name},{ip}"));
        }
        args
    }

    /// Starts dnsmasq in the foreground on a free loopback port and waits until it answers.
    pub fn start(config: &DnsmasqConfig) -> Result<Dnsmasq, PeerError> {
        let binary = find_binary("dnsmasq").ok_or(PeerError::Missing {
            binary: "dnsmasq",
            package: "dnsmasq-base",
        })?;
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&binary, config) {
                Ok(d) => return Ok(d),
                Err(e @ PeerError::Exited(..)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(PeerError::Exited("dnsmasq", "no attempt".into())))
    }

    fn try_start(binary: &std::path::Path, config: &DnsmasqConfig) -> Result<Dnsmasq, PeerError> {
        let port = free_port()?;
        let dir = TempDir::new("sipmeter-dnsmasq")?;
        let log = File::create(dir.path().join("dnsmasq.log"))?;
        let mut cmd = Command::new(binary);
        cmd.args([
            "-d",
            "-k",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--log-queries",
            "--cache-size=0",
        ])
        .arg(format!("--port={port}"))
        .args(Self::record_args(config))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        let group = Group::spawn("dnsmasq", cmd)?;
        let mut d = Dnsmasq { group, port, dir };
        let limit = Duration::from_secs(10);
        let end = Instant::now() + limit;
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut id = 0u16;
        while Instant::now() < end {
            if let Some(status) = d.group.exited() {
                return Err(PeerError::Exited(
                    "dnsmasq",
                    format!("{status}; log:\n{}", d.log()),
                ));
            }
            id = id.wrapping_add(1);
            if dns_ping(&probe, d.addr(), id) {
                return Ok(d);
            }
        }
        Err(PeerError::NotReady("dnsmasq", limit, d.log()))
    }

    /// The port (UDP and TCP) on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What dnsmasq logged so far (with `--log-queries`: every question asked).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }
}

/// Sends a query (`probe.invalid A`) and waits briefly for any answer with our id.
fn dns_ping(sock: &UdpSocket, to: SocketAddr, id: u16) -> bool {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
    for label in ["probe", "invalid"] {
        q.push(label.len() as u8); // labels above are short literals
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    if sock.send_to(&q, to).is_err() {
        std::thread::sleep(Duration::from_millis(100));
        return false;
    }
    let mut buf = [0u8; 512];
    match sock.recv_from(&mut buf) {
        Ok((len, _)) => len >= 2 && buf[..2] == id.to_be_bytes(),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    }
}
