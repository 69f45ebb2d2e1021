//! A private PostgreSQL cluster for tests: `initdb` in a temporary directory, `pg_ctl start` on
//! a free loopback port with its socket in that directory, stopped and removed on drop.
//! PostgreSQL refuses to run as root, so under root the binaries run as the `postgres` user
//! (created by Debian's `postgresql` package) through `runuser`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private cluster; stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("SIPMETER_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// Starts a cluster, or returns None (printing why) when PostgreSQL is not installed.
    /// Panics with the reason when it is installed but cannot start.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = find_bin_dir() else {
            eprintln!(
                "SKIPPED: PostgreSQL binaries not found under /usr/lib/postgresql/*/bin \
                 (install the Debian package `postgresql`, or set SIPMETER_PG_BIN)"
            );
            return None;
        };
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "sipmeter-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(
                ok,
                "chown of {} to the postgres user failed (is the `postgresql` package installed?)",
                dir.display()
            );
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "sipmeter",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // A free port can be taken between our probe and the server's bind: retry a few times.
        for attempt in 0..3 {
            cluster.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                cluster.port,
                cluster.dir.display()
            );
            let log = cluster.dir.join("log");
            let ok = cluster.try_run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "start",
                ],
            );
            if ok {
                return Some(cluster);
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(attempt < 2, "pg_ctl start failed:\n{text}");
        }
        None
    }

    /// The connection URL.
    pub fn url(&self) -> String {
        format!("postgres://sipmeter@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn try_run(&self, prog: &str, args: &[&str]) -> bool {
        let out = self
            .command(prog)
            .args(args)
            .current_dir(&self.dir)
            .output();
        matches!(out, Ok(o) if o.status.success())
    }

    fn run(&self, prog: &str, args: &[&str]) {
        let out = self
            .command(prog)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or("."),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        remove(&self.dir);
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
