//! Process and port helpers shared by the peers.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why a peer could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The binary is not installed.
    #[error("`{binary}` is not installed: install the Debian package `{package}`")]
    Missing {
        /// The program looked for.
        binary: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The process exited during start-up.
    #[error("{0} exited during start-up: {1}")]
    Exited(&'static str, String),
    /// The process did not become ready in time.
    #[error("{0} did not become ready within {1:?}: {2}")]
    NotReady(&'static str, Duration, String),
    /// A file or process error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Whether a test needing `binary` can run. When it is missing, prints
/// `SKIPPED: … install the Debian package PACKAGE` and returns false — or, with the environment
/// variable `SIPMETER_REQUIRE_PEERS` set (as CI does once the packages are installed), panics
/// with that message, so a missing peer can never pass silently there.
pub fn available(binary: &str, package: &str) -> bool {
    if have_binary(binary) {
        return true;
    }
    let msg = format!("{binary} is not installed: install the Debian package `{package}`");
    if std::env::var_os("SIPMETER_REQUIRE_PEERS").is_some() {
        panic!("{msg} (SIPMETER_REQUIRE_PEERS is set)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// True when `binary` is found on `PATH` (or in /usr/sbin, /sbin, where Debian puts daemons).
pub fn have_binary(binary: &str) -> bool {
    find_binary(binary).is_some()
}

pub(crate) fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call (a peer started
/// afterwards may still lose a race; the starters retry with a new port).
pub fn free_port() -> io::Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory under the system temp dir, named after `prefix`.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process in its own process group: the whole group is terminated on drop.
#[derive(Debug)]
pub(crate) struct Group {
    child: Child,
    name: &'static str,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub(crate) fn spawn(name: &'static str, mut cmd: Command) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Ok(Group {
            child: cmd.spawn()?,
            name,
        })
    }

    /// The exit status if the leader has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    fn signal_group(&self, signal: &str) {
        // std has no safe killpg: the `kill` utility signals our own group by its id.
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if self.exited().is_some() {
                // Children may outlive the leader briefly: make sure none is left.
                self.signal_group("-KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM: killing its process group", self.name);
        self.signal_group("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
