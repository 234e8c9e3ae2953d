//! `SharedMemory`: named POSIX shared memory, Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tracker;
use crate::sys::shm_named::{self, NamedRegion};

/// The longest name accepted, in bytes (`NAME_MAX` less the leading `/`).
const MAX_NAME: usize = 254;

/// A named shared memory segment that unrelated processes attach to by name:
/// Python's `multiprocessing.shared_memory.SharedMemory`.
///
/// [`create`](Self::create) makes a new segment (mode 0600, failing if the
/// name exists), [`attach`](Self::attach) maps an existing one. Dropping the
/// value unmaps the segment in this process but leaves it in place for others,
/// like Python's `close()`; [`unlink`](Self::unlink) removes the name, like
/// Python's `unlink()`.
///
/// # Memory model
///
/// Other processes may write the bytes at any moment, so no `&[u8]` into the
/// segment is ever handed out. The segment behaves as an array of atomic
/// bytes: [`read_at`](Self::read_at) and [`write_at`](Self::write_at) copy
/// with relaxed atomic accesses, a write starting with a release fence and a
/// read ending with an acquire fence. A read that races with a write may see
/// a mix of old and new bytes (no undefined behaviour); if a read sees bytes
/// of a write, it also sees everything the writer did before that write.
/// For a consistent multi-byte record, synchronise with a [`Lock`](crate::Lock),
/// an atomic flag ([`atomic_u64`](Self::atomic_u64) with `Acquire`/`Release`),
/// or by joining the writer.
///
/// # Leaks and the tracker
///
/// A tracked segment (the default for [`create`](Self::create) and
/// [`attach`](Self::attach)) is registered with a resource tracker, a small
/// helper process shared by this program's process tree. When every process
/// that registered a segment has exited — normally or killed — without
/// unlinking it, the tracker unlinks it and prints a warning like Python's
/// ("There appear to be 1 leaked shared_memory objects to clean up"). The
/// `_untracked` constructors (Python's `track=False`) skip the registration:
/// such a segment lives until someone unlinks it.
///
/// **Who owns a name:** the process tree that created it. A tracker only
/// ever unlinks names created in its own tree; a segment this tree only
/// attached (made by another launch of the program, or another program)
/// is never unlinked by it, whoever exits or is killed: attaching is safe.
/// (Python's tracker unlinks what a process merely attached: gh-82300.)
/// Anyone may still call [`unlink`](Self::unlink) explicitly.
///
/// # Examples
///
/// ```
/// # multiprocess::init_before_main!();
/// use multiprocess::SharedMemory;
///
/// let shm = SharedMemory::create(None, 64)?;
/// shm.write_at(0, b"hello")?;
///
/// let other = SharedMemory::attach(shm.name())?;
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
///
/// shm.unlink()?;
/// # Ok::<(), multiprocess::SharedMemoryError>(())
/// ```
///
/// Passing a segment to a child attaches the same segment there:
///
/// ```no_run
/// use multiprocess::{Process, SharedMemory};
///
/// fn child(shm: SharedMemory) {
///     shm.write_at(0, b"from the child").unwrap();
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     multiprocess::init();
///     let shm = SharedMemory::create(None, 1024)?;
///     let p = Process::new(child, (SharedMemory::attach(shm.name())?,));
///     p.start()?;
///     p.join()?;
///     let mut buf = [0u8; 14];
///     shm.read_at(0, &mut buf)?;
///     assert_eq!(&buf, b"from the child");
///     shm.unlink()?;
///     Ok(())
/// }
/// ```
///
/// # Caveats
/// - A process of the same user that shrinks the file under `/dev/shm`
///   (`ftruncate`) makes later accesses beyond the new end fault with
///   `SIGBUS`; named segments cannot be sealed. This crate never shrinks one.
/// - Serializing a `SharedMemory` writes its name, size and tracking; the
///   receiving side attaches by name, so deserializing fails once the
///   segment has been unlinked.
/// - A segment's tracked holders are processes, not handles: dropping a
///   handle keeps the hold until the process exits. So a worker that creates
///   a segment and sends it to its parent must stay alive until the parent
///   has attached it (deserializing does): if the worker exits first, the
///   tracker unlinks the segment it alone held. (Python's tracker waits for
///   the whole tree instead, and so cannot clean up after a killed worker
///   while its parent lives.)
/// - If the tracker itself is killed, the next tracked operation of each
///   process starts a new one and registers that process's segments again;
///   a process that makes no further tracked call is not re-registered.
/// - The tracker of a process tree is found through the chain of parent
///   processes running the same executable; a process running a different
///   executable (or launched separately) has a tracker of its own, which
///   never unlinks a segment that process only attached.
#[derive(Debug)]
pub struct SharedMemory {
    name: String,
    region: NamedRegion,
    tracked: bool,
}

/// Errors of [`SharedMemory`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// `create` with size 0 (Python: `ValueError`).
    #[error("shared memory size must be positive")]
    ZeroSize,
    /// The name is empty, too long, or contains NUL or `/` (Python:
    /// `ValueError`).
    #[error("invalid shared memory name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `create` with a name that exists (Python: `FileExistsError`).
    #[error("shared memory segment {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// `attach` or `unlink` of a name that does not exist (Python:
    /// `FileNotFoundError`).
    #[error("no shared memory segment named {name:?}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// `create` could not allocate the segment's pages: `/dev/shm` (a tmpfs,
    /// 64 MiB by default in Docker: `--shm-size`) is too small or full
    /// (`ENOSPC`). Nothing is left behind: the name was removed again.
    /// (Without the check, the first write to a page beyond the free space
    /// would kill the process with `SIGBUS`.)
    #[error(
        "no room for shared memory segment {name:?} of {size} bytes: \
         /dev/shm is too small or full ({source})"
    )]
    NoSpace {
        /// The name.
        name: String,
        /// The size asked for, in bytes.
        size: usize,
        /// The kernel's error.
        source: io::Error,
    },
    /// The segment exists but is empty: its creator has not sized it yet.
    #[error("shared memory segment {name:?} is empty")]
    Empty {
        /// The name.
        name: String,
    },
    /// An access past the end of the segment (Python: `IndexError`).
    #[error("access of {len} bytes at offset {offset} is out of bounds (size {size})")]
    OutOfBounds {
        /// Start of the access.
        offset: usize,
        /// Its length.
        len: usize,
        /// The segment's size.
        size: usize,
    },
    /// An atomic view at an offset that is not a multiple of its size.
    #[error("offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// The offset.
        offset: usize,
        /// The alignment required.
        align: usize,
    },
    /// Any other failure of the operating system or of the tracker.
    #[error("shared memory segment {name:?}: {source}")]
    Io {
        /// The name.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SharedMemoryError {
    fn from_io(name: &str, e: io::Error) -> Self {
        let name = name.to_owned();
        match e.kind() {
            io::ErrorKind::AlreadyExists => Self::AlreadyExists { name },
            io::ErrorKind::NotFound => Self::NotFound { name },
            io::ErrorKind::InvalidInput if e.to_string().contains("empty") => Self::Empty { name },
            _ => Self::Io { name, source: e },
        }
    }
}

/// Checks `name` and returns it without a leading `/` (accepted, as Python
/// does).
fn validate(name: &str) -> Result<&str, SharedMemoryError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bad = |reason| {
        Err(SharedMemoryError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if bare.is_empty() {
        return bad("empty");
    }
    if bare.contains('\0') {
        return bad("contains a NUL byte");
    }
    if bare.contains('/') {
        return bad("contains '/'");
    }
    if bare == "." || bare == ".." {
        return bad("reserved");
    }
    if bare.len() > MAX_NAME {
        return bad("longer than 254 bytes");
    }
    Ok(bare)
}

/// A fresh name like Python's `psm_…`.
fn random_name() -> Result<String, SharedMemoryError> {
    let r = shm_named::random_u64().map_err(|e| SharedMemoryError::from_io("psm_", e))?;
    Ok(format!("psm_{r:016x}"))
}

impl SharedMemory {
    /// Creates a segment of at least `size` bytes, zero-filled, and registers
    /// it with the tracker. `None` picks a fresh random name (`psm_…`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 100)?;
    /// assert!(shm.name().starts_with("psm_"));
    /// assert!(shm.size() >= 100);
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`ZeroSize`](SharedMemoryError::ZeroSize),
    /// [`InvalidName`](SharedMemoryError::InvalidName),
    /// [`AlreadyExists`](SharedMemoryError::AlreadyExists),
    /// [`NoSpace`](SharedMemoryError::NoSpace) if `/dev/shm` has no room for
    /// `size` bytes, or
    /// [`Io`](SharedMemoryError::Io) (including a tracker that cannot start:
    /// call [`init`](crate::init) first in `main`).
    pub fn create(name: Option<&str>, size: usize) -> Result<Self, SharedMemoryError> {
        Self::create_with(name, size, true)
    }

    /// Like [`create`](Self::create) without registering with the tracker
    /// (Python's `track=False`): the segment lives until someone unlinks it,
    /// even if every process using it dies.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create_untracked(None, 8)?;
    /// assert!(!shm.is_tracked());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`create`](Self::create).
    pub fn create_untracked(name: Option<&str>, size: usize) -> Result<Self, SharedMemoryError> {
        Self::create_with(name, size, false)
    }

    fn create_with(
        name: Option<&str>,
        size: usize,
        track: bool,
    ) -> Result<Self, SharedMemoryError> {
        if size == 0 {
            return Err(SharedMemoryError::ZeroSize);
        }
        let given = name.map(validate).transpose()?;
        if track {
            // Start (or reach) the tracker before the segment exists, so a
            // tracker that cannot start leaves nothing behind.
            tracker::connect().map_err(|e| SharedMemoryError::Io {
                name: given.unwrap_or("psm_").to_owned(),
                source: e,
            })?;
        }
        let (name, region) = loop {
            let name = match given {
                Some(n) => n.to_owned(),
                None => random_name()?,
            };
            match NamedRegion::create(&name, size) {
                Ok(region) => break (name, region),
                // A random name collided: draw another, as Python does.
                Err(e) if given.is_none() && e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                    return Err(SharedMemoryError::NoSpace {
                        name,
                        size,
                        source: e,
                    });
                }
                Err(e) => return Err(SharedMemoryError::from_io(&name, e)),
            }
        };
        if track && let Err(e) = tracker::register(&name, true) {
            let _ = shm_named::unlink(&name);
            return Err(SharedMemoryError::Io { name, source: e });
        }
        Ok(Self {
            name,
            region,
            tracked: track,
        })
    }

    /// Attaches the existing segment `name` and registers it with the
    /// tracker: the segment stays until every process that registered it has
    /// exited, or someone unlinks it. Its [`size`](Self::size) is the
    /// segment's, whatever size the creator asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::SharedMemory;
    ///
    /// let shm = SharedMemory::create(None, 10)?;
    /// let same = SharedMemory::attach(shm.name())?;
    /// assert_eq!(same.size(), shm.size());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`NotFound`](SharedMemoryError::NotFound),
    /// [`InvalidName`](SharedMemoryError::InvalidName),
    /// [`Empty`](SharedMemoryError::Empty), or [`Io`](SharedMemoryError::Io).
    pub fn attach(name: &str) -> Result<Self, SharedMemoryError> {
        Self::attach_with(name, true)
    }

    /// Attaches without registering with the tracker (Python's
    /// `track=False`). A tracked [`attach`](Self::attach) is already safe
    /// for a segment of another process tree (its tracker never unlinks
    /// what its tree only attached); untracked, this process does not even
    /// count as a holder in its own tree, so the creator's tree may unlink
    /// the segment once its own processes are gone.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::SharedMemory;
    ///
    /// let shm = SharedMemory::create(None, 10)?;
    /// let view = SharedMemory::attach_untracked(shm.name())?;
    /// assert!(!view.is_tracked());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// As for [`attach`](Self::attach).
    pub fn attach_untracked(name: &str) -> Result<Self, SharedMemoryError> {
        Self::attach_with(name, false)
    }

    fn attach_with(name: &str, track: bool) -> Result<Self, SharedMemoryError> {
        let name = validate(name)?;
        let region = NamedRegion::open(name).map_err(|e| SharedMemoryError::from_io(name, e))?;
        if track {
            tracker::register(name, false).map_err(|e| SharedMemoryError::Io {
                name: name.to_owned(),
                source: e,
            })?;
        }
        Ok(Self {
            name: name.to_owned(),
            region,
            tracked: track,
        })
    }

    /// Registers an untracked handle with the tracker, as
    /// [`attach`](Self::attach) would have: `ShareableList::attach` checks
    /// the layout first, so a segment that turns out not to be a list never
    /// gets this process as a holder.
    pub(crate) fn track(&mut self) -> Result<(), SharedMemoryError> {
        if !self.tracked {
            tracker::register(&self.name, false).map_err(|e| SharedMemoryError::Io {
                name: self.name.clone(),
                source: e,
            })?;
            self.tracked = true;
        }
        Ok(())
    }

    /// The segment's name, without a leading `/` (as Python reports it).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// println!("attach with {:?}", shm.name());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mapped size in bytes: at least what the creator asked for.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// assert!(shm.size() >= 8);
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    pub fn size(&self) -> usize {
        self.region.len()
    }

    /// Whether this handle registered the segment with the tracker.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// assert!(shm.is_tracked());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// Removes the segment's name, so no one can attach any more; existing
    /// mappings (this one included) stay usable until dropped. A tracked
    /// handle also tells the tracker to forget the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use multiprocess::{SharedMemory, SharedMemoryError};
    ///
    /// let shm = SharedMemory::create(None, 8)?;
    /// shm.unlink()?;
    /// assert!(matches!(shm.unlink(), Err(SharedMemoryError::NotFound { .. })));
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`NotFound`](SharedMemoryError::NotFound) if it was already unlinked
    /// (Python: `FileNotFoundError`), or [`Io`](SharedMemoryError::Io).
    pub fn unlink(&self) -> Result<(), SharedMemoryError> {
        let result =
            shm_named::unlink(&self.name).map_err(|e| SharedMemoryError::from_io(&self.name, e));
        if self.tracked && result.is_ok() {
            tracker::unregister(&self.name);
        }
        result
    }

    fn bounds(&self, offset: usize, len: usize) -> SharedMemoryError {
        SharedMemoryError::OutOfBounds {
            offset,
            len,
            size: self.size(),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// let mut buf = [1u8; 4];
    /// shm.read_at(4, &mut buf)?;
    /// assert_eq!(buf, [0; 4]); // a new segment is zero-filled
    /// assert!(shm.read_at(6, &mut buf).is_err());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`OutOfBounds`](SharedMemoryError::OutOfBounds) if the range does not
    /// fit; nothing is copied then.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), SharedMemoryError> {
        if self.region.load(offset, buf) {
            Ok(())
        } else {
            Err(self.bounds(offset, buf.len()))
        }
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// shm.write_at(0, &42u64.to_le_bytes())?;
    /// assert!(shm.write_at(1, &[0; 8]).is_err());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`OutOfBounds`](SharedMemoryError::OutOfBounds) if the range does not
    /// fit; nothing is written then.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), SharedMemoryError> {
        if self.region.store(offset, data) {
            Ok(())
        } else {
            Err(self.bounds(offset, data.len()))
        }
    }

    /// A copy of the whole segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// let shm = multiprocess::SharedMemory::create(None, 4)?;
    /// shm.write_at(0, b"abcd")?;
    /// assert_eq!(&shm.to_vec()[..4], b"abcd");
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size()];
        self.region.load(0, &mut v);
        v
    }

    /// The 64-bit atomic at `offset` (a multiple of 8), shared with every
    /// process that maps the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use std::sync::atomic::Ordering;
    ///
    /// let shm = multiprocess::SharedMemory::create(None, 16)?;
    /// shm.atomic_u64(8)?.fetch_add(5, Ordering::SeqCst);
    /// assert_eq!(shm.atomic_u64(8)?.load(Ordering::SeqCst), 5);
    /// assert!(shm.atomic_u64(4).is_err());
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`Misaligned`](SharedMemoryError::Misaligned) or
    /// [`OutOfBounds`](SharedMemoryError::OutOfBounds).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, SharedMemoryError> {
        if !offset.is_multiple_of(8) {
            return Err(SharedMemoryError::Misaligned { offset, align: 8 });
        }
        self.region
            .atomic_u64(offset)
            .ok_or_else(|| self.bounds(offset, 8))
    }

    /// The 32-bit atomic at `offset` (a multiple of 4).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiprocess::init_before_main!();
    /// use std::sync::atomic::Ordering;
    ///
    /// let shm = multiprocess::SharedMemory::create(None, 8)?;
    /// shm.atomic_u32(4)?.store(7, Ordering::Release);
    /// assert_eq!(shm.atomic_u32(4)?.load(Ordering::Acquire), 7);
    /// shm.unlink()?;
    /// # Ok::<(), multiprocess::SharedMemoryError>(())
    /// ```
    ///
    /// # Errors
    /// [`Misaligned`](SharedMemoryError::Misaligned) or
    /// [`OutOfBounds`](SharedMemoryError::OutOfBounds).
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, SharedMemoryError> {
        if !offset.is_multiple_of(4) {
            return Err(SharedMemoryError::Misaligned { offset, align: 4 });
        }
        self.region
            .atomic_u32(offset)
            .ok_or_else(|| self.bounds(offset, 4))
    }
}

/// Unlinks the tracked segment `name` by name alone and tells the tracker
/// (what [`SharedMemory::unlink`] does, for `SharedMemoryManager::shutdown`,
/// which keeps names rather than mappings).
pub(crate) fn unlink_tracked(name: &str) -> Result<(), SharedMemoryError> {
    shm_named::unlink(name).map_err(|e| SharedMemoryError::from_io(name, e))?;
    tracker::unregister(name);
    Ok(())
}

/// What travels when a `SharedMemory` is serialized.
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    size: u64,
    tracked: bool,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            name: self.name.clone(),
            size: self.size() as u64,
            tracked: self.tracked,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        crate::codec::skip_in_probe()?;
        SharedMemory::attach_with(&wire.name, wire.tracked).map_err(|e| {
            crate::codec::handle_de_error(format!(
                "cannot attach shared memory {:?} (unlinked?): {e}",
                wire.name
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for bad in ["", "/", "a/b", "a\0b", ".", ".."] {
            assert!(
                matches!(validate(bad), Err(SharedMemoryError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(validate(&"x".repeat(255)).is_err());
        assert_eq!(validate("/abc").unwrap(), "abc");
        assert_eq!(validate("abc").unwrap(), "abc");
    }
}
