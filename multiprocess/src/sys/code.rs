//! Naming code across an `exec` of the same binary.
//!
//! A spawned child re-executes `/proc/self/exe`, so every function sits at the
//! same offset from any other function of the image, whatever the address
//! space layout. The parent sends the offset of a monomorphised entry point
//! relative to [`anchor`]; the child adds it back. The exe's device and inode
//! travel too, so a child that is somehow another binary refuses to jump.

use std::io;

/// A child entry point: decodes the arguments from bytes plus descriptors,
/// runs the target, and returns the process exit code.
pub(crate) type Entry = fn(&[u8], Vec<std::os::fd::OwnedFd>) -> i32;

/// The reference point for offsets; never called.
#[inline(never)]
fn anchor() {}

/// The offset of `entry` from the anchor, as sent to a child.
pub(crate) fn entry_offset(entry: Entry) -> i64 {
    (entry as usize as i64).wrapping_sub(anchor as fn() as usize as i64)
}

/// Turns an offset made by [`entry_offset`] in a parent whose executable had
/// identity `exe` back into the entry point, after checking that this process
/// runs the very same executable.
pub(crate) fn resolve_entry(offset: i64, exe: (u64, u64)) -> io::Result<Entry> {
    let here = exe_identity()?;
    if here != exe {
        return Err(io::Error::other(format!(
            "this child runs another executable (dev, inode) {here:?} than its parent {exe:?}"
        )));
    }
    let addr = (anchor as fn() as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: the parent computed `offset` with `entry_offset` from a value of
    // type `Entry` in the same executable image (checked just above), and
    // relative distances between functions of one image do not change with
    // its load address; function pointers are `usize`-sized on our targets.
    Ok(unsafe { std::mem::transmute::<usize, Entry>(addr) })
}

/// The entry point that decodes `Args` and calls the target `F` in a child.
///
/// Only obtainable through `Target::entry(self)`, i.e. from a value of `F`:
/// that is what makes recreating `F` in the child sound.
pub(crate) fn entry_for<F, Args>(_target: F) -> Entry
where
    F: crate::process::Target<Args>,
    Args: serde::de::DeserializeOwned + 'static,
{
    const { assert!(std::mem::size_of::<F>() == 0) };
    fn trampoline<F, Args>(bytes: &[u8], fds: Vec<std::os::fd::OwnedFd>) -> i32
    where
        F: crate::process::Target<Args>,
        Args: serde::de::DeserializeOwned + 'static,
    {
        let args: Args = match crate::codec::decode(bytes, fds) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("multiprocess: cannot decode the process arguments: {e}");
                return 1;
            }
        };
        // SAFETY: `F` is zero-sized (asserted at compile time in `entry_for`)
        // and `Copy`, and this trampoline is only reachable through
        // `entry_for`, which takes a value of `F`: the parent held one, and
        // the child holds a copy of it, which `Copy` allows. A zero-sized
        // value has no bytes, so "all zero bytes" is its one representation.
        let target: F = unsafe { std::mem::zeroed() };
        target.call(args)
    }
    trampoline::<F, Args>
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

/// A pool task entry point: runs one chunk of calls whose encoded arguments
/// are `payload`, reporting progress through the context, and appends the
/// encoded outcomes to `out` (instead of returning an exit code).
pub(crate) type TaskEntry = fn(&[u8], &mut crate::pool::ChunkCtx<'_>, &mut Vec<u8>);

/// The offset of a task entry from the anchor, as sent to a pool worker.
pub(crate) fn task_entry_offset(entry: TaskEntry) -> i64 {
    (entry as usize as i64).wrapping_sub(anchor as fn() as usize as i64)
}

/// Turns an offset made by [`task_entry_offset`] back into the task entry.
///
/// The caller is a pool worker: a child whose own entry point was already
/// resolved through [`resolve_entry`], which checked that it runs the very
/// same executable as the pool's process. Offsets only ever come from the
/// pool's task messages, which the pool writes with `task_entry_offset`.
pub(crate) fn resolve_task_entry(offset: i64) -> TaskEntry {
    let addr = (anchor as fn() as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: the pool computed `offset` with `task_entry_offset` from a
    // value of type `TaskEntry` in this same executable image (the worker's
    // start checked the executable identity), and relative distances between
    // functions of one image do not change with its load address.
    unsafe { std::mem::transmute::<usize, TaskEntry>(addr) }
}

/// The task entry point that decodes a chunk of `Args` and calls the task
/// `F` on each in a pool worker.
///
/// Only obtainable from a value of `F` (through `Task::entry`), which is what
/// makes recreating `F` in the worker sound.
pub(crate) fn task_entry_for<F, Args>(_task: F) -> TaskEntry
where
    F: crate::pool::Task<Args>,
    Args: serde::de::DeserializeOwned + 'static,
{
    const { assert!(std::mem::size_of::<F>() == 0) };
    fn trampoline<F, Args>(payload: &[u8], ctx: &mut crate::pool::ChunkCtx<'_>, out: &mut Vec<u8>)
    where
        F: crate::pool::Task<Args>,
        Args: serde::de::DeserializeOwned + 'static,
    {
        // SAFETY: as in `entry_for`: `F` is zero-sized (asserted at compile
        // time in `task_entry_for`) and `Copy`, and this trampoline is only
        // reachable through `task_entry_for`, which takes a value of `F`.
        let task: F = unsafe { std::mem::zeroed() };
        crate::pool::run_chunk::<F, Args>(task, payload, ctx, out)
    }
    trampoline::<F, Args>
}

/// A barrier action: a plain `fn()` (or non-capturing closure) recreated
/// from its type, so that any process of the same executable can run it.
pub(crate) type ActionEntry = fn();

/// The entry point that recreates and calls the zero-sized action `F`.
///
/// Only obtainable from a value of `F`, which is what makes recreating it
/// sound (as for [`entry_for`]).
pub(crate) fn action_entry_for<F: Fn() + Copy + 'static>(_action: F) -> ActionEntry {
    const { assert!(std::mem::size_of::<F>() == 0) };
    fn trampoline<F: Fn() + Copy + 'static>() {
        // SAFETY: as in `entry_for`: `F` is zero-sized (asserted at compile
        // time in `action_entry_for`) and `Copy`, and this trampoline is only
        // reachable through `action_entry_for`, which takes a value of `F`.
        let action: F = unsafe { std::mem::zeroed() };
        action()
    }
    trampoline::<F>
}

/// The offset of an action from the anchor, to store in shared memory.
pub(crate) fn action_offset(entry: ActionEntry) -> i64 {
    (entry as usize as i64).wrapping_sub(anchor as fn() as usize as i64)
}

/// Turns an offset made by [`action_offset`] in a process whose executable
/// had identity `exe` back into the action, after checking that this process
/// runs the very same executable.
pub(crate) fn resolve_action(offset: i64, exe: (u64, u64)) -> io::Result<ActionEntry> {
    let here = exe_identity()?;
    if here != exe {
        return Err(io::Error::other(format!(
            "this process runs another executable (dev, inode) {here:?} than the one \
             that named the action {exe:?}"
        )));
    }
    let addr = (anchor as fn() as usize as i64).wrapping_add(offset) as usize;
    // SAFETY: `offset` was computed with `action_offset` from a value of type
    // `ActionEntry` in the same executable image (checked just above), and
    // relative distances between functions of one image do not change with
    // its load address; function pointers are `usize`-sized on our targets.
    Ok(unsafe { std::mem::transmute::<usize, ActionEntry>(addr) })
}
