//! [`Lock`]: a mutual-exclusion lease on the Redis server, with fencing
//! tokens.
//!
//! Keys (all under the lock's hash tag `{ns:name}`):
//! - `…:lock`: the holder's value `"<token>:<fence>"`, with the lease as its
//!   expiry (`PX`), renewed by the holder's renewal thread;
//! - `…:fence`: the last fence handed out (no expiry: one small key per
//!   lock name);
//! - `…:released`: a short list a release pushes to, on which waiters block
//!   (`BLPOP`) so that a free lock is taken at once, without polling;
//! - `…:released:<token>`: a tombstone (one lease long) that makes a retried
//!   release whose first reply was lost report success.
//!
//! Every step is one Lua script, so it is atomic on the server, and every
//! time (the lease, its renewal, the fence's clock) is the server's.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cluster::{Cluster, cluster_for};
use crate::backend::BackendError;

/// Takes the lock if it is free (or already ours, for a retried call whose
/// reply was lost): `{'1', fence}`; else `{'0', pttl}`.
///
/// The fence is `max(last fence + 1, server TIME in µs)`: it grows with
/// the counter, and still grows if the server lost the counter (a restart
/// without persistence), unless the server's clock stepped back.
const ACQUIRE_LUA: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  local mine = ARGV[1] .. ':'
  if string.sub(held, 1, #mine) == mine then
    return {'1', string.sub(held, #mine + 1)}
  end
  return {'0', tostring(redis.call('PTTL', KEYS[1]))}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local fence = string.format('%.0f', math.max(last + 1, now))
redis.call('SET', KEYS[2], fence)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return {'1', fence}
";

/// Extends the lease if the holder's value is still there: 1, else 0.
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Deletes the lock if the holder's value is still there, leaves a
/// tombstone for a retry, and wakes one waiter: 1. A lost lease: 0.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, 7)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 1
end
return 0
";

static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACQUIRE_LUA));
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW_LUA));
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE_LUA));

/// How many times a call is retried on a broken connection (a pooled
/// connection to a server that restarted) before its error is returned.
const RETRIES: u32 = 10;

impl Cluster {
    /// The lock called `name` in this cluster's namespace: every process
    /// that asks for the same name (on the same server and namespace) gets
    /// the same lock. Nothing is written until it is acquired.
    ///
    /// The lock's lease is this cluster's
    /// [`lease`](super::ClusterBuilder::lease) (default 10 s), carried by
    /// the handle to other processes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let lock = c.lock("db")?;
    /// let guard = lock.acquire()?;
    /// println!("write with fence {}", guard.fence());
    /// guard.release()?;
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn lock(&self, name: &str) -> Result<Lock, BackendError> {
        Ok(Lock {
            name: name.to_owned(),
            lease: self.opts().lease,
            cluster: self.clone(),
        })
    }
}

/// A mutual-exclusion lock across processes and machines, held on a Redis
/// server: the remote counterpart of [`multiprocess::Lock`](crate::Lock).
///
/// Get one with [`Cluster::lock`]. Cloning it, or passing it to another
/// process (it is `Serialize`/`Deserialize`: the name, the server's URL
/// without the password, the namespace and the lease), gives another handle
/// to the same lock.
///
/// # Guarantees
///
/// - **A lease, not a kernel lock.** Holding it means holding a key on the
///   server that expires after the lease ([`ClusterBuilder::lease`],
///   default 10 s) unless renewed; a thread started with each
///   [`LockGuard`] renews it every third of the lease. A holder that dies,
///   freezes (a SIGSTOP, a long GC-like pause, a swapped-out machine) or is
///   cut off from the server loses the lock after the lease, and another
///   process may take it while the old holder still believes it holds it.
/// - **Fencing tokens only grow.** [`LockGuard::fence`] is larger than every
///   fence handed out before for this lock (it is
///   `max(previous + 1, server time in µs)`), even across a server restart
///   that lost the data, unless the server's clock steps back. Pass it to
///   the protected resource, and have the resource refuse a write whose
///   fence is smaller than one it has already seen: that is what makes a
///   stale holder harmless.
/// - **Mutual exclusion** holds among holders that keep their lease: at
///   most one guard's value is on the server at any time, and a guard
///   whose lease ran out knows it ([`LockGuard::is_owned`] is false,
///   [`LockGuard::release`] returns [`BackendError::LeaseLost`]) and never
///   deletes another holder's lock.
/// - **No busy waiting, nothing hangs.** A waiter blocks on the server
///   until a release wakes it or the holder's lease runs out; every call
///   returns a [`BackendError`] if the server cannot be reached (within
///   the connect timeout) or does not answer (within the call timeout).
/// - Durable only as the server is: with `appendonly yes` a held lock
///   survives a server restart; without, a restart frees it (the holder
///   finds its lease lost) but fences keep growing.
///
/// # Caveats
///
/// - Not reentrant: a second `acquire` while holding it (same thread,
///   process or not) waits for the first guard, forever if it is the same
///   thread.
/// - The guard's renewal thread makes the process multi-threaded, so
///   [`StartMethod::Fork`](crate::StartMethod::Fork) refuses to start a
///   process while a guard is held (use `ForkServer` or `Spawn`, the
///   default). Should a guard be copied into another process anyway (a
///   raw `fork`), the copy does not hold the lock: its
///   [`is_owned`](LockGuard::is_owned) is false and dropping it does
///   nothing.
/// - An acquire that fails with a timeout after the server ran it leaves
///   the lock taken for one lease, by nobody.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// let c = multiprocess::remote::Cluster::builder("redis://127.0.0.1:6379/0")
///     .lease(Duration::from_secs(5))
///     .connect()?;
/// let lock = c.lock("invoices")?;
/// if let Some(guard) = lock.acquire_timeout(Duration::from_secs(1))? {
///     // Write with guard.fence(): the store rejects smaller fences.
///     let fence = guard.fence();
///     # let _ = fence;
///     guard.release()?; // Err(LeaseLost) if the lease ran out meanwhile
/// }
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
///
/// [`ClusterBuilder::lease`]: super::ClusterBuilder::lease
#[derive(Clone)]
pub struct Lock {
    name: String,
    lease: Duration,
    cluster: Cluster,
}

/// What a [`Lock`] handle carries to another process.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    url: String,
    namespace: String,
    lease_ms: u64,
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.name.clone(),
            url: self.cluster.url().to_owned(),
            namespace: self.cluster.namespace().to_owned(),
            lease_ms: millis(self.lease),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let cluster = cluster_for(&wire.url, &wire.namespace).map_err(serde::de::Error::custom)?;
        Ok(Lock {
            name: wire.name,
            lease: Duration::from_millis(wire.lease_ms.max(1)),
            cluster,
        })
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("url", &self.cluster.url())
            .field("namespace", &self.cluster.namespace())
            .field("lease", &self.lease)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A random holder token: 128 bits from the kernel, nothing a process could
/// guess.
fn new_token() -> Result<String, BackendError> {
    let mut bytes = [0u8; 16];
    crate::sys::random::fill(&mut bytes).map_err(|e| BackendError::Server(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `f` on a connection, again on a fresh one if the pooled connection
/// was broken (a server that restarted) or the server lost its data (the
/// lock's scripts are safe to repeat).
fn call<T>(
    cluster: &Cluster,
    f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
) -> Result<T, BackendError> {
    let mut attempts = 0;
    loop {
        match cluster.with_conn(&f) {
            Err(BackendError::Disconnected(_) | BackendError::Lost(_)) if attempts < RETRIES => {
                attempts += 1;
            }
            other => return other,
        }
    }
}

impl Lock {
    /// The lock's name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// assert_eq!(c.lock("db")?.name(), "db");
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long a guard of this lock holds it without renewal: the
    /// [`lease`](super::ClusterBuilder::lease) of the cluster that made the
    /// handle.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::builder("redis://127.0.0.1:6379/0")
    ///     .lease(Duration::from_secs(3))
    ///     .connect()?;
    /// assert_eq!(c.lock("db")?.lease(), Duration::from_secs(3));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Blocks until the lock is acquired.
    ///
    /// Waiting costs nothing on either side: the waiter blocks on the
    /// server until a release wakes it or the holder's lease runs out.
    ///
    /// # Errors
    ///
    /// A [`BackendError`] if the server cannot be reached or does not
    /// answer; nothing is held then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let guard = c.lock("db")?.acquire()?;
    /// // ... critical section, writes carrying guard.fence() ...
    /// drop(guard); // release
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn acquire(&self) -> Result<LockGuard, BackendError> {
        self.acquire_until(None)
            .map(|g| g.expect("no deadline: acquired"))
    }

    /// Acquires the lock if it is free; otherwise `Ok(None)` at once (one
    /// round trip).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let lock = c.lock("db")?;
    /// let held = lock.try_acquire()?.expect("free");
    /// assert!(lock.try_acquire()?.is_none());
    /// drop(held);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn try_acquire(&self) -> Result<Option<LockGuard>, BackendError> {
        let token = new_token()?;
        Ok(self
            .attempt(&token)?
            .ok()
            .map(|fence| self.guard(token, fence)))
    }

    /// Waits at most `timeout` for the lock; `Ok(None)` if it stayed held.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let lock = c.lock("db")?;
    /// let _held = lock.acquire()?;
    /// assert!(lock.acquire_timeout(Duration::from_millis(10))?.is_none());
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, BackendError> {
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    /// Whether some holder has the lock now (a snapshot, stale by the time
    /// it is used).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let lock = c.lock("db")?;
    /// let _g = lock.acquire()?;
    /// assert!(lock.is_locked()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_locked(&self) -> Result<bool, BackendError> {
        let key = self.key("lock");
        call(&self.cluster, |conn| {
            redis::cmd("EXISTS").arg(&key).query::<bool>(conn)
        })
    }

    fn key(&self, suffix: &str) -> String {
        self.cluster.key(&self.name, suffix)
    }

    /// One run of the acquire script: `Ok(fence)` if taken, else
    /// `Err(time left on the holder's lease)` (`None`: no expiry).
    fn attempt(&self, token: &str) -> Result<Result<u64, Option<Duration>>, BackendError> {
        let (lock, fence) = (self.key("lock"), self.key("fence"));
        let lease = millis(self.lease);
        let reply: (String, String) = call(&self.cluster, |conn| {
            ACQUIRE
                .key(&lock)
                .key(&fence)
                .arg(token)
                .arg(lease)
                .invoke(conn)
        })?;
        let bad = || BackendError::Server(format!("unexpected lock script reply {reply:?}"));
        match reply.0.as_str() {
            "1" => reply.1.parse().map(Ok).map_err(|_| bad()),
            "0" => {
                let pttl: i64 = reply.1.parse().map_err(|_| bad())?;
                Ok(Err(u64::try_from(pttl).ok().map(Duration::from_millis)))
            }
            _ => Err(bad()),
        }
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<Option<LockGuard>, BackendError> {
        let token = new_token()?;
        loop {
            let left = match self.attempt(&token)? {
                Ok(fence) => return Ok(Some(self.guard(token, fence))),
                Err(left) => left.unwrap_or(self.lease),
            };
            let block = match deadline {
                None => left,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    left.min(d - now)
                }
            };
            self.wait_release(block)?;
        }
    }

    /// Blocks on the server for up to `block` (at least 1 ms) until a
    /// release pushes to the lock's `released` list.
    fn wait_release(&self, block: Duration) -> Result<(), BackendError> {
        let c = &self.cluster;
        let block = block.max(Duration::from_millis(1));
        let mut conn = match c.take_conn() {
            // A new connection found the data lost (and put the epoch
            // back): the next attempt runs on it.
            Err(BackendError::Lost(_)) => return Ok(()),
            conn => conn?,
        };
        let set = |conn: &redis::Connection, t: Duration| {
            conn.set_read_timeout(Some(t)).map_err(|e| c.error(&e))
        };
        set(&conn, c.blocking_timeout(block))?;
        let reply = redis::cmd("BLPOP")
            .arg(self.key("released"))
            .arg(format!("{:.3}", block.as_secs_f64()))
            .query::<Option<(String, String)>>(&mut conn);
        match reply {
            Ok(_) => {
                set(&conn, c.opts().call_timeout)?;
                c.put_back(conn);
                Ok(())
            }
            // A broken connection: the next attempt opens a new one and
            // reports the server as it finds it.
            Err(e) => match c.error(&e) {
                BackendError::Disconnected(_) => Ok(()),
                err => Err(err),
            },
        }
    }

    fn guard(&self, token: String, fence: u64) -> LockGuard {
        let value = format!("{token}:{fence}");
        let renewal = Arc::new(Renewal {
            stop: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        });
        let thread = {
            let (cluster, key, value) = (self.cluster.clone(), self.key("lock"), value.clone());
            let (lease, renewal) = (self.lease, renewal.clone());
            std::thread::Builder::new()
                .name("mp-lock-renew".into())
                .spawn(move || renew_loop(&cluster, &key, &value, lease, &renewal))
        };
        // Without a renewal thread (out of threads) the guard still holds
        // the lock, for one lease.
        let thread = thread.ok();
        LockGuard {
            lock: self.clone(),
            token,
            value,
            fence,
            pid: crate::sys::pid::current_pid(),
            renewal,
            thread,
            done: false,
        }
    }
}

/// What a guard and its renewal thread share.
struct Renewal {
    /// Set by the guard to stop the thread.
    stop: AtomicBool,
    /// Set by the thread when the server no longer has the guard's value.
    lost: AtomicBool,
}

/// Renews the lease every third of it until stopped, or until the server
/// says the value is gone (the lease was lost). After a failed call it
/// tries again sooner: the lease may still be alive.
fn renew_loop(cluster: &Cluster, key: &str, value: &str, lease: Duration, renewal: &Renewal) {
    let tick = lease / 3;
    let lease_ms = millis(lease);
    let mut next = Instant::now() + tick;
    loop {
        if renewal.stop.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout(next - now);
            continue;
        }
        match call(cluster, |conn| {
            RENEW.key(key).arg(value).arg(lease_ms).invoke::<i64>(conn)
        }) {
            Ok(1) => next = Instant::now() + tick,
            Ok(_) | Err(BackendError::Lost(_)) => {
                renewal.lost.store(true, Ordering::Release);
                return;
            }
            Err(_) => next = Instant::now() + tick / 4,
        }
    }
}

/// A held [`remote::Lock`](Lock): a lease that a background thread renews
/// until the guard is released or dropped.
///
/// Dropping the guard releases the lock, ignoring errors (a lost lease, an
/// unreachable server: the lease then runs out by itself); call
/// [`release`](LockGuard::release) to see them. Either waits for the
/// server's answer, at most the cluster's
/// [`call_timeout`](super::ClusterBuilder::call_timeout). Not `Serialize`: the lease
/// belongs to the process that acquired it.
///
/// # Examples
///
/// ```no_run
/// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
/// let guard = c.lock("db")?.acquire()?;
/// let fence = guard.fence();
/// // ... write to the resource with `fence` ...
/// assert!(guard.is_owned());
/// guard.release()?;
/// # let _ = fence;
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    lock: Lock,
    token: String,
    /// The value on the server: `"<token>:<fence>"`.
    value: String,
    fence: u64,
    /// The process that acquired the lock: in any other (a forked copy)
    /// the guard holds nothing.
    pid: u32,
    renewal: Arc<Renewal>,
    thread: Option<JoinHandle<()>>,
    /// Released (or given up) already.
    done: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.lock.name)
            .field("fence", &self.fence)
            .field("pid", &self.pid)
            .finish()
    }
}

impl LockGuard {
    /// The fencing token of this acquisition: larger than that of every
    /// earlier acquisition of this lock (see [`Lock`]'s guarantees). Give
    /// it to the protected resource with each write, and have it refuse
    /// fences smaller than the largest it has seen.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let lock = c.lock("db")?;
    /// let first = lock.acquire()?.fence();
    /// let second = lock.acquire()?.fence();
    /// assert!(second > first);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The lock this guard holds.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let guard = c.lock("db")?.acquire()?;
    /// assert_eq!(guard.lock().name(), "db");
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Whether this guard still holds the lock, as the server says now.
    ///
    /// False once the lease was lost (the renewal failed: the process was
    /// frozen or cut off for longer than the lease), in a process other
    /// than the one that acquired it (a forked copy), and when the server
    /// cannot be asked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let guard = c.lock("db")?.acquire()?;
    /// if !guard.is_owned() {
    ///     // another holder may be in the critical section: stop writing
    /// }
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_owned(&self) -> bool {
        if self.pid != crate::sys::pid::current_pid() || self.renewal.lost.load(Ordering::Acquire) {
            return false;
        }
        let key = self.lock.key("lock");
        call(&self.lock.cluster, |conn| {
            redis::cmd("GET").arg(&key).query::<Option<String>>(conn)
        })
        .is_ok_and(|v| v.as_deref() == Some(self.value.as_str()))
    }

    /// Releases the lock (compare-and-delete: only if this guard still
    /// holds it) and wakes one waiter.
    ///
    /// # Errors
    ///
    /// [`BackendError::LeaseLost`] if the lease had run out (another holder
    /// may have had the lock since; its lock is left alone), or if this is
    /// a forked copy of the guard; another [`BackendError`] if the server
    /// cannot be reached (the lease then runs out by itself).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let guard = c.lock("db")?.acquire()?;
    /// guard.release()?;
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn release(mut self) -> Result<(), BackendError> {
        self.release_now()
    }

    fn release_now(&mut self) -> Result<(), BackendError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.renewal.stop.store(true, Ordering::Release);
        let me = crate::sys::pid::current_pid();
        if self.pid != me {
            // A copy in a forked child: the renewal thread is not here
            // (nothing to join), and the lock is the parent's.
            if let Some(thread) = self.thread.take() {
                std::mem::forget(thread);
            }
            return Err(BackendError::LeaseLost(format!(
                "lock {:?} was acquired by process {}; this guard is a copy in process {me}",
                self.lock.name, self.pid
            )));
        }
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        let keys = [
            self.lock.key("lock"),
            self.lock.key("released"),
            self.lock.key(&format!("released:{}", self.token)),
        ];
        let lease = millis(self.lock.lease);
        let released: i64 = call(&self.lock.cluster, |conn| {
            RELEASE
                .key(&keys[..])
                .arg(&self.value)
                .arg(lease)
                .invoke(conn)
        })?;
        if released == 1 {
            Ok(())
        } else {
            Err(BackendError::LeaseLost(format!(
                "lock {:?} (fence {}) expired before it was renewed or released; \
                 another holder may have taken it",
                self.lock.name, self.fence
            )))
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.release_now();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::remote::{BackendError, Cluster, LocalServer};

    /// A copy of a guard in another process (what a raw fork leaves) owns
    /// nothing: `is_owned` is false, and dropping or releasing it leaves
    /// the lock held. (`StartMethod::Fork` refuses while a guard's renewal
    /// thread runs, so the test plants another pid.)
    #[test]
    fn a_guard_in_another_pid_owns_nothing() {
        let server = LocalServer::start().unwrap();
        let c = Cluster::builder(server.url())
            .lease(Duration::from_millis(300))
            .connect()
            .unwrap();
        let lock = c.lock("copied").unwrap();
        let mut copy = lock.acquire().unwrap();
        assert!(copy.is_owned());
        copy.pid ^= 1;
        assert!(!copy.is_owned());
        assert!(matches!(copy.release(), Err(BackendError::LeaseLost(_))));
        // The real holder's lock is still there (its renewal stopped with
        // the copy's flag here, so it expires after the lease).
        assert!(lock.is_locked().unwrap());
        assert!(lock.try_acquire().unwrap().is_none());
        let g = lock.acquire_timeout(Duration::from_secs(2)).unwrap();
        assert!(g.is_some(), "the lease ran out and the lock was taken");
    }
}
