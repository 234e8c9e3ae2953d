//! The pool's machinery in the parent: worker slots, dispatch windows, the
//! result thread and the death monitor. The design is described at the top
//! of `pool/mod.rs`.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::{PoolError, TaskError};
use super::job::{BrokenWhy, Cancel, Job};
use super::lock::lock;
use super::wire::{
    InitCall, PassFd, Payload, Progress, RawBytes, ResultMsg, ResultView, TaskMsg, TaskView,
    WorkerArgs, put_with_tail,
};
use super::worker::worker_main;
use crate::process::{Process, ProcessError, StartMethod};
use crate::queue::{Queue, QueueBuilder};

/// Ring size of the results queue; larger results stream through. Small,
/// because a ring's pages cost a fault each on their first pass: a ring of
/// the queue's default 16 MiB slowed the first twenty 100k-item maps.
const RESULT_RING: usize = 1 << 20;
/// Ring size of each worker's task queue; larger chunks stream through.
const TASK_RING: usize = 1 << 20;
/// How much queued work (in chunk run time) the window aims to keep ahead
/// of each worker.
const WINDOW_TARGET_NANOS: u64 = 500_000;
/// The most chunks queued ahead of one worker.
const MAX_WINDOW: usize = 64;
/// A worker that has shown no progress for this long is not given more
/// work, and its queued chunks may be taken back for an idle worker.
const STALL: Duration = Duration::from_millis(1);
/// How many delivered payload buffers the pool keeps for reuse, and the
/// largest it keeps.
const SPARE_BUFFERS: usize = 16;
const SPARE_MAX: usize = 4 << 20;
/// How long a non-blocking dispatch may wait for a worker queue's put lock.
const TRY_LOCK: Duration = Duration::from_millis(2);
/// How often the monitor rereads the worker list and the stop flag.
const MONITOR_TICK: Duration = Duration::from_millis(100);

/// The initializer, encoded once.
pub(crate) struct InitSpec {
    pub entry: i64,
    pub exe: (u64, u64),
    pub args: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

pub(crate) struct Config {
    pub processes: usize,
    pub max_tasks: Option<u64>,
    pub method: StartMethod,
    pub init: Option<InitSpec>,
    pub retries: u32,
    pub window: Option<usize>,
    /// The executor's rule (Python's `BrokenProcessPool`): a worker that
    /// dies abruptly breaks the pool instead of being replaced.
    pub break_on_death: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Running,
    Closed,
    Terminated,
    Broken(BrokenWhy),
}

/// A run of calls dispatched as one task message.
pub(crate) struct Chunk {
    pub seq: u64,
    pub entry: i64,
    /// The input position of the first call.
    pub first: usize,
    pub count: u32,
    pub payload: Payload,
    /// Calls already resolved by a worker's death; sorted.
    pub skip: Vec<u32>,
    /// How often each call killed its worker: `(position, deaths)`.
    pub deaths: Vec<(u32, u32)>,
    pub job: Arc<dyn Job>,
}

struct Worker {
    id: u64,
    process: Arc<Process>,
    pid: u32,
    tasks: Queue<TaskMsg>,
    progress: Progress,
    /// Chunks sent to this worker whose results have not been processed,
    /// in dispatch order.
    inflight: VecDeque<Chunk>,
    /// Chunks this worker may still be given (`maxtasksperchild`).
    budget: Option<u64>,
    /// When it last finished a chunk (or was given one while idle).
    last_progress: Instant,
}

pub(crate) struct State {
    pub phase: Phase,
    workers: Vec<Worker>,
    /// Workers that have run their `maxtasksperchild` budget and are
    /// exiting on their own: already replaced, kept until their exit is
    /// reported (or the pool stops).
    retiring: Vec<Worker>,
    pending: VecDeque<Chunk>,
    next_seq: u64,
    next_worker: u64,
}

pub(crate) struct Core {
    pub config: Config,
    pub state: Mutex<State>,
    results: Queue<ResultMsg>,
    /// Workers the monitor watches: `(id, process)`.
    watch: Mutex<Vec<(u64, Arc<Process>)>>,
    stop_monitor: AtomicBool,
    /// Payload buffers of delivered chunks, for the arguments of the next
    /// chunks: a fresh large buffer costs a page fault per 4 KiB on first
    /// touch, about as much as encoding into it.
    spare: Mutex<Vec<Vec<u8>>>,
    /// A pipe whose read end the monitor polls beside the pidfds: a byte
    /// written at shutdown wakes it at once, so the pool can join it, and
    /// one written when a worker starts makes it watch that worker now
    /// rather than at its next tick.
    monitor_wake: (OwnedFd, OwnedFd),
    /// Chunks submitted and not yet delivered (or cancelled).
    unfinished: AtomicUsize,
    idle_lock: Mutex<()>,
    idle: Condvar,
    /// Moving average of a chunk's run time in a worker, in nanoseconds.
    avg_nanos: AtomicU64,
    /// A worker idles while another holds queued chunks that are not yet
    /// stalled: the result thread wakes after `STALL` to look again.
    recheck: AtomicBool,
}

impl Core {
    pub(crate) fn new(config: Config) -> Result<Arc<Core>, PoolError> {
        Ok(Arc::new(Core {
            config,
            state: Mutex::new(State {
                phase: Phase::Running,
                workers: Vec::new(),
                retiring: Vec::new(),
                pending: VecDeque::new(),
                next_seq: 0,
                next_worker: 0,
            }),
            results: QueueBuilder::new().capacity_bytes(RESULT_RING).build()?,
            watch: Mutex::new(Vec::new()),
            stop_monitor: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
            monitor_wake: crate::sys::fd::wake_pipe()?,
            unfinished: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            avg_nanos: AtomicU64::new(0),
            recheck: AtomicBool::new(false),
        }))
    }

    /// Starts the initial workers; on failure, kills those already started.
    /// Workers that cannot fit `RLIMIT_NOFILE` are `TooManyWorkers`: found
    /// up front from a lower bound of their cost, or when a start fails
    /// with `EMFILE` (or near the limit, where the cause may be buried in
    /// another error's text).
    pub(crate) fn start_workers(&self) -> Result<(), PoolError> {
        let processes = self.config.processes;
        let per_worker = fds_per_worker(self.config.method);
        let open = crate::sys::fd::open_count().ok();
        let (soft, _) = crate::sys::fd::open_limit();
        if let (Some(open), Some(limit)) = (open, soft) {
            let needed = open + per_worker * processes as u64;
            if needed > limit {
                return Err(PoolError::TooManyWorkers {
                    processes,
                    needed,
                    limit,
                });
            }
        }
        let mut st = lock(&self.state);
        for _ in 0..processes {
            match self.start_worker(&mut st) {
                Ok(w) => st.workers.push(w),
                Err(e) => {
                    let workers = std::mem::take(&mut st.workers);
                    drop(st);
                    // Counted while the started workers still hold theirs.
                    let e = match (open, soft) {
                        (Some(open), Some(limit)) => {
                            limit_error(e, processes, workers.len(), open, per_worker, limit)
                        }
                        _ => e,
                    };
                    kill_all(&workers);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn start_worker(&self, st: &mut State) -> Result<Worker, PoolError> {
        let id = st.next_worker;
        st.next_worker += 1;
        let tasks: Queue<TaskMsg> = QueueBuilder::new().capacity_bytes(TASK_RING).build()?;
        let progress = Progress::new()?;
        let init = match &self.config.init {
            None => None,
            Some(spec) => Some(InitCall {
                entry: spec.entry,
                exe: spec.exe,
                args: spec.args.clone(),
                fds: spec
                    .fds
                    .iter()
                    .map(|fd| fd.try_clone().map(PassFd))
                    .collect::<Result<_, _>>()?,
            }),
        };
        let args = WorkerArgs {
            id,
            tasks: tasks.clone(),
            results: self.results.clone(),
            progress: progress.clone(),
            init,
            max_tasks: self.config.max_tasks,
        };
        let process = Process::builder()
            .name(format!("PoolWorker-{}", id + 1))
            .daemon(true)
            .start_method(self.config.method)
            .target(worker_main, (args,));
        process.start()?;
        // The worker has its own copies of the two regions now (the start
        // dropped the arguments), and a replacement gets fresh ones: close
        // ours and keep the mappings, so a worker costs the parent only the
        // descriptors of its `Process` (its pidfd, and with the fork server
        // the socket its exit code comes on) and `Pool::new(cpu_count())`
        // fits `ulimit -n 1024` on a 256-CPU host. Nothing per task changes.
        let (mut tasks, mut progress) = (tasks, progress);
        tasks.release_descriptor();
        progress.release_descriptor();
        let pid = process.pid().unwrap_or(0);
        let process = Arc::new(process);
        lock(&self.watch).push((id, process.clone()));
        crate::sys::fd::poke(&self.monitor_wake.1);
        Ok(Worker {
            id,
            process,
            pid,
            tasks,
            progress,
            inflight: VecDeque::new(),
            budget: self.config.max_tasks,
            last_progress: Instant::now(),
        })
    }

    pub(crate) fn check_open(st: &State) -> Result<(), PoolError> {
        match &st.phase {
            Phase::Running => Ok(()),
            Phase::Closed => Err(PoolError::Closed),
            Phase::Terminated => Err(PoolError::Terminated),
            Phase::Broken(b) => Err(PoolError::Broken(b.message.clone())),
        }
    }

    /// Queues chunks for dispatch (numbering them) and dispatches what the
    /// windows allow. Returns the first chunk's number; the others follow
    /// it consecutively.
    pub(crate) fn submit(&self, chunks: Vec<Chunk>) -> Result<u64, PoolError> {
        let mut st = lock(&self.state);
        Self::check_open(&st)?;
        let first = st.next_seq;
        self.unfinished.fetch_add(chunks.len(), Ordering::AcqRel);
        for mut chunk in chunks {
            chunk.seq = st.next_seq;
            st.next_seq += 1;
            st.pending.push_back(chunk);
        }
        self.pump(&mut st);
        Ok(first)
    }

    /// Takes the chunks that `which` selects out of the pending queue
    /// (they have not been given to a worker, so none of their calls has
    /// started) and cancels their jobs with `why`. Returns how many.
    pub(crate) fn cancel_pending(&self, which: impl Fn(&Chunk) -> bool, why: &Cancel) -> usize {
        let taken: Vec<Chunk> = {
            let mut st = lock(&self.state);
            let (taken, kept): (Vec<Chunk>, Vec<Chunk>) =
                st.pending.drain(..).partition(|c| which(c));
            st.pending = kept.into();
            taken
        };
        let n = taken.len();
        for chunk in taken {
            guarded(|| chunk.job.cancel(why));
        }
        self.finish_chunks(n);
        n
    }

    /// Whether chunk `seq` is still waiting for a worker (not yet handed
    /// to one, or taken back from a stalled one).
    pub(crate) fn is_pending(&self, seq: u64) -> bool {
        lock(&self.state).pending.iter().any(|c| c.seq == seq)
    }

    /// Why the pool is broken, if it is.
    pub(crate) fn broken_why(&self) -> Option<BrokenWhy> {
        match &lock(&self.state).phase {
            Phase::Broken(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// How many chunks to keep queued per worker: enough to cover about
    /// `WINDOW_TARGET_NANOS` of work, so a busy worker never waits for the
    /// pool, yet long tasks are not stuck behind each other in one worker
    /// while another idles (one at a time once a chunk takes ≥ 0.5 ms).
    fn window(&self) -> usize {
        if let Some(w) = self.config.window {
            return w;
        }
        match self.avg_nanos.load(Ordering::Relaxed) {
            0 => 1,
            avg => ((WINDOW_TARGET_NANOS / avg) as usize).clamp(1, MAX_WINDOW),
        }
    }

    fn record_time(&self, nanos: u64) {
        let nanos = nanos.max(1);
        let old = self.avg_nanos.load(Ordering::Relaxed);
        let new = if old == 0 {
            nanos
        } else {
            (old / 8 * 7).saturating_add(nanos / 8).max(1)
        };
        self.avg_nanos.store(new, Ordering::Relaxed);
    }

    /// Moves pending chunks into worker queues while windows have room,
    /// each to the worker with the fewest chunks in flight; then, if a
    /// worker idles, takes back the chunks queued behind a stalled one.
    fn pump(&self, st: &mut State) {
        if !matches!(st.phase, Phase::Running | Phase::Closed) {
            return;
        }
        let now = Instant::now();
        self.dispatch(st, now);
        if st.pending.is_empty() && self.steal(st, now) {
            self.dispatch(st, now);
        }
    }

    fn dispatch(&self, st: &mut State, now: Instant) {
        let window = self.window();
        while !st.pending.is_empty() {
            let Some(w) = st
                .workers
                .iter_mut()
                .filter(|w| {
                    w.budget != Some(0)
                        && (w.inflight.is_empty()
                            || (w.inflight.len() < window
                                && now.saturating_duration_since(w.last_progress) < STALL))
                })
                .min_by_key(|w| w.inflight.len())
            else {
                return;
            };
            let chunk = st.pending.pop_front().expect("not empty");
            let msg = TaskView::Run {
                seq: chunk.seq,
                entry: chunk.entry,
                count: chunk.count,
                skip: chunk.skip.clone(),
                payload: RawBytes(&[]),
            };
            if w.inflight.is_empty() {
                // The worker's queue is empty and it is (or will soon be)
                // reading: a large chunk streams through.
                w.last_progress = now;
                put_while_alive(w, |d| put_with_tail(&w.tasks, &msg, &chunk.payload.0, d, d));
            } else {
                let now = Some(Instant::now());
                if !put_with_tail(
                    &w.tasks,
                    &msg,
                    &chunk.payload.0,
                    now.map(|t| t + TRY_LOCK),
                    now,
                ) {
                    // No room in this worker's ring now: try again when
                    // one of its results comes back.
                    st.pending.push_front(chunk);
                    return;
                }
            }
            if let Some(b) = &mut w.budget {
                *b -= 1;
            }
            w.inflight.push_back(chunk);
        }
    }

    /// If a worker idles, takes the not-yet-started chunks out of the queue
    /// of every worker that has made no progress for `STALL` (it is running
    /// a long task) and puts them back in front of the pending queue.
    /// Chunks the worker takes first are simply not found. Returns whether
    /// anything was taken back.
    fn steal(&self, st: &mut State, now: Instant) -> bool {
        let idle = st
            .workers
            .iter()
            .any(|w| w.inflight.is_empty() && w.budget != Some(0));
        let mut recheck = false;
        let mut stolen = Vec::new();
        if idle {
            for w in st.workers.iter_mut().filter(|w| w.inflight.len() >= 2) {
                if now.saturating_duration_since(w.last_progress) < STALL {
                    recheck = true;
                    continue;
                }
                while let Ok(msg) = w.tasks.try_get() {
                    let TaskMsg::Run { seq, .. } = msg else {
                        continue;
                    };
                    if let Some(pos) = w.inflight.iter().position(|c| c.seq == seq) {
                        stolen.extend(w.inflight.remove(pos));
                        if let Some(b) = &mut w.budget {
                            *b += 1;
                        }
                    }
                }
            }
        }
        self.recheck.store(recheck, Ordering::Relaxed);
        stolen.sort_by_key(|c| c.seq);
        let any = !stolen.is_empty();
        for chunk in stolen.into_iter().rev() {
            st.pending.push_front(chunk);
        }
        any
    }

    /// An empty buffer for a chunk's arguments: a spare one if any.
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        lock(&self.spare).pop().unwrap_or_default()
    }

    /// Keeps a delivered chunk's payload buffer for [`take_buffer`] (a few,
    /// and none larger than `SPARE_MAX`).
    fn recycle(&self, payload: Payload) {
        if let Ok(mut buf) = Arc::try_unwrap(payload.0)
            && buf.capacity() <= SPARE_MAX
        {
            buf.clear();
            let mut spare = lock(&self.spare);
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
            }
        }
    }

    fn finish_chunks(&self, n: usize) {
        if n > 0 && self.unfinished.fetch_sub(n, Ordering::AcqRel) == n {
            let _guard = lock(&self.idle_lock);
            self.idle.notify_all();
        }
    }

    /// Waits until every submitted chunk is delivered or cancelled.
    pub(crate) fn wait_idle(&self) {
        let mut guard = lock(&self.idle_lock);
        while self.unfinished.load(Ordering::Acquire) > 0 {
            guard = self
                .idle
                .wait_timeout(guard, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The result thread: processes results and worker exits in queue order.
    pub(crate) fn result_loop(self: Arc<Self>) {
        // The read buffer, kept across results; a result's body is decoded
        // from it in place.
        let mut buf = Vec::new();
        loop {
            if buf.capacity() > 4 << 20 {
                buf = Vec::new();
            }
            let recheck = self.recheck.load(Ordering::Relaxed);
            let deadline = recheck.then(|| Instant::now() + STALL);
            if !self.results.get_encoded(&mut buf, deadline) {
                self.pump(&mut lock(&self.state));
                continue;
            }
            let msg = match postcard::from_bytes::<ResultView<'_>>(&buf) {
                Ok(msg) => msg,
                Err(e) => {
                    eprintln!("multiprocess: pool cannot read a result: {e}");
                    continue;
                }
            };
            match msg {
                ResultView::Shutdown => return,
                ResultView::Done {
                    worker,
                    seq,
                    nanos,
                    body,
                } => {
                    self.record_time(nanos);
                    let (chunk, cannot_replace) = {
                        let mut st = lock(&self.state);
                        let mut cannot_replace = None;
                        let pos = st.workers.iter().position(|w| w.id == worker);
                        let chunk = pos.and_then(|i| {
                            let w = &mut st.workers[i];
                            w.last_progress = Instant::now();
                            let at = w.inflight.iter().position(|c| c.seq == seq)?;
                            w.inflight.remove(at)
                        });
                        if let Some(i) = pos
                            && st.workers[i].budget == Some(0)
                            && st.workers[i].inflight.is_empty()
                        {
                            cannot_replace = self.retire(&mut st, i, usize::from(chunk.is_some()));
                        }
                        self.pump(&mut st);
                        (chunk, cannot_replace)
                    };
                    if let Some(chunk) = chunk {
                        guarded(|| chunk.job.deliver(chunk.first, chunk.count, body.0));
                        self.finish_chunks(1);
                        self.recycle(chunk.payload);
                    }
                    if let Some(e) = cannot_replace {
                        self.break_pool(BrokenWhy {
                            message: format!("cannot replace a retired worker: {e}"),
                            pid: None,
                            signal: None,
                        });
                    }
                }
                ResultView::Exited { worker, code } => self.worker_exited(worker, code),
                ResultView::InitFailed { message, .. } => self.break_pool(BrokenWhy {
                    message: format!("a worker's initializer failed: {message}"),
                    pid: None,
                    signal: None,
                }),
            }
        }
    }

    /// Replaces a worker that has run its whole `maxtasksperchild` budget
    /// (its last result has just been processed, so it is exiting on its
    /// own), without waiting for its exit: the replacement starts while the
    /// old worker exits. `finishing` chunks are delivered but still counted
    /// as unfinished. Returns the error if no replacement could start and
    /// no worker is left.
    fn retire(&self, st: &mut State, pos: usize, finishing: usize) -> Option<PoolError> {
        let worker = st.workers.remove(pos);
        st.retiring.push(worker);
        let wanted = self.wants_workers(st, finishing);
        self.replace_worker(st, wanted)
    }

    /// Whether a worker that left should be replaced: always while the pool
    /// runs, and after `close` while work beyond the `finished` chunks is
    /// outstanding.
    fn wants_workers(&self, st: &State, finished: usize) -> bool {
        match st.phase {
            Phase::Running => true,
            Phase::Closed => self.unfinished.load(Ordering::Acquire) > finished,
            _ => false,
        }
    }

    /// Starts a worker in place of one that left, if `wanted` and the pool
    /// is short of workers. Returns the error if it could not start and no
    /// worker is left (the pool cannot go on).
    fn replace_worker(&self, st: &mut State, wanted: bool) -> Option<PoolError> {
        if !wanted || st.workers.len() >= self.config.processes {
            return None;
        }
        match self.start_worker(st) {
            Ok(w) => {
                st.workers.push(w);
                None
            }
            Err(e) if st.workers.is_empty() => Some(e),
            Err(e) => {
                eprintln!("multiprocess: cannot replace a pool worker: {e}");
                None
            }
        }
    }

    /// Accounts for a worker that exited: the call it was running (per its
    /// progress words) fails with `WorkerDied` (or is retried), the rest of
    /// its window goes back to the front of the pending queue, and a
    /// replacement starts.
    fn worker_exited(&self, id: u64, code: Option<i32>) {
        let mut failed: Vec<(Arc<dyn Job>, usize, TaskError)> = Vec::new();
        let mut finished = 0;
        {
            let mut st = lock(&self.state);
            let signal = code.filter(|c| *c < 0).map(|c| -c);
            let exitcode = code.filter(|c| *c >= 0);
            let Some(pos) = st.workers.iter().position(|w| w.id == id) else {
                // A retired worker (already replaced): only an abnormal exit
                // matters, and only to an executor.
                let Some(r) = st.retiring.iter().position(|w| w.id == id) else {
                    return;
                };
                let pid = st.retiring.remove(r).pid;
                if self.config.break_on_death
                    && code != Some(0)
                    && matches!(st.phase, Phase::Running | Phase::Closed)
                {
                    drop(st);
                    self.break_pool(BrokenWhy {
                        message: death_text(pid, signal, exitcode),
                        pid: Some(pid),
                        signal,
                    });
                }
                return;
            };
            let abrupt = code != Some(0) || !st.workers[pos].inflight.is_empty();
            if self.config.break_on_death
                && abrupt
                && matches!(st.phase, Phase::Running | Phase::Closed)
            {
                let pid = st.workers[pos].pid;
                drop(st);
                self.break_pool(BrokenWhy {
                    message: death_text(pid, signal, exitcode),
                    pid: Some(pid),
                    signal,
                });
                return;
            }
            let worker = st.workers.remove(pos);
            let (seq, index) = worker.progress.read();
            let mut requeue = Vec::new();
            for mut chunk in worker.inflight {
                if chunk.seq == seq && index < u64::from(chunk.count) {
                    let i = index as u32;
                    let deaths = match chunk.deaths.iter_mut().find(|(j, _)| *j == i) {
                        Some((_, n)) => {
                            *n += 1;
                            *n
                        }
                        None => {
                            chunk.deaths.push((i, 1));
                            1
                        }
                    };
                    if deaths > self.config.retries {
                        let at = chunk.skip.partition_point(|&j| j < i);
                        chunk.skip.insert(at, i);
                        failed.push((
                            chunk.job.clone(),
                            chunk.first + i as usize,
                            TaskError::WorkerDied {
                                pid: worker.pid,
                                signal,
                                exitcode,
                            },
                        ));
                        if chunk.skip.len() == chunk.count as usize {
                            finished += 1;
                            continue;
                        }
                    }
                }
                requeue.push(chunk);
            }
            for chunk in requeue.into_iter().rev() {
                st.pending.push_front(chunk);
            }
            let wanted = self.wants_workers(&st, finished);
            if let Some(e) = self.replace_worker(&mut st, wanted) {
                drop(st);
                for (job, index, error) in failed {
                    job.fail(index, error);
                }
                self.finish_chunks(finished);
                self.break_pool(BrokenWhy {
                    message: format!("cannot replace a dead worker: {e}"),
                    pid: None,
                    signal: None,
                });
                return;
            }
            self.pump(&mut st);
        }
        for (job, index, error) in failed {
            guarded(|| job.fail(index, error));
        }
        self.finish_chunks(finished);
    }

    /// Takes every worker and outstanding chunk out of the pool and cancels
    /// the chunks' jobs; returns the workers.
    fn take_all(&self, st: &mut State, why: &Cancel) -> Vec<Arc<Process>> {
        let mut chunks: Vec<Chunk> = st.pending.drain(..).collect();
        let mut processes = Vec::new();
        for w in st.workers.drain(..) {
            chunks.extend(w.inflight);
            processes.push(w.process);
        }
        processes.extend(st.retiring.drain(..).map(|w| w.process));
        let n = chunks.len();
        for chunk in chunks {
            guarded(|| chunk.job.cancel(why));
        }
        self.finish_chunks(n);
        processes
    }

    fn break_pool(&self, why: BrokenWhy) {
        let workers = {
            let mut st = lock(&self.state);
            if !matches!(st.phase, Phase::Running | Phase::Closed) {
                return;
            }
            st.phase = Phase::Broken(why.clone());
            self.take_all(&mut st, &Cancel::Broken(why))
        };
        kill_all(&workers);
    }

    /// Kills the workers and cancels outstanding work. Returns false if the
    /// pool was already terminated.
    pub(crate) fn terminate(&self) -> bool {
        self.terminate_with(true)
    }

    /// [`terminate`](Self::terminate), stopping the workers with SIGKILL
    /// (`hard`) or SIGTERM (then SIGKILL for one still there after 5 s).
    pub(crate) fn terminate_with(&self, hard: bool) -> bool {
        let workers = {
            let mut st = lock(&self.state);
            if matches!(st.phase, Phase::Terminated) {
                return false;
            }
            st.phase = Phase::Terminated;
            self.take_all(&mut st, &Cancel::Terminated)
        };
        if hard {
            kill_all(&workers);
        } else {
            term_all(&workers);
        }
        self.stop_threads();
        true
    }

    /// After `close`: waits for all work, then stops the workers (and waits
    /// for retired ones to finish exiting).
    pub(crate) fn join_closed(&self) {
        self.wait_idle();
        let (workers, retiring): (Vec<Worker>, Vec<Worker>) = {
            let mut st = lock(&self.state);
            if matches!(st.phase, Phase::Terminated) {
                return;
            }
            st.phase = Phase::Terminated;
            (
                st.workers.drain(..).collect(),
                st.retiring.drain(..).collect(),
            )
        };
        for w in &workers {
            put_while_alive(w, |_| {
                w.tasks
                    .put_timeout(TaskMsg::Stop, Duration::from_millis(50))
                    .is_ok()
            });
        }
        for w in workers.iter().chain(&retiring) {
            if !matches!(w.process.join_timeout(Duration::from_secs(10)), Ok(Some(_))) {
                let _ = w.process.kill();
                let _ = w.process.join_timeout(Duration::from_secs(5));
            }
        }
        self.stop_threads();
    }

    fn stop_threads(&self) {
        self.stop_monitor.store(true, Ordering::SeqCst);
        crate::sys::fd::poke(&self.monitor_wake.1);
        let _ = self.results.put(ResultMsg::Shutdown);
    }

    /// The monitor thread: waits on the workers' pidfds and reports each
    /// exit through the results queue, behind every result the worker put.
    pub(crate) fn monitor_loop(self: Arc<Self>) {
        while !self.stop_monitor.load(Ordering::SeqCst) {
            // A worker has no sentinel once its exit was already collected
            // (every watched worker was started): anything that asks the
            // `Process` (`is_alive`, `active_children()`...) may collect it
            // first. Such a worker is reported at once, not left unwatched.
            let watched: Vec<(u64, Arc<Process>, Option<Arc<OwnedFd>>)> = lock(&self.watch)
                .iter()
                .map(|(id, p)| (*id, p.clone(), p.sentinel()))
                .collect();
            let i = match watched.iter().position(|(_, _, fd)| fd.is_none()) {
                Some(i) => i,
                None => {
                    let mut fds: Vec<BorrowedFd<'_>> = watched
                        .iter()
                        .filter_map(|(_, _, fd)| fd.as_ref().map(|fd| fd.as_fd()))
                        .collect();
                    fds.push(self.monitor_wake.0.as_fd());
                    let ready = crate::sys::fd::wait_any_readable(
                        &fds,
                        Some(Instant::now() + MONITOR_TICK),
                    );
                    match ready {
                        Ok(Some(i)) if i < watched.len() => i,
                        // The wake pipe (shutdown, or a worker started):
                        // look again.
                        Ok(Some(_)) => {
                            crate::sys::fd::drain(&self.monitor_wake.0);
                            continue;
                        }
                        // The tick: look again.
                        Ok(None) => continue,
                        Err(_) => {
                            std::thread::sleep(MONITOR_TICK);
                            continue;
                        }
                    }
                }
            };
            let (id, process, _) = &watched[i];
            let code = match process.join_timeout(Duration::from_secs(5)) {
                Ok(Some(code)) => Some(code),
                Ok(None) => continue,
                // Lost with its fork server: a worker is a daemon, which the
                // kernel kills with its parent-death signal (SIGKILL) when the
                // server dies, so that is what ended it (a server that lives
                // reports the real status; it ignores SIGINT, SIGHUP and
                // SIGTERM, so a signal sent to the process group is reported
                // as the worker's own).
                Err(ProcessError::StatusLost) => Some(-libc::SIGKILL),
                Err(_) => None,
            };
            lock(&self.watch).retain(|(w, _)| w != id);
            if self.stop_monitor.load(Ordering::SeqCst) {
                return;
            }
            let _ = self.results.put(ResultMsg::Exited { worker: *id, code });
        }
    }

    /// The current worker pids (for `Pool::worker_pids`).
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.state).workers.iter().map(|w| w.pid).collect()
    }
}

/// The fewest descriptors a running worker costs the pool's process: its
/// pidfd, whatever the start method (the fork server reports exit codes on
/// one channel for all its children; the worker's queue regions'
/// descriptors are closed once it has them; see `start_worker`).
fn fds_per_worker(_method: StartMethod) -> u64 {
    1
}

/// `e`, a failure to start worker `started + 1` of `processes`, as
/// `TooManyWorkers` if the open-file limit caused it: `EMFILE` somewhere in
/// its chain, or the process within a few descriptors of `limit` (a start
/// takes a handful at once). The figure is what the started workers cost
/// each (at least `per_worker`) times `processes`, plus the `open` before.
fn limit_error(
    e: PoolError,
    processes: usize,
    started: usize,
    open: u64,
    per_worker: u64,
    limit: u64,
) -> PoolError {
    let now = crate::sys::fd::open_count().unwrap_or(0);
    if !(has_emfile(&e) || now + 16 >= limit) {
        return e;
    }
    let measured = match started {
        0 => 0,
        n => now.saturating_sub(open) / n as u64,
    };
    PoolError::TooManyWorkers {
        processes,
        needed: open + measured.max(per_worker) * processes as u64,
        limit,
    }
}

/// Whether `EMFILE` (this process's open-file limit) is in `e`'s chain.
fn has_emfile(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::EMFILE)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// What broke an executor: a worker's abrupt death, in words.
fn death_text(pid: u32, signal: Option<i32>, exitcode: Option<i32>) -> String {
    match (signal, exitcode) {
        (Some(sig), _) => format!(
            "a worker process (pid {pid}) was killed by signal {sig}{}",
            signal_name(sig)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        (None, Some(code)) => format!("a worker process (pid {pid}) exited with code {code}"),
        (None, None) => format!("a worker process (pid {pid}) terminated abruptly"),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Puts a message on a worker's queue with `put` (given a deadline; false
/// if it passed), giving up if the worker dies meanwhile.
fn put_while_alive(w: &Worker, mut put: impl FnMut(Option<Instant>) -> bool) {
    loop {
        let deadline = Some(Instant::now() + Duration::from_millis(50));
        if put(deadline) || !w.process.is_alive() {
            return;
        }
    }
}

/// Kills workers and reaps them (bounded).
fn kill_all(workers: &[impl AsRef<Process>]) {
    for w in workers {
        let _ = w.as_ref().kill();
    }
    for w in workers {
        let _ = w.as_ref().join_timeout(Duration::from_secs(5));
    }
}

/// SIGTERM to every worker, then SIGKILL to any still there after 5 s.
fn term_all(workers: &[impl AsRef<Process>]) {
    for w in workers {
        let _ = w.as_ref().terminate();
    }
    for w in workers {
        if !matches!(w.as_ref().join_timeout(Duration::from_secs(5)), Ok(Some(_))) {
            let _ = w.as_ref().kill();
            let _ = w.as_ref().join_timeout(Duration::from_secs(5));
        }
    }
}

impl AsRef<Process> for Worker {
    fn as_ref(&self) -> &Process {
        &self.process
    }
}

/// Runs user-facing delivery (which may run callbacks) so that a panicking
/// callback does not take the result thread down.
fn guarded(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("multiprocess: a pool callback panicked");
    }
}

impl super::job::Backlog for Core {
    fn cancel_seq(&self, seq: u64, why: &Cancel) {
        self.cancel_pending(|c| c.seq == seq, why);
    }

    fn cancel_job(&self, job: usize, why: &Cancel) {
        self.cancel_pending(|c| super::job::job_id(&c.job) == job, why);
    }

    fn is_pending(&self, seq: u64) -> bool {
        Core::is_pending(self, seq)
    }

    fn broken_why(&self) -> Option<BrokenWhy> {
        Core::broken_why(self)
    }
}
