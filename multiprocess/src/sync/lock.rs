//! [`Lock`]: Python's `multiprocessing.Lock`, robust against owner death.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::raw_lock::{Acquired, RawLock};
use crate::codec;
use crate::deadline;
use crate::sys::shm::SharedRegion;

/// Region layout: the lock word at 0, a magic at 8.
const WORD: usize = 0;
const MAGIC_AT: usize = 8;
const LEN: usize = 64;
const MAGIC: u64 = u64::from_le_bytes(*b"mpLock01");

/// A mutual-exclusion lock shared by processes, like Python's
/// `multiprocessing.Lock`.
///
/// The lock is one word in a small shared-memory region. Cloning a `Lock`
/// gives another handle to the *same* lock; passing it to a child process (it
/// implements `Serialize`/`Deserialize` for that) does too. Acquiring returns a
/// [`LockGuard`] that releases the lock when dropped, the way Python's
/// `with lock:` does.
///
/// Unlike Python's, this lock survives the death of its holder: if the process
/// holding it exits or is killed, the next acquirer gets the lock within about
/// 100 ms and [`LockGuard::previous_owner_died`] tells it so (whatever the lock
/// protected may be half-updated).
///
/// # Examples
///
/// ```
/// use multiprocess::Lock;
///
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.acquire();
///     assert!(lock.is_locked());
///     assert!(lock.try_acquire().is_none()); // not reentrant
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Caveats
/// - Non-reentrant: ownership is per process, so a second `acquire` from the
///   same process (any thread) waits for the first guard to drop; from the
///   same thread that is a deadlock. A reentrant `RLock` comes separately.
/// - A dead holder is recognised by its liveness id, which the kernel
///   releases when it dies (the liveness rule in `SECURITY.md`):
///   neither a new process that got its pid nor a live holder in another pid
///   namespace is mistaken.
/// - A process forked (not spawned) while holding the lock leaves the child
///   with a guard it must not drop.
#[derive(Clone)]
pub struct Lock {
    region: Arc<SharedRegion>,
}

impl Lock {
    /// Creates a new, unlocked lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// If the memfd cannot be created or mapped (out of descriptors or memory).
    pub fn new() -> io::Result<Lock> {
        // Take a liveness id now (see `shared::create`).
        crate::sys::liveness::register()?;
        let region = SharedRegion::create("multiprocess-lock", LEN)?;
        region.atomic_u64(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(Lock {
            region: Arc::new(region),
        })
    }

    /// Maps a lock received as a descriptor, checking it is one.
    fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Lock> {
        crate::sys::liveness::register()?;
        let region = SharedRegion::from_fd(fd, LEN)?;
        if region.atomic_u64(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "descriptor is not a multiprocess Lock",
            ));
        }
        Ok(Lock {
            region: Arc::new(region),
        })
    }

    pub(crate) fn raw(&self) -> RawLock<'_> {
        RawLock::new(self.region.atomic_u32(WORD))
    }

    fn guard(&self, how: Acquired) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            owner_died: how == Acquired::OwnerDied,
        }
    }

    /// Blocks until the lock is acquired (Python's `lock.acquire()`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// let guard = lock.acquire();
    /// // ... critical section ...
    /// drop(guard); // release
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Caveats
    /// Waits forever if a live process holds the lock forever; use
    /// [`acquire_timeout`](Lock::acquire_timeout) to bound the wait.
    pub fn acquire(&self) -> LockGuard<'_> {
        let how = self.raw().lock(None);
        // lock(None) only returns None on a deadline.
        self.guard(how.unwrap_or(Acquired::Clean))
    }

    /// Acquires the lock if it is free, or held by a process that has died;
    /// otherwise returns `None` at once (Python's `lock.acquire(False)`).
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// let held = lock.try_acquire().expect("free");
    /// assert!(lock.try_acquire().is_none());
    /// drop(held);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        self.raw().try_lock_or_recover().map(|how| self.guard(how))
    }

    /// Waits at most `timeout` for the lock (Python's
    /// `lock.acquire(timeout=t)`); `None` if it stayed held by a live process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let lock = multiprocess::Lock::new()?;
    /// let _held = lock.acquire();
    /// assert!(lock.acquire_timeout(Duration::from_millis(10)).is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        self.raw()
            .lock(deadline::after(timeout))
            .map(|how| self.guard(how))
    }

    /// Whether some process holds the lock (Python's `lock.locked()`); a
    /// snapshot that may be stale by the time it is used.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// assert!(!lock.is_locked());
    /// let _g = lock.acquire();
    /// assert!(lock.is_locked());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// Test hook: the raw word, to plant a dead owner.
    #[cfg(test)]
    pub(crate) fn raw_for_test(&self) -> RawLock<'_> {
        self.raw()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Lock");
        match self.raw().owner() {
            Some(pid) => d.field("owner_id", &pid),
            None => d.field("owner_id", &format_args!("none")),
        };
        d.finish()
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.region.fd(), "Lock", serializer)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fd = codec::deserialize_fd("Lock", deserializer)?;
        Lock::from_fd(fd).map_err(|e| crate::codec::handle_de_error(e.to_string()))
    }
}

/// Proof that a [`Lock`] is held; releases it when dropped.
///
/// # Examples
///
/// ```
/// let lock = multiprocess::Lock::new()?;
/// let guard = lock.acquire();
/// if guard.previous_owner_died() {
///     // repair whatever the dead holder was updating
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    owner_died: bool,
}

impl LockGuard<'_> {
    /// Whether this acquisition took the lock over from a process that died
    /// while holding it, so the protected state may be inconsistent.
    ///
    /// # Examples
    ///
    /// ```
    /// let lock = multiprocess::Lock::new()?;
    /// assert!(!lock.acquire().previous_owner_died());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn previous_owner_died(&self) -> bool {
        self.owner_died
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("previous_owner_died", &self.owner_died)
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw().unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::raw_lock::tests::dead_id;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn mutual_exclusion_across_threads() {
        let lock = Lock::new().unwrap();
        // A non-atomic read-modify-write in shared memory, guarded by the lock;
        // the second mapping stands in for another process.
        let other = Lock::from_fd(lock.region.fd().try_clone_to_owned().unwrap()).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let lock = if i % 2 == 0 {
                    lock.clone()
                } else {
                    other.clone()
                };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let g = lock
                            .acquire_timeout(Duration::from_secs(20))
                            .expect("lock wedged");
                        let v = counter.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        counter.store(v + 1, Ordering::Relaxed);
                        drop(g);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
        assert!(!lock.is_locked());
    }

    #[test]
    fn try_is_immediate_and_timeout_waits() {
        let lock = Lock::new().unwrap();
        let held = lock.acquire();
        let t = Instant::now();
        assert!(lock.try_acquire().is_none());
        assert!(t.elapsed() < Duration::from_millis(50));
        let t = Instant::now();
        assert!(lock.acquire_timeout(Duration::from_millis(200)).is_none());
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(190) && e < Duration::from_secs(2),
            "{e:?}"
        );
        drop(held);
        assert!(lock.acquire_timeout(Duration::from_millis(200)).is_some());
    }

    #[test]
    fn waiter_is_woken_by_release() {
        let lock = Lock::new().unwrap();
        let held = lock.acquire();
        let l2 = lock.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let g = l2.acquire_timeout(Duration::from_secs(10));
            (g.is_some(), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(150));
        drop(held);
        let (got, waited) = t.join().unwrap();
        assert!(got);
        assert!(waited < Duration::from_secs(5));
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_owner_is_taken_over_within_a_second() {
        let lock = Lock::new().unwrap();
        let pid = dead_id();
        lock.raw_for_test().force_word(pid);
        assert!(lock.is_locked());
        let t = Instant::now();
        let g = lock
            .acquire_timeout(Duration::from_secs(5))
            .expect("dead owner not detected");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(g.previous_owner_died());
        drop(g);
        let g = lock.acquire_timeout(Duration::from_secs(1)).unwrap();
        assert!(!g.previous_owner_died());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a dead pid needs a child process (posix_spawn), and liveness needs kill(2); Miri emulates neither"
    )]
    fn dead_owner_blocking_acquire() {
        let lock = Lock::new().unwrap();
        lock.raw_for_test()
            .force_word(dead_id() | super::super::raw_lock::WAITERS);
        let l2 = lock.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let g = l2.acquire();
            tx.send(g.previous_owner_died()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(1))
                .expect("not taken over in 1 s")
        );
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn travels_as_a_handle() {
        let lock = Lock::new().unwrap();
        let (bytes, fds) = codec::encode(&lock).unwrap();
        assert_eq!(fds.len(), 2, "the region and the liveness domain");
        let back: Lock = codec::decode(&bytes, fds).unwrap();
        let _g = lock.acquire();
        assert!(back.is_locked(), "decoded handle shares the word");
        assert!(back.try_acquire().is_none());
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "passes a region's descriptor; under Miri a region is heap memory with none"
    )]
    fn wrong_descriptor_is_refused() {
        let region = SharedRegion::create("not-a-lock", 64).unwrap();
        let err = Lock::from_fd(region.fd().try_clone_to_owned().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not a multiprocess Lock"), "{err}");
    }
}
