//! [`Cluster`]: one Redis server and a namespace on it, and the connections
//! to it.
//!
//! Connections are opened on demand and kept in a small idle list, each
//! tagged with the pid that opened it: a forked child never uses its
//! parent's socket (it would read the parent's replies); it opens its own.
//! A connection whose call failed with a timeout or a broken socket is
//! dropped, never reused, because a late reply could still be on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::BackendError;

/// Settings shared by everything made from one [`Cluster`].
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) connect_timeout: Duration,
    /// Socket read/write timeout of a call that does not block on the
    /// server.
    pub(crate) call_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) max_payload: usize,
    pub(crate) key_ttl: Duration,
    pub(crate) namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(10),
            max_deliveries: 3,
            max_payload: 64 << 20,
            key_ttl: Duration::from_secs(600),
            namespace: "default".to_owned(),
        }
    }
}

/// Builds a [`Cluster`] with settings other than the defaults.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// let c = multiprocess::remote::Cluster::builder("redis://127.0.0.1:6379/0")
///     .lease(Duration::from_secs(30))
///     .namespace("staging")
///     .connect()?;
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    url: String,
    opts: Options,
}

impl ClusterBuilder {
    /// How long to wait for the server to accept a connection (default 2 s);
    /// past it the call fails with [`BackendError::Unreachable`].
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.opts.connect_timeout = t;
        self
    }

    /// How long a call that does not block on the server may wait for its
    /// reply (default 5 s); past it the call fails with
    /// [`BackendError::Timeout`].
    pub fn call_timeout(mut self, t: Duration) -> Self {
        self.opts.call_timeout = t;
        self
    }

    /// A worker's hold on a task, and a lock holder's hold on a lock, last
    /// this long unless renewed (default 10 s; renewed every third of it).
    /// A dead, frozen or cut-off worker's task runs again after it.
    pub fn lease(mut self, t: Duration) -> Self {
        self.opts.lease = t.max(Duration::from_millis(30));
        self
    }

    /// How many times a task is handed to a worker before its result is
    /// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost) (default 3).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.opts.max_deliveries = n.max(1);
        self
    }

    /// The largest encoded task, result or queue item (default 64 MiB);
    /// a larger one is refused with [`BackendError::TooLarge`] before
    /// anything is sent.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.opts.max_payload = bytes;
        self
    }

    /// How long a call's keys (a map's results, a pool's bookkeeping) live
    /// on the server after the caller last touched them (default 10 min):
    /// a caller that dies leaves nothing behind for longer.
    pub fn key_ttl(mut self, t: Duration) -> Self {
        self.opts.key_ttl = t.max(Duration::from_secs(1));
        self
    }

    /// The namespace of every name made from this cluster (default
    /// `default`): the same name in two namespaces is two objects.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.opts.namespace = ns.to_owned();
        self
    }

    /// Connects, checks that the server is Redis 7.0 or newer and accepts
    /// the credentials.
    pub fn connect(self) -> Result<Cluster, BackendError> {
        Cluster::open(&self.url, self.opts)
    }
}

/// One Redis server (and a namespace on it): where remote pools, queues
/// and locks live. Cheap to clone; clones share connections.
///
/// # Examples
///
/// ```no_run
/// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
/// println!("{}", c.url());
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The URL without its password (what handles carry and errors show).
    url: String,
    /// The URL as given (local workers started by this process get it).
    full_url: String,
    opts: Options,
    /// Idle connections, each with the pid that opened it.
    idle: Mutex<Vec<(u32, redis::Connection)>>,
    /// The value of the namespace's epoch key this process knows: a server
    /// that lost its data no longer has it (or has a newer one).
    epoch: Mutex<String>,
    /// How many losses of the server's data this process noticed (any
    /// thread): waiters compare it with the count they started under.
    losses: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.inner.url)
            .field("namespace", &self.inner.opts.namespace)
            .finish()
    }
}

impl Cluster {
    /// Connects with the default settings (see [`Cluster::builder`]).
    ///
    /// The URL is `redis://[[user]:password@]host[:port][/db]` or
    /// `redis+unix:///path/to/socket[?db=N&pass=…]`.
    ///
    /// # Errors
    ///
    /// [`BackendError::BadUrl`], [`Unreachable`](BackendError::Unreachable)
    /// (within the connect timeout), [`NotRedis`](BackendError::NotRedis),
    /// [`TooOld`](BackendError::TooOld) or [`Auth`](BackendError::Auth).
    pub fn connect(url: &str) -> Result<Cluster, BackendError> {
        Cluster::open(url, Options::default())
    }

    /// A builder for settings other than the defaults.
    pub fn builder(url: &str) -> ClusterBuilder {
        ClusterBuilder {
            url: url.to_owned(),
            opts: Options::default(),
        }
    }

    /// The server's URL, without the password.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The namespace of this cluster's names.
    pub fn namespace(&self) -> &str {
        &self.inner.opts.namespace
    }

    fn open(url: &str, opts: Options) -> Result<Cluster, BackendError> {
        let public = public_url(url);
        let client = redis::Client::open(url).map_err(|e| BackendError::BadUrl {
            url: public.clone(),
            reason: e.to_string(),
        })?;
        let mut probe = Inner {
            client,
            url: public,
            full_url: url.to_owned(),
            opts,
            idle: Mutex::new(Vec::new()),
            epoch: Mutex::new(String::new()),
            losses: std::sync::atomic::AtomicU64::new(0),
        };
        let mut conn = probe.open_connection()?;
        probe.check_version(&mut conn)?;
        // The namespace's epoch: set once by the first process to connect,
        // gone if the server loses its data.
        let key = format!("mp:{{{}}}:epoch", probe.opts.namespace);
        let mut bytes = [0u8; 16];
        crate::sys::random::fill(&mut bytes).map_err(|e| BackendError::Server(e.to_string()))?;
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let epoch: String = redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .arg("GET")
            .query::<Option<String>>(&mut conn)
            .map_err(|e| BackendError::from_redis(&e, &probe.url))?
            .unwrap_or(fresh);
        probe.epoch = Mutex::new(epoch);
        probe.put_back(conn);
        let cluster = Cluster {
            inner: Arc::new(probe),
        };
        registry_insert(&cluster, url);
        Ok(cluster)
    }

    /// The URL as given, password included (for workers this process
    /// starts; never in a handle or a message).
    pub(crate) fn full_url(&self) -> &str {
        &self.inner.full_url
    }

    pub(crate) fn opts(&self) -> &Options {
        &self.inner.opts
    }

    /// The key `mp:{ns:name}:suffix`: every key of one object shares the
    /// hash tag `{ns:name}`, so a script may touch them all (and a Redis
    /// Cluster would keep them on one node).
    pub(crate) fn key(&self, name: &str, suffix: &str) -> String {
        format!("mp:{{{}:{}}}:{}", self.inner.opts.namespace, name, suffix)
    }

    /// Runs `f` on an idle connection (or a new one), with the call
    /// timeout. A connection whose call broke is dropped.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        let mut conn = self.take_conn()?;
        match f(&mut conn) {
            Ok(v) => {
                self.inner.put_back(conn);
                Ok(v)
            }
            Err(e) => {
                let err = BackendError::from_redis(&e, &self.inner.url);
                if !err.breaks_connection() {
                    self.inner.put_back(conn);
                }
                Err(err)
            }
        }
    }

    /// A connection of this process, checked out of the idle list (or
    /// newly opened and checked against the epoch). Return it with
    /// [`Cluster::put_back`] when it is in a known state.
    pub(crate) fn take_conn(&self) -> Result<redis::Connection, BackendError> {
        let me = std::process::id();
        {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            // A forked child drops (closes its copy of) the parent's
            // sockets without using them.
            idle.retain(|(pid, _)| *pid == me);
            if let Some((_, conn)) = idle.pop() {
                return Ok(conn);
            }
        }
        let mut conn = self.inner.open_connection()?;
        self.check_epoch(&mut conn)?;
        Ok(conn)
    }

    /// Returns a connection taken with [`Cluster::take_conn`] whose last
    /// reply has been read in full.
    pub(crate) fn put_back(&self, conn: redis::Connection) {
        self.inner.put_back(conn);
    }

    /// Sets the read timeout of `conn` for a call that blocks on the
    /// server for up to `block`: the block plus a margin, so a lost server
    /// is noticed and a slow reply is not mistaken for one.
    pub(crate) fn blocking_timeout(&self, block: Duration) -> Duration {
        block + self.inner.opts.call_timeout.min(Duration::from_secs(2))
    }

    /// Checks that the server still has this namespace's data. A loss is
    /// reported once per process: the epoch found (or a new one, if there is
    /// none) becomes the one this process knows, and [`Cluster::losses`]
    /// counts it, so every thread waiting on lost state can notice.
    pub(crate) fn check_epoch(&self, conn: &mut redis::Connection) -> Result<(), BackendError> {
        let key = format!("mp:{{{}}}:epoch", self.inner.opts.namespace);
        let now: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(conn)
            .map_err(|e| BackendError::from_redis(&e, &self.inner.url))?;
        let mut known = self.inner.epoch.lock().unwrap_or_else(|e| e.into_inner());
        let why = match now {
            Some(e) if e == *known => return Ok(()),
            Some(e) => {
                *known = e;
                "the namespace was reset on the server (its epoch changed)"
            }
            None => {
                let mut bytes = [0u8; 16];
                let _ = crate::sys::random::fill(&mut bytes);
                let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&fresh)
                    .arg("NX")
                    .arg("GET")
                    .query(conn)
                    .map_err(|e| BackendError::from_redis(&e, &self.inner.url))?;
                *known = set.unwrap_or(fresh);
                "the server restarted without its data (or was flushed)"
            }
        };
        self.inner
            .losses
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(BackendError::Lost(why.into()))
    }

    /// How many times this process noticed that the server lost its data.
    pub(crate) fn losses(&self) -> u64 {
        self.inner.losses.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Encoded payload size check against `max_payload`.
    pub(crate) fn check_size(&self, size: usize) -> Result<(), BackendError> {
        let max = self.inner.opts.max_payload;
        if size > max {
            Err(BackendError::TooLarge { size, max })
        } else {
            Ok(())
        }
    }

    /// Maps a client error (for callers that run commands themselves).
    pub(crate) fn error(&self, e: &redis::RedisError) -> BackendError {
        BackendError::from_redis(e, &self.inner.url)
    }
}

impl Inner {
    fn open_connection(&self) -> Result<redis::Connection, BackendError> {
        let conn = self
            .client
            .get_connection_with_timeout(self.opts.connect_timeout)
            .map_err(|e| {
                let err = BackendError::from_redis(&e, &self.url);
                match err {
                    BackendError::Timeout(reason)
                    | BackendError::Disconnected(reason)
                    | BackendError::Server(reason)
                        if e.is_io_error() || e.is_timeout() =>
                    {
                        if reason.contains("refused") || e.is_timeout() {
                            BackendError::Unreachable {
                                url: self.url.clone(),
                                reason,
                            }
                        } else {
                            BackendError::NotRedis {
                                url: self.url.clone(),
                                reason,
                            }
                        }
                    }
                    other => other,
                }
            })?;
        let t = Some(self.opts.call_timeout);
        conn.set_read_timeout(t)
            .and_then(|()| conn.set_write_timeout(t))
            .map_err(|e| BackendError::from_redis(&e, &self.url))?;
        Ok(conn)
    }

    fn check_version(&self, conn: &mut redis::Connection) -> Result<(), BackendError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(conn)
            .map_err(|e| BackendError::from_redis(&e, &self.url))?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| BackendError::NotRedis {
                url: self.url.clone(),
                reason: "INFO has no redis_version".into(),
            })?;
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(BackendError::TooOld {
                url: self.url.clone(),
                version,
            });
        }
        Ok(())
    }

    fn put_back(&self, conn: redis::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 8 {
            idle.push((std::process::id(), conn));
        }
    }
}

/// `url` without its password: `redis://user:secret@host/0` becomes
/// `redis://user@host/0`, and `pass=…` query parameters are dropped.
pub(crate) fn public_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(p) => p,
        None => return url.to_owned(),
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) if !user.is_empty() => format!("{user}@{host}"),
            _ => host.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("pass=") && !kv.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The clusters this process connected to, by public URL and namespace:
/// a handle decoded here (which carries no password) reuses one.
static CLUSTERS: Mutex<Vec<(String, String, Cluster)>> = Mutex::new(Vec::new());

fn registry_insert(c: &Cluster, full_url: &str) {
    let mut all = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
    let ns = c.namespace().to_owned();
    all.retain(|(u, n, _)| !(u == c.url() && *n == ns));
    all.push((c.url().to_owned(), ns, c.clone()));
    let _ = full_url;
}

/// The cluster a decoded handle names: one this process already connected
/// to, else a new connection (its password, if the server wants one, from
/// `MULTIPROCESS_REDIS_PASSWORD`).
pub(crate) fn cluster_for(url: &str, namespace: &str) -> Result<Cluster, BackendError> {
    {
        let all = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = all.iter().find(|(u, n, _)| u == url && n == namespace) {
            return Ok(c.clone());
        }
    }
    let mut full = url.to_owned();
    if let Ok(pass) = std::env::var("MULTIPROCESS_REDIS_PASSWORD")
        && let Some((scheme, rest)) = url.split_once("://")
        && !scheme.contains("unix")
    {
        full = format!("{scheme}://:{pass}@{rest}");
    }
    Cluster::builder(&full).namespace(namespace).connect()
}

#[cfg(test)]
mod tests {
    use super::public_url;

    #[test]
    fn public_urls_carry_no_password() {
        assert_eq!(public_url("redis://:pw@h:1/0"), "redis://h:1/0");
        assert_eq!(public_url("redis://u:pw@h:1/0"), "redis://u@h:1/0");
        assert_eq!(public_url("redis://h"), "redis://h");
        assert_eq!(
            public_url("redis+unix:///tmp/s?db=1&pass=x"),
            "redis+unix:///tmp/s?db=1"
        );
    }
}
