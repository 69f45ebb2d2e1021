//! TLS for SIP (RFC 3261 §26.3.1, RFC 5630): rustls settings for clients and servers with the
//! **ring** provider, the three verification modes of the registrar form (System, Custom,
//! Skip), mutual TLS, certificates generated with rcgen, and handshake failures explained in
//! words a VoIP engineer can act on.
//!
//! One crypto provider workspace-wide: every config here is built with
//! [`rustls::crypto::ring::default_provider`], never the process default, so aws-lc-rs stays out
//! of the tree and nothing depends on a global installed at start-up.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

pub use rustls;

/// A client-side TLS stream over TCP.
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;
/// A server-side TLS stream over TCP.
pub type ServerStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The crypto provider of the whole workspace (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input held no certificate.
    #[error("{0}: no CERTIFICATE block found in the PEM text")]
    NoCertificate(&'static str),
    /// A PEM input could not be decoded.
    #[error("{what}: not valid PEM: {reason}")]
    Pem {
        /// Which input (CA certificate, client certificate, private key…).
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A PEM input held no private key.
    #[error("{0}: no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1) found in the PEM text")]
    NoKey(&'static str),
    /// A CA certificate was refused as a trust anchor.
    #[error("CA certificate cannot be used as a trust anchor: {0}")]
    BadCa(rustls::Error),
    /// rustls refused the settings (e.g. a key that does not match its certificate).
    #[error("TLS settings refused: {0}")]
    Config(rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client CA list refused: {0}")]
    ClientVerifier(String),
    /// The domain cannot be a TLS server name.
    #[error("`{0}` cannot be a TLS server name (SNI)")]
    BadServerName(String),
    /// rcgen could not make a certificate.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Reads every certificate of a PEM text (a chain: leaf first).
pub fn certificates_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM text.
pub fn private_key_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(what),
        e => TlsError::Pem {
            what,
            reason: e.to_string(),
        },
    })
}

/// A certificate chain and its private key: our side's identity (server certificate, or the
/// client certificate of mutual TLS). `Debug` never shows the key.
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads an identity from a certificate PEM and a key PEM.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            chain: certificates_from_pem(cert_pem, "certificate")?,
            key: private_key_from_pem(key_pem, "private key")?,
        })
    }

    /// SHA-256 fingerprint of the leaf certificate, `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        self.chain.first().map_or_else(String::new, fingerprint)
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// SHA-256 fingerprint of a DER certificate, upper-case hex pairs joined by `:` (the form
/// `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How the server's certificate is verified (the registrar form's "verification mode").
#[derive(Debug, Clone, Default)]
pub enum Verify {
    /// Against the Mozilla root store bundled with webpki-roots.
    #[default]
    System,
    /// Against these CA certificates only (the uploaded CA, PEM).
    Custom(Vec<CertificateDer<'static>>),
    /// Not at all: any certificate for any name is accepted. Insecure; for labs only. The
    /// handshake signatures are still checked, so the connection is still TLS.
    InsecureSkipVerification,
}

impl Verify {
    /// The mode's name as the form shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Verify::System => "System",
            Verify::Custom(_) => "Custom CA",
            Verify::InsecureSkipVerification => "Skip (insecure)",
        }
    }
}

/// TLS settings of a client (one registrar).
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Server certificate verification.
    pub verify: Verify,
    /// The client certificate and key for mutual TLS.
    pub identity: Option<Identity>,
}

impl ClientSettings {
    /// The rustls client config.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let builder = match &self.verify {
            Verify::System => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(roots)
            }
            Verify::Custom(cas) => builder.with_root_certificates(root_store(cas)?),
            Verify::InsecureSkipVerification => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCertificate(provider))),
        };
        let config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(TlsError::Config)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn root_store(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(TlsError::BadCa)?;
    }
    Ok(roots)
}

/// TLS settings of a server (the built-in registrar).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The server's certificate and key.
    pub identity: Identity,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_cas: Option<Vec<CertificateDer<'static>>>,
}

impl ServerSettings {
    /// The rustls server config.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let builder = match &self.client_cas {
            None => builder.with_no_client_auth(),
            Some(cas) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(root_store(cas)?),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(self.identity.chain.clone(), self.identity.key.clone_key())
            .map_err(TlsError::Config)?;
        Ok(Arc::new(config))
    }
}

/// The TLS server name (SNI, and the name the certificate must carry) for a registrar domain:
/// a host name, or an IP literal (then no SNI is sent, RFC 6066 §3, and the certificate must
/// hold the address as an IP subjectAltName).
pub fn server_name(domain: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = domain.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::BadServerName(domain.to_owned()))
}

/// Runs the client handshake over a connected TCP stream.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the TCP stream unusable (it is consumed).
pub async fn connect(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<ClientStream> {
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Runs the server handshake over an accepted TCP stream.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled handshake leaves the TCP stream unusable (it is consumed).
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<ServerStream> {
    tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
}

/// What a finished client handshake agreed on, for the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// SHA-256 fingerprint of the server's certificate.
    pub server_fingerprint: Option<String>,
}

impl Negotiated {
    /// Reads the session facts of a client stream.
    pub fn of(stream: &ClientStream) -> Self {
        Self::of_connection(stream.get_ref().1)
    }

    /// Reads the session facts of a client connection driven sans-IO (`read_tls`,
    /// `process_new_packets`, `write_tls`).
    pub fn of_connection(conn: &rustls::ClientConnection) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "?".to_owned(),
        };
        Self {
            version,
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite())),
            server_fingerprint: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(fingerprint),
        }
    }
}

/// A TLS failure, in words, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What went wrong ("the server's certificate has expired …").
    pub problem: String,
    /// What to do.
    pub hint: String,
    /// True when the server's certificate was refused by our verification.
    pub certificate: bool,
}

/// Explains an error of a TLS stream (handshake or later), or `None` when it is not a TLS
/// error (then the plain I/O error says it). `sent_client_certificate` tells the mutual-TLS
/// cases apart.
pub fn diagnose(err: &io::Error, sent_client_certificate: bool) -> Option<Diagnosis> {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return (err.kind() == io::ErrorKind::UnexpectedEof).then(|| Diagnosis {
            problem: "the server closed the connection during the TLS handshake".into(),
            hint: "the port may not speak TLS, or the server refused us before saying why: check the port (TLS is usually 5061) and the server's TLS log".into(),
            certificate: false,
        });
    };
    Some(explain(tls, sent_client_certificate))
}

/// Explains a rustls error.
pub fn explain(err: &rustls::Error, sent_client_certificate: bool) -> Diagnosis {
    let cert = |problem: String, hint: &str| Diagnosis {
        problem,
        hint: hint.to_owned(),
        certificate: true,
    };
    let other = |problem: String, hint: &str| Diagnosis {
        problem,
        hint: hint.to_owned(),
        certificate: false,
    };
    const CLOCK: &str = "renew the server's certificate (or, if it is new, check the clock of this machine and of the server)";
    const CA: &str = "signed by an authority this check does not trust: upload the CA certificate that signed it and choose Custom (--ca FILE), or Skip verification in a lab (--insecure)";
    const NAME: &str = "use the domain the certificate was issued for, or reissue the certificate with this domain in its subjectAltName";
    match err {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Expired => cert("the server's certificate has expired".into(), CLOCK),
            CertificateError::ExpiredContext { time, not_after } => cert(
                format!(
                    "the server's certificate has expired: valid until {}, {} ago",
                    date(*not_after),
                    ago(time.as_secs().saturating_sub(not_after.as_secs()))
                ),
                CLOCK,
            ),
            CertificateError::NotValidYet => {
                cert("the server's certificate is not valid yet".into(), CLOCK)
            }
            CertificateError::NotValidYetContext { not_before, .. } => cert(
                format!(
                    "the server's certificate is not valid yet: valid from {}",
                    date(*not_before)
                ),
                CLOCK,
            ),
            CertificateError::UnknownIssuer => cert(
                "the server's certificate is signed by an unknown authority".into(),
                CA,
            ),
            CertificateError::BadSignature => cert(
                "the server's certificate has a bad signature (not signed by the CA it names)"
                    .into(),
                CA,
            ),
            CertificateError::NotValidForName => cert(
                "the server's certificate is not valid for this domain".into(),
                NAME,
            ),
            CertificateError::NotValidForNameContext { expected, presented } => cert(
                format!(
                    "the server's certificate is valid for {}, not {}",
                    if presented.is_empty() {
                        "no name at all".to_owned()
                    } else {
                        presented
                            .iter()
                            .map(|p| presented_name(p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    name_text(expected)
                ),
                NAME,
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                cert(
                    "the server's certificate is not meant for a TLS server (extended key usage)"
                        .into(),
                    "reissue the certificate with the serverAuth extended key usage",
                )
            }
            e => cert(
                format!("the server's certificate was refused: {e:?}"),
                "check the certificate chain the server sends (openssl s_client -showcerts)",
            ),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => other(
                "the server requires a client certificate (mutual TLS) and we sent none".into(),
                "give a client certificate and its key (--cert FILE --key FILE)",
            ),
            AlertDescription::HandshakeFailure if !sent_client_certificate => other(
                "the server aborted the TLS handshake (handshake_failure): it probably requires a client certificate, or shares no cipher suite with us".into(),
                "give a client certificate and its key (--cert FILE --key FILE) if the server uses mutual TLS",
            ),
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::DecryptError
                if sent_client_certificate =>
            {
                other(
                    format!("the server refused our client certificate ({alert:?})"),
                    "the client certificate must be valid and signed by a CA the server trusts",
                )
            }
            alert => other(
                format!("the server aborted the TLS handshake with the alert {alert:?}"),
                "the server's TLS log says why; check its TLS settings (versions, ciphers, client certificates)",
            ),
        },
        rustls::Error::InvalidMessage(_) => other(
            format!("the server does not speak TLS on this port ({err})"),
            "check the port and transport: TLS is usually on 5061, plain UDP/TCP on 5060",
        ),
        rustls::Error::PeerIncompatible(e) => other(
            format!("the server and sipmeter have no TLS version or cipher suite in common ({e:?})"),
            "sipmeter speaks TLS 1.2 and 1.3 with modern cipher suites: update the server's TLS settings",
        ),
        rustls::Error::NoCertificatesPresented => other(
            "the server sent no certificate".into(),
            "configure a certificate on the server's TLS listener",
        ),
        e => other(
            format!("TLS failed: {e}"),
            "check the server's TLS settings and log",
        ),
    }
}

fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// webpki presents names as `DnsName("pbx.test")` or `IpAddress(10.0.0.1)`: keep the name.
fn presented_name(p: &str) -> &str {
    let inner = p
        .strip_prefix("DnsName(")
        .or_else(|| p.strip_prefix("IpAddress("))
        .and_then(|r| r.strip_suffix(')'));
    inner.map_or(p, |i| i.trim_matches('"'))
}

fn ago(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{s} seconds"),
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time, without a date library (Howard Hinnant's
/// `civil_from_days`).
fn date(t: UnixTime) -> String {
    let days = (t.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The Skip mode's verifier: accepts any certificate for any name, but still checks the
/// handshake signatures with the provider's algorithms (so the peer holds the key of the
/// certificate it sent).
#[derive(Debug)]
struct AcceptAnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A certificate with its key, as PEM, ready to be written to files (for servers such as
/// Kamailio) or turned into an [`Identity`].
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
}

impl IssuedCertificate {
    /// The identity (certificate + key) for rustls.
    pub fn identity(&self) -> Result<Identity, TlsError> {
        Identity::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// SHA-256 fingerprint of the certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }
}

/// A self-signed certificate for `names` (host names or IP literals), valid from yesterday
/// for a year: what the built-in registrar uses when it is given no certificate.
pub fn self_signed(names: &[String]) -> Result<IssuedCertificate, TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let params = leaf_params(names, validity_from_now(Duration::from_secs(365 * 86_400)))?;
    let cert = params.self_signed(&key)?;
    Ok(IssuedCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
    })
}

/// A small certificate authority made at run time (tests, labs): it issues server and client
/// certificates.
pub struct CertificateAuthority {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("fingerprint", &fingerprint(self.issuer.der()))
            .finish_non_exhaustive()
    }
}

/// The validity period of a certificate, as Unix times.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Not valid before this time.
    pub not_before: SystemTime,
    /// Not valid after this time.
    pub not_after: SystemTime,
}

fn validity_from_now(length: Duration) -> Validity {
    let now = SystemTime::now();
    Validity {
        not_before: now - Duration::from_secs(86_400),
        not_after: now + length,
    }
}

fn leaf_params(names: &[String], validity: Validity) -> Result<rcgen::CertificateParams, TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    Ok(params)
}

impl CertificateAuthority {
    /// A new CA named `name` (its common name), valid from yesterday for ten years.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let v = validity_from_now(Duration::from_secs(10 * 365 * 86_400));
        params.not_before = v.not_before.into();
        params.not_after = v.not_after.into();
        Ok(Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key)?,
        })
    }

    /// The CA certificate (PEM), what a client uploads for Custom verification.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Issues a certificate for `names` (host names or IP literals) valid from yesterday for a
    /// year, usable by a server and a client.
    pub fn issue(&self, names: &[String]) -> Result<IssuedCertificate, TlsError> {
        self.issue_valid(names, validity_from_now(Duration::from_secs(365 * 86_400)))
    }

    /// Issues a certificate with the given validity (e.g. an expired one, for tests).
    pub fn issue_valid(
        &self,
        names: &[String],
        validity: Validity,
    ) -> Result<IssuedCertificate, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = leaf_params(names, validity)?;
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(
            date(UnixTime::since_unix_epoch(Duration::ZERO)),
            "1970-01-01"
        );
        // 2000-02-29 (a leap day of a century leap year) and 2026-11-30.
        assert_eq!(
            date(UnixTime::since_unix_epoch(Duration::from_secs(951_782_400))),
            "2000-02-29"
        );
        assert_eq!(
            date(UnixTime::since_unix_epoch(Duration::from_secs(
                1_796_083_199
            ))),
            "2026-11-30"
        );
        assert_eq!(ago(10 * 86_400 + 5), "10 days");
        assert_eq!(ago(3 * 3_600), "3 hours");
        assert_eq!(ago(59), "59 seconds");
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(presented_name("DnsName(\"pbx.test\")"), "pbx.test");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(presented_name("odd"), "odd");
    }

    #[test]
    fn server_names_from_domains() {
        assert!(matches!(
            server_name("pbx.test"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.5"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("bad name!"),
            Err(TlsError::BadServerName(n)) if n == "bad name!"
        ));
    }

    #[test]
    fn pem_errors_name_the_input() {
        assert_eq!(
            certificates_from_pem(b"nothing here", "CA certificate")
                .unwrap_err()
                .to_string(),
            "CA certificate: no CERTIFICATE block found in the PEM text"
        );
        let ca = CertificateAuthority::new("unit CA").unwrap();
        let issued = ca.issue(&["a.test".to_owned()]).unwrap();
        assert_eq!(
            private_key_from_pem(issued.cert_pem.as_bytes(), "private key")
                .unwrap_err()
                .to_string(),
            "private key: no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1) found in the PEM text"
        );
        // A key that does not belong to the certificate is refused when the config is built.
        let other = ca.issue(&["b.test".to_owned()]).unwrap();
        let mismatched =
            Identity::from_pem(issued.cert_pem.as_bytes(), other.key_pem.as_bytes()).unwrap();
        let err = ServerSettings {
            identity: mismatched,
            client_cas: None,
        }
        .config()
        .unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
    }

    #[test]
    fn identities_never_show_their_key_and_fingerprints_are_sha256() {
        let issued = self_signed(&["a.test".to_owned()]).unwrap();
        let id = issued.identity().unwrap();
        let shown = format!("{id:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(
            !shown.contains(issued.key_pem.lines().nth(1).unwrap()),
            "{shown}"
        );
        let fp = id.fingerprint();
        assert_eq!(fp, issued.fingerprint());
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()));
    }

    #[test]
    fn alerts_are_explained_by_who_sent_what() {
        let no_cert = explain(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            false,
        );
        assert_eq!(
            no_cert.problem,
            "the server requires a client certificate (mutual TLS) and we sent none"
        );
        let refused = explain(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            true,
        );
        assert_eq!(
            refused.problem,
            "the server refused our client certificate (UnknownCA)"
        );
        let other = explain(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            false,
        );
        assert_eq!(
            other.problem,
            "the server aborted the TLS handshake with the alert UnknownCA"
        );
        assert!(!other.certificate);
    }
}
