//! Set-up shared by the registrar's test files: a registrar core at 127.0.0.1 for
//! `sipmeter.test`, and a phone holding this run's ephemeral credentials.

use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Uri};
use sip_proto::auth::Credentials;
use sip_proto::transaction::TimerConfig;
use sip_proto::ua::{UaConfig, UserAgent};

pub const NOW_UNIX: u64 = 1_900_000_000;
pub const SECRET: &[u8] = b"test secret";

/// A registrar core's config: `sipmeter.test` at 127.0.0.1:`port` over `transport`.
pub fn config(transport: &str, port: u16, auth: AuthMode) -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port,
        transport: transport.into(),
        auth,
        secret: SECRET.to_vec(),
        min_expires: 60,
        max_expires: 3600,
    }
}

/// A phone `user` at 127.0.0.1:`port` over `transport`, registering with the registrar at
/// `reg_port`, with ephemeral credentials of [`SECRET`].
pub fn phone(user: &str, port: u16, transport: &str, reg_port: u16, use_100rel: bool) -> UserAgent {
    let (u, p) = sip_auth::ephemeral::issue(SECRET, user, NOW_UNIX + 3600);
    UserAgent::new(UaConfig {
        user: user.into(),
        domain: "sipmeter.test".into(),
        registrar_uri: Uri::parse(&format!(
            "sip:sipmeter.test:{reg_port};transport={}",
            transport.to_ascii_lowercase()
        ))
        .unwrap(),
        outbound_proxy: None,
        credentials: Some(Credentials::new(&u, &p)),
        local_host: Host::parse("127.0.0.1").unwrap(),
        local_port: port,
        transport: transport.into(),
        reliable: transport != "UDP",
        expires: 300,
        timers: TimerConfig::default(),
        user_agent: "sipmeter-test".into(),
        seed: u64::from(port),
        use_100rel,
        session_timer: None,
        codecs: None,
    })
}
