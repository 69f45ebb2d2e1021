//! Shared helpers: a server on 127.0.0.1:0 over a temporary SQLite database, and a minimal
//! HTTP/1.1 client over a real socket (no client library: the tests see the exact bytes).

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;

use server::{AppState, ServerConfig};
use store::{Bootstrap, Role, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const OWNER_EMAIL: &str = "owner@example.com";
pub const PASSWORD: &str = "correct horse battery";

/// A running server; its task and database are dropped with it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub boot: Bootstrap,
    /// The key the server encrypts SIP passwords with.
    pub key: server::secrets::SecretKey,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sipmeter-server-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Serves `state` on 127.0.0.1:0.
pub async fn serve(state: AppState) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, server::router(state)).await.unwrap();
    });
    (addr, task)
}

impl TestServer {
    /// A server with an Owner (`OWNER_EMAIL` / `PASSWORD`), an organization and the Demo project.
    pub async fn start(tag: &str) -> TestServer {
        let dir = tempdir(tag);
        let store = Store::connect(&format!("sqlite://{}/db.sqlite?mode=rwc", dir.display()))
            .await
            .unwrap();
        TestServer::on(store, dir).await
    }

    /// A server over `store` (any backend); `dir` is removed on drop.
    pub async fn on(store: Store, dir: PathBuf) -> TestServer {
        let boot = server::create_owner(&store, OWNER_EMAIL, PASSWORD, "Acme Telecom")
            .await
            .unwrap();
        let key = server::secrets::SecretKey::random();
        let config = ServerConfig {
            secret_key: key.clone(),
            ..Default::default()
        };
        let (addr, task) = serve(AppState::new(store.clone(), config, None)).await;
        TestServer {
            addr,
            store,
            boot,
            key,
            dir,
            task,
        }
    }

    /// Adds a user with `role` in the Owner's organization.
    pub async fn add_user(&self, email: &str, role: Role) -> store::User {
        let hash = server::auth::hash_password(PASSWORD).unwrap();
        let u = self.store.create_user(email, email, &hash).await.unwrap();
        self.store
            .set_member(self.boot.org.id, u.id, role)
            .await
            .unwrap();
        u
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request (Connection: close) and reads the whole answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// The `value` of the first `name="csrf" value="…"` in a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The `name=value` of a Set-Cookie for `name`.
pub fn cookie_pair(resp: &Resp, name: &str) -> Option<String> {
    resp.set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

/// URL-encodes a form value.
pub fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed-in browser-like session: the cookie header and the page CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// Signs in through the login form; panics unless it succeeds.
pub async fn sign_in(addr: SocketAddr, email: &str, password: &str) -> Session {
    let page = http(addr, "GET", "/login", &[], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let login_cookie = cookie_pair(&page, "sipmeter_login_csrf").unwrap();
    let csrf = csrf_of(&page.body);
    let resp = http(
        addr,
        "POST",
        "/login",
        &[
            ("Cookie", &login_cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf", &csrf), ("email", email), ("password", password)]),
    )
    .await;
    assert_eq!(resp.status, 303, "sign-in failed: {}", resp.body);
    let cookie = cookie_pair(&resp, "sipmeter_session").unwrap();
    let page = http(addr, "GET", "/projects", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);
    Session {
        csrf: csrf_of(&page.body),
        cookie,
    }
}

/// A JSON API call with a bearer key or a session cookie.
pub async fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &Auth<'_>,
    body: Option<&serde_json::Value>,
) -> Resp {
    let mut headers: Vec<(&str, String)> = Vec::new();
    match auth {
        Auth::Key(k) => headers.push(("Authorization", format!("Bearer {k}"))),
        Auth::Cookie(c) => headers.push(("Cookie", c.to_string())),
        Auth::None => {}
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json".into()));
    }
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http(addr, method, path, &h, &body).await
}

/// How an API call authenticates.
pub enum Auth<'a> {
    Key(&'a str),
    Cookie(&'a str),
    None,
}
