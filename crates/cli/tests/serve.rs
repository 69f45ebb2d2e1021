//! `sipmeter serve` as a process: port 0 prints the bound address, first start prints a setup
//! link or creates the Owner from flags, the SQLite database persists in the data dir, and
//! SIGTERM shuts the server down gracefully (exit 0).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data_dir: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("SIPMETER_ADMIN_EMAIL")
        .env_remove("SIPMETER_ADMIN_PASSWORD")
        .env_remove("SIPMETER_DATABASE_URL")
        .env_remove("SIPMETER_SECRET_KEY")
        .env("SIPMETER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server = Server {
        child,
        lines: BufReader::new(stdout),
    };
    let mut first = String::new();
    server.lines.read_line(&mut first).unwrap();
    let addr = first
        .strip_prefix("sipmeter serve: listening on http://")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    assert!(first.contains("(Sqlite database)"), "{first}");
    (server, addr)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

fn terminate(mut server: Server) -> Vec<String> {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let mut rest = String::new();
    server.lines.read_to_string(&mut rest).unwrap();
    rest.lines().map(str::to_string).collect()
}

#[test]
fn serve_on_port_zero_sets_up_persists_and_stops_gracefully() {
    let dir = std::env::temp_dir().join(format!("sipmeter-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // First start without admin flags: a one-time setup link.
    let (server, addr) = start(&dir, &[]);
    assert_ne!(addr, "127.0.0.1:0");
    assert!(addr.starts_with("127.0.0.1:"));
    let (status, _) = get(&addr, "/login");
    assert_eq!(status, 200);
    let out = terminate(server);
    let setup = out
        .iter()
        .find(|l| l.contains("/setup?token="))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        setup.contains(&format!("http://{addr}/setup?token=")),
        "{setup}"
    );
    assert_eq!(
        out.last().map(String::as_str),
        Some("sipmeter serve: stopped")
    );
    assert!(dir.join("sipmeter.db").exists());
    let key = std::fs::read_to_string(dir.join("secret.key")).unwrap();
    assert_eq!(key.trim().len(), 64, "a 256-bit key, hex");

    // Admin flags on a database with no users: the Owner and Demo project are created.
    let (server, addr) = start(
        &dir,
        &[
            "--admin-email",
            "admin@example.com",
            "--admin-password",
            "a long password",
        ],
    );
    let (status, body) = get(&addr, "/login");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Sign in"));
    let out = terminate(server);
    assert!(
        out.iter()
            .any(|l| l.contains("created the Owner admin@example.com")),
        "{out:?}"
    );

    // Restart: set up already, nothing printed but the address; data persisted.
    let (server, addr) = start(&dir, &[]);
    let (status, _) = get(&addr, "/api/v1/projects");
    assert_eq!(status, 401);
    let out = terminate(server);
    assert_eq!(out, vec!["sipmeter serve: stopped".to_string()]);
    assert_eq!(
        std::fs::read_to_string(dir.join("secret.key")).unwrap(),
        key,
        "the key is kept"
    );

    // A bad password on first start of a fresh dir is refused with a clear message.
    let fresh = dir.join("fresh");
    let out = Command::new(env!("CARGO_BIN_EXE_sipmeter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&fresh)
        .args([
            "--admin-email",
            "a@example.com",
            "--admin-password",
            "short",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the admin password must be at least 10 characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
