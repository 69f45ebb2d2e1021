//! The records the store reads and writes.

use serde::Serialize;

use crate::StoreError;

/// A member's role; each includes the rights of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// See everything, export.
    Viewer,
    /// Run tests, stop runs, trigger probes.
    Tester,
    /// Create, edit and delete tests, probes, registrars, accounts, media, API keys.
    Editor,
    /// Members, roles, organization settings, workers.
    Admin,
    /// Delete the organization, transfer ownership.
    Owner,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Tester,
        Role::Editor,
        Role::Admin,
        Role::Owner,
    ];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Tester => "tester",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// The display name.
    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::Tester => "Tester",
            Role::Editor => "Editor",
            Role::Admin => "Admin",
            Role::Owner => "Owner",
        }
    }

    /// Parses a stored or user-given name (case-insensitive).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }

    pub(crate) fn parse_column(s: &str) -> Result<Role, StoreError> {
        Role::parse(s).ok_or_else(|| StoreError::InvalidValue {
            column: "role",
            value: s.to_string(),
        })
    }
}

/// SIP signaling transport of a registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Transport {
    /// UDP, default port 5060.
    Udp,
    /// TCP, default port 5060.
    Tcp,
    /// TLS over TCP, default port 5061.
    Tls,
    /// SIP over secure WebSocket (RFC 7118), default port 443.
    Wss,
    /// DNS discovery per RFC 3263 (NAPTR → SRV → A/AAAA).
    Auto,
}

impl Transport {
    /// Every transport, in the order the form lists them.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Wss,
        Transport::Auto,
    ];

    /// The stored name (upper case, as the seed page writes them).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Wss => "WSS",
            Transport::Auto => "AUTO",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn parse(s: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The default port (None for AUTO: DNS decides).
    pub fn default_port(self) -> Option<u16> {
        match self {
            Transport::Udp | Transport::Tcp => Some(5060),
            Transport::Tls => Some(5061),
            Transport::Wss => Some(443),
            Transport::Auto => None,
        }
    }

    /// Whether TLS settings apply (TLS, WSS, and AUTO which may select TLS).
    pub fn uses_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss | Transport::Auto)
    }
}

/// How the server certificate of a TLS registrar is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsVerify {
    /// Against the system's (webpki) roots.
    System,
    /// Against the uploaded CA certificate.
    Custom,
    /// Not verified (testing only).
    Skip,
}

impl TlsVerify {
    /// Every mode.
    pub const ALL: [TlsVerify; 3] = [TlsVerify::System, TlsVerify::Custom, TlsVerify::Skip];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVerify::System => "system",
            TlsVerify::Custom => "custom",
            TlsVerify::Skip => "skip",
        }
    }

    /// The display name.
    pub fn label(self) -> &'static str {
        match self {
            TlsVerify::System => "System",
            TlsVerify::Custom => "Custom",
            TlsVerify::Skip => "Skip",
        }
    }

    /// Parses a name (case-insensitive).
    pub fn parse(s: &str) -> Option<TlsVerify> {
        TlsVerify::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Whether a registrar is a user's SIP server or sipmeter's built-in registrar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrarKind {
    /// The user's own SIP server (needs SIP accounts).
    Custom,
    /// sipmeter's built-in registrar (ephemeral credentials, no accounts needed).
    Builtin,
}

impl RegistrarKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrarKind::Custom => "custom",
            RegistrarKind::Builtin => "builtin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<RegistrarKind> {
        match s {
            "custom" => Some(RegistrarKind::Custom),
            "builtin" => Some(RegistrarKind::Builtin),
            _ => None,
        }
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// URL slug.
    pub slug: String,
    /// Creation time, unix ms.
    pub created_at: i64,
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Email, lower case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Creation time, unix ms.
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The user's id.
    pub user_id: i64,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the organization.
    pub role: Role,
    /// Sees every project (else only those with a per-project role).
    pub all_projects: bool,
}

/// An invitation to join an organization (the token is stored hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// Id.
    pub id: i64,
    /// The organization.
    pub org_id: i64,
    /// Invitee's email (lower case).
    pub email: String,
    /// Role granted.
    pub role: Role,
    /// With a project: access to that project only, with `role` there.
    pub project_id: Option<i64>,
    /// Inviter.
    pub created_by: i64,
    /// Creation, unix ms.
    pub created_at: i64,
    /// Expiry, unix ms.
    pub expires_at: i64,
    /// When it was used.
    pub accepted_at: Option<i64>,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Id.
    pub id: i64,
    /// Owning organization.
    pub org_id: i64,
    /// Display name.
    pub name: String,
    /// URL slug, generated at creation, never changes.
    pub slug: String,
    /// Creation time, unix ms.
    pub created_at: i64,
}

/// A login session.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The signed-in user.
    pub user_id: i64,
    /// The token forms must echo.
    pub csrf_token: String,
    /// Expiry, unix ms.
    pub expires_at: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("csrf_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// An API key (the key itself is shown once at creation and stored only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Id.
    pub id: i64,
    /// The project it is scoped to.
    pub project_id: i64,
    /// Label.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// The creator's role for the project at creation.
    pub role: Role,
    /// Creator's user id.
    pub created_by: i64,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// Revocation time, unix ms.
    pub revoked_at: Option<i64>,
}

/// A registrar's configuration as entered (validated by the server before it reaches the store).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrarInput {
    /// Friendly label.
    pub name: String,
    /// Host name or IP literal (IPv6 without brackets).
    pub domain: String,
    /// Port; None = the transport's default.
    pub port: Option<u16>,
    /// Signaling transport.
    pub transport: Transport,
    /// `host[:port]` of the outbound proxy.
    pub outbound_proxy: Option<String>,
    /// Server certificate verification.
    pub tls_verify: TlsVerify,
    /// CA certificate(s), PEM.
    pub tls_ca_pem: Option<String>,
    /// Client certificate, PEM.
    pub tls_cert_pem: Option<String>,
    /// Client private key, PEM.
    pub tls_key_pem: Option<String>,
}

impl std::fmt::Debug for RegistrarInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarInput")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("outbound_proxy", &self.outbound_proxy)
            .field("tls_verify", &self.tls_verify)
            .field(
                "tls_key_pem",
                &self.tls_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl RegistrarInput {
    /// The built-in registrar every new organization's Demo project gets.
    pub fn builtin() -> RegistrarInput {
        RegistrarInput {
            name: "Built-in registrar".to_string(),
            domain: "127.0.0.1".to_string(),
            port: None,
            transport: Transport::Udp,
            outbound_proxy: None,
            tls_verify: TlsVerify::System,
            tls_ca_pem: None,
            tls_cert_pem: None,
            tls_key_pem: None,
        }
    }
}

/// A stored registrar.
#[derive(Clone, PartialEq, Eq)]
pub struct Registrar {
    /// Id.
    pub id: i64,
    /// Owning project.
    pub project_id: i64,
    /// Custom or built-in.
    pub kind: RegistrarKind,
    /// Friendly label.
    pub name: String,
    /// Host name or IP literal.
    pub domain: String,
    /// Port as entered (None = transport default).
    pub port: Option<u16>,
    /// Signaling transport.
    pub transport: Transport,
    /// `host[:port]` of the outbound proxy.
    pub outbound_proxy: Option<String>,
    /// Server certificate verification.
    pub tls_verify: TlsVerify,
    /// CA certificate(s), PEM.
    pub tls_ca_pem: Option<String>,
    /// Client certificate, PEM.
    pub tls_cert_pem: Option<String>,
    /// Client private key, PEM.
    pub tls_key_pem: Option<String>,
    /// Creation time, unix ms.
    pub created_at: i64,
    /// Last change, unix ms.
    pub updated_at: i64,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("id", &self.id)
            .field("project_id", &self.project_id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("outbound_proxy", &self.outbound_proxy)
            .field("tls_verify", &self.tls_verify)
            .field(
                "tls_key_pem",
                &self.tls_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// The port used: the configured one, or the transport's default (None for AUTO).
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or(self.transport.default_port())
    }

    /// The registration URI, as the seed page's table gives it:
    /// `sip:DOMAIN:PORT;transport=udp|tcp|tls|wss`. AUTO leaves transport and (unless
    /// configured) port to RFC 3263 DNS discovery: `sip:DOMAIN`.
    pub fn registration_uri(&self) -> String {
        registration_uri(&self.domain, self.port, self.transport)
    }

    /// This registrar's configuration as an input (for edit forms).
    pub fn to_input(&self) -> RegistrarInput {
        RegistrarInput {
            name: self.name.clone(),
            domain: self.domain.clone(),
            port: self.port,
            transport: self.transport,
            outbound_proxy: self.outbound_proxy.clone(),
            tls_verify: self.tls_verify,
            tls_ca_pem: self.tls_ca_pem.clone(),
            tls_cert_pem: self.tls_cert_pem.clone(),
            tls_key_pem: self.tls_key_pem.clone(),
        }
    }
}

/// A SIP account to add (the password already encrypted by the caller).
#[derive(Clone, PartialEq, Eq)]
pub struct SipAccountInput {
    /// Auth user name.
    pub username: String,
    /// The encrypted password.
    pub password_enc: String,
    /// Realm (None: learned from the challenge).
    pub realm: Option<String>,
    /// Extension / AOR user when it differs from the auth user.
    pub extension: Option<String>,
}

impl std::fmt::Debug for SipAccountInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAccountInput")
            .field("username", &self.username)
            .field("password_enc", &"<redacted>")
            .field("realm", &self.realm)
            .field("extension", &self.extension)
            .finish()
    }
}

/// A stored SIP account.
#[derive(Clone, PartialEq, Eq)]
pub struct SipAccount {
    /// Id.
    pub id: i64,
    /// Owning registrar.
    pub registrar_id: i64,
    /// Auth user name.
    pub username: String,
    /// The encrypted password.
    pub password_enc: String,
    /// Realm.
    pub realm: Option<String>,
    /// Extension.
    pub extension: Option<String>,
    /// Creation time, unix ms.
    pub created_at: i64,
}

impl std::fmt::Debug for SipAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAccount")
            .field("id", &self.id)
            .field("registrar_id", &self.registrar_id)
            .field("username", &self.username)
            .field("password_enc", &"<redacted>")
            .field("realm", &self.realm)
            .field("extension", &self.extension)
            .finish()
    }
}

/// A named set of a registrar's accounts that tests draw from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountPool {
    /// Id.
    pub id: i64,
    /// Owning registrar.
    pub registrar_id: i64,
    /// Name, unique per registrar.
    pub name: String,
    /// Rotation strategy.
    pub strategy: crate::rotation::Strategy,
    /// Round-robin position for the next run.
    pub next_index: i64,
    /// Creation, unix ms.
    pub created_at: i64,
    /// Member accounts, by username.
    pub account_ids: Vec<i64>,
}

/// The registration URI for a domain, an optional port and a transport (see
/// [`Registrar::registration_uri`]). IPv6 literals are bracketed.
pub fn registration_uri(domain: &str, port: Option<u16>, transport: Transport) -> String {
    let host = if domain.contains(':') && !domain.starts_with('[') {
        format!("[{domain}]")
    } else {
        domain.to_string()
    };
    match (transport, port.or(transport.default_port())) {
        (Transport::Auto, None) => format!("sip:{host}"),
        (Transport::Auto, Some(p)) => format!("sip:{host}:{p}"),
        (t, Some(p)) => format!(
            "sip:{host}:{p};transport={}",
            t.as_str().to_ascii_lowercase()
        ),
        // Only AUTO has no default port.
        (t, None) => format!("sip:{host};transport={}", t.as_str().to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_match_the_seed_table() {
        assert_eq!(
            registration_uri("sip.example.com", None, Transport::Udp),
            "sip:sip.example.com:5060;transport=udp"
        );
        assert_eq!(
            registration_uri("pbx.corp.net", Some(5061), Transport::Tls),
            "sip:pbx.corp.net:5061;transport=tls"
        );
        assert_eq!(
            registration_uri("10.0.0.50", Some(5060), Transport::Tcp),
            "sip:10.0.0.50:5060;transport=tcp"
        );
        assert_eq!(
            registration_uri("pbx.corp.net", None, Transport::Tls),
            "sip:pbx.corp.net:5061;transport=tls"
        );
        assert_eq!(
            registration_uri("ws.example.com", None, Transport::Wss),
            "sip:ws.example.com:443;transport=wss"
        );
        assert_eq!(
            registration_uri("example.com", None, Transport::Auto),
            "sip:example.com"
        );
        assert_eq!(
            registration_uri("2001:db8::1", None, Transport::Tcp),
            "sip:[2001:db8::1]:5060;transport=tcp"
        );
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Tester && Role::Tester < Role::Editor);
        assert!(Role::Editor < Role::Admin && Role::Admin < Role::Owner);
        assert_eq!(Role::parse(" Editor "), Some(Role::Editor));
        assert_eq!(Role::parse("root"), None);
    }
}
