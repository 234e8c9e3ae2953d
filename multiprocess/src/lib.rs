//! `multiprocess`: what Python's `multiprocessing` gives Python programs, for
//! Rust — real OS processes with their own memory, and the means to make them
//! work together.
//!
//! The sections follow the tutorial this crate grows from: a [`Process`], the
//! two channels between processes ([`Queue`] and [`Pipe`]), and a [`Lock`].
//!
//! # Processes
//!
//! A binary that starts processes calls [`init`](fn@init) first in `main` (Python's
//! `if __name__ == "__main__":`): in a child, `init` runs the child's target
//! and exits, so a child never runs the rest of `main`. A target is a plain
//! `fn`; its arguments are a tuple of serde values.
//!
//! ```no_run
//! use multiprocess::Process;
//!
//! fn print_square(num: i64) {
//!     println!("Square: {}", num * num);
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let p = Process::new(print_square, (10,));
//!     p.start()?;
//!     let exitcode = p.join()?; // 0: success; 1: the target panicked
//!     assert_eq!(exitcode, 0);
//!     Ok(())
//! }
//! ```
//!
//! How children are created is the [`StartMethod`]: a fork server by default
//! (fast, and safe in a threaded program), re-execution (`Spawn`), or a plain
//! `Fork` (single-threaded programs only; the one method that runs closures).
//! In a crate's tests, [`init_before_main!`] replaces the call in `main`.
//!
//! # Queues
//!
//! A [`Queue`] carries values of one type among any number of processes, in
//! shared memory. Pass it to children by putting a clone in their arguments.
//!
//! ```no_run
//! use multiprocess::{Process, Queue};
//!
//! fn square_list(numbers: Vec<i64>, queue: Queue<i64>) {
//!     for n in numbers {
//!         queue.put(n * n).unwrap();
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let queue = Queue::new()?;
//!     let p = Process::new(square_list, (vec![1, 4, 5], queue.clone()));
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(queue.get()?, 1);
//!     assert_eq!(queue.get()?, 16);
//!     assert_eq!(queue.get()?, 25);
//!     Ok(())
//! }
//! ```
//!
//! A [`JoinableQueue`] adds `task_done()` and `join()`, so a producer can
//! wait until every item has been processed (a consumer that dies holding an
//! item does not make `join` hang); a [`SimpleQueue`] is Python's minimal
//! queue.
//!
//! # Pipes
//!
//! [`Pipe::new`] makes two connected ends, each a typed [`Connection`]: one
//! end sends `S` and receives `R`, the other the reverse. Moving an end into
//! a child's arguments closes this process's copy, so the other end sees
//! end-of-file when the child is done.
//!
//! ```no_run
//! use multiprocess::{Connection, Pipe, Process, RecvError};
//!
//! fn pipe_worker(conn: Connection<String, ()>) {
//!     conn.send("Data from pipe worker".to_string()).unwrap();
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let (parent_conn, child_conn) = Pipe::new::<(), String>()?;
//!     let p = Process::new(pipe_worker, (child_conn,));
//!     p.start()?;
//!     assert_eq!(parent_conn.recv()?, "Data from pipe worker");
//!     p.join()?;
//!     assert!(matches!(parent_conn.recv(), Err(RecvError::Disconnected)));
//!     Ok(())
//! }
//! ```
//!
//! # Listeners, clients and waiting
//!
//! Processes that did not inherit a pipe meet through a [`Listener`] and a
//! [`Client`] (TCP, a Unix socket path or a Linux abstract name), optionally
//! proving to each other that they share a key, as Python's
//! `multiprocessing.connection` does. [`wait`](fn@wait) blocks until any of several
//! connections, processes, listeners or queues is ready.
//!
//! ```
//! use std::time::Duration;
//! use multiprocess::{Client, Listener, wait};
//!
//! let listener = Listener::<String, String>::bind("127.0.0.1:0", Some(b"key"))?;
//! let address = listener.address().clone();
//! let client = std::thread::spawn(move || {
//!     let conn = Client::connect::<String, String>(address, Some(b"key")).unwrap();
//!     conn.send("hi".into()).unwrap();
//!     conn.recv().unwrap()
//! });
//! let conn = listener.accept().unwrap();
//! assert_eq!(wait(&[&conn], Some(Duration::from_secs(10)))?, [0]);
//! let hi = conn.recv().unwrap();
//! conn.send(hi + " back").unwrap();
//! assert_eq!(client.join().unwrap(), "hi back");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Locks
//!
//! A [`Lock`] gives mutual exclusion across processes; the guard releases it
//! when dropped (Python's `with lock:`). If a holder dies, the next acquirer
//! gets the lock within a second and is told
//! ([`LockGuard::previous_owner_died`]); Python's lock deadlocks there.
//!
//! ```no_run
//! use multiprocess::{Lock, Process};
//!
//! fn report(lock: Lock, n: u32) {
//!     let _guard = lock.acquire();
//!     println!("worker {n} has the console");
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let lock = Lock::new()?;
//!     let workers: Vec<Process> = (0..3)
//!         .map(|n| Process::new(report, (lock.clone(), n)))
//!         .collect();
//!     for w in &workers {
//!         w.start()?;
//!     }
//!     for w in &workers {
//!         w.join()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Synchronisation
//!
//! Beside [`Lock`], all in shared memory, passable to children, with timeout
//! forms and surviving a participant's death: [`RLock`] (reentrant per
//! thread), [`Semaphore`] and [`BoundedSemaphore`] (permits held by a process
//! that dies come back), [`Event`], [`Condition`] (over a `Lock` or `RLock`)
//! and [`Barrier`] (a participant killed while others wait breaks it for
//! them instead of leaving them waiting).
//!
//! ```no_run
//! use multiprocess::{Barrier, Event, Process};
//!
//! fn worker(start: Event, barrier: Barrier) {
//!     start.wait();
//!     let index = barrier.wait().unwrap(); // 0..3, one of each
//!     println!("arrived {index}");
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let (start, barrier) = (Event::new()?, Barrier::new(3)?);
//!     let ps: Vec<Process> = (0..3)
//!         .map(|_| Process::new(worker, (start.clone(), barrier.clone())))
//!         .collect();
//!     for p in &ps {
//!         p.start()?;
//!     }
//!     start.set();
//!     for p in &ps {
//!         p.join()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Shared state
//!
//! A [`Value`] holds one plain-data value (any [`bytemuck::Pod`] type) in
//! shared memory with its own [`RLock`]; an [`Array`] holds a fixed number of
//! them. `*v.lock() += 1` is Python's `with v.get_lock(): v.value += 1`.
//! [`RawValue`] and [`RawArray`] have no lock (racy, never undefined
//! behaviour). A [`SharedMemory`] segment is attached by name from any
//! process; a tracker unlinks it once every process holding it is gone, even
//! when they were killed.
//!
//! ```no_run
//! use multiprocess::{Array, Process, Value};
//!
//! fn work(counter: Value<i32>, squares: Array<u64>) {
//!     *counter.lock() += 1;
//!     for (i, x) in squares.lock().iter_mut().enumerate() {
//!         *x = (i * i) as u64;
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let counter = Value::<i32>::new(0)?;
//!     let squares = Array::<u64>::new(4)?;
//!     let p = Process::new(work, (counter.clone(), squares.clone()));
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(counter.get(), 1);
//!     assert_eq!(squares.to_vec(), [0, 1, 4, 9]);
//!     Ok(())
//! }
//! ```
//!
//! A [`ShareableList`] is Python's `shared_memory.ShareableList`: a
//! fixed-length list of ints, floats, bools, strs, bytes and `None`s
//! ([`Item`]) in a named segment, which a process attaches with the name
//! alone (the length and each slot's kind and capacity are in the
//! segment's header). A [`SharedMemoryManager`] unlinks every segment it
//! made at [`shutdown`](SharedMemoryManager::shutdown) or when dropped, and
//! needs no server process: its owner's segments are tracked, so killing
//! the owner leaks nothing either.
//!
//! ```no_run
//! use multiprocess::{Item, Process, ShareableList, SharedMemoryManager, items};
//!
//! fn modify(name: String) {
//!     let list = ShareableList::attach(&name).unwrap();
//!     list.set(1, list.get_int(1).unwrap() + 1).unwrap();
//!     list.set(2, "dry ice").unwrap(); // any kind that fits the slot
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let smm = SharedMemoryManager::new()?;
//!     let list = smm.shareable_list(items!["howdy", 100, -273.154, Item::None])?;
//!     let p = Process::new(modify, (list.name().to_owned(),));
//!     p.start()?;
//!     p.join()?;
//!     assert_eq!(list.to_vec()?, items!["howdy", 101, "dry ice", Item::None]);
//!     smm.shutdown()?; // unlinks the list's segment
//!     Ok(())
//! }
//! ```
//!
//! # Pools
//!
//! A [`Pool`] runs a plain `fn` over many inputs in worker processes
//! (Python's `multiprocessing.Pool`). A task that panics or returns `Err`
//! gives a [`TaskError`]; a worker killed mid-task fails only that task
//! ([`TaskError::WorkerDied`]) and is replaced, where Python's pool hangs.
//!
//! ```no_run
//! use multiprocess::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let pool = Pool::new(4)?;
//!     assert_eq!(pool.map(square, 1..=4)?, [1, 4, 9, 16]);
//!     let r = pool.apply_async(square, (12,))?;
//!     assert_eq!(r.get()?, 144);
//!     Ok(())
//! }
//! ```
//!
//! An [`Executor`] is Python's `concurrent.futures.ProcessPoolExecutor`:
//! [`submit`](Executor::submit) returns a [`TaskFuture`] to wait for, cancel,
//! or `.await`; [`as_completed`] yields futures as they finish. A worker that
//! dies abruptly *breaks* the executor, as Python's `BrokenProcessPool`:
//! every pending future fails with [`ExecutorError::BrokenPool`].
//!
//! ```no_run
//! use multiprocess::{Executor, as_completed};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     multiprocess::init();
//!     let executor = Executor::new(2)?;
//!     let futures = vec![executor.submit(square, (3,))?, executor.submit(square, (4,))?];
//!     for future in as_completed(futures) {
//!         println!("{}", future?.result()?);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Across machines
//!
//! With the `redis` feature, `multiprocess::remote` gives the same `Pool`,
//! `Executor`, `Queue`, `JoinableQueue` and `Lock` on one Redis 7 server:
//! workers are this executable started with `MULTIPROCESS_WORKER=redis://…`
//! on any machine, tasks are functions registered with `remote_task!`, and a
//! worker's death means a rerun rather than a lost result (see the module's
//! page for what differs from the local types).
//!
//! # Errors
//!
//! Every blocking call has a timeout form and notices a dead peer; errors
//! are one type per operation, named like Python's exceptions where they mean
//! the same (`Empty`, `Full`, `Timeout`, `Disconnected` for `EOFError`), and a
//! failed send or put hands the value back (`into_inner()`).
#![deny(unsafe_op_in_unsafe_fn)]
// Examples keep `fn main` where they show that `init()` goes first in it.
#![allow(clippy::needless_doctest_main)]

#[cfg(feature = "redis")]
mod backend;
mod codec;
mod connection;
mod deadline;
mod init;
mod manager;
mod pool;
mod process;
mod queue;
#[cfg(feature = "redis")]
pub mod remote;
mod shared;
mod sync;
mod sys;
mod wait;

/// Entry points for the fuzz targets in `fuzz/`; not a public API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

pub use codec::{DecodeError, EncodeError};
pub use connection::{
    AcceptError, Address, AuthenticationError, Client, ConnectError, Connection,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, Listener, Pipe, RecvError, RecvIntoError,
    RecvTimeoutError, SendError, TryRecvError,
};
pub use init::init;
pub use manager::{
    DictProxy, EventProxy, ListProxy, LockProxy, LockProxyGuard, Manager, ManagerBuilder,
    ManagerError, QueueProxy, ValueProxy,
};
/// `#[derive(TaskReturn)]`: lets a pool or executor task return your own
/// serde type (see the [`TaskReturn`](trait@TaskReturn) trait).
pub use multiprocess_macros::TaskReturn;
/// serde, for the code `#[derive(TaskReturn)]` writes.
#[doc(hidden)]
pub use serde as __serde;

#[cfg(feature = "redis")]
#[doc(hidden)]
pub use linkme as __linkme;
pub use pool::{
    AsCompleted, AsyncResult, Callbacks, Chunked, DoneAndNotDone, Executor, ExecutorBuilder,
    ExecutorError, ExecutorMap, ImapIter, MapResults, Pool, PoolBuilder, PoolError, ReturnWhen,
    Task, TaskError, TaskFuture, TaskReturn, as_completed, wait_futures,
};
pub use process::{
    Context, ParentProcess, Process, ProcessBuilder, ProcessError, ProcessInfo, StartError,
    StartMethod, Target, TargetResult, active_children, cpu_count, current_process,
    get_all_start_methods, get_context, get_start_method, parent_process, set_start_method,
};
pub use queue::{
    DEFAULT_CAPACITY, GetError, GetTimeoutError, JoinTimeoutError, JoinableQueue, PutError,
    PutTimeoutError, Queue, QueueBuilder, SimpleQueue, TaskDoneError, TryGetError, TryPutError,
};
pub use shared::{
    Array, ArrayGuard, IndexError, LengthError, RawArray, RawValue, Value, ValueGuard,
};
pub use shared::{
    Item, ItemKind, ShareableList, ShareableListError, SharedMemory, SharedMemoryError,
    SharedMemoryManager,
};
pub use sync::{
    BARRIER_MAX_PARTIES, Barrier, BarrierBuilder, BarrierTimeoutError, BoundedSemaphore,
    BrokenBarrierError, CONDITION_SLOTS, Condition, ConditionGuard, Event, Lock, LockGuard,
    OverReleaseError, RLock, RLockGuard, Semaphore, SemaphoreGuard,
};
pub use wait::{Waitable, wait};
