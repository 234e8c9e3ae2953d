//! Who is alive: process identities that the kernel releases on death, so
//! neither pid reuse nor pid namespaces can fool a liveness probe.
//!
//! Shared words (a lock's owner, a semaphore's holders, a queue's writer…)
//! record an *id*, not a pid. A pid is the wrong name for an owner: another
//! process may get the same number once the owner is gone (pid reuse), and a
//! process in another pid namespace sees a different number, or none, for
//! the same process.
//!
//! # Domains and ids
//! A *domain* is a small sealed memfd shared by a process tree (created by
//! its first process that needs one, inherited by every child it starts)
//! and by every process that received a handle from the tree (the handle
//! codec sends the sender's domains beside its descriptors). A process that
//! takes an id `n` (1 ≤ n < 2^22, so it fits a lock word's owner field)
//! opens its *own* open file description of every domain it knows (through
//! `/proc/self/fd`) and holds an OFD write lock (`F_OFD_SETLK`) on byte `n`
//! of it. The kernel drops that lock when the last descriptor of the
//! description closes: when the process exits or is killed, before it is
//! even a zombie, and whatever pid namespace it lives in. So:
//!
//! - [`is_alive`]`(n)` asks every known domain (`F_OFD_GETLK`) whether
//!   anyone holds byte `n`: a held byte is a live process; no holder
//!   anywhere means the process that took `n` is gone.
//! - Ids come from a counter in the domain (starting at a random value), so
//!   an id is handed out again only after 2^22 others; and never while its
//!   byte is still held (the lock is taken before the id is used).
//! - A forked child shares its parent's descriptions, so a `pthread_atfork`
//!   child handler closes its copies of the locked ones and clears the id;
//!   the child takes its own id on first use. (A child made by a raw
//!   `clone` that bypasses libc's `fork` would keep its parent alive until
//!   it exits; every start method of this crate goes through libc or
//!   `exec`, and every locked descriptor is close-on-exec.)
//! - Named segments are attached by name, with no handle to carry a domain:
//!   a `ShareableList` (the named object that records writers) joins the
//!   per-user domain `/dev/shm/multiprocess-liveness-<uid>` (mode 0600,
//!   left in place: an empty file), which every process that can attach
//!   the segment can open too. It is never sent to other processes.
//! - A process that knows no domain (none made, none received) cannot judge
//!   anyone: it answers "alive", so it never takes over from an owner it
//!   cannot prove dead.
//! - Joining a domain after taking an id needs the same byte free there; if
//!   another process holds it (ids of two trees met), the handle that
//!   brought the domain is refused with an error saying so.
//!
//! # References
//! - [`fcntl(2)`, open file description locks](https://man7.org/linux/man-pages/man2/fcntl.2.html)
//! - [`proc(5)`, `/proc/pid/fd`](https://man7.org/linux/man-pages/man5/proc.5.html)
//! - [`pthread_atfork(3)`](https://man7.org/linux/man-pages/man3/pthread_atfork.3.html)

// Under loom and Miri there are no processes: the model's fake pids are the
// ids (see the bottom of this file).
#![cfg_attr(any(loom, miri), allow(dead_code, unused_imports))]

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::shm::SharedRegion;

/// The bits of a `u32` that hold an id: a lock word keeps its owner's id
/// here and flags above.
pub(crate) const ID_MASK: u32 = (1 << 22) - 1;

/// The first 8 bytes of a domain.
const MAGIC: u64 = u64::from_le_bytes(*b"mpLive01");
/// Where the id counter lives.
const COUNTER_AT: usize = 8;
const DOMAIN_LEN: usize = 64;
/// How many taken ids a registration skips before it gives up.
const TRIES: u32 = 4096;

/// This process's id; 0 until it takes one (and again in a forked child).
static ID: AtomicU32 = AtomicU32::new(0);

struct Domain {
    /// The domain as every process shares it; never locked by anyone, so
    /// `F_OFD_GETLK` through it sees every holder.
    shared: Shared,
    /// (device, inode) of the memfd: how a domain received again is known.
    key: (u64, u64),
    /// This process's own open file description, locked on byte `ID`.
    mine: Option<OwnedFd>,
}

/// A process tree's domain (a sealed memfd with the id counter), or the
/// per-user domain of the named segments (a file in `/dev/shm`, which every
/// process that can attach a segment by name can open too).
enum Shared {
    Tree(SharedRegion),
    Named(OwnedFd),
}

impl Domain {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.shared {
            Shared::Tree(region) => region.fd(),
            Shared::Named(fd) => fd.as_fd(),
        }
    }
}

struct State {
    domains: Vec<Domain>,
}

impl State {
    /// The first tree domain's id counter, making a tree domain if there
    /// is none.
    fn counter(&mut self) -> io::Result<&super::atomic::AtomicU32> {
        let i = match self
            .domains
            .iter()
            .position(|d| matches!(d.shared, Shared::Tree(_)))
        {
            Some(i) => i,
            None => {
                self.domains.insert(0, Domain::create()?);
                0
            }
        };
        let Shared::Tree(region) = &self.domains[i].shared else {
            unreachable!("found as a tree domain")
        };
        Ok(region.atomic_u32(COUNTER_AT))
    }

    fn ensure_tree(&mut self) -> io::Result<()> {
        self.counter().map(drop)
    }

    /// Adds the domain `make` opens, unless one with `key` is known; if
    /// this process has an id, it holds the same byte there first (`what`
    /// names the domain in the error when another process holds it).
    fn adopt(
        &mut self,
        key: (u64, u64),
        what: &str,
        make: impl FnOnce() -> io::Result<Domain>,
    ) -> io::Result<()> {
        if self.domains.iter().any(|d| d.key == key) {
            return Ok(());
        }
        let mut domain = make()?;
        let id = ID.load(Ordering::Relaxed);
        if id != 0 && !domain.hold(id)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "this process's liveness id {id} is taken in {what} by another \
                     process: the two could not tell each other's deaths apart, so \
                     it is refused"
                ),
            ));
        }
        self.domains.push(domain);
        Ok(())
    }
}

/// The domains, behind a spin lock that `pthread_atfork` can hold across a
/// fork (a `Mutex` guard cannot be carried from the prepare handler to the
/// parent and child handlers).
struct Guarded {
    locked: AtomicBool,
    state: UnsafeCell<State>,
}

// SAFETY: `state` is only reached through `with_state`, which holds
// `locked` (an acquire/release spin lock) for the whole access, or from the
// fork handlers, which hold it from `prepare` to `parent`/`child`.
unsafe impl Sync for Guarded {}

static STATE: Guarded = Guarded {
    locked: AtomicBool::new(false),
    state: UnsafeCell::new(State {
        domains: Vec::new(),
    }),
};

fn lock_state() {
    while STATE
        .locked
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn unlock_state() {
    STATE.locked.store(false, Ordering::Release);
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    register_fork_handlers();
    lock_state();
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            unlock_state();
        }
    }
    let _unlock = Unlock;
    // SAFETY: the spin lock is held until `_unlock` drops, so this is the
    // only reference to the state (see `Guarded`).
    f(unsafe { &mut *STATE.state.get() })
}

extern "C" fn before_fork() {
    lock_state();
}

extern "C" fn after_fork_parent() {
    unlock_state();
}

/// Runs in the child right after `fork()`, with the spin lock held by the
/// forking thread since `before_fork`: closes the child's copies of the
/// locked descriptions (which keep its parent looking alive) and forgets
/// the parent's id. Only `close` and atomic stores, which are
/// async-signal-safe; nothing allocates or frees.
extern "C" fn after_fork_child() {
    // SAFETY: `before_fork` took the spin lock in this (now the only)
    // thread, so nothing else touches the state.
    let state = unsafe { &mut *STATE.state.get() };
    for d in &mut state.domains {
        // Dropping an `OwnedFd` is a `close`.
        drop(d.mine.take());
    }
    ID.store(0, Ordering::Relaxed);
    unlock_state();
}

fn register_fork_handlers() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the three handlers are `extern "C" fn()` without
        // preconditions; the child handler makes only async-signal-safe
        // calls, as a handler that runs in the child of a multi-threaded
        // fork must.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        // ENOMEM is the only documented failure; without the handlers a
        // forked child would keep its parent looking alive.
        assert_eq!(rc, 0, "pthread_atfork failed ({rc})");
    });
}

/// `F_OFD_SETLK`/`F_OFD_GETLK` on byte `id` of `fd`.
fn ofd_lock(fd: BorrowedFd<'_>, cmd: libc::c_int, id: u32) -> io::Result<libc::c_short> {
    // SAFETY: `flock` is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = libc::off_t::from(id);
    fl.l_len = 1;
    // l_pid must be 0 for OFD locks (zeroed above).
    // SAFETY: `fd` is a live descriptor for the duration of the call and
    // `fl` a valid `struct flock` that the kernel reads (and, for GETLK,
    // writes back); neither is retained.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type)
}

/// Takes the write lock on byte `id` through `fd`: `Ok(false)` if another
/// description holds it.
fn try_hold(fd: BorrowedFd<'_>, id: u32) -> io::Result<bool> {
    match ofd_lock(fd, libc::F_OFD_SETLK, id) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether another open file description holds byte `id`.
fn held(fd: BorrowedFd<'_>, id: u32) -> io::Result<bool> {
    Ok(ofd_lock(fd, libc::F_OFD_GETLK, id)? != libc::F_UNLCK as libc::c_short)
}

/// A new open file description of the file behind `fd`.
fn reopen(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "cannot reopen the liveness domain through {path} ({e}); \
                 multiprocess needs /proc to tell live processes from dead ones"
            ),
        )
    })
}

fn key_of(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

impl Domain {
    fn create() -> io::Result<Domain> {
        let region = SharedRegion::create("multiprocess-liveness", DOMAIN_LEN)?;
        let mut start = [0u8; 4];
        super::random::fill(&mut start)?;
        region
            .atomic_u32(COUNTER_AT)
            .store(u32::from_le_bytes(start) & ID_MASK, Ordering::Relaxed);
        region.atomic_u64(0).store(MAGIC, Ordering::Release);
        let key = key_of(region.fd())?;
        Ok(Domain {
            shared: Shared::Tree(region),
            key,
            mine: None,
        })
    }

    fn open(fd: OwnedFd, key: (u64, u64)) -> io::Result<Domain> {
        let region = SharedRegion::from_fd(fd, DOMAIN_LEN)?;
        if region.atomic_u64(0).load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "descriptor is not a multiprocess liveness domain",
            ));
        }
        Ok(Domain {
            shared: Shared::Tree(region),
            key,
            mine: None,
        })
    }

    /// Holds byte `id` through a description of our own: `Ok(false)` if
    /// someone else holds it.
    fn hold(&mut self, id: u32) -> io::Result<bool> {
        let mine = reopen(self.fd())?;
        if !try_hold(mine.as_fd(), id)? {
            return Ok(false);
        }
        self.mine = Some(mine);
        Ok(true)
    }
}

/// This process's id (registering it on first use).
///
/// # Panics
/// If this process cannot take an id: out of descriptors, or no `/proc`.
/// Every constructor of a shared object calls [`register`] first, so such
/// failures surface there as errors.
#[cfg(not(any(loom, miri)))]
#[inline]
pub(crate) fn my_id() -> u32 {
    match ID.load(Ordering::Relaxed) {
        0 => register().unwrap_or_else(|e| {
            panic!("multiprocess: cannot take a liveness id for this process: {e}")
        }),
        id => id,
    }
}

/// Takes this process's id if it has none yet (making a domain if it knows
/// none), and returns it.
///
/// # Errors
/// The domain cannot be made (out of descriptors or memory), `/proc` is not
/// mounted, or every id tried is taken.
#[cfg(not(any(loom, miri)))]
pub(crate) fn register() -> io::Result<u32> {
    if let id @ 1.. = ID.load(Ordering::Relaxed) {
        return Ok(id);
    }
    with_state(|s| {
        if let id @ 1.. = ID.load(Ordering::Relaxed) {
            return Ok(id);
        }
        for _ in 0..TRIES {
            let id = s.counter()?.fetch_add(1, Ordering::Relaxed) & ID_MASK;
            if id == 0 {
                continue;
            }
            let mut all = true;
            for d in &mut s.domains {
                if !d.hold(id)? {
                    all = false;
                    break;
                }
            }
            if all {
                ID.store(id, Ordering::Relaxed);
                return Ok(id);
            }
            for d in &mut s.domains {
                d.mine = None;
            }
        }
        Err(io::Error::other(format!(
            "no free liveness id after {TRIES} tries"
        )))
    })
}

/// Whether the process that took `id` is alive. This process always is;
/// `0` (no one) never is.
#[cfg(not(any(loom, miri)))]
pub(crate) fn is_alive(id: u32) -> bool {
    if id == 0 {
        return false;
    }
    if id == ID.load(Ordering::Relaxed) {
        return true;
    }
    with_state(|s| {
        if s.domains.is_empty() {
            // Nothing to judge by: never take over.
            return true;
        }
        // A domain that cannot be asked counts as "held": unsure is alive.
        s.domains.iter().any(|d| held(d.fd(), id).unwrap_or(true))
    })
}

/// Makes this process's domain if it knows none (before a fork, so the
/// child shares it).
#[cfg(not(any(loom, miri)))]
pub(crate) fn ensure_domain() -> io::Result<()> {
    with_state(State::ensure_tree)
}

/// Duplicates of the shared descriptors of every domain this process
/// knows, making one first if it knows none: what a child or a receiver of
/// our handles must [`join`] to judge us (and we them).
#[cfg(not(any(loom, miri)))]
pub(crate) fn domain_fds() -> io::Result<Vec<OwnedFd>> {
    with_state(|s| {
        s.ensure_tree()?;
        // The named domain is not sent: whoever attaches by name opens it.
        s.domains
            .iter()
            .filter_map(|d| match &d.shared {
                Shared::Tree(region) => Some(region.fd().try_clone_to_owned()),
                Shared::Named(_) => None,
            })
            .collect()
    })
}

/// Adopts a domain received from another process (a parent or the sender
/// of a handle); a domain already known is dropped. If this process has an
/// id, it holds the same byte in the new domain.
///
/// # Errors
/// `fd` is not a liveness domain, or another process holds this process's
/// id there (the ids of two process trees met: the handle is refused, since
/// neither side could then judge the other).
#[cfg(not(any(loom, miri)))]
pub(crate) fn join(fd: OwnedFd) -> io::Result<()> {
    let key = key_of(fd.as_fd())?;
    with_state(|s| s.adopt(key, "the received domain", || Domain::open(fd, key)))
}

/// Joins the per-user domain of named shared memory,
/// `/dev/shm/multiprocess-liveness-<uid>` (made on first use, mode 0600):
/// every process that attaches a segment by name can reach it, where a
/// process tree's domain cannot travel (no handle was sent). Called by the
/// named objects that record owners (`ShareableList`).
///
/// # Errors
/// The file cannot be opened or made, belongs to another user, or this
/// process's id is taken there (see [`join`]).
#[cfg(not(any(loom, miri)))]
pub(crate) fn join_named() -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    static JOINED: AtomicBool = AtomicBool::new(false);
    if JOINED.load(Ordering::Acquire) {
        return Ok(());
    }
    let uid = rustix::process::getuid();
    let path = format!("/dev/shm/multiprocess-liveness-{}", uid.as_raw());
    let fd = rustix::fs::open(
        path.as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::RUSR | Mode::WUSR,
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{path}: {e}")))?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != uid.as_raw() || st.st_mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{path} belongs to another user or is open to others"),
        ));
    }
    let key = (st.st_dev, st.st_ino);
    with_state(|s| {
        s.adopt(key, &path, || {
            Ok(Domain {
                shared: Shared::Named(fd),
                key,
                mine: None,
            })
        })
    })?;
    JOINED.store(true, Ordering::Release);
    Ok(())
}

/// How many domains this process knows (tests).
#[cfg(all(test, not(any(loom, miri))))]
pub(crate) fn domain_count() -> usize {
    with_state(|s| s.domains.len())
}

/// An id that a process held and gave up, as a process that took it and
/// died leaves it (tests).
#[cfg(all(test, not(any(loom, miri))))]
pub(crate) fn dead_id() -> u32 {
    register().unwrap();
    with_state(|s| {
        loop {
            let id = s.counter().unwrap().fetch_add(1, Ordering::Relaxed) & ID_MASK;
            if id == 0 {
                continue;
            }
            let held: Vec<OwnedFd> = s
                .domains
                .iter()
                .filter_map(|d| {
                    let fd = reopen(d.fd()).unwrap();
                    try_hold(fd.as_fd(), id).unwrap().then_some(fd)
                })
                .collect();
            if held.len() == s.domains.len() {
                // Closing them is the death.
                return id;
            }
        }
    })
}

/// An id held by another open description for the rest of the test run:
/// a live process that is not this one (tests).
#[cfg(all(test, not(any(loom, miri))))]
pub(crate) fn live_id() -> u32 {
    let id = dead_id();
    with_state(|s| {
        for d in &s.domains {
            let fd = reopen(d.fd()).unwrap();
            assert!(try_hold(fd.as_fd(), id).unwrap());
            // Kept open (and held) until the test process exits.
            std::mem::forget(fd);
        }
    });
    id
}

#[cfg(all(test, any(loom, miri)))]
pub(crate) fn live_id() -> u32 {
    1
}

#[cfg(all(test, any(loom, miri)))]
pub(crate) fn dead_id() -> u32 {
    1 << 21
}

// Under loom, the model's fake pids are the ids.
#[cfg(loom)]
pub(crate) fn my_id() -> u32 {
    super::model::current_pid()
}

#[cfg(loom)]
pub(crate) fn is_alive(id: u32) -> bool {
    super::model::is_alive(id)
}

// Under Miri, which cannot start processes, the pid is the id and every id
// a test can meet is a live one (the tests with dead owners are ignored).
#[cfg(miri)]
pub(crate) fn my_id() -> u32 {
    super::pid::current_pid()
}

#[cfg(miri)]
pub(crate) fn is_alive(id: u32) -> bool {
    id != 0
}

#[cfg(any(loom, miri))]
pub(crate) fn register() -> io::Result<u32> {
    Ok(my_id())
}

#[cfg(any(loom, miri))]
pub(crate) fn ensure_domain() -> io::Result<()> {
    Ok(())
}

#[cfg(any(loom, miri))]
pub(crate) fn domain_fds() -> io::Result<Vec<OwnedFd>> {
    Ok(Vec::new())
}

#[cfg(any(loom, miri))]
pub(crate) fn join(_fd: OwnedFd) -> io::Result<()> {
    Ok(())
}

#[cfg(any(loom, miri))]
pub(crate) fn join_named() -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, not(any(loom, miri))))]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_held_and_seen_alive() {
        let id = my_id();
        assert!(id != 0 && id <= ID_MASK);
        assert_eq!(register().unwrap(), id);
        assert!(is_alive(id));
        assert!(!is_alive(0));
        assert!(domain_count() >= 1);
        // An id nobody took is dead.
        let other = if id == ID_MASK { 1 } else { id + 1 };
        with_state(|s| {
            let fd = s.domains[0].fd();
            assert!(!held(fd, other).unwrap());
        });
        assert!(!is_alive(other));
    }

    #[test]
    fn joining_a_known_domain_adds_nothing() {
        let fds = domain_fds().unwrap();
        let before = domain_count();
        for fd in fds {
            join(fd).unwrap();
        }
        assert_eq!(domain_count(), before);
    }

    #[test]
    fn a_descriptor_that_is_not_a_domain_is_refused() {
        let other = SharedRegion::create("not-a-domain", DOMAIN_LEN).unwrap();
        let e = join(other.fd().try_clone_to_owned().unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("not a multiprocess liveness domain"),
            "{e}"
        );
    }

    #[test]
    fn a_lock_held_by_another_description_is_seen_and_released_on_close() {
        let d = Domain::create().unwrap();
        let theirs = reopen(d.fd()).unwrap();
        assert!(try_hold(theirs.as_fd(), 77).unwrap());
        assert!(held(d.fd(), 77).unwrap());
        // A third description cannot take it.
        let third = reopen(d.fd()).unwrap();
        assert!(!try_hold(third.as_fd(), 77).unwrap());
        drop(theirs);
        assert!(!held(d.fd(), 77).unwrap());
        assert!(try_hold(third.as_fd(), 77).unwrap());
    }
}
