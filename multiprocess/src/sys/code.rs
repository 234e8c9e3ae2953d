//! Naming code across an `exec` of the same binary.
//!
//! A spawned child re-executes `/proc/self/exe`, so every function sits at the
//! same offset from any other function of the image, whatever the address
//! space layout. A process sends the offset of a monomorphised entry point
//! relative to [`anchor`]; the receiver adds it back. The exe's device and
//! inode travel too, so a receiver that runs another binary refuses to jump.
//!
//! # Design: the unsafe part here, the generic part above
//!
//! As lock_api keeps the unsafe contract of a raw lock small and low and the
//! generic code above it, this file holds the two unsafe operations and
//! names nothing above `sys`:
//!
//! 1. **offset → function pointer** ([`resolve`], [`ParentCode::resolve`]):
//!    a transmute of an address, done only after the executable identity
//!    check: of the sender's identity, or, for offsets from this process's
//!    parent (a pool's tasks), of the parent's, which a [`ParentCode`]
//!    token proves was checked when this process started;
//! 2. **recreating a zero-sized target** in the shim that [`entry`] hands out.
//!
//! The layers above describe an entry point with two safe traits:
//! a [`Signature`] (what an entry takes and returns, e.g. the encoded
//! arguments and an exit code) and a [`Body`] (what it does with the
//! recreated target, e.g. decode the arguments and call it). The trampolines
//! are those `Body` impls: `process/target.rs`, `pool/task.rs` and
//! `sync/barrier.rs` each define theirs.
//!
//! Soundness of (2) comes from the only way to get an [`Entry`]: the
//! function [`entry`] takes a *value* of the target type `B::Target`, and is
//! the only code that names the shim `shim::<B>` that recreates it. A
//! function pointer to that shim therefore exists only if a value of the
//! zero-sized, `Copy` target existed in some process of this executable;
//! recreating another one from no bytes is then a copy, which `Copy`
//! allows. An uninhabited type (size 0 too) cannot reach [`entry`], having no
//! value to pass. Nothing above `sys` can recreate a value by itself: a
//! `Body` only *receives* the target.
//!
//! What (1) trusts: an offset given to [`resolve`] comes from
//! [`Entry::offset`] for the same [`Signature`] in a process of this very
//! executable. The channels offsets travel on are private to the process
//! tree (the child spec, the pool's task queues), except a barrier's shared
//! page, which any holder of the handle can write: there the offset is
//! authenticated with the tree's key before it reaches [`resolve`]
//! (`sync/barrier.rs`).

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

/// The shape of a family of entry points: what an entry takes and returns.
///
/// Implemented by the layer above for a marker type; every entry of one
/// signature has the same function-pointer type, so an offset can be turned
/// back into a callable pointer without knowing which target it names.
pub trait Signature: 'static {
    /// The entry's input.
    type In<'a>;
    /// The entry's output.
    type Out;
}

/// What an entry point does with its recreated target: the trampoline.
///
/// Safe to implement: `run` receives a target that [`entry`] guarantees
/// existed; it cannot make one.
pub(crate) trait Body: 'static {
    /// The entry point's signature.
    type Sig: Signature;
    /// The zero-sized target (a `fn` item or a closure that captures
    /// nothing) that the entry recreates.
    type Target: Copy + 'static;
    /// Runs the target on the entry's input.
    fn run(
        target: Self::Target,
        input: <Self::Sig as Signature>::In<'_>,
    ) -> <Self::Sig as Signature>::Out;
}

/// An entry point of signature `S`: callable here, or sent to another
/// process of this executable as an offset.
pub struct Entry<S: Signature> {
    f: for<'a> fn(S::In<'a>) -> S::Out,
    _sig: PhantomData<S>,
}

impl<S: Signature> Clone for Entry<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Signature> Copy for Entry<S> {}

impl<S: Signature> std::fmt::Debug for Entry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Entry").field(&self.offset()).finish()
    }
}

impl<S: Signature> Entry<S> {
    /// Calls the entry point.
    #[inline]
    pub(crate) fn call(self, input: S::In<'_>) -> S::Out {
        (self.f)(input)
    }

    /// The offset of this entry from the anchor, as sent to another process.
    pub(crate) fn offset(self) -> i64 {
        (self.f as usize as i64).wrapping_sub(anchor as fn() as usize as i64)
    }
}

/// The entry point that recreates `target` and runs `B` on it.
///
/// Taking a value of the target is what makes recreating it sound (see the
/// module docs); a target that is not zero-sized is a compile-time error.
pub(crate) fn entry<B: Body>(target: B::Target) -> Entry<B::Sig> {
    const {
        assert!(
            std::mem::size_of::<B::Target>() == 0,
            "code named across processes must be a fn item or a closure that captures nothing"
        )
    };
    let _ = target;
    fn shim<B: Body>(input: <B::Sig as Signature>::In<'_>) -> <B::Sig as Signature>::Out {
        // SAFETY: `B::Target` is zero-sized (asserted at compile time in
        // `entry`) and `Copy`, and this shim is only named in `entry`, which
        // takes a value of `B::Target`: a value existed, and making another
        // is a copy, which `Copy` allows. A zero-sized value has no bytes, so
        // "all zero bytes" is its one representation.
        let target: B::Target = unsafe { std::mem::zeroed() };
        B::run(target, input)
    }
    Entry {
        f: shim::<B>,
        _sig: PhantomData,
    }
}

/// The reference point for offsets; never called.
#[inline(never)]
fn anchor() {}

/// Turns an offset made by [`Entry::offset`] in a process whose executable
/// had identity `exe` back into the entry, after checking that this process
/// runs the very same executable.
///
/// # Errors
/// If this process runs another executable, or `/proc/self/exe` cannot be
/// read.
pub(crate) fn resolve<S: Signature>(offset: i64, exe: (u64, u64)) -> io::Result<Entry<S>> {
    let here = exe_identity()?;
    if here != exe {
        return Err(io::Error::other(format!(
            "this process runs another executable (dev, inode) {here:?} than the one \
             that named the code {exe:?}"
        )));
    }
    Ok(unchecked(offset))
}

/// Set once this process knows that its parent runs this very executable.
static PARENT_SAME_EXE: AtomicBool = AtomicBool::new(false);

/// Records that this process's parent runs this very executable: a child
/// calls it once the identity its parent sent has matched ([`resolve`] of
/// its entry point succeeded), a forked child because it is a copy of its
/// parent.
pub(crate) fn note_parent_runs_this_exe() {
    PARENT_SAME_EXE.store(true, Ordering::Relaxed);
}

/// Proof that this process's parent runs this very executable, so that
/// offsets it sends resolve without an identity each (a pool worker
/// resolving its pool's task offsets, once per chunk).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParentCode(());

impl ParentCode {
    /// The proof, if this process's start recorded it
    /// ([`note_parent_runs_this_exe`]).
    ///
    /// # Errors
    /// If this process was not started by a parent of this very executable
    /// through this crate.
    pub(crate) fn get() -> io::Result<ParentCode> {
        if PARENT_SAME_EXE.load(Ordering::Relaxed) {
            Ok(ParentCode(()))
        } else {
            Err(io::Error::other(
                "this process was not started by a process of this executable, \
                 so it cannot run code its parent names",
            ))
        }
    }

    /// Turns an offset made by [`Entry::offset`] in this process's parent
    /// back into the entry.
    pub(crate) fn resolve<S: Signature>(self, offset: i64) -> Entry<S> {
        unchecked(offset)
    }
}

/// The entry at `offset` from the anchor. The caller has checked that the
/// offset was made by [`Entry::offset`] in a process of this very
/// executable.
fn unchecked<S: Signature>(offset: i64) -> Entry<S> {
    let addr = (anchor as fn() as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: `offset` was computed by `Entry::<S>::offset` from a function
    // pointer of this very type in the same executable image (checked by
    // `resolve`, or when the `ParentCode` proof was recorded), and relative
    // distances between functions of one image do not change with its load
    // address; function pointers are `usize`-sized on our targets.
    let f = unsafe { std::mem::transmute::<usize, for<'a> fn(S::In<'a>) -> S::Out>(addr) };
    Entry {
        f,
        _sig: PhantomData,
    }
}

/// Device and inode of the running executable, to check that parent and child
/// run the same image. Read once per process (a process's image never
/// changes; a forked child shares its parent's).
pub(crate) fn exe_identity() -> io::Result<(u64, u64)> {
    static EXE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    if let Some(id) = EXE.get() {
        return Ok(*id);
    }
    let st = rustix::fs::stat("/proc/self/exe")?;
    Ok(*EXE.get_or_init(|| (st.st_dev, st.st_ino)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Twice;
    impl Signature for Twice {
        type In<'a> = &'a mut Vec<u32>;
        type Out = usize;
    }
    struct PushTwice<F>(PhantomData<F>);
    impl<F: Fn() -> u32 + Copy + 'static> Body for PushTwice<F> {
        type Sig = Twice;
        type Target = F;
        fn run(f: F, out: &mut Vec<u32>) -> usize {
            out.push(f());
            out.push(f());
            out.len()
        }
    }

    fn seven() -> u32 {
        7
    }

    #[test]
    #[cfg_attr(miri, ignore = "stats /proc/self/exe, which Miri cannot")]
    fn an_offset_resolves_to_the_same_entry() {
        let e = entry::<PushTwice<_>>(seven);
        let back: Entry<Twice> = resolve(e.offset(), exe_identity().unwrap()).unwrap();
        assert_eq!(back.offset(), e.offset());
        let mut out = Vec::new();
        assert_eq!(back.call(&mut out), 2);
        assert_eq!(out, [7, 7]);
        let closure = entry::<PushTwice<_>>(|| 3);
        assert_ne!(closure.offset(), e.offset());
        assert_eq!(closure.call(&mut out), 4);
    }

    #[test]
    fn a_process_not_started_by_this_crate_has_no_parent_code() {
        // The test binary was started by cargo, not by a parent of this
        // executable through this crate (only children note it).
        let err = ParentCode::get().unwrap_err();
        assert!(err.to_string().contains("not started by"), "{err}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "stats /proc/self/exe, which Miri cannot")]
    fn another_executable_is_refused() {
        let e = entry::<PushTwice<_>>(seven);
        let (dev, ino) = exe_identity().unwrap();
        let err = resolve::<Twice>(e.offset(), (dev, ino ^ 1)).unwrap_err();
        assert!(err.to_string().contains("another executable"), "{err}");
    }
}
