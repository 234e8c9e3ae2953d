//! Anonymous shared memory: a sealed memfd mapped `MAP_SHARED`.
//!
//! A [`SharedRegion`] is created by one process and reaches others as a
//! descriptor (a process argument, or `SCM_RIGHTS`); each process maps it with
//! [`SharedRegion::from_fd`]. Nothing is named in the file system, so nothing
//! leaks when processes die: the memory goes away with the last descriptor
//! and mapping.
//!
//! The size is sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) right
//! after creation, and `from_fd` refuses descriptors without those seals: a
//! peer cannot shrink the file under our mapping, which would turn every later
//! access into `SIGBUS`.
//!
//! Pages are allocated when first touched, not reserved at creation as the
//! named segments of `sys/shm_named.rs` are: a memfd lives on the kernel's
//! internal tmpfs, which has no size limit, so a page it cannot supply is a
//! memory cgroup's charge failing, which the kernel answers with its OOM
//! handling rather than `SIGBUS` (`ENOMEM`, not `ENOSPC`; strict overcommit,
//! `vm.overcommit_memory=2`, is the exception). Reserving would cost
//! `Queue::new` its whole 16 MiB ring up front: about 5 ms instead of 20 µs.
//!
//! The rest of the crate touches the memory only through the bounds-checked
//! accessors here ([`atomic_u32`](SharedRegion::atomic_u32),
//! [`atomic_u64`](SharedRegion::atomic_u64),
//! [`write_bytes`](SharedRegion::write_bytes),
//! [`read_bytes`](SharedRegion::read_bytes)), so no `unsafe` leaves `sys`.
//!
//! # References
//! - [`memfd_create(2)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
//! - [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html)
//! - [`fcntl(2)`, file seals](https://man7.org/linux/man-pages/man2/fcntl.2.html)

use std::io;
use std::marker::PhantomData;
#[cfg(not(miri))]
use std::os::fd::AsFd;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use super::atomic::{AtomicU32, AtomicU64};

use bytemuck::Pod;

#[cfg(not(miri))]
use rustix::fs::{MemfdFlags, SealFlags};
#[cfg(not(miri))]
use rustix::mm::{MapFlags, ProtFlags};

/// The seals every region carries.
#[cfg(not(miri))]
fn size_seals() -> SealFlags {
    SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

/// A memfd and its `MAP_SHARED`, read-write mapping in this process.
#[derive(Debug)]
pub(crate) struct SharedRegion {
    ptr: NonNull<u8>,
    len: usize,
    /// Under Miri there is no memfd: see [`create`](SharedRegion::create).
    /// `None` once [`release_fd`](SharedRegion::release_fd) closed it (the
    /// mapping stays valid without it).
    #[cfg(not(miri))]
    fd: Option<OwnedFd>,
    /// Under loom: the region's words as loom objects (see [`Model`]).
    #[cfg(loom)]
    model: Model,
}

/// A region as loom sees it (`--cfg loom`): the bytes stay in the mapping,
/// but every 4- and 8-byte word is a loom atomic (created up front, in the
/// thread that creates the region, so every model thread happens-after),
/// and byte copies are recorded on a loom cell per 8-byte granule, so loom
/// reports a copy that races with another (records are 8-aligned, so two
/// well-ordered records never share a granule).
#[cfg(loom)]
#[derive(Debug)]
struct Model {
    u32s: Box<[AtomicU32]>,
    u64s: Box<[AtomicU64]>,
    granules: Box<[loom::cell::UnsafeCell<()>]>,
}

// The cells only record accesses for loom; they hold no data to tear.
#[cfg(loom)]
impl std::panic::RefUnwindSafe for Model {}

#[cfg(loom)]
impl Model {
    fn new(len: usize) -> Self {
        let futex = std::sync::Arc::new(super::model::Futex::new());
        Model {
            u32s: (0..len / 4)
                .map(|_| AtomicU32::in_region(0, futex.clone()))
                .collect(),
            u64s: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            granules: (0..len.div_ceil(8))
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        }
    }

    fn wrote(&self, offset: usize, len: usize) {
        if len > 0 {
            for g in &self.granules[offset / 8..(offset + len).div_ceil(8)] {
                g.with_mut(|_| ());
            }
        }
    }

    fn read(&self, offset: usize, len: usize) {
        if len > 0 {
            for g in &self.granules[offset / 8..(offset + len).div_ceil(8)] {
                g.with(|_| ());
            }
        }
    }
}

// SAFETY: the region is plain shared memory: the pointer stays valid for the
// life of the value (unmapped only in Drop), and all access goes through
// atomics or through the copy accessors whose callers follow a protocol that
// already has to cope with other *processes* touching the bytes concurrently;
// other threads of this process are no different.
unsafe impl Send for SharedRegion {}
// SAFETY: as for Send; every accessor takes `&self` and is race-tolerant by
// the same protocol argument.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// Creates a zero-filled region of `len` bytes (`len > 0`). `name` only
    /// shows up in `/proc/<pid>/fd` and `/proc/<pid>/maps`, for debugging.
    #[cfg(not(miri))]
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared region cannot be empty",
            ));
        }
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, size_seals())?;
        Self::map(fd, len)
    }

    /// Maps a region received from another process. Fails with
    /// `InvalidData` if the descriptor is not a size-sealed memfd or is
    /// shorter than `min_len` (the caller's header), before any byte is read.
    #[cfg(not(any(loom, miri)))]
    pub(crate) fn from_fd(fd: OwnedFd, min_len: usize) -> io::Result<Self> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|e| {
            invalid(format!(
                "descriptor is not a multiprocess shared region (no seals: {e})"
            ))
        })?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(invalid(
                "descriptor is not a multiprocess shared region (size not sealed)".into(),
            ));
        }
        let size = rustix::fs::fstat(&fd)?.st_size;
        let len = usize::try_from(size).map_err(|_| invalid(format!("bad region size {size}")))?;
        if len < min_len.max(1) {
            return Err(invalid(format!(
                "shared region is {len} bytes, smaller than its {min_len}-byte header"
            )));
        }
        Self::map(fd, len)
    }

    /// Under Miri (`scripts/miri.sh`), which has no `memfd_create` or
    /// `mmap`, a region is zeroed, page-aligned heap memory private to this
    /// process, so the in-process tests still run every accessor's `unsafe`
    /// code; [`fd`](SharedRegion::fd) panics, which fails just the tests
    /// that pass a region to another process.
    #[cfg(miri)]
    pub(crate) fn create(_name: &str, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared region cannot be empty",
            ));
        }
        let layout = miri_layout(len)?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("out of memory"))?;
        Ok(Self { ptr, len })
    }

    /// Under Miri there are no descriptors to map (see `create`).
    #[cfg(miri)]
    pub(crate) fn from_fd(_fd: OwnedFd, _min_len: usize) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SharedRegion::from_fd under Miri",
        ))
    }

    /// Under loom a second mapping would have loom words of its own, so it
    /// is refused: models share one `SharedRegion` between their threads.
    #[cfg(loom)]
    pub(crate) fn from_fd(_fd: OwnedFd, _min_len: usize) -> io::Result<Self> {
        Err(io::Error::other(
            "SharedRegion::from_fd is not modelled under loom",
        ))
    }

    #[cfg(not(miri))]
    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) replaces nothing;
        // `fd` is a memfd of at least `len` bytes whose size is sealed, so
        // every byte of the mapping stays backed for its lifetime.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self {
            ptr,
            len,
            fd: Some(fd),
            #[cfg(loom)]
            model: Model::new(len),
        })
    }

    /// The memfd, to be duplicated into another process.
    ///
    /// # Panics
    /// Under Miri, which has no memfd (see `create`), and after
    /// [`release_fd`](SharedRegion::release_fd).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        #[cfg(miri)]
        panic!("a shared region under Miri is heap memory with no descriptor");
        #[cfg(not(miri))]
        self.fd
            .as_ref()
            .expect("a shared region whose descriptor was released cannot be passed on")
            .as_fd()
    }

    /// Closes this process's descriptor of the region, keeping the mapping
    /// (a `MAP_SHARED` mapping holds its own reference to the memfd). For a
    /// region this process will never pass on again: the pool's per-worker
    /// regions, once the worker has its copy, so a wide pool does not cost
    /// a descriptor per region (`RLIMIT_NOFILE`). Afterwards
    /// [`fd`](SharedRegion::fd) panics and
    /// [`identity`](SharedRegion::identity) fails.
    pub(crate) fn release_fd(&mut self) {
        #[cfg(not(miri))]
        drop(self.fd.take());
    }

    /// What names this region in every process that maps it: the memfd's
    /// (device, inode), the same through every duplicate of its descriptor
    /// and never shared by two live regions. Under Miri, where a region is
    /// private heap memory, its address.
    pub(crate) fn identity(&self) -> io::Result<(u64, u64)> {
        #[cfg(miri)]
        return Ok((0, self.ptr.as_ptr() as u64));
        #[cfg(not(miri))]
        {
            let fd = self
                .fd
                .as_ref()
                .ok_or_else(|| io::Error::other("the shared region's descriptor was released"))?;
            let st = rustix::fs::fstat(fd)?;
            Ok((st.st_dev, st.st_ino))
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "shared region access {offset}+{size} out of bounds (len {})",
            self.len
        );
        assert!(
            offset.is_multiple_of(align),
            "misaligned shared region access at {offset}"
        );
    }

    /// The 32-bit atomic at `offset`.
    ///
    /// # Panics
    /// If `offset` is out of bounds or not 4-aligned (a layout bug).
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        #[cfg(loom)]
        let word = &self.model.u32s[offset / 4];
        // SAFETY: in bounds and aligned (checked; the mapping is page
        // aligned); the memory lives as long as `&self`; AtomicU32 has the
        // layout of u32 and every bit pattern is valid; all accesses to a word
        // used as an atomic are atomic, in every process, by protocol.
        #[cfg(not(loom))]
        let word = unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() };
        word
    }

    /// The 64-bit atomic at `offset`.
    ///
    /// # Panics
    /// If `offset` is out of bounds or not 8-aligned (a layout bug).
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        #[cfg(loom)]
        let word = &self.model.u64s[offset / 8];
        // SAFETY: as for `atomic_u32`, with 8-byte bounds and alignment.
        #[cfg(not(loom))]
        let word = unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() };
        word
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[inline]
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        #[cfg(loom)]
        self.model.wrote(offset, src.len());
        // SAFETY: the destination range is in bounds (checked) and cannot
        // overlap `src`, which is process-private memory. Protocol obligation
        // of the callers: the range is owned exclusively by the writer (for
        // the ring: free space past `tail`, under the put lock) until it is
        // published with a Release store, so no one reads or writes it
        // concurrently. A hostile peer violating that can only make us
        // write bytes it also scribbles on; we never form references to them.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len());
        }
    }

    /// Copies bytes at `offset` out of the region into `dst`.
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[inline]
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        #[cfg(loom)]
        self.model.read(offset, dst.len());
        // SAFETY: the source range is in bounds (checked) and cannot overlap
        // `dst`, which is process-private. Protocol obligation of the callers:
        // the range was published with a Release store that they read with
        // Acquire, and nobody writes it until the reader releases it (for the
        // ring: advances `head`). The bytes are copied, never referenced, and
        // every reader validates them after the copy, so a peer that breaks
        // the protocol yields garbage values, not dangling references.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }

    /// Appends `len` bytes at `offset` to `dst` (no zero-filling first).
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[inline]
    pub(crate) fn append_to(&self, offset: usize, len: usize, dst: &mut Vec<u8>) {
        self.check(offset, len, 1);
        #[cfg(loom)]
        self.model.read(offset, len);
        dst.reserve(len);
        let old = dst.len();
        // SAFETY: as for `read_bytes` for the source range; the destination is
        // the spare capacity of `dst`, reserved above, so `old + len` bytes
        // are allocated and the first `old + len` are initialised after the
        // copy, which makes `set_len` sound.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr().add(old),
                len,
            );
            dst.set_len(old + len);
        }
    }
}

impl SharedRegion {
    /// Copies bytes at `offset` into `dst` with relaxed atomic byte loads:
    /// racy by design (a concurrent writer may leave a torn mix of old and
    /// new bytes), never undefined behaviour.
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub(crate) fn racy_read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds (checked), align 1; AtomicU8 has the layout
            // of u8; the memory lives as long as `&self`. Every access to a
            // racy range is atomic, in every process, by protocol (RawValue
            // and RawArray regions are only touched here and in
            // `racy_write`), so the accesses race without being data races.
            let byte = unsafe { &*self.ptr.as_ptr().add(offset + i).cast::<AtomicU8>() };
            *b = byte.load(Ordering::Relaxed);
        }
    }

    /// Copies `src` to `offset` with relaxed atomic byte stores (see
    /// [`racy_read`](SharedRegion::racy_read)).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub(crate) fn racy_write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        for (i, b) in src.iter().enumerate() {
            // SAFETY: as in `racy_read`.
            let byte = unsafe { &*self.ptr.as_ptr().add(offset + i).cast::<AtomicU8>() };
            byte.store(*b, Ordering::Relaxed);
        }
    }

    /// A typed, exclusive view of `len` values of `T` at `offset`, valid as
    /// long as `guard` (the held lock that protects the range) lives.
    ///
    /// Protocol obligation of the callers (the only ones are `Value` and
    /// `Array`): every process touches this range only through a view made
    /// while holding `guard`'s lock, the same lock in every process (it
    /// travels together with the region), and the lock is not reentrant, so
    /// at most one view of the range exists at any time across all
    /// processes and threads.
    ///
    /// # Panics
    /// If the range is out of bounds or `offset` is not aligned for `T`.
    pub(crate) fn locked_slice<T: Pod, G>(
        &self,
        offset: usize,
        len: usize,
        guard: G,
    ) -> LockedSlice<'_, T, G> {
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("shared slice size overflows");
        self.check(offset, size, std::mem::align_of::<T>());
        // SAFETY: `offset` is within the mapping (checked), so the pointer is
        // non-null and in bounds.
        let ptr = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(offset).cast::<T>()) };
        LockedSlice {
            ptr,
            len,
            _guard: guard,
            _region: PhantomData,
        }
    }
}

/// A `[T]` in shared memory, borrowed exclusively while a lock guard `G`
/// is held (see [`SharedRegion::locked_slice`]).
pub(crate) struct LockedSlice<'a, T, G> {
    ptr: NonNull<T>,
    len: usize,
    _guard: G,
    _region: PhantomData<&'a SharedRegion>,
}

impl<T, G> LockedSlice<'_, T, G> {
    /// The guard, e.g. to ask whether the previous holder died.
    pub(crate) fn guard(&self) -> &G {
        &self._guard
    }
}

impl<T: Pod, G> std::ops::Deref for LockedSlice<'_, T, G> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the range is in bounds and aligned (checked in
        // `locked_slice`) and stays mapped while the region is borrowed
        // (`'a`). It is initialised: the memfd starts zero-filled, and `T:
        // Pod` makes every byte pattern, zero included, a valid `T` (no
        // padding, no invalid values, no pointers), so bytes written by any
        // process are a valid `T`. Nobody else accesses the range while the
        // guard is held (the protocol in `locked_slice`): the held lock is
        // what makes this shared borrow, and the exclusive one below, free
        // of data races among cooperating processes; the lock's Acquire on
        // taking and Release on dropping order the bytes between holders.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Pod, G> std::ops::DerefMut for LockedSlice<'_, T, G> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow of
        // the view, and the view is the only access to the range anywhere
        // while the lock is held.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// The heap layout of a region under Miri: page-aligned like a mapping.
#[cfg(miri)]
fn miri_layout(len: usize) -> io::Result<std::alloc::Layout> {
    std::alloc::Layout::from_size_align(len, 4096).map_err(io::Error::other)
}

impl Drop for SharedRegion {
    #[cfg(miri)]
    fn drop(&mut self) {
        if let Ok(layout) = miri_layout(self.len) {
            // SAFETY: `ptr` was allocated in `create` with this layout, and
            // no reference into it outlives `&self`.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }

    #[cfg(not(miri))]
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`, and no
        // reference into it outlives `&self` (accessors borrow `self`).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    #[cfg_attr(miri, ignore = "maps a memfd; Miri has no memfd_create or mmap")]
    fn two_mappings_share_memory() {
        let a = SharedRegion::create("test", 4096).unwrap();
        let b = SharedRegion::from_fd(a.fd().try_clone_to_owned().unwrap(), 64).unwrap();
        assert_eq!(b.len(), 4096);
        a.atomic_u64(8).store(42, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(8).load(Ordering::SeqCst), 42);
        a.write_bytes(100, b"hello");
        let mut out = [0u8; 5];
        b.read_bytes(100, &mut out);
        assert_eq!(&out, b"hello");
        let mut v = b"<".to_vec();
        b.append_to(100, 5, &mut v);
        assert_eq!(v, b"<hello");
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a memfd; Miri has no memfd_create or mmap")]
    fn a_released_descriptor_keeps_the_mapping() {
        use std::os::fd::AsRawFd;
        let mut a = SharedRegion::create("test", 4096).unwrap();
        let b = SharedRegion::from_fd(a.fd().try_clone_to_owned().unwrap(), 64).unwrap();
        let link = format!("/proc/self/fd/{}", a.fd().as_raw_fd());
        let (_, ino) = a.identity().unwrap();
        a.release_fd();
        // The descriptor is closed (its number is free, or another file's:
        // `b` keeps the memfd, so its inode is no one else's)...
        let now = std::fs::metadata(&link).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        assert_ne!(now, Some(ino));
        assert!(a.identity().is_err());
        // ...and the memory still shared.
        a.atomic_u64(8).store(7, Ordering::SeqCst);
        assert_eq!(b.atomic_u64(8).load(Ordering::SeqCst), 7);
        b.write_bytes(100, b"back");
        let mut out = [0u8; 4];
        a.read_bytes(100, &mut out);
        assert_eq!(&out, b"back");
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a memfd; Miri has no memfd_create or mmap")]
    fn too_small_or_foreign_is_refused() {
        let a = SharedRegion::create("test", 64).unwrap();
        let err = SharedRegion::from_fd(a.fd().try_clone_to_owned().unwrap(), 128).unwrap_err();
        assert!(err.to_string().contains("smaller"), "{err}");
        let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let err = SharedRegion::from_fd(file, 8).unwrap_err();
        assert!(
            err.to_string().contains("not a multiprocess shared region"),
            "{err}"
        );
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a memfd; Miri has no memfd_create or mmap")]
    fn size_is_sealed() {
        let a = SharedRegion::create("test", 4096).unwrap();
        assert!(rustix::fs::ftruncate(a.fd(), 16).is_err());
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics() {
        let a = SharedRegion::create("test", 64).unwrap();
        a.write_bytes(60, &[0; 8]);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_panics() {
        let a = SharedRegion::create("test", 64).unwrap();
        let _ = a.atomic_u32(2);
    }
}
