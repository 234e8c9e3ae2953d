//! `SharedMemoryManager`: Python's
//! `multiprocessing.managers.SharedMemoryManager`, without a server process.

use std::sync::Mutex;

use super::item::Item;
use super::named::{self, SharedMemory, SharedMemoryError};
use super::shareable_list::{ShareableList, ShareableListError};
use super::tracker;

/// Creates [`SharedMemory`] segments and [`ShareableList`]s and unlinks all
/// of them at [`shutdown`](Self::shutdown) or when dropped: Python's
/// `multiprocessing.managers.SharedMemoryManager`, where leaving
/// `with SharedMemoryManager() as smm:` is dropping the manager.
///
/// # No server process
///
/// Python's manager starts a server process that creates the segments and
/// unlinks them at `shutdown()`; it ignores SIGINT so that a Ctrl-C still
/// lets the parent shut it down. This one is a list of names in the
/// creating process, because the guarantees come from elsewhere:
/// - every segment is created *tracked* by this process, so if the process
///   dies without shutting the manager down — panic, `exit`, SIGKILL,
///   Ctrl-C — the tree's resource tracker (which ignores SIGINT) unlinks
///   the segments once every process that attached them is gone too;
/// - [`shutdown`](Self::shutdown) (or drop) unlinks them at once, whoever
///   still has them attached, as Python's does. Mappings stay valid until
///   their handles are dropped; new attaches fail.
///
/// So there is no extra process to start (Python's `start()`), nothing to
/// connect to, and no address: the manager cannot be reached from another
/// process. A child that needs segments attaches the ones the manager made
/// (pass the handles, or their names); a segment a child creates is its
/// own, as in Python.
///
/// [`shutdown`](Self::shutdown) takes the manager by value, so no segment
/// can be created through a manager that was shut down (Python raises
/// there).
///
/// # Examples
///
/// ```
/// # multiprocess::init_before_main!();
/// use std::path::Path;
/// use multiprocess::SharedMemoryManager;
///
/// let smm = SharedMemoryManager::new()?;
/// let sl = smm.shareable_list(0..4)?;
/// let raw = smm.shared_memory(128)?;
/// assert_eq!(smm.segments().len(), 2);
/// sl.set(0, 42)?;
/// smm.shutdown()?;
/// assert!(!Path::new("/dev/shm").join(sl.name()).exists());
/// assert!(!Path::new("/dev/shm").join(raw.name()).exists());
/// assert_eq!(sl.get_int(0)?, 42); // still mapped here until dropped
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedMemoryManager {
    names: Mutex<Vec<String>>,
    /// The process that made the manager: a forked copy never unlinks
    /// (Python's `Finalize` checks the pid the same way).
    owner: u32,
}

impl SharedMemoryManager {
    /// A manager owning no segment yet. Connects this process to the
    /// resource tracker (starting it if needed), so a program that cannot
    /// track segments fails here rather than at the first segment. Python's
    /// `SharedMemoryManager()` followed by `start()`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let smm = multiprocess::SharedMemoryManager::new()?;
    /// assert!(smm.segments().is_empty());
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`Io`](SharedMemoryError::Io) if the tracker cannot start (call
    /// [`init`](crate::init) first in `main`).
    pub fn new() -> Result<Self, SharedMemoryError> {
        tracker::connect().map_err(|e| SharedMemoryError::Io {
            name: "SharedMemoryManager".to_owned(),
            source: e,
        })?;
        Ok(Self {
            names: Mutex::new(Vec::new()),
            owner: crate::sys::pid::current_pid(),
        })
    }

    fn adopt(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
    }

    /// A new segment of at least `size` bytes with a fresh name, owned by
    /// the manager (Python's `smm.SharedMemory(size)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let smm = multiprocess::SharedMemoryManager::new()?;
    /// let shm = smm.shared_memory(64)?;
    /// shm.write_at(0, b"managed")?;
    /// assert_eq!(smm.segments(), [shm.name()]);
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`SharedMemory::create`].
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, SharedMemoryError> {
        let shm = SharedMemory::create(None, size)?;
        self.adopt(shm.name());
        Ok(shm)
    }

    /// A new [`ShareableList`] holding `items`, owned by the manager
    /// (Python's `smm.ShareableList(sequence)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{SharedMemoryManager, items};
    ///
    /// let smm = SharedMemoryManager::new()?;
    /// let sl = smm.shareable_list(items!["a", 1, 2.5])?;
    /// assert_eq!(sl.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As for [`ShareableList::new`].
    pub fn shareable_list<I>(&self, items: I) -> Result<ShareableList, ShareableListError>
    where
        I: IntoIterator,
        I::Item: Into<Item>,
    {
        let list = ShareableList::new(items)?;
        self.adopt(list.name());
        Ok(list)
    }

    /// The names of the segments the manager owns, oldest first.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let smm = multiprocess::SharedMemoryManager::new()?;
    /// let a = smm.shared_memory(8)?;
    /// let b = smm.shared_memory(8)?;
    /// assert_eq!(smm.segments(), [a.name(), b.name()]);
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    pub fn segments(&self) -> Vec<String> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Unlinks every segment the manager created (Python's
    /// `smm.shutdown()`). A segment someone already unlinked is skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{SharedMemory, SharedMemoryManager};
    ///
    /// let smm = SharedMemoryManager::new()?;
    /// let shm = smm.shared_memory(8)?;
    /// let name = shm.name().to_owned();
    /// smm.shutdown()?;
    /// assert!(SharedMemory::attach(&name).is_err());
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// In a process forked from the manager's owner, this unlinks nothing:
    /// the segments are the owner's.
    ///
    /// # Errors
    /// The first failure other than an already-removed name
    /// ([`Io`](SharedMemoryError::Io)); every other segment is still
    /// unlinked.
    pub fn shutdown(self) -> Result<(), SharedMemoryError> {
        self.unlink_all()
    }

    fn unlink_all(&self) -> Result<(), SharedMemoryError> {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if crate::sys::pid::current_pid() != self.owner {
            return Ok(());
        }
        let mut first = Ok(());
        for name in names {
            match named::unlink_tracked(&name) {
                Ok(()) | Err(SharedMemoryError::NotFound { .. }) => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

impl Drop for SharedMemoryManager {
    /// Unlinks every segment, as [`shutdown`](Self::shutdown), ignoring
    /// errors.
    fn drop(&mut self) {
        let _ = self.unlink_all();
    }
}
