//! A remote worker: the process that [`init`](fn@crate::init) turns into one
//! when `MULTIPROCESS_WORKER` is set. It serves one pool's task stream for
//! its own build until killed.
//!
//! The loop: reclaim chunks whose worker's lease expired (or give them up
//! as lost after `max_deliveries`), else read a batch of new ones (about
//! 0.5 ms of work, one for long tasks), run them, and finish them in one
//! script call. A renewal thread keeps the worker's alive key and its
//! leases on the entries it holds, but only while it still owns them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::Value;

use super::cluster::Cluster;
use super::registry::{build_id, by_name, names};
use super::stream::{self, Entry, GROUP, WorkerInfo};
use crate::TaskError;
use crate::backend::BackendError;

/// The pool a worker serves (`MULTIPROCESS_WORKER_POOL`, default `default`).
pub(crate) const POOL_ENV: &str = "MULTIPROCESS_WORKER_POOL";
/// The namespace (`MULTIPROCESS_WORKER_NAMESPACE`, default `default`).
pub(crate) const NAMESPACE_ENV: &str = "MULTIPROCESS_WORKER_NAMESPACE";
/// The pid of the process whose death ends this worker (set by
/// `spawn_local_workers`).
pub(crate) const PARENT_ENV: &str = "MULTIPROCESS_WORKER_PARENT";

/// Time a batch should take: long enough that a round trip per batch is
/// small, short enough that other workers share the tail.
const BATCH_TIME: Duration = Duration::from_micros(500);
const MAX_BATCH: usize = 256;

/// Serves tasks if this process was started as a worker; returns otherwise.
pub(crate) fn serve_if_worker() {
    let Some(url) = crate::sys::process::take_env(super::WORKER_ENV) else {
        return;
    };
    let pool = crate::sys::process::take_env(POOL_ENV).unwrap_or_else(|| "default".into());
    let ns = crate::sys::process::take_env(NAMESPACE_ENV).unwrap_or_else(|| "default".into());
    if let Some(parent) = crate::sys::process::take_env(PARENT_ENV).and_then(|p| p.parse().ok())
        && !crate::sys::process::die_with_parent(parent).unwrap_or(true)
    {
        std::process::exit(0);
    }
    crate::pool::shared_with_remote::install_panic_hook();
    let code = match serve(&url, &pool, &ns) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiprocess remote worker for pool {pool:?}: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// Connects (retrying while the server is unreachable: it may be
/// restarting) and serves forever.
fn serve(url: &str, pool: &str, ns: &str) -> Result<(), BackendError> {
    let mut delay = Duration::from_millis(50);
    let cluster = loop {
        match Cluster::builder(url).namespace(ns).connect() {
            Ok(c) => break c,
            Err(
                e @ (BackendError::BadUrl { .. }
                | BackendError::Auth { .. }
                | BackendError::TooOld { .. }
                | BackendError::NotRedis { .. }),
            ) => return Err(e),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    };
    let mut worker = Worker::new(cluster, pool)?;
    loop {
        match worker.step() {
            Ok(()) => {}
            // The server went away or restarted: wait and go on (the
            // callers see the loss; tasks in flight are reclaimed).
            Err(_) => {
                std::thread::sleep(Duration::from_millis(100));
                let _ = worker.register();
            }
        }
    }
}

struct Worker {
    cluster: Cluster,
    prefix: String,
    tasks: String,
    id: String,
    info: WorkerInfo,
    lease: Duration,
    max_deliveries: u32,
    ttl_ms: u64,
    batch: usize,
    last_reclaim: Instant,
    /// Callers seen alive recently (their results are wanted).
    callers: HashMap<String, Instant>,
    /// Entries this worker holds now (for the renewal thread).
    held: Arc<Mutex<Vec<String>>>,
    _renewer: Renewer,
    finish: redis::Script,
    /// Results of the last batch, finished in the same round trip as the
    /// next read.
    unfinished: Vec<(Entry, u8, Vec<u8>)>,
}

/// The renewal thread; stopped when dropped.
struct Renewer {
    stop: Arc<AtomicBool>,
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Worker {
    fn new(cluster: Cluster, pool: &str) -> Result<Worker, BackendError> {
        let prefix = cluster.key(pool, "");
        let tasks = format!("{prefix}t:{}", build_id().short());
        let config: HashMap<String, u64> = cluster.with_conn(|c| {
            redis::cmd("HGETALL")
                .arg(format!("{prefix}config"))
                .query(c)
        })?;
        let lease = config
            .get("lease_ms")
            .map_or(cluster.opts().lease, |ms| Duration::from_millis(*ms));
        let max_deliveries = config
            .get("max_deliveries")
            .map_or(cluster.opts().max_deliveries, |n| *n as u32);
        let ttl_ms = config
            .get("ttl_ms")
            .copied()
            .unwrap_or(cluster.opts().key_ttl.as_millis() as u64);
        let id = stream::random_id();
        let info = WorkerInfo {
            id: id.clone(),
            build: build_id().0.clone(),
            pid: std::process::id(),
            host: stream::host_name(),
            functions: names().into_iter().map(str::to_owned).collect(),
        };
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            cluster: cluster.clone(),
            prefix: prefix.clone(),
            tasks: tasks.clone(),
            id: id.clone(),
            info,
            lease,
            max_deliveries,
            ttl_ms,
            batch: 1,
            last_reclaim: Instant::now() - lease,
            callers: HashMap::new(),
            held: held.clone(),
            _renewer: Renewer { stop: stop.clone() },
            finish: redis::Script::new(stream::FINISH),
            unfinished: Vec::new(),
        };
        worker.register()?;
        let presence = Presence {
            alive: format!("{prefix}w:{id}"),
            workers: format!("{prefix}workers"),
            info: worker.info.encode(),
        };
        std::thread::Builder::new()
            .name("mp-renew".into())
            .spawn(move || renew_loop(cluster, tasks, presence, id, lease, held, stop))
            .map_err(|e| BackendError::Server(e.to_string()))?;
        Ok(worker)
    }

    /// Creates the group (if new) and publishes this worker.
    fn register(&mut self) -> Result<(), BackendError> {
        let (tasks, prefix, id) = (&self.tasks, &self.prefix, &self.id);
        let info = self.info.encode();
        let lease = self.lease.as_millis() as u64;
        self.cluster.with_conn(|c| {
            stream::create_group(c, tasks)?;
            redis::pipe()
                .cmd("HSET")
                .arg(format!("{prefix}workers"))
                .arg(id)
                .arg(&info)
                .ignore()
                .cmd("SET")
                .arg(format!("{prefix}w:{id}"))
                .arg(1)
                .arg("PX")
                .arg(lease)
                .ignore()
                .query::<()>(c)
        })
    }

    /// One round: reclaimed chunks first, else new ones; the last batch's
    /// results are finished in the same round trip as the next read.
    fn step(&mut self) -> Result<(), BackendError> {
        if self.last_reclaim.elapsed() >= self.lease / 2 {
            self.flush()?;
            self.last_reclaim = Instant::now();
            if self.reclaim_one()? {
                return Ok(());
            }
        }
        let block = if self.unfinished.is_empty() {
            self.lease
                .clamp(Duration::from_millis(50), Duration::from_millis(500))
        } else {
            // Results are waiting to be read by their caller: do not sit on
            // the connection long before the next round.
            Duration::from_millis(50)
        };
        let done = std::mem::take(&mut self.unfinished);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if !done.is_empty() {
            pipe.add_command(self.finish_cmd(&done));
        }
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.id)
            .arg("COUNT")
            .arg(self.batch)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.tasks)
            .arg(">");
        let mut conn = match self.cluster.take_conn() {
            Ok(c) => c,
            Err(e) => {
                self.unfinished = done;
                return Err(e);
            }
        };
        let _ = conn.set_read_timeout(Some(self.cluster.blocking_timeout(block)));
        let replies: Vec<Value> = match pipe.query(&mut conn) {
            Ok(v) => {
                let _ = conn.set_read_timeout(Some(self.cluster.opts().call_timeout));
                self.cluster.put_back(conn);
                v
            }
            Err(e) => {
                // Unknown whether the finish landed: finishing is
                // idempotent, so it is simply sent again.
                self.unfinished = done;
                return Err(self.cluster.error(&e));
            }
        };
        let mut replies = replies.into_iter();
        if !done.is_empty() {
            match replies.next() {
                Some(Value::ServerError(e)) if e.code() == "NOSCRIPT" => {
                    self.unfinished = done;
                    self.flush()?;
                }
                Some(Value::ServerError(e)) => {
                    self.unfinished = done;
                    return Err(BackendError::Server(format!("{e:?}")));
                }
                _ => {}
            }
        }
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let reply = match replies.next() {
            Some(Value::ServerError(e)) => {
                if e.code() == "NOGROUP" {
                    self.register()?;
                    return Ok(());
                }
                return Err(BackendError::Server(format!("{e:?}")));
            }
            Some(v) => v,
            None => return Ok(()),
        };
        let batch = stream::read_reply(&reply);
        if batch.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        let n = batch.len();
        self.run(batch)?;
        // Adapt: about BATCH_TIME of work per batch.
        let per = t.elapsed() / n as u32;
        self.batch = if per.is_zero() {
            MAX_BATCH
        } else {
            ((BATCH_TIME.as_nanos() / per.as_nanos().max(1)) as usize).clamp(1, MAX_BATCH)
        };
        Ok(())
    }

    /// Finishes the results waiting, on their own round trip.
    fn flush(&mut self) -> Result<(), BackendError> {
        if self.unfinished.is_empty() {
            return Ok(());
        }
        let done = std::mem::take(&mut self.unfinished);
        let ttl = self.ttl_ms.to_string();
        let mut inv = self.finish.prepare_invoke();
        inv.key(&self.tasks);
        for arg in self.finish_argv(&ttl, &done) {
            inv.arg(arg);
        }
        match self.cluster.with_conn(|c| inv.invoke::<u64>(c)) {
            Ok(_) => {
                self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
                Ok(())
            }
            Err(e) => {
                self.unfinished = done;
                Err(e)
            }
        }
    }

    fn finish_cmd(&self, done: &[(Entry, u8, Vec<u8>)]) -> redis::Cmd {
        let ttl = self.ttl_ms.to_string();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.finish.get_hash()).arg(1).arg(&self.tasks);
        for arg in self.finish_argv(&ttl, done) {
            cmd.arg(arg);
        }
        cmd
    }

    /// `FINISH`'s ARGV (see `stream::FINISH`): the same for the pipelined
    /// `EVALSHA` and for a lone invocation.
    fn finish_argv<'a>(&'a self, ttl: &'a str, done: &'a [(Entry, u8, Vec<u8>)]) -> Vec<&'a [u8]> {
        let mut argv: Vec<&[u8]> = Vec::with_capacity(3 + 8 * done.len());
        argv.extend([self.prefix.as_bytes(), GROUP.as_bytes(), ttl.as_bytes()]);
        for (entry, kind, body) in done {
            argv.extend([
                entry.id.as_bytes(),
                entry.get(b"c").unwrap_or(b""),
                entry.get(b"m").unwrap_or(b""),
                entry.get(b"k").unwrap_or(b"0"),
                entry.get(b"s").unwrap_or(b"0"),
                entry.get(b"n").unwrap_or(b"0"),
                std::slice::from_ref(kind),
                body.as_slice(),
            ]);
        }
        argv
    }

    /// Takes over one chunk whose holder's lease expired, running it (or
    /// giving it up as lost after `max_deliveries`). One at a time: a
    /// chunk that kills its workers takes no healthy chunk with it.
    fn reclaim_one(&mut self) -> Result<bool, BackendError> {
        let lease_ms = self.lease.as_millis() as u64;
        let tasks = self.tasks.clone();
        let pending: Value = self.cluster.with_conn(|c| {
            redis::cmd("XPENDING")
                .arg(&tasks)
                .arg(GROUP)
                .arg("IDLE")
                .arg(lease_ms)
                .arg("-")
                .arg("+")
                .arg(16)
                .query(c)
        })?;
        let Value::Array(rows) = pending else {
            return Ok(false);
        };
        for row in rows {
            let Value::Array(f) = row else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Int(deliveries))) = (f.first(), f.get(3))
            else {
                continue;
            };
            let id = String::from_utf8_lossy(id).into_owned();
            let deliveries = *deliveries as u32;
            let give_up = deliveries >= self.max_deliveries;
            let me = self.id.clone();
            let claimed: Value = self.cluster.with_conn(|c| {
                let mut cmd = redis::cmd("XCLAIM");
                cmd.arg(&tasks).arg(GROUP).arg(&me).arg(lease_ms).arg(&id);
                if give_up {
                    // Take it without counting a delivery, to finish it.
                    cmd.arg("JUSTID");
                }
                cmd.query(c)
            })?;
            if give_up {
                let Value::Array(ids) = claimed else { continue };
                if ids.is_empty() {
                    continue; // another worker took it first
                }
                let range: Value = self
                    .cluster
                    .with_conn(|c| redis::cmd("XRANGE").arg(&tasks).arg(&id).arg(&id).query(c))?;
                let entries = stream::entries(&range);
                match entries.into_iter().next() {
                    Some(entry) => {
                        let lost = deliveries.to_string().into_bytes();
                        self.unfinished.push((entry, b'x', lost));
                        self.flush()?;
                    }
                    None => {
                        self.cluster.with_conn(|c| {
                            redis::cmd("XACK")
                                .arg(&tasks)
                                .arg(GROUP)
                                .arg(&id)
                                .query::<()>(c)
                        })?;
                    }
                }
                return Ok(true);
            }
            let entries = stream::entries(&claimed);
            if !entries.is_empty() {
                self.run(entries)?;
                self.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs a batch of chunks; their results wait in `unfinished`.
    fn run(&mut self, batch: Vec<Entry>) -> Result<(), BackendError> {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) =
            batch.iter().map(|e| e.id.clone()).collect();
        self.refresh_callers(&batch)?;
        for entry in batch {
            let caller = entry.text(b"c").unwrap_or("");
            if !self.callers.contains_key(caller) {
                // Its caller is gone: nobody wants the result.
                self.unfinished.push((entry, b'e', Vec::new()));
                continue;
            }
            let (kind, body) = self.run_one(&entry);
            self.unfinished.push((entry, kind, body));
        }
        Ok(())
    }

    fn run_one(&self, entry: &Entry) -> (u8, Vec<u8>) {
        let name = entry.text(b"f").unwrap_or("");
        let error = |e: TaskError| {
            let mut out = Vec::new();
            let _ = crate::codec::encode_plain_into(&e, &mut out);
            (b'e', out)
        };
        let Some((registered, fingerprint)) = by_name(name) else {
            return error(TaskError::Failed {
                message: format!("worker {} has no remote task {name:?}", self.id),
            });
        };
        let sent = entry.text(b"g").unwrap_or("");
        if sent != fingerprint {
            return error(TaskError::Failed {
                message: format!(
                    "remote task {name:?} is {fingerprint} on worker {}, but the caller sent {sent}",
                    self.id
                ),
            });
        }
        let body = (registered.run)(entry.get(b"p").unwrap_or(&[]));
        let max = self.cluster.opts().max_payload;
        if body.len() > max {
            return error(TaskError::Unserializable {
                message: format!(
                    "the results are {} bytes, more than max_payload ({max} bytes)",
                    body.len()
                ),
            });
        }
        (b'b', body)
    }

    /// Which of the batch's callers are alive (checked once per lease).
    fn refresh_callers(&mut self, batch: &[Entry]) -> Result<(), BackendError> {
        let now = Instant::now();
        let lease = self.lease;
        self.callers
            .retain(|_, seen| now.duration_since(*seen) < lease / 2);
        let mut unknown: Vec<String> = batch
            .iter()
            .filter_map(|e| e.text(b"c"))
            .filter(|c| !self.callers.contains_key(*c))
            .map(str::to_owned)
            .collect();
        unknown.sort();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        let prefix = &self.prefix;
        let alive: Vec<bool> = self.cluster.with_conn(|c| {
            let mut p = redis::pipe();
            for caller in &unknown {
                p.cmd("EXISTS").arg(format!("{prefix}l:{caller}"));
            }
            p.query(c)
        })?;
        for (caller, alive) in unknown.into_iter().zip(alive) {
            if alive {
                self.callers.insert(caller, now);
            }
        }
        Ok(())
    }
}

/// Where a worker shows it is alive: its `w:` key, and its entry in the
/// pool's `workers` hash (with the description `info`).
struct Presence {
    alive: String,
    workers: String,
    info: String,
}

fn renew_loop(
    cluster: Cluster,
    tasks: String,
    presence: Presence,
    me: String,
    lease: Duration,
    held: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let renew = redis::Script::new(stream::RENEW);
    let lease_ms = lease.as_millis() as u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(lease / 3);
        let ids = held.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = cluster.with_conn(|c| {
            let was: Option<String> = redis::cmd("SET")
                .arg(&presence.alive)
                .arg(1)
                .arg("PX")
                .arg(lease_ms)
                .arg("GET")
                .query(c)?;
            if was.is_none() {
                // The alive key had expired (this worker was frozen or cut
                // off), so a caller may have pruned it from the workers
                // hash: publish it again, or it serves unseen and callers
                // fail with NoWorkers.
                redis::cmd("HSET")
                    .arg(&presence.workers)
                    .arg(&me)
                    .arg(&presence.info)
                    .query::<()>(c)?;
            }
            if ids.is_empty() {
                return Ok(());
            }
            let mut inv = renew.prepare_invoke();
            inv.key(&tasks).arg(GROUP).arg(&me);
            for id in &ids {
                inv.arg(id);
            }
            let lost: Vec<String> = inv.invoke(c)?;
            if !lost.is_empty() {
                held.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|id| !lost.contains(id));
            }
            Ok(())
        });
    }
}
