//! [`LocalServer`]: a `redis-server` child process on a free port, for
//! tests, examples and benchmarks. It is killed when dropped.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings of a [`LocalServer`] other than the defaults (TCP on
/// 127.0.0.1, no persistence, no password).
///
/// # Examples
///
/// ```no_run
/// let server = multiprocess::remote::LocalServer::builder()
///     .appendonly(true)
///     .password("secret")
///     .start()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LocalServerBuilder {
    unix: bool,
    appendonly: bool,
    password: Option<String>,
    bind: Option<String>,
    maxmemory: Option<String>,
    binary: Option<PathBuf>,
}

impl LocalServerBuilder {
    /// Listens on a Unix socket in the server's directory instead of TCP.
    pub fn unix_socket(mut self, yes: bool) -> Self {
        self.unix = yes;
        self
    }

    /// Persists every write (`appendonly yes`, `appendfsync always`), so a
    /// restart keeps the data.
    pub fn appendonly(mut self, yes: bool) -> Self {
        self.appendonly = yes;
        self
    }

    /// Requires this password (`requirepass`).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Listens on this address instead of 127.0.0.1 (for example
    /// `0.0.0.0`, to be reached from other network namespaces).
    pub fn bind(mut self, address: &str) -> Self {
        self.bind = Some(address.to_owned());
        self
    }

    /// Limits the server's memory (`maxmemory`, with `noeviction`: writes
    /// past it fail with OOM).
    pub fn maxmemory(mut self, limit: &str) -> Self {
        self.maxmemory = Some(limit.to_owned());
        self
    }

    /// The `redis-server` binary to run (default: `redis-server` on `PATH`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts the server and waits until it answers (up to 10 s), on a
    /// fresh free port each try (a port another process took between the
    /// probe and the bind is retried).
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no `redis-server`; the server's own output if
    /// it will not start.
    pub fn start(self) -> io::Result<LocalServer> {
        let dir = scratch_dir()?;
        let mut last = io::Error::other("redis-server did not start");
        for _ in 0..5 {
            let port = if self.unix { 0 } else { free_port()? };
            match LocalServer::launch(&self, &dir, port) {
                Ok(server) => return Ok(server),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
                Err(e) => last = e,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }
}

/// A `redis-server` this process started: on a free port (or a Unix
/// socket), in its own scratch directory, without persistence unless asked.
/// Dropping it kills the server and removes the directory.
///
/// Meant for tests, examples and benchmarks; production points a
/// [`Cluster`](super::Cluster) at a server the operators run.
///
/// # Examples
///
/// ```no_run
/// let server = multiprocess::remote::LocalServer::start()?;
/// let cluster = multiprocess::remote::Cluster::connect(server.url())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    url: String,
    port: u16,
    dir: PathBuf,
    settings: LocalServerBuilder,
}

impl LocalServer {
    /// Starts a server with the defaults (see [`LocalServerBuilder::start`]).
    pub fn start() -> io::Result<LocalServer> {
        LocalServerBuilder::default().start()
    }

    /// A builder for other settings.
    pub fn builder() -> LocalServerBuilder {
        LocalServerBuilder::default()
    }

    /// Whether a `redis-server` binary is on `PATH`.
    pub fn available() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The server's URL (with the password, if one was set).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port (0 for a Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL: no last save) and starts it again on the
    /// same port and directory: with `appendonly` it reloads its data,
    /// without it comes back empty.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match LocalServer::launch(&self.settings, &self.dir, self.port) {
                Ok(mut fresh) => {
                    self.child = fresh.child.take();
                    return Ok(());
                }
                // The old socket may linger for a moment.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing
    /// answers.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Thaws a [`pause`](LocalServer::pause)d server (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} failed")))
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn launch(settings: &LocalServerBuilder, dir: &Path, port: u16) -> io::Result<LocalServer> {
        let binary = settings
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let mut cmd = Command::new(&binary);
        cmd.arg("--port").arg(port.to_string());
        cmd.arg("--bind")
            .arg(settings.bind.as_deref().unwrap_or("127.0.0.1"));
        cmd.arg("--dir").arg(dir);
        cmd.args(["--save", "", "--daemonize", "no", "--protected-mode", "no"]);
        cmd.args(["--loglevel", "warning", "--logfile", "redis.log"]);
        if settings.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let socket = dir.join("redis.sock");
        if settings.unix {
            cmd.arg("--unixsocket").arg(&socket);
            cmd.args(["--unixsocketperm", "700"]);
        }
        if let Some(pw) = &settings.password {
            cmd.arg("--requirepass").arg(pw);
        }
        if let Some(limit) = &settings.maxmemory {
            cmd.arg("--maxmemory").arg(limit);
            cmd.args(["--maxmemory-policy", "noeviction"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} not found: install Redis 7 (Debian: apt-get install redis-server)",
                        binary.display()
                    ),
                )
            } else {
                e
            }
        })?;
        let auth = settings
            .password
            .as_deref()
            .map(|pw| format!(":{pw}@"))
            .unwrap_or_default();
        let url = if settings.unix {
            match &settings.password {
                Some(pw) => format!("redis+unix://{}?pass={pw}", socket.display()),
                None => format!("redis+unix://{}", socket.display()),
            }
        } else {
            format!("redis://{auth}127.0.0.1:{port}/0")
        };
        let mut server = LocalServer {
            child: Some(child),
            url,
            port,
            dir: dir.to_owned(),
            settings: settings.clone(),
        };
        server.wait_ready(&socket)?;
        Ok(server)
    }

    /// Polls until the server answers PING, or it exited (a bind race), or
    /// 10 s passed.
    fn wait_ready(&mut self, socket: &Path) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "redis-server exited ({status}): {}",
                    log.lines().last().unwrap_or("no log")
                )));
            }
            if self.ping(socket) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self, socket: &Path) -> bool {
        use std::io::{Read, Write};
        let ask = |s: &mut dyn ReadWrite| -> bool {
            let _ = s.write_all(b"PING\r\n");
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap_or(0);
            // +PONG, or -NOAUTH when a password is required: either way
            // the server is serving.
            n > 0 && (buf.starts_with(b"+PONG") || buf.starts_with(b"-NOAUTH"))
        };
        trait ReadWrite: Read + Write {}
        impl<T: Read + Write> ReadWrite for T {}
        if self.settings.unix {
            match std::os::unix::net::UnixStream::connect(socket) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    ask(&mut s)
                }
                Err(_) => false,
            }
        } else {
            match std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    ask(&mut s)
                }
                Err(_) => false,
            }
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_dir() -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "multiprocess-redis-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
