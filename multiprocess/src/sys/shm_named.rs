//! Named POSIX shared memory: `shm_open`, `ftruncate`, `fallocate`,
//! `fstat`, `mmap`, `shm_unlink`.
//!
//! Unlike the anonymous memfd regions of `sys/shm.rs`, a named segment is
//! reached by *name* (a file under `/dev/shm`) by processes that share no
//! descriptor, so it cannot be sealed and anyone may write it at any time.
//! The memory is therefore treated as an array of atomic bytes: the only
//! accesses are relaxed atomic loads and stores (bytes, or aligned 8-byte
//! words in the middle of a range), bracketed by a release fence before a
//! store and an acquire fence after a load. That makes concurrent access from
//! other processes a well-defined race in Rust's memory model (a reader may
//! see a mix of old and new bytes, never undefined behaviour), and gives
//! message-passing order when a reader sees a writer's bytes.
//!
//! # Caveats
//! A process of the same user that shrinks the file (`ftruncate`) makes any
//! later access beyond the new end fault with `SIGBUS`; named segments cannot
//! be sealed against that. Nothing in this crate ever shrinks a segment.
//!
//! # References
//! - [`shm_open(3)`](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//!   [`shm_unlink(3)`](https://man7.org/linux/man-pages/man3/shm_unlink.3.html)
//! - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
//! - [`fallocate(2)`](https://man7.org/linux/man-pages/man2/fallocate.2.html)

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};

/// A named segment's read-write `MAP_SHARED` mapping in this process.
#[derive(Debug)]
pub(crate) struct NamedRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the pointer stays valid for the life of the value (unmapped only in
// Drop) and every access is atomic, so sharing between threads is as sound as
// sharing between processes.
unsafe impl Send for NamedRegion {}
// SAFETY: as for Send: every accessor takes `&self` and uses atomics only.
unsafe impl Sync for NamedRegion {}

/// `/name` for `shm_open`; `name` is already validated (no `/`, no NUL).
fn path(name: &str) -> String {
    format!("/{name}")
}

impl NamedRegion {
    /// Creates segment `name` (`O_CREAT | O_EXCL`, mode 0600) of `len > 0`
    /// bytes, allocates its pages ([`reserve`]) and maps
    /// it. A `/dev/shm` too small for `len` bytes fails with
    /// [`StorageFull`](io::ErrorKind::StorageFull) (not a `SIGBUS` at the
    /// first write). On failure after the name was created, the name is
    /// removed again.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        let fd = rustix::shm::open(
            path(name).as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            Mode::RUSR | Mode::WUSR,
        )?;
        let made = (|| {
            rustix::fs::ftruncate(&fd, len as u64)?;
            reserve(fd.as_fd(), len)?;
            Self::map(&fd)
        })();
        if made.is_err() {
            let _ = unlink(name);
        }
        made
    }

    /// Maps the existing segment `name`, whatever its size.
    pub(crate) fn open(name: &str) -> io::Result<Self> {
        let fd = rustix::shm::open(
            path(name).as_str(),
            rustix::shm::OFlags::RDWR,
            Mode::empty(),
        )?;
        Self::map(&fd)
    }

    /// Maps the whole of `fd` (its size from `fstat`); `InvalidInput` if it
    /// is empty.
    fn map(fd: &OwnedFd) -> io::Result<Self> {
        let size = rustix::fs::fstat(fd)?.st_size;
        let len = usize::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad segment size"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the segment is empty",
            ));
        }
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) replaces nothing.
        // The file is at least `len` bytes now; see the module's caveat for a
        // peer that shrinks it later (SIGBUS, not a dangling access).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // The descriptor closes here: the mapping keeps the memory.
        Ok(Self { ptr, len })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn in_bounds(&self, offset: usize, size: usize) -> bool {
        offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// The byte at `offset` as an atomic. The caller checked the bounds.
    fn byte(&self, offset: usize) -> &AtomicU8 {
        debug_assert!(offset < self.len);
        // SAFETY: in bounds (every caller checks); AtomicU8 has alignment 1
        // and the layout of u8, every bit pattern is valid, and the memory
        // lives as long as `&self`. All accesses to the segment made by this
        // crate are atomic; other processes are outside the Rust abstract
        // machine and can only change the values we load.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU8>() }
    }

    /// The aligned word at `offset`. The caller checked bounds and alignment.
    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: as for `byte`, with 8 in-bounds bytes at an 8-aligned
        // offset of a page-aligned mapping (every caller checks both).
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// The 32-bit atomic at `offset`, or `None` if out of bounds or not
    /// 4-aligned.
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        if !self.in_bounds(offset, 4) || !offset.is_multiple_of(4) {
            return None;
        }
        // SAFETY: as for `word`, with 4 in-bounds bytes at a 4-aligned offset.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// The 64-bit atomic at `offset`, or `None` if out of bounds or not
    /// 8-aligned.
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if !self.in_bounds(offset, 8) || !offset.is_multiple_of(8) {
            return None;
        }
        Some(self.word(offset))
    }

    /// Copies bytes at `offset` into `dst` (relaxed atomic loads, then an
    /// acquire fence). `false`, copying nothing, if out of bounds.
    pub(crate) fn load(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.in_bounds(offset, dst.len()) {
            return false;
        }
        let mut i = 0;
        while i < dst.len() {
            let at = offset + i;
            if at.is_multiple_of(8) && dst.len() - i >= 8 {
                let w = self.word(at).load(Ordering::Relaxed);
                dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
                i += 8;
            } else {
                dst[i] = self.byte(at).load(Ordering::Relaxed);
                i += 1;
            }
        }
        fence(Ordering::Acquire);
        true
    }

    /// Copies `src` to `offset` (a release fence, then relaxed atomic
    /// stores). `false`, copying nothing, if out of bounds.
    pub(crate) fn store(&self, offset: usize, src: &[u8]) -> bool {
        if !self.in_bounds(offset, src.len()) {
            return false;
        }
        fence(Ordering::Release);
        let mut i = 0;
        while i < src.len() {
            let at = offset + i;
            if at.is_multiple_of(8) && src.len() - i >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&src[i..i + 8]);
                self.word(at)
                    .store(u64::from_ne_bytes(w), Ordering::Relaxed);
                i += 8;
            } else {
                self.byte(at).store(src[i], Ordering::Relaxed);
                i += 1;
            }
        }
        true
    }
}

impl Drop for NamedRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, and no
        // reference into it outlives `&self` (accessors borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether segment `name` exists (`shm_open` read-only, closed at once); an
/// error other than "not found" counts as existing.
pub(crate) fn exists(name: &str) -> bool {
    match rustix::shm::open(
        path(name).as_str(),
        rustix::shm::OFlags::RDONLY,
        Mode::empty(),
    ) {
        Ok(_fd) => true,
        Err(e) => e != rustix::io::Errno::NOENT,
    }
}

/// Removes segment `name` (`shm_unlink`); mappings stay valid.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    Ok(rustix::shm::unlink(path(name).as_str())?)
}

/// Allocates the first `len` bytes of `fd`'s backing store now
/// (`fallocate`), so that a tmpfs, `/dev/shm` or memory cgroup too small for
/// them fails here, with `ENOSPC` (or `ENOMEM`, `EFBIG`), instead of killing
/// the process with `SIGBUS` at the first touch of a page the kernel cannot
/// supply. Those three come back as
/// [`StorageFull`](io::ErrorKind::StorageFull) (the kernel's error inside),
/// for callers to say what ran out; others as they are. A file system that
/// cannot reserve (`EOPNOTSUPP`) is left as it was: its pages are allocated
/// when touched, as without this call.
///
/// # References
/// - [`fallocate(2)`](https://man7.org/linux/man-pages/man2/fallocate.2.html)
fn reserve(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    use rustix::io::Errno;
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
            Ok(()) | Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e @ (Errno::NOSPC | Errno::NOMEM | Errno::FBIG)) => {
                return Err(io::Error::new(io::ErrorKind::StorageFull, e));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A random 64-bit value from the kernel (`getrandom`), for unique names.
pub(crate) fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    super::random::fill(&mut b)?;
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(tag: &str) -> String {
        format!(
            "mp_sys_{tag}_{}_{:x}",
            std::process::id(),
            random_u64().unwrap()
        )
    }

    #[test]
    #[cfg_attr(miri, ignore = "shm_open and mmap; Miri emulates neither")]
    fn create_open_share_bytes_and_words() {
        let name = unique("share");
        let a = NamedRegion::create(&name, 100).unwrap();
        let b = NamedRegion::open(&name).unwrap();
        assert_eq!(b.len(), 100);
        let src: Vec<u8> = (0..50).collect();
        assert!(a.store(3, &src));
        let mut out = vec![0u8; 50];
        assert!(b.load(3, &mut out));
        assert_eq!(out, src);
        a.atomic_u64(8).unwrap().store(7, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(8).unwrap().load(Ordering::SeqCst), 7);
        assert!(a.atomic_u64(4).is_none());
        assert!(a.atomic_u64(96).is_none());
        assert!(!a.store(99, &[1, 2]));
        assert!(!a.load(usize::MAX, &mut [0]));
        unlink(&name).unwrap();
        assert_eq!(unlink(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    #[cfg_attr(miri, ignore = "shm_open and mmap; Miri emulates neither")]
    fn create_is_exclusive() {
        let name = unique("excl");
        let _a = NamedRegion::create(&name, 8).unwrap();
        let e = NamedRegion::create(&name, 8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        unlink(&name).unwrap();
    }
}
