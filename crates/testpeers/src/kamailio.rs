//! A Kamailio registrar + proxy for interop tests.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{Group, PeerError, TempDir, find_binary, free_port};

const CONFIG_TEMPLATE: &str = include_str!("kamailio.cfg");

/// One account in Kamailio's user table.
#[derive(Debug, Clone)]
pub struct User {
    /// User name (also the AOR user).
    pub name: String,
    /// Password; `None` makes a disabled account (REGISTER answered 403).
    pub password: Option<String>,
}

impl User {
    /// An active account.
    pub fn new(name: &str, password: &str) -> Self {
        User {
            name: name.into(),
            password: Some(password.into()),
        }
    }

    /// A disabled account.
    pub fn disabled(name: &str) -> Self {
        User {
            name: name.into(),
            password: None,
        }
    }
}

/// What the Kamailio under test serves.
#[derive(Debug, Clone)]
pub struct KamailioConfig {
    /// A domain Kamailio treats as its own (besides 127.0.0.1:port).
    pub domain: String,
    /// The accounts.
    pub users: Vec<User>,
    /// Kamailio's log level (`debug=`): 0 quiet … 3 debug.
    pub debug: u8,
    /// REGISTER challenges ask for `qop="auth"` (RFC 2617 §3.2.1); INVITE challenges never do.
    pub register_qop: bool,
    /// Every nonce serves one request only (`one_time_nonce`): refreshes and un-REGISTERs
    /// reusing a nonce are challenged again.
    pub one_time_nonce: bool,
    /// Listen on `[::1]` instead of `127.0.0.1`.
    pub ipv6: bool,
    /// Also listen over TLS (module `tls.so`, Debian `kamailio-tls-modules`) on a port of its
    /// own, [`Kamailio::tls_port`].
    pub tls: Option<KamailioTls>,
}

/// Kamailio's TLS listener: its certificate and, for mutual TLS, the CA of client
/// certificates. PEM texts, written to the peer's temp dir (the harness makes none itself:
/// tests generate them, e.g. with rcgen).
#[derive(Debug, Clone)]
pub struct KamailioTls {
    /// The server certificate (PEM, leaf first).
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca_pem: Option<String>,
}

impl Default for KamailioConfig {
    fn default() -> Self {
        KamailioConfig {
            domain: "kamailio.test".into(),
            users: Vec::new(),
            debug: 1,
            register_qop: true,
            one_time_nonce: false,
            ipv6: false,
            tls: None,
        }
    }
}

/// A running Kamailio listening on `addr()` (127.0.0.1 or [::1]) over UDP and TCP; stopped
/// on drop.
#[derive(Debug)]
pub struct Kamailio {
    // Dropped first: the process goes before its directory.
    group: Group,
    ip: IpAddr,
    port: u16,
    tls_port: Option<u16>,
    dir: TempDir,
}

fn safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

impl Kamailio {
    /// The Kamailio configuration text for `config` on `port` (for reading in failures);
    /// with TLS, `tls` is the TLS port and the directory holding `tls.cfg`.
    pub fn config_text(
        config: &KamailioConfig,
        port: u16,
        tls: Option<(u16, &std::path::Path)>,
    ) -> Result<String, PeerError> {
        let mut users = String::new();
        for u in &config.users {
            let pw = u.password.as_deref().unwrap_or("!");
            if !safe(&u.name) || (u.password.is_some() && !safe(pw)) {
                return Err(PeerError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "user {:?}: names and passwords are limited to [A-Za-z0-9-_.+]",
                        u.name
                    ),
                )));
            }
            users.push_str(&format!("\t$sht(users=>{}) = \"{pw}\";\n", u.name));
        }
        if !safe(&config.domain) {
            return Err(PeerError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("domain {:?} is not a plain host name", config.domain),
            )));
        }
        let (tls_core, tls_module) = match tls {
            Some((tls_port, dir)) => (
                format!("enable_tls=yes\nlisten=tls:@IP@:{tls_port}\nalias=\"@IP@:{tls_port}\"\n"),
                format!(
                    "loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n",
                    dir.join("tls.cfg").display()
                ),
            ),
            None => (String::new(), String::new()),
        };
        Ok(CONFIG_TEMPLATE
            .replace("@TLS_CORE@", &tls_core)
            .replace("@TLS_MODULE@", &tls_module)
            .replace("@PORT@", &port.to_string())
            .replace(
                "@IP@",
                &match listen_ip(config) {
                    IpAddr::V6(a) => format!("[{a}]"),
                    v4 => v4.to_string(),
                },
            )
            .replace("@DOMAIN@", &config.domain)
            .replace("@DEBUG@", &config.debug.to_string())
            .replace("@QOP@", if config.register_qop { "1" } else { "0" })
            .replace("@OTN@", if config.one_time_nonce { "1" } else { "0" })
            .replace("@USERS@", &users))
    }

    /// Writes the configuration to a temp dir, starts `kamailio` in the foreground on a free
    /// loopback port (UDP and TCP), and waits until it answers OPTIONS.
    pub fn start(config: &KamailioConfig) -> Result<Kamailio, PeerError> {
        let binary = find_binary("kamailio").ok_or(PeerError::Missing {
            binary: "kamailio",
            package: "kamailio",
        })?;
        if config.tls.is_some() && !tls_module_installed() {
            return Err(PeerError::Missing {
                binary: "kamailio tls.so",
                package: "kamailio-tls-modules",
            });
        }
        let mut last = None;
        // A port found free may be taken before Kamailio binds it: retry with another.
        for _ in 0..3 {
            match Self::try_start(&binary, config) {
                Ok(k) => return Ok(k),
                Err(e @ PeerError::Exited(..)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(PeerError::Exited("kamailio", "no attempt".into())))
    }

    fn try_start(binary: &std::path::Path, config: &KamailioConfig) -> Result<Kamailio, PeerError> {
        let ip = listen_ip(config);
        let port = if config.ipv6 {
            free_port_v6()?
        } else {
            free_port()?
        };
        let dir = TempDir::new("sipmeter-kamailio")?;
        let tls_port = match &config.tls {
            Some(tls) => {
                let tls_port = loop {
                    let p = if config.ipv6 {
                        free_port_v6()?
                    } else {
                        free_port()?
                    };
                    if p != port {
                        break p;
                    }
                };
                write_tls_files(dir.path(), tls)?;
                Some(tls_port)
            }
            None => None,
        };
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            Self::config_text(config, port, tls_port.map(|p| (p, dir.path())))?,
        )?;
        let log_path = dir.path().join("kamailio.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(binary);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-w")
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let group = Group::spawn("kamailio", cmd)?;
        let mut k = Kamailio {
            group,
            ip,
            port,
            tls_port,
            dir,
        };
        let limit = Duration::from_secs(10);
        let end = Instant::now() + limit;
        let probe = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut n = 0u32;
        while Instant::now() < end {
            if let Some(status) = k.group.exited() {
                return Err(PeerError::Exited(
                    "kamailio",
                    format!("{status}; log:\n{}", k.log()),
                ));
            }
            n += 1;
            if options_ping(&probe, k.addr(), n) {
                return Ok(k);
            }
        }
        Err(PeerError::NotReady("kamailio", limit, k.log()))
    }

    /// The port (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The TLS port, when started with [`KamailioConfig::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The TLS listening address, when started with [`KamailioConfig::tls`].
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_port.map(|p| SocketAddr::new(self.ip, p))
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// True while the main process runs.
    pub fn is_running(&mut self) -> bool {
        self.group.exited().is_none() && self.group.child().id() > 0
    }
}

/// Like [`crate::available`] for Kamailio's TLS module: true when `kamailio` and its `tls.so`
/// are installed; otherwise prints `SKIPPED: …` and returns false, or panics when
/// `SIPMETER_REQUIRE_PEERS` is set.
pub fn tls_available() -> bool {
    if !crate::available("kamailio", "kamailio") {
        return false;
    }
    if tls_module_installed() {
        return true;
    }
    let msg =
        "kamailio's tls.so is not installed: install the Debian package `kamailio-tls-modules`";
    if std::env::var_os("SIPMETER_REQUIRE_PEERS").is_some() {
        panic!("{msg} (SIPMETER_REQUIRE_PEERS is set)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// True when Debian's `kamailio-tls-modules` (tls.so) is installed.
pub fn tls_module_installed() -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules/tls.so",
        "/usr/lib/kamailio/modules/tls.so",
        "/usr/local/lib64/kamailio/modules/tls.so",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// Writes the certificate, key, optional client CA and the tls module's own config file
/// (`tls.cfg`: TLS 1.2 and 1.3, client certificates required only with a client CA).
fn write_tls_files(dir: &std::path::Path, tls: &KamailioTls) -> std::io::Result<()> {
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, &tls.cert_pem)?;
    std::fs::write(&key, &tls.key_pem)?;
    let mut server = format!(
        "[server:default]\nmethod = TLSv1.2+\ncertificate = {}\nprivate_key = {}\n",
        cert.display(),
        key.display()
    );
    match &tls.client_ca_pem {
        Some(ca) => {
            let ca_path = dir.join("client-ca.pem");
            std::fs::write(&ca_path, ca)?;
            server.push_str(&format!(
                "ca_list = {}\nverify_certificate = yes\nrequire_certificate = yes\n",
                ca_path.display()
            ));
        }
        None => server.push_str("verify_certificate = no\nrequire_certificate = no\n"),
    }
    server.push_str(
        "\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
    );
    std::fs::write(dir.join("tls.cfg"), server)
}

fn listen_ip(config: &KamailioConfig) -> IpAddr {
    if config.ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// A port free on [::1] for both UDP and TCP at the time of the call.
fn free_port_v6() -> std::io::Result<u16> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("[::1]:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no port free on [::1] for both UDP and TCP",
    ))
}

/// Sends one OPTIONS and waits briefly for a 200.
fn options_ping(sock: &UdpSocket, to: SocketAddr, n: u32) -> bool {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(_) => return false,
    };
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=probe\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: probe-{n}@{local}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    if sock.send_to(msg.as_bytes(), to).is_err() {
        std::thread::sleep(Duration::from_millis(100));
        return false;
    }
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((len, _)) => buf[..len].starts_with(b"SIP/2.0 200"),
        // ICMP port unreachable before Kamailio binds: wait a little.
        Err(_) => {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    }
}
