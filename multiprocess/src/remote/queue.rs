//! [`Queue`] and [`JoinableQueue`] on a Redis server.
//!
//! # Keys (all under the object's hash tag, `mp:{ns:name}:`)
//!
//! - `list`: the items, oldest on the right (`LPUSH` in, `RIGHT` out).
//!   An item is 32 hex digits of a random item id, then the postcard
//!   encoding of the value.
//! - `meta`: a hash with `maxsize` (0: unbounded) and `joinable`, written
//!   when the queue is first made. Its absence means the server lost the
//!   queue (restart without persistence, `FLUSHALL`): calls then fail with
//!   [`BackendError::Lost`].
//! - `proc:<consumer>`: the items a consumer took and has not yet confirmed
//!   (one, or none, nearly always). A consumer is one handle in one process.
//! - `alive:<consumer>` (`PX`): set before each take for the block time plus
//!   the lease. `consumers` is the set of consumer ids, for the reaper.
//! - `reap` (`PX` lease): the reaper's throttle. The reaper runs inside the
//!   put, take and qsize scripts at most once per lease: for each consumer
//!   whose alive key expired, it moves its `proc` items back to the head of
//!   `list` (they were first) and forgets the consumer.
//! - `done:<item id>` (`PX`): set by the confirm script, so a confirm retried
//!   after a lost reply still answers "yours".
//! - `put:<put id>` (`PX`): set by the put script, so a put retried after a
//!   lost reply is applied once.
//! - `unfinished`: a joinable queue's count of items put and not yet
//!   `task_done`.
//!
//! # A get
//!
//! 1. The take script refreshes the alive key, runs the reaper if due,
//!    then returns the oldest item of this consumer's `proc` list (one an
//!    earlier get of this handle took and never confirmed: a timeout or a
//!    broken connection lost its reply), or else moves one from `list`
//!    into `proc` (`LMOVE`) and returns it.
//! 2. If there was none, `BLMOVE list proc RIGHT LEFT` blocks on the server
//!    for at most `min(lease, 2 s)` (then back to 1, so a lost server is
//!    noticed and the alive key is refreshed). The socket's read timeout is
//!    the block plus a margin; on a timeout or a broken socket the
//!    connection is dropped (a late reply may still come on it) and the
//!    item, if the server moved one, is found by step 1.
//! 3. The confirm script removes the item (by id) from `proc`. If it is no
//!    longer there, the reaper judged this consumer dead and gave the item
//!    back to the queue: the get does not return it (another consumer will)
//!    and goes on waiting. Only a confirmed item reaches the caller.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cluster::{Cluster, cluster_for};
use crate::backend::BackendError;
use crate::codec;
use crate::queue::{
    GetError, GetTimeoutError, JoinTimeoutError, PutError, PutTimeoutError, TaskDoneError,
    TryGetError, TryPutError,
};

/// Length of an item id on the wire (hex digits).
const ID_LEN: usize = 32;

/// The longest a get blocks on the server in one go.
const MAX_BLOCK: Duration = Duration::from_secs(2);

/// How long calls go on retrying after the connection broke (the server
/// restarting, a failover) before they report the error.
const RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// The reaper, shared by the scripts that run it. `prefix` is the queue's
/// key prefix, `lease` the lease in milliseconds.
const REAP_LUA: &str = r"
local function reap(prefix, lease)
  if not redis.call('SET', prefix .. 'reap', '1', 'NX', 'PX', lease) then return end
  local list = prefix .. 'list'
  for _, c in ipairs(redis.call('SMEMBERS', prefix .. 'consumers')) do
    if redis.call('EXISTS', prefix .. 'alive:' .. c) == 0 then
      local proc = prefix .. 'proc:' .. c
      while redis.call('LMOVE', proc, list, 'LEFT', 'RIGHT') do end
      redis.call('SREM', prefix .. 'consumers', c)
    end
  end
end
local function lost(prefix)
  return redis.call('EXISTS', prefix .. 'meta') == 0
end
local LOST = 'MPLOST the queue is gone from the server (it restarted without its data, or was flushed)'
";

/// Makes the queue (first caller decides `maxsize`) and returns the stored
/// maxsize. KEYS: meta. ARGV: maxsize, joinable (0/1).
static CREATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HSETNX', KEYS[1], 'maxsize', ARGV[1])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'joinable', '1') end
return tonumber(redis.call('HGET', KEYS[1], 'maxsize'))
",
    )
});

/// Puts an item once per put id. Returns 1 (put, now or by an earlier try
/// with this put id) or 0 (full). KEYS: meta. ARGV: prefix, item, put id,
/// maxsize, put id ttl (ms), lease (ms).
static PUT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"#!lua
{REAP_LUA}
local prefix = ARGV[1]
if lost(prefix) then return redis.error_reply(LOST) end
reap(prefix, ARGV[6])
local pk = prefix .. 'put:' .. ARGV[3]
if redis.call('EXISTS', pk) == 1 then return 1 end
local list = prefix .. 'list'
local max = tonumber(ARGV[4])
if max > 0 and redis.call('LLEN', list) >= max then return 0 end
redis.call('LPUSH', list, ARGV[2])
redis.call('SET', pk, '1', 'PX', ARGV[5])
if redis.call('HGET', KEYS[1], 'joinable') == '1' then
  redis.call('INCR', prefix .. 'unfinished')
end
return 1
"
    ))
});

/// Step 1 of a get (see the module docs): the item to confirm, or nil.
/// `allow-oom`: a full server must still be drained. KEYS: meta. ARGV:
/// prefix, consumer id, alive time (ms), lease (ms), take (0/1: also move
/// one from the list).
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"#!lua flags=allow-oom
{REAP_LUA}
local prefix, me = ARGV[1], ARGV[2]
if lost(prefix) then return redis.error_reply(LOST) end
redis.call('SET', prefix .. 'alive:' .. me, '1', 'PX', ARGV[3])
redis.call('SADD', prefix .. 'consumers', me)
reap(prefix, ARGV[4])
local proc = prefix .. 'proc:' .. me
local mine = redis.call('LINDEX', proc, -1)
if mine then return mine end
if ARGV[5] == '1' then
  return redis.call('LMOVE', prefix .. 'list', proc, 'RIGHT', 'LEFT')
end
return false
"
    ))
});

/// Step 3 of a get: 1 if the item (by id) is this consumer's, now or by an
/// earlier confirm whose reply was lost; 0 if the reaper gave it back.
/// KEYS: meta. ARGV: prefix, consumer id, item id, done ttl (ms).
static CONFIRM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=allow-oom
local prefix, me, id = ARGV[1], ARGV[2], ARGV[3]
local proc = prefix .. 'proc:' .. me
for _, e in ipairs(redis.call('LRANGE', proc, 0, -1)) do
  if string.sub(e, 1, 32) == id then
    redis.call('LREM', proc, 1, e)
    redis.call('SET', prefix .. 'done:' .. id, me, 'PX', ARGV[4])
    return 1
  end
end
if redis.call('GET', prefix .. 'done:' .. id) == me then return 1 end
return 0
",
    )
});

/// A consumer going away: its unconfirmed items go back to the head.
/// KEYS: meta. ARGV: prefix, consumer id.
static LEAVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=allow-oom
local prefix, me = ARGV[1], ARGV[2]
local proc, list = prefix .. 'proc:' .. me, prefix .. 'list'
while redis.call('LMOVE', proc, list, 'LEFT', 'RIGHT') do end
redis.call('DEL', prefix .. 'alive:' .. me)
redis.call('SREM', prefix .. 'consumers', me)
return 1
",
    )
});

/// The exact number of items in the list, after a reaper run if due.
/// KEYS: meta. ARGV: prefix, lease (ms).
static QSIZE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r"#!lua flags=allow-oom
{REAP_LUA}
local prefix = ARGV[1]
if lost(prefix) then return redis.error_reply(LOST) end
reap(prefix, ARGV[2])
return redis.call('LLEN', prefix .. 'list')
"
    ))
});

/// 1 if the unfinished count was above 0 and is now one less, else 0.
/// KEYS: meta, unfinished.
static TASK_DONE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"#!lua flags=allow-oom
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('MPLOST the queue is gone from the server (it restarted without its data, or was flushed)')
end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n <= 0 then return 0 end
redis.call('DECR', KEYS[2])
return 1
",
    )
});

/// What one handle shares with its clones: the queue's identity and the
/// settings copied from the cluster that made it (they travel with the
/// handle, so a child process uses the same lease and limits).
struct Shared {
    cluster: Cluster,
    name: String,
    /// `mp:{ns:name}:`
    prefix: String,
    meta: String,
    maxsize: usize,
    joinable: bool,
    lease: Duration,
    max_payload: usize,
}

/// The consumer state of one handle in one process.
struct Consumer {
    /// Random, hex; renewed when the process changes (a forked child).
    id: String,
    pid: u32,
    /// Whether this consumer may have left state on the server.
    used: bool,
    /// An item taken whose confirm reply was lost: confirmed first by the
    /// next get.
    stash: Option<Vec<u8>>,
    /// Test hook: (server block, socket read timeout) of each `BLMOVE`.
    blocking: Option<(Duration, Duration)>,
}

impl Consumer {
    fn new() -> Consumer {
        Consumer {
            id: random_hex::<8>(),
            pid: std::process::id(),
            used: false,
            stash: None,
            blocking: None,
        }
    }
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    if crate::sys::random::fill(&mut bytes).is_err() {
        // Fall back on the clock and pid: uniqueness is all that matters.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ (u128::from(std::process::id()) << 64);
        let b = t.to_le_bytes();
        for (i, x) in bytes.iter_mut().enumerate() {
            *x = b[i % 16] ^ (i as u8);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a put did not happen (mapped onto each put method's error).
enum PutFail<T> {
    Full(T),
    Unsendable(PutError<T>),
}

/// The outcome of one round of a get.
enum Step {
    /// A confirmed item's payload.
    Got(Vec<u8>),
    /// No item came.
    Nothing,
    /// The item taken was given back by the reaper before the confirm.
    Again,
}

/// Why a get did not return an item.
enum GetFail {
    Empty,
    Backend(BackendError),
}

/// A FIFO queue on a Redis server, shared by processes on any number of
/// machines: the remote counterpart of [`multiprocess::Queue`](crate::Queue),
/// with the same method names and error types (each gains a `Backend`
/// variant). Made by [`Cluster::queue`] or [`Cluster::queue_bounded`];
/// handles are cheap to clone and travel to other processes (they are
/// `Serialize`/`Deserialize`: name, server URL without password and
/// namespace).
///
/// # Guarantees
///
/// - **At most once to user code**: an item is returned by one `get` of one
///   handle, never two, even when a consumer is judged dead while it is in
///   fact only slow (its `get` then does not return the item).
/// - **Never lost in transit**: a taken item sits in the consumer's
///   processing list until that consumer confirms it. A consumer that dies
///   (SIGKILL, a cut network) before confirming has its items returned to
///   the head of the queue after the lease
///   ([`ClusterBuilder::lease`](super::ClusterBuilder::lease)); a get whose
///   reply was lost (a client timeout, a broken connection) finds its item
///   again on its next try. A put retried after a lost reply is applied once.
///   (What Redis itself loses is another matter: durable only with
///   `appendonly yes` and `appendfsync always`; a server that lost the
///   queue makes calls fail with [`BackendError::Lost`].)
/// - **Exact `qsize`**: the length of the list, read atomically. Items
///   taken and not yet confirmed (in transit) are not counted.
/// - FIFO: items come out in the order the server received them; items
///   taken back from a dead consumer go to the head.
///
/// A put whose call breaks (a lost reply, a restarting server) is sent
/// again with the same put id for a few seconds, and applied at most once.
/// If it still fails it hands the value back, but it may have been applied
/// (only its reply was lost): a caller that puts it again may put it twice.
///
/// Items may not hold OS handles (a local `Queue`, `Connection`, `Lock`):
/// they are refused with `ContainsHandle`. Items over `max_payload` are
/// refused before sending with `Backend { error: TooLarge, .. }`.
///
/// One handle serves one `get` at a time (concurrent gets on the same
/// handle from several threads take turns); clone the handle per thread
/// for parallel consumers.
///
/// # Examples
///
/// ```no_run
/// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
/// let q = c.queue::<String>("log")?;
/// q.put("hello".into()).unwrap();
/// assert_eq!(q.get().unwrap(), "hello");
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
pub struct Queue<T> {
    shared: Arc<Shared>,
    consumer: Mutex<Consumer>,
    _items: PhantomData<fn(T) -> T>,
}

impl Cluster {
    /// An unbounded [`Queue`] named `name` in this cluster's namespace,
    /// made on the server if it does not exist yet.
    ///
    /// If it exists with a `maxsize` (made by [`Cluster::queue_bounded`]),
    /// the handle adopts it: the first maker of a queue decides its bound.
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u64>("numbers")?;
    /// q.put(7).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn queue<T>(&self, name: &str) -> Result<Queue<T>, BackendError>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        Queue::open(self, name, 0, false)
    }

    /// A [`Queue`] holding at most `maxsize` items (`put` waits for room,
    /// `try_put` fails with `Full`). If the queue already exists, its
    /// stored bound wins over `maxsize` (see [`Queue::maxsize`]).
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue_bounded::<u64>("jobs", 100)?;
    /// assert_eq!(q.maxsize(), Some(100));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn queue_bounded<T>(&self, name: &str, maxsize: usize) -> Result<Queue<T>, BackendError>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        Queue::open(self, name, maxsize.max(1), false)
    }

    /// An unbounded [`JoinableQueue`] named `name` (see [`Cluster::queue`]).
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u64>("tasks")?;
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join()?;
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn joinable_queue<T>(&self, name: &str) -> Result<JoinableQueue<T>, BackendError>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        Ok(JoinableQueue {
            queue: Queue::open(self, name, 0, true)?,
        })
    }

    /// A bounded [`JoinableQueue`] (see [`Cluster::queue_bounded`]).
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue_bounded::<u64>("tasks", 10)?;
    /// assert_eq!(q.maxsize(), Some(10));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn joinable_queue_bounded<T>(
        &self,
        name: &str,
        maxsize: usize,
    ) -> Result<JoinableQueue<T>, BackendError>
    where
        T: Serialize + DeserializeOwned + 'static,
    {
        Ok(JoinableQueue {
            queue: Queue::open(self, name, maxsize.max(1), true)?,
        })
    }
}

/// Maps a client error, turning the scripts' `MPLOST` replies into
/// [`BackendError::Lost`].
fn map_err(c: &Cluster, e: &redis::RedisError) -> BackendError {
    if e.code() == Some("MPLOST") {
        return BackendError::Lost(
            e.detail()
                .unwrap_or("the queue is gone from the server")
                .to_owned(),
        );
    }
    match c.error(e) {
        BackendError::Server(text) if text.contains("OOM") => BackendError::OutOfMemory(text),
        other => other,
    }
}

/// Runs `f` on a pooled connection; a connection whose call broke is
/// dropped.
fn call<R>(
    c: &Cluster,
    f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
) -> Result<R, BackendError> {
    let mut conn = c.take_conn()?;
    match f(&mut conn) {
        Ok(v) => {
            c.put_back(conn);
            Ok(v)
        }
        Err(e) => {
            let err = map_err(c, &e);
            if !err.breaks_connection() {
                c.put_back(conn);
            }
            Err(err)
        }
    }
}

/// Retries `f` while it fails with a broken connection, for up to
/// [`RECONNECT_GRACE`] (a restarting server); other errors return at once.
fn with_retry<R>(mut f: impl FnMut() -> Result<R, BackendError>) -> Result<R, BackendError> {
    let mut first: Option<Instant> = None;
    let mut pause = Duration::from_millis(10);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.breaks_connection() => {
                let start = *first.get_or_insert_with(Instant::now);
                if start.elapsed() >= RECONNECT_GRACE {
                    return Err(e);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl<T> Queue<T> {
    fn open(c: &Cluster, name: &str, maxsize: usize, joinable: bool) -> Result<Self, BackendError> {
        let meta = c.key(name, "meta");
        let stored: i64 = with_retry(|| {
            call(c, |conn| {
                CREATE
                    .key(&meta)
                    .arg(maxsize)
                    .arg(u8::from(joinable))
                    .invoke(conn)
            })
        })?;
        let opts = c.opts();
        Ok(Queue::from_shared(Arc::new(Shared {
            cluster: c.clone(),
            name: name.to_owned(),
            prefix: c.key(name, ""),
            meta,
            maxsize: usize::try_from(stored).unwrap_or(0),
            joinable,
            lease: opts.lease,
            max_payload: opts.max_payload,
        })))
    }

    fn from_shared(shared: Arc<Shared>) -> Self {
        Queue {
            shared,
            consumer: Mutex::new(Consumer::new()),
            _items: PhantomData,
        }
    }

    fn cluster(&self) -> &Cluster {
        &self.shared.cluster
    }

    /// How long a get blocks on the server in one go.
    fn block(&self) -> Duration {
        self.shared
            .lease
            .clamp(Duration::from_millis(50), MAX_BLOCK)
    }

    /// The retry window of a put id and of a confirm's `done` marker.
    fn marker_ttl(&self) -> Duration {
        let o = self.cluster().opts();
        (2 * (o.call_timeout + o.connect_timeout) + RECONNECT_GRACE).max(Duration::from_secs(5))
    }

    fn lock_consumer(&self) -> std::sync::MutexGuard<'_, Consumer> {
        let mut c = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        if c.pid != std::process::id() {
            // A forked child: its own consumer (the parent's items stay
            // the parent's).
            *c = Consumer::new();
        }
        c
    }

    /// The queue's name (within its cluster's namespace).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// assert_eq!(c.queue::<u8>("log")?.name(), "log");
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound of a queue made by [`Cluster::queue_bounded`] (the one
    /// stored on the server when the queue was first made), or `None`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// assert_eq!(c.queue::<u8>("unbounded")?.maxsize(), None);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        (self.shared.maxsize > 0).then_some(self.shared.maxsize)
    }

    /// The exact number of items in the queue (items taken by a consumer
    /// and not yet confirmed are not counted). Also returns dead
    /// consumers' items to the queue if the reaper is due.
    ///
    /// # Errors
    ///
    /// The server could not be reached, failed, or lost the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u8>("sizes")?;
    /// q.put(1).unwrap();
    /// assert!(q.qsize()? >= 1);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn qsize(&self) -> Result<usize, BackendError> {
        let s = &self.shared;
        let n: u64 = with_retry(|| {
            call(&s.cluster, |conn| {
                QSIZE
                    .key(&s.meta)
                    .arg(&s.prefix)
                    .arg(ms(s.lease))
                    .invoke(conn)
            })
        })?;
        Ok(n as usize)
    }

    /// Whether [`qsize`](Queue::qsize) is 0.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u8>("fresh")?;
    /// println!("{}", q.is_empty()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, BackendError> {
        Ok(self.qsize()? == 0)
    }

    /// Whether a bounded queue holds `maxsize` items or more (always
    /// `false` when unbounded).
    ///
    /// # Errors
    ///
    /// As [`qsize`](Queue::qsize).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue_bounded::<u8>("one", 1)?;
    /// q.put(1).unwrap();
    /// assert!(q.is_full()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_full(&self) -> Result<bool, BackendError> {
        match self.maxsize() {
            Some(max) => Ok(self.qsize()? >= max),
            None => Ok(false),
        }
    }

    /// Drops this handle (Python's `close()`): its unconfirmed items, if
    /// any, go back to the head of the queue at once. The queue itself
    /// stays on the server for other handles.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// c.queue::<u8>("log")?.close();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn close(self) {}

    /// Puts the encoded `item` (id then payload) once: a call that broke
    /// (its reply lost, the server restarting) is sent again with the same
    /// put id for up to [`RECONNECT_GRACE`], and applied at most once.
    /// `Ok(false)`: full.
    fn put_once(&self, item: &[u8], put_id: &str) -> Result<bool, BackendError> {
        let s = &self.shared;
        let ttl = ms(self.marker_ttl());
        with_retry(|| {
            call(&s.cluster, |conn| {
                PUT.key(&s.meta)
                    .arg(&s.prefix)
                    .arg(item)
                    .arg(put_id)
                    .arg(s.maxsize)
                    .arg(ttl)
                    .arg(ms(s.lease))
                    .invoke::<i64>(conn)
            })
        })
        .map(|n| n == 1)
    }

    /// Takes one item for this consumer and confirms it: the item's
    /// payload (its id stripped). `deadline`: `None` waits forever;
    /// `blocking: false` makes one non-blocking try.
    fn get_raw(&self, deadline: Option<Instant>, blocking: bool) -> Result<Vec<u8>, GetFail> {
        let mut consumer = self.lock_consumer();
        consumer.used = true;
        let mut failing: Option<Instant> = None;
        let mut pause = Duration::from_millis(10);
        let mut races = 0;
        loop {
            match self.get_step(&mut consumer, deadline, blocking) {
                Ok(Step::Got(item)) => return Ok(item),
                Ok(Step::Again) if blocking || races < 3 => {
                    // The item was given back by the reaper meanwhile (this
                    // consumer was judged dead): take another.
                    failing = None;
                    races += 1;
                }
                Ok(_) => {
                    failing = None;
                    let expired = deadline.is_some_and(|d| Instant::now() >= d);
                    if !blocking || expired {
                        return Err(GetFail::Empty);
                    }
                }
                Err(BackendError::Timeout(_)) if consumer.blocking.is_some() => {
                    // The test hook's client timeout: the connection was
                    // dropped, and the next step reconciles.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(GetFail::Empty);
                    }
                }
                Err(e) if e.breaks_connection() => {
                    // Dropped connection (client timeout, broken socket, a
                    // restarting server): reconcile on the next step.
                    let start = *failing.get_or_insert_with(Instant::now);
                    let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
                    if start.elapsed() >= RECONNECT_GRACE || past_deadline {
                        return Err(GetFail::Backend(e));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(GetFail::Backend(e)),
            }
        }
    }

    /// One round of a get: the confirmed payload, nothing, or the
    /// server's error.
    fn get_step(
        &self,
        consumer: &mut Consumer,
        deadline: Option<Instant>,
        blocking: bool,
    ) -> Result<Step, BackendError> {
        let s = &self.shared;
        if let Some(item) = consumer.stash.take() {
            return self.confirm(consumer, item);
        }
        let block = match consumer.blocking {
            Some((block, _)) => block,
            None => self.block(),
        };
        let taken: Option<Vec<u8>> = call(&s.cluster, |conn| {
            TAKE.key(&s.meta)
                .arg(&s.prefix)
                .arg(&consumer.id)
                .arg(ms(block + s.lease))
                .arg(ms(s.lease))
                .arg(1)
                .invoke(conn)
        })?;
        if let Some(item) = taken {
            return self.confirm(consumer, item);
        }
        if !blocking {
            return Ok(Step::Nothing);
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(block),
            None => block,
        };
        if wait < Duration::from_millis(1) {
            return Ok(Step::Nothing);
        }
        match self.blmove(consumer, wait)? {
            Some(item) => self.confirm(consumer, item),
            None => Ok(Step::Nothing),
        }
    }

    /// `BLMOVE list proc RIGHT LEFT` for up to `wait`, on a connection
    /// whose read timeout covers the block; dropped unless its reply was
    /// read in full.
    fn blmove(&self, consumer: &Consumer, wait: Duration) -> Result<Option<Vec<u8>>, BackendError> {
        let s = &self.shared;
        let c = &s.cluster;
        let socket = match consumer.blocking {
            Some((_, socket)) => socket,
            None => c.blocking_timeout(wait),
        };
        let mut conn = c.take_conn()?;
        conn.set_read_timeout(Some(socket))
            .map_err(|e| map_err(c, &e))?;
        let secs = format!("{:.3}", wait.as_secs_f64().max(0.001));
        let reply: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("BLMOVE")
            .arg(format!("{}list", s.prefix))
            .arg(format!("{}proc:{}", s.prefix, consumer.id))
            .arg("RIGHT")
            .arg("LEFT")
            .arg(secs)
            .query(&mut conn);
        match reply {
            Ok(item) => {
                if conn.set_read_timeout(Some(c.opts().call_timeout)).is_ok() {
                    c.put_back(conn);
                }
                Ok(item)
            }
            // Dropped: a late reply may still come on this connection.
            Err(e) => Err(map_err(c, &e)),
        }
    }

    /// Confirms a taken item; on a lost reply it is stashed for the next
    /// step.
    fn confirm(&self, consumer: &mut Consumer, item: Vec<u8>) -> Result<Step, BackendError> {
        let s = &self.shared;
        if item.len() < ID_LEN {
            // Not an item of ours (written by something else): drop it.
            let _ = call(&s.cluster, |conn| {
                redis::cmd("LREM")
                    .arg(format!("{}proc:{}", s.prefix, consumer.id))
                    .arg(1)
                    .arg(&item)
                    .query::<i64>(conn)
            });
            return Ok(Step::Got(item));
        }
        let id = &item[..ID_LEN];
        let ttl = ms(self.marker_ttl());
        let result = call(&s.cluster, |conn| {
            CONFIRM
                .key(&s.meta)
                .arg(&s.prefix)
                .arg(&consumer.id)
                .arg(id)
                .arg(ttl)
                .invoke::<i64>(conn)
        });
        match result {
            Ok(1) => {
                let mut item = item;
                item.drain(..ID_LEN);
                Ok(Step::Got(item))
            }
            Ok(_) => Ok(Step::Again),
            Err(e) => {
                consumer.stash = Some(item);
                Err(e)
            }
        }
    }

    /// Test hook: makes every `BLMOVE` of this handle block up to `block`
    /// on the server with a socket read timeout of `socket` (shorter, to
    /// provoke client timeouts).
    #[doc(hidden)]
    pub fn __set_blocking(&self, block: Duration, socket: Duration) {
        self.lock_consumer().blocking = Some((block, socket));
    }

    /// Test hook: a get interrupted after taking an item, as by a lost
    /// reply or a kill. `stage` 0: the take's reply was lost (the item is
    /// only in this consumer's processing list); 1: the item was received
    /// and the confirm not yet sent (the handle remembers the item); 2: the
    /// confirm ran but its reply was lost (the handle remembers the item).
    /// Returns whether an item was taken.
    #[doc(hidden)]
    pub fn __take_unconfirmed(&self, stage: u8) -> Result<bool, BackendError> {
        let s = &self.shared;
        let mut consumer = self.lock_consumer();
        consumer.used = true;
        let taken: Option<Vec<u8>> = call(&s.cluster, |conn| {
            TAKE.key(&s.meta)
                .arg(&s.prefix)
                .arg(&consumer.id)
                .arg(ms(self.block() + s.lease))
                .arg(ms(s.lease))
                .arg(1)
                .invoke(conn)
        })?;
        let Some(item) = taken else {
            return Ok(false);
        };
        if stage >= 2 {
            self.confirm(&mut consumer, item.clone())?;
        }
        if stage >= 1 {
            consumer.stash = Some(item);
        }
        Ok(true)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// Encodes `value` as an item (a fresh id then the payload).
    fn encode(&self, value: T) -> Result<(T, Vec<u8>), PutError<T>> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(random_hex::<16>().as_bytes());
        if !codec::encode_plain_into(&value, &mut buf) {
            // A handle or an error: the side-table path tells which.
            let mut body = Vec::new();
            let mut fds = Vec::new();
            if let Err(error) = codec::encode_into(&value, &mut body, &mut fds) {
                return Err(PutError::Encode { value, error });
            }
            if !fds.is_empty() {
                return Err(PutError::ContainsHandle(value));
            }
            buf.truncate(ID_LEN);
            buf.extend_from_slice(&body);
        }
        // serde attributes the encoding cannot round trip: refused here.
        if let Err(error) = codec::check_round_trip::<T>(&buf[ID_LEN..]) {
            return Err(PutError::Encode { value, error });
        }
        let size = buf.len() - ID_LEN;
        if size > self.shared.max_payload {
            let error = BackendError::TooLarge {
                size,
                max: self.shared.max_payload,
            };
            return Err(PutError::Backend { value, error });
        }
        Ok((value, buf))
    }

    /// A put: `deadline` `None` waits forever for room, `Some(now)` tries
    /// once.
    fn put_impl(&self, value: T, deadline: Option<Instant>) -> Result<(), PutFail<T>> {
        let (value, item) = self.encode(value).map_err(PutFail::Unsendable)?;
        let put_id = random_hex::<16>();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.put_once(&item, &put_id) {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    let now = Instant::now();
                    let mut nap = pause;
                    if let Some(d) = deadline {
                        if now >= d {
                            return Err(PutFail::Full(value));
                        }
                        nap = nap.min(d - now);
                    }
                    std::thread::sleep(nap);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(error) => return Err(PutFail::Unsendable(PutError::Backend { value, error })),
            }
        }
    }

    /// Test hook: one try of the put script with a given put id (a put
    /// retried after a lost reply sends the same id again).
    #[doc(hidden)]
    pub fn __put_with_id(&self, value: T, put_id: &str) -> Result<bool, PutError<T>> {
        let (value, item) = self.encode(value)?;
        self.put_once(&item, put_id)
            .map_err(|error| PutError::Backend { value, error })
    }

    /// Puts an item, waiting for room in a bounded queue.
    ///
    /// # Errors
    ///
    /// The value is handed back: `Encode`, `ContainsHandle` (an OS handle
    /// inside), `Backend` (over `max_payload`: `TooLarge`, before sending;
    /// the server out of memory: `OutOfMemory`; unreachable...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<String>("log")?;
    /// if let Err(e) = q.put("line".into()) {
    ///     let line: String = e.into_inner(); // not lost
    ///     eprintln!("not sent: {line}");
    /// }
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        match self.put_impl(value, None) {
            Ok(()) => Ok(()),
            Err(PutFail::Unsendable(e)) => Err(e),
            Err(PutFail::Full(_)) => unreachable!("an unbounded wait does not time out"),
        }
    }

    /// Puts an item, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// `Timeout(value)` if the queue stayed full; the others as
    /// [`put`](Queue::put).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue_bounded::<u8>("small", 1)?;
    /// q.put_timeout(1, Duration::from_millis(100)).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        match self.put_impl(value, Some(Instant::now() + timeout)) {
            Ok(()) => Ok(()),
            Err(PutFail::Unsendable(e)) => Err(e.into()),
            Err(PutFail::Full(v)) => Err(PutTimeoutError::Timeout(v)),
        }
    }

    /// Puts an item if there is room now.
    ///
    /// # Errors
    ///
    /// `Full(value)` if the queue is full; the others as
    /// [`put`](Queue::put).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue_bounded::<u8>("tiny", 1)?;
    /// q.try_put(1).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        match self.put_impl(value, Some(Instant::now())) {
            Ok(()) => Ok(()),
            Err(PutFail::Unsendable(e)) => Err(e.into()),
            Err(PutFail::Full(v)) => Err(TryPutError::Full(v)),
        }
    }

    /// Takes the oldest item, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `Decode` (the item was consumed; the queue keeps working) or
    /// `Backend` (the server unreachable for a few seconds, or it lost the
    /// queue: [`BackendError::Lost`]); no item is lost by an error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u64>("numbers")?;
    /// q.put(5).unwrap();
    /// assert_eq!(q.get().unwrap(), 5);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        match self.get_raw(None, true) {
            Ok(bytes) => codec::decode_plain(&bytes).map_err(GetError::Decode),
            Err(GetFail::Backend(e)) => Err(GetError::Backend(e)),
            Err(GetFail::Empty) => unreachable!("an unbounded wait does not time out"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout` (`BLMOVE`'s timeout).
    ///
    /// # Errors
    ///
    /// `Timeout` if none came; the others as [`get`](Queue::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u64>("numbers")?;
    /// match q.get_timeout(Duration::from_millis(100)) {
    ///     Ok(n) => println!("{n}"),
    ///     Err(e) => println!("{e}"),
    /// }
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        match self.get_raw(Some(Instant::now() + timeout), true) {
            Ok(bytes) => codec::decode_plain(&bytes).map_err(GetTimeoutError::Decode),
            Err(GetFail::Backend(e)) => Err(GetTimeoutError::Backend(e)),
            Err(GetFail::Empty) => Err(GetTimeoutError::Timeout),
        }
    }

    /// Takes the oldest item if there is one now.
    ///
    /// # Errors
    ///
    /// `Empty` if there is none; the others as [`get`](Queue::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.queue::<u64>("numbers")?;
    /// if let Ok(n) = q.try_get() {
    ///     println!("{n}");
    /// }
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn try_get(&self) -> Result<T, TryGetError> {
        match self.get_raw(Some(Instant::now()), false) {
            Ok(bytes) => codec::decode_plain(&bytes).map_err(TryGetError::Decode),
            Err(GetFail::Backend(e)) => Err(TryGetError::Backend(e)),
            Err(GetFail::Empty) => Err(TryGetError::Empty),
        }
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let ttl = ms(self.marker_ttl());
        let consumer = self.consumer.get_mut().unwrap_or_else(|e| e.into_inner());
        if !consumer.used || consumer.pid != std::process::id() {
            return;
        }
        let s = &self.shared;
        // An item whose confirm's reply was lost and that no get will now
        // return: if it was confirmed for this consumer, back to the head.
        if let Some(item) = consumer.stash.take()
            && item.len() >= ID_LEN
        {
            let mine = call(&s.cluster, |conn| {
                CONFIRM
                    .key(&s.meta)
                    .arg(&s.prefix)
                    .arg(&consumer.id)
                    .arg(&item[..ID_LEN])
                    .arg(ttl)
                    .invoke::<i64>(conn)
            });
            if mine == Ok(1) {
                let _ = call(&s.cluster, |conn| {
                    redis::cmd("RPUSH")
                        .arg(format!("{}list", s.prefix))
                        .arg(&item)
                        .query::<i64>(conn)
                });
            }
        }
        // Best effort: what is left in the processing list goes back now
        // rather than after the lease.
        let _ = call(&s.cluster, |conn| {
            LEAVE
                .key(&s.meta)
                .arg(&s.prefix)
                .arg(&consumer.id)
                .invoke::<i64>(conn)
        });
    }
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue, with its own consumer id.
    fn clone(&self) -> Self {
        Queue::from_shared(self.shared.clone())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::Queue")
            .field("name", &self.shared.name)
            .field("url", &self.shared.cluster.url())
            .field("namespace", &self.shared.cluster.namespace())
            .field("maxsize", &self.maxsize())
            .finish()
    }
}

/// What a handle carries to another process: no password.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    url: String,
    namespace: String,
    maxsize: u64,
    joinable: bool,
    lease_ms: u64,
    max_payload: u64,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = &self.shared;
        Wire {
            name: s.name.clone(),
            url: s.cluster.url().to_owned(),
            namespace: s.cluster.namespace().to_owned(),
            maxsize: s.maxsize as u64,
            joinable: s.joinable,
            lease_ms: s.lease.as_millis() as u64,
            max_payload: s.max_payload as u64,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    /// Connects to the handle's server (reusing a connection of this
    /// process to the same URL and namespace; a password comes from
    /// `MULTIPROCESS_REDIS_PASSWORD`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(deserializer)?;
        let cluster = cluster_for(&w.url, &w.namespace).map_err(serde::de::Error::custom)?;
        Ok(Queue::from_shared(Arc::new(Shared {
            prefix: cluster.key(&w.name, ""),
            meta: cluster.key(&w.name, "meta"),
            cluster,
            name: w.name,
            maxsize: usize::try_from(w.maxsize).unwrap_or(usize::MAX),
            joinable: w.joinable,
            lease: Duration::from_millis(w.lease_ms),
            max_payload: usize::try_from(w.max_payload).unwrap_or(usize::MAX),
        })))
    }
}

/// A [`Queue`] whose consumers mark each item done, so that producers can
/// wait until every item put has been processed: the remote counterpart of
/// [`multiprocess::JoinableQueue`](crate::JoinableQueue). Made by
/// [`Cluster::joinable_queue`] or [`Cluster::joinable_queue_bounded`].
///
/// The unfinished count lives on the server: the put script increments it
/// with the item (atomically, once per put even when the put is retried),
/// [`task_done`](JoinableQueue::task_done) decrements it, and
/// [`join`](JoinableQueue::join) polls it (1 ms, doubling up to 50 ms).
/// A consumer that dies between `get` and `task_done` leaves its count
/// unfinished (as locally without the liveness tracking). The queue's
/// guarantees are [`Queue`]'s.
///
/// # Examples
///
/// ```no_run
/// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
/// let q = c.joinable_queue::<u32>("work")?;
/// q.put(1).unwrap();
/// let n = q.get().unwrap();
/// println!("{n}");
/// q.task_done().unwrap();
/// q.join()?;
/// # Ok::<(), multiprocess::remote::BackendError>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// As [`Queue::put`]; counts one more unfinished task.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`] (nothing is counted then).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// c.joinable_queue::<u8>("work")?.put(1).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.queue.put(value)
    }

    /// As [`Queue::put_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue_bounded::<u8>("work", 1)?;
    /// q.put_timeout(1, Duration::from_millis(10)).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.queue.put_timeout(value, timeout)
    }

    /// As [`Queue::try_put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// c.joinable_queue::<u8>("work")?.try_put(1).unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        self.queue.try_put(value)
    }

    /// As [`Queue::get`]; call [`task_done`](JoinableQueue::task_done)
    /// when the item is processed.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`]. A `Decode` error consumed an item: it still
    /// counts as unfinished until `task_done`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("work")?;
    /// let n = q.get().unwrap();
    /// q.task_done().unwrap();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// As [`Queue::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("work")?;
    /// let _ = q.get_timeout(Duration::from_millis(10));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.queue.get_timeout(timeout)
    }

    /// As [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("work")?;
    /// let _ = q.try_get();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.queue.try_get()
    }
}

impl<T> JoinableQueue<T> {
    fn unfinished_key(&self) -> String {
        format!("{}unfinished", self.queue.shared.prefix)
    }

    /// Marks one item taken from the queue as processed.
    ///
    /// Not retried on a broken connection (a decrement is not idempotent):
    /// a `Backend` error leaves it unknown whether it counted.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError::TooManyCalls`] if the unfinished count is already
    /// 0; `Backend` if the server failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiprocess::TaskDoneError;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("empty-work")?;
    /// assert!(matches!(q.task_done(), Err(TaskDoneError::TooManyCalls)));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let s = &self.queue.shared;
        let key = self.unfinished_key();
        let n: i64 = call(&s.cluster, |conn| {
            TASK_DONE.key(&s.meta).key(&key).invoke(conn)
        })
        .map_err(TaskDoneError::Backend)?;
        if n == 1 {
            Ok(())
        } else {
            Err(TaskDoneError::TooManyCalls)
        }
    }

    /// Items put and not yet marked done (a snapshot).
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("work")?;
    /// println!("{}", q.unfinished_tasks()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn unfinished_tasks(&self) -> Result<u64, BackendError> {
        let s = &self.queue.shared;
        let key = self.unfinished_key();
        let n: Option<i64> =
            with_retry(|| call(&s.cluster, |conn| redis::cmd("GET").arg(&key).query(conn)))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<(), JoinTimeoutError> {
        let mut pause = Duration::from_millis(1);
        loop {
            let n = self.unfinished_tasks().map_err(JoinTimeoutError::Backend)?;
            if n == 0 {
                return Ok(());
            }
            let mut nap = pause;
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Err(JoinTimeoutError::Timeout { unfinished: n });
                }
                nap = nap.min(d - now);
            }
            std::thread::sleep(nap);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// The server could not be reached or failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// c.joinable_queue::<u8>("work")?.join()?;
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn join(&self) -> Result<(), BackendError> {
        match self.join_until(None) {
            Ok(()) => Ok(()),
            Err(JoinTimeoutError::Backend(e)) => Err(e),
            Err(JoinTimeoutError::Timeout { .. }) => unreachable!("no deadline"),
        }
    }

    /// As [`join`](JoinableQueue::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout { unfinished }` if tasks were still unfinished; `Backend`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// let q = c.joinable_queue::<u8>("work")?;
    /// let _ = q.join_timeout(Duration::from_millis(100));
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_until(Some(Instant::now() + timeout))
    }

    /// As [`Queue::qsize`].
    ///
    /// # Errors
    ///
    /// As [`Queue::qsize`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// println!("{}", c.joinable_queue::<u8>("work")?.qsize()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn qsize(&self) -> Result<usize, BackendError> {
        self.queue.qsize()
    }

    /// As [`Queue::is_empty`].
    ///
    /// # Errors
    ///
    /// As [`Queue::qsize`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// println!("{}", c.joinable_queue::<u8>("work")?.is_empty()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool, BackendError> {
        self.queue.is_empty()
    }

    /// As [`Queue::is_full`].
    ///
    /// # Errors
    ///
    /// As [`Queue::qsize`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// println!("{}", c.joinable_queue::<u8>("work")?.is_full()?);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn is_full(&self) -> Result<bool, BackendError> {
        self.queue.is_full()
    }

    /// As [`Queue::maxsize`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// assert_eq!(c.joinable_queue::<u8>("work")?.maxsize(), None);
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// As [`Queue::name`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// assert_eq!(c.joinable_queue::<u8>("work")?.name(), "work");
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.queue.name()
    }

    /// As [`Queue::close`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let c = multiprocess::remote::Cluster::connect("redis://127.0.0.1:6379/0")?;
    /// c.joinable_queue::<u8>("work")?.close();
    /// # Ok::<(), multiprocess::remote::BackendError>(())
    /// ```
    pub fn close(self) {}

    #[doc(hidden)]
    pub fn __take_unconfirmed(&self, stage: u8) -> Result<bool, BackendError> {
        self.queue.__take_unconfirmed(stage)
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("remote::JoinableQueue")
            .field("name", &self.queue.shared.name)
            .field("url", &self.queue.shared.cluster.url())
            .field("namespace", &self.queue.shared.cluster.namespace())
            .field("maxsize", &self.maxsize())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(JoinableQueue {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}
