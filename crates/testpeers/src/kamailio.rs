//! A Kamailio registrar + proxy for interop tests.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{Group, PeerError, TempDir, find_binary, free_port};

const CONFIG_TEMPLATE: &str = include_str!("kamailio.cfg");

/// The channel limit's check, in the INVITE branch after proxy authentication: count the
/// calls of the profile, refuse beyond the limit, else track this one.
const CHANNEL_LIMIT: &str = "\t\tif (is_method(\"INVITE\")) {
\t\t\tget_profile_size(\"calls\", \"$var(calls)\");\n\t\t\txlog(\"L_NOTICE\", \"channel limit: $var(calls) calls, INVITE from $fU\\n\");
\t\t\tif ($var(calls) >= @MAX_CALLS@) {
\t\t\t\tsl_send_reply(\"503\", \"Channel Limit Reached\");
\t\t\t\texit;
\t\t\t}
\t\t\tdlg_manage();
\t\t\tset_dlg_profile(\"calls\");
\t\t}
";

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
    /// Also serve SIP over WebSocket (RFC 7118; modules `xhttp.so` and `websocket.so`, Debian
    /// `kamailio-websocket-modules`): WS on [`Kamailio::ws_port`] and, with `tls`, WSS on
    /// [`Kamailio::wss_port`].
    pub websocket: bool,
    /// A channel limit, as a trunk or PBX sets one: at most this many calls (dialogs, early
    /// or confirmed) at once; an INVITE beyond it is answered `503 Channel Limit Reached`
    /// (module `dialog.so` with a dialog profile). Kamailio then runs one UDP worker, so the
    /// check and the count are atomic.
    pub max_calls: Option<u32>,
    /// Out of service: REGISTER and INVITE are answered `503 Service Unavailable` with this
    /// `Retry-After` (seconds); OPTIONS still gets 200 (RFC 3263 §4.3 failover tests).
    pub unavailable: Option<u32>,
    /// Record-Route INVITEs (the default): in-dialog requests then go through Kamailio.
    /// Without it, BYE and re-INVITE go from phone to phone.
    pub record_route: bool,
    /// One UDP worker: Kamailio handles datagrams one at a time, in arrival order.
    pub one_udp_worker: bool,
    /// Challenge INVITE and MESSAGE (407, the default). Off for a registrar behind an
    /// outbound proxy that authenticates the calls (an SBC in front of a PBX).
    pub invite_auth: bool,
    /// An outbound proxy (SBC): each initial INVITE or MESSAGE, once authenticated, goes on
    /// to this SIP URI (the registrar, e.g. `sip:127.0.0.1:5070;transport=tcp`) instead of
    /// being looked up here. Its log says `initial INVITE from … with Route: …` for each.
    pub forward_to: Option<String>,
    /// Shared memory in MB (`-m`, 64 by default). Each TLS connection takes some: a thousand
    /// need more (else "ssl bug #1491 workaround: not enough memory" and closed handshakes).
    pub shm_mb: u32,
    /// RFC 5626 SIP Outbound, Kamailio being edge proxy and registrar in one (modules
    /// `outbound.so`, Debian `kamailio-outbound-modules`, `path.so` and `stun.so`): the
    /// registrar's `outbound_mode` 1 answers a REGISTER with `reg-id` and `Supported:
    /// outbound` with `Require: outbound` (`use_path` 1: also behind an edge proxy whose Path
    /// carries `ob`); the stun module answers STUN Binding requests on the UDP port; the CRLF
    /// ping is answered with a pong by the core.
    pub outbound: Option<KamailioOutbound>,
    /// With `forward_to` and `outbound`: an RFC 5626 edge proxy (§5) in front of the registrar
    /// at `forward_to`: REGISTER goes on to it with a Path naming this flow (`add_path`, `ob`),
    /// and requests coming back from it along that Path are loose-routed to the phone's flow.
    pub edge: bool,
    /// RFC 3608: the 200 to a REGISTER carries `Service-Route: <this value>` (the registrar
    /// appends it with `append_to_reply` before `save`). `@PORT@` and `@IP@` in it are
    /// Kamailio's SIP port and address.
    pub service_route: Option<String>,
}

/// Kamailio's RFC 5626 settings ([`KamailioConfig::outbound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KamailioOutbound {
    /// The registrar's `flow_timer`: a `Flow-Timer` header with this many seconds in the 2xx
    /// (0: none).
    pub flow_timer: u32,
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
            websocket: false,
            max_calls: None,
            unavailable: None,
            record_route: true,
            one_udp_worker: false,
            invite_auth: true,
            forward_to: None,
            shm_mb: 64,
            outbound: None,
            edge: false,
            service_route: None,
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
    ws_port: Option<u16>,
    wss_port: Option<u16>,
    dir: TempDir,
}

fn safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
}

impl Kamailio {
    /// The Kamailio configuration text for `config` on `port` (for reading in failures);
    /// with TLS, `tls` is the TLS port and the directory holding `tls.cfg`; with WebSocket,
    /// `ws` is the WS port and the WSS port (with TLS).
    pub fn config_text(
        config: &KamailioConfig,
        port: u16,
        tls: Option<(u16, &std::path::Path)>,
        ws: Option<(u16, Option<u16>)>,
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
        let location = match &config.forward_to {
            Some(uri) if uri.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => {
                format!("\t\t$du = \"{uri}\";\n\t\troute(RELAY);")
            }
            Some(uri) => {
                return Err(PeerError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("forward_to {uri:?} is not a plain SIP URI"),
                )));
            }
            None => "\t\troute(LOCATION);".to_owned(),
        };
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
        let (ws_core, ws_module, ws_route, ws_nat, ws_dlg) = match ws {
            Some((ws_port, wss_port)) => {
                let mut core = format!("listen=tcp:@IP@:{ws_port}\nalias=\"@IP@:{ws_port}\"\n");
                if let Some(p) = wss_port {
                    core.push_str(&format!("listen=tls:@IP@:{p}\nalias=\"@IP@:{p}\"\n"));
                }
                (
                    core,
                    WS_MODULES.to_owned(),
                    WS_ROUTE.to_owned(),
                    WS_NAT.to_owned(),
                    "\t\t\thandle_ruri_alias();\n".to_owned(),
                )
            }
            None => (
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        // An edge proxy: REGISTER on to the registrar with a Path; what the registrar sends
        // back along it (from its port) follows the Route to the phone's flow.
        let (edge_route, register) = match (&config.forward_to, config.edge) {
            (Some(uri), true) => {
                let port = uri
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.split(';').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| {
                        PeerError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("forward_to {uri:?} names no port"),
                        ))
                    })?;
                (
                    // The edge stays in the dialogs it delivers down a flow (RFC 5626 §5.3's
                    // Record-Route): over a stream transport the phone takes no connection, so
                    // the registrar cannot reach its Contact but through the edge.
                    format!(
                        "\tif ($sp == {port} && loose_route()) {{\n\t\txlog(\"L_NOTICE\", \"edge: $rm along the Path to $du\\n\");\n\t\tif (is_method(\"INVITE\")) {{\n\t\t\trecord_route();\n\t\t}}\n\t\troute(RELAY);\n\t\texit;\n\t}}\n"
                    ),
                    format!(
                        "\t\tif (!add_path()) {{\n\t\t\tsl_send_reply(\"503\", \"Path Failed\");\n\t\t\texit;\n\t\t}}\n\t\t$du = \"{uri}\";\n\t\troute(RELAY);"
                    ),
                )
            }
            _ => (String::new(), "\t\troute(REGISTRAR);".to_owned()),
        };
        let service_route = match &config.service_route {
            // Nothing Kamailio's script would read as a quote, an escape or a variable.
            Some(v)
                if v.bytes()
                    .all(|b| (b.is_ascii_graphic() || b == b' ') && !b"\"\\$".contains(&b)) =>
            {
                format!("\tappend_to_reply(\"Service-Route: {v}\\r\\n\");\n")
            }
            Some(v) => {
                return Err(PeerError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("service_route {v:?} is not a plain header value"),
                )));
            }
            None => String::new(),
        };
        let (dialog_module, channel_limit) = match config.max_calls {
            Some(n) => (
                "loadmodule \"dialog.so\"\nmodparam(\"dialog\", \"profiles_no_value\", \"calls\")\n"
                    .to_owned(),
                CHANNEL_LIMIT.replace("@MAX_CALLS@", &n.to_string()),
            ),
            None => (String::new(), String::new()),
        };
        Ok(CONFIG_TEMPLATE
            // The limit's check and the count are not atomic across UDP workers: one worker
            // serialises them, so the limit is exact.
            .replace(
                "@CHILDREN@",
                if config.max_calls.is_some() || config.one_udp_worker {
                    "1"
                } else {
                    "2"
                },
            )
            .replace(
                "@UNAVAILABLE@",
                &config.unavailable.map_or(String::new(), |secs| {
                    format!(
                        "\tif (is_method(\"REGISTER|INVITE\")) {{\n\t\tappend_to_reply(\"Retry-After: {secs}\\r\\n\");\n\t\tsl_send_reply(\"503\", \"Service Unavailable\");\n\t\texit;\n\t}}\n"
                    )
                }),
            )
            .replace(
                "@RECORD_ROUTE@",
                if config.record_route {
                    "\tif (is_method(\"INVITE|SUBSCRIBE\")) {\n\t\trecord_route();\n\t}"
                } else {
                    "\t# No Record-Route: in-dialog requests go from phone to phone."
                },
            )
            // Kamailio 5.6 with OpenSSL 3 shares OpenSSL's per-thread state between its
            // worker processes (kamailio#3695): with two TCP workers doing TLS, about one run
            // in ten ended in "freeing already freed pointer" and a crashed worker. With TLS,
            // one TCP worker does all of it.
            .replace("@TCP_CHILDREN@", if tls.is_some() { "1" } else { "2" })
            .replace("@DIALOG_MODULE@", &dialog_module)
            .replace(
                "@PROXYAUTH@",
                if config.invite_auth {
                    "\t\troute(PROXYAUTH);\n"
                } else {
                    "\t\t# Calls come through an outbound proxy that authenticated them.\n"
                },
            )
            .replace(
                "@OUTBOUND_MODULE@",
                if config.outbound.is_some() {
                    // Before rr.so and path.so, which bind to it when it is loaded first.
                    "loadmodule \"outbound.so\"\nloadmodule \"path.so\"\nloadmodule \"stun.so\"\n"
                } else {
                    ""
                },
            )
            .replace(
                "@OUTBOUND_PARAMS@",
                &config.outbound.map_or(String::new(), |o| {
                    format!(
                        "modparam(\"registrar\", \"outbound_mode\", 1)\nmodparam(\"registrar\", \"use_path\", 1)\nmodparam(\"registrar\", \"flow_timer\", {})\n",
                        o.flow_timer
                    )
                }),
            )
            .replace("@EDGE_ROUTE@", &edge_route)
            .replace("@REGISTER@", &register)
            .replace("@SERVICE_ROUTE@", &service_route)
            .replace("@CHANNEL_LIMIT@", &channel_limit)
            .replace("@LOCATION@", &location)
            .replace("@TLS_CORE@", &tls_core)
            .replace("@TLS_MODULE@", &tls_module)
            .replace("@WS_CORE@", &ws_core)
            .replace("@WS_MODULE@", &ws_module)
            .replace("@WS_ROUTE@", &ws_route)
            .replace("@WS_NAT@", &ws_nat)
            .replace("@WS_DLG@", &ws_dlg)
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
        if config.websocket && !module_installed("websocket.so") {
            return Err(PeerError::Missing {
                binary: "kamailio websocket.so",
                package: "kamailio-websocket-modules",
            });
        }
        if config.outbound.is_some() && !module_installed("outbound.so") {
            return Err(PeerError::Missing {
                binary: "kamailio outbound.so",
                package: "kamailio-outbound-modules",
            });
        }
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
        let mut taken = vec![port];
        let mut another_port = || -> std::io::Result<u16> {
            loop {
                let p = if config.ipv6 {
                    free_port_v6()?
                } else {
                    free_port()?
                };
                if !taken.contains(&p) {
                    taken.push(p);
                    return Ok(p);
                }
            }
        };
        let tls_port = match &config.tls {
            Some(tls) => {
                write_tls_files(dir.path(), tls)?;
                Some(another_port()?)
            }
            None => None,
        };
        let (ws_port, wss_port) = if config.websocket {
            let ws = another_port()?;
            let wss = match tls_port {
                Some(_) => Some(another_port()?),
                None => None,
            };
            (Some(ws), wss)
        } else {
            (None, None)
        };
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(
            &cfg,
            Self::config_text(
                config,
                port,
                tls_port.map(|p| (p, dir.path())),
                ws_port.map(|p| (p, wss_port)),
            )?,
        )?;
        let log_path = dir.path().join("kamailio.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(binary);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", &config.shm_mb.to_string(), "-M", "8"])
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
            ws_port,
            wss_port,
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

    /// The WS port, when started with [`KamailioConfig::websocket`].
    pub fn ws_port(&self) -> Option<u16> {
        self.ws_port
    }

    /// The WSS port, when started with [`KamailioConfig::websocket`] and TLS.
    pub fn wss_port(&self) -> Option<u16> {
        self.wss_port
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

/// Like [`tls_available`] for the outbound module (`kamailio-outbound-modules`).
pub fn outbound_available() -> bool {
    if !crate::available("kamailio", "kamailio") {
        return false;
    }
    if module_installed("outbound.so") {
        return true;
    }
    let msg = "kamailio's outbound.so is not installed: install the Debian package `kamailio-outbound-modules`";
    if std::env::var_os("SIPMETER_REQUIRE_PEERS").is_some() {
        panic!("{msg} (SIPMETER_REQUIRE_PEERS is set)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// True when Debian's `kamailio-tls-modules` (tls.so) is installed.
pub fn tls_module_installed() -> bool {
    module_installed("tls.so")
}

/// True when Kamailio's module `name` (e.g. `websocket.so`) is installed.
pub fn module_installed(name: &str) -> bool {
    [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
        "/usr/local/lib64/kamailio/modules",
    ]
    .iter()
    .any(|d| std::path::Path::new(d).join(name).exists())
}

/// Like [`tls_available`] for the WebSocket modules (`kamailio-websocket-modules`).
pub fn websocket_available() -> bool {
    if !crate::available("kamailio", "kamailio") {
        return false;
    }
    if module_installed("websocket.so") && module_installed("xhttp.so") {
        return true;
    }
    let msg = "kamailio's websocket.so is not installed: install the Debian package `kamailio-websocket-modules`";
    if std::env::var_os("SIPMETER_REQUIRE_PEERS").is_some() {
        panic!("{msg} (SIPMETER_REQUIRE_PEERS is set)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// The HTTP side of the WebSocket listeners: upgrade requests asking for `sip` are handed to
/// the websocket module, anything else gets a 404.
/// WebSocket modules; nathelper, as websocket.so asks, so that requests reach a WebSocket
/// client on its own connection (the `received` address of its registration, and a contact
/// alias in dialogs), as Kamailio's sample configuration does.
const WS_MODULES: &str = r#"loadmodule "xhttp.so"
loadmodule "websocket.so"
loadmodule "nathelper.so"
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "received_avp", "$avp(RECEIVED)")
"#;

/// At the top of request_route with WebSocket: remember how to reach WS/WSS clients.
const WS_NAT: &str = r#"	if (proto == WS || proto == WSS) {
		force_rport();
		if (is_method("REGISTER")) {
			fix_nated_register();
		} else if (!has_totag() || is_method("INVITE|UPDATE")) {
			add_contact_alias();
		}
	}
"#;

const WS_ROUTE: &str = r#"
onreply_route {
	if (proto == WS || proto == WSS) {
		add_contact_alias();
	}
}

event_route[xhttp:request] {
	set_reply_close();
	set_reply_no_connect();
	if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm =~ "GET") {
		if (ws_handle_handshake()) {
			exit;
		}
	}
	xhttp_reply("404", "Not Found", "", "");
}
"#;

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
