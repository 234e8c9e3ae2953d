//! [`init`]: the one call a binary makes before starting processes, and
//! [`init_before_main!`](crate::init_before_main), which makes it from an
//! ELF constructor.
//!
//! A binary re-executed by this crate is one of three helpers, told apart by
//! the descriptor its parent handed it in the environment: a spawned child
//! (`process/child.rs`), the fork server (`process/forkserver.rs`) or the
//! shared-memory tracker (`shared/tracker.rs`). `init` dispatches to it,
//! which is why it sits above those modules.

use std::os::fd::OwnedFd;

use crate::{process, shared, sys};

/// Prepares this binary to start processes: call it first in `main`.
///
/// In the parent it returns at once. In a child started by the
/// [`Spawn`](crate::StartMethod::Spawn) method, or in the fork server, it never
/// returns: it runs the child's target (or serves fork requests) and exits,
/// so a child never runs the rest of the parent's `main` (no fork bomb).
///
/// # Examples
///
/// ```no_run
/// fn main() {
///     multiprocess::init();
///     // ... start processes
/// }
/// ```
///
/// In a crate's tests, where `main` belongs to the test harness, use
/// [`init_before_main!`](crate::init_before_main) once instead.
///
/// It also registers an `atexit` handler: when `main` returns (or
/// `std::process::exit` is called), the program joins its running non-daemon
/// children and terminates its daemon children first, as Python does at
/// interpreter exit (see [`Process`](crate::Process#when-the-creating-process-exits)).
pub fn init() {
    process::note_init_called();
    #[cfg(feature = "redis")]
    crate::remote::serve_if_worker();
    if let Some(bootstrap) = inherited_fd(process::BOOTSTRAP_ENV, "bootstrap") {
        process::run_spawned(bootstrap)
    }
    if let Some(control) = inherited_fd(process::FORKSERVER_ENV, "fork server") {
        process::serve_fork_requests(control)
    }
    if let Some(listener) = inherited_fd(shared::TRACKER_ENV, "shared memory tracker") {
        shared::serve_tracker(listener)
    }
}

/// The descriptor a parent handed this process in `env`, if any; a bad one
/// ends the process (it was started by us and cannot do its job).
fn inherited_fd(env: &str, what: &str) -> Option<OwnedFd> {
    match sys::process::take_inherited_fd(env)? {
        Ok(fd) => Some(fd),
        Err(e) => {
            eprintln!("multiprocess: bad {what} descriptor: {e}");
            sys::process::exit_now(1)
        }
    }
}

/// Runs [`init`](fn@crate::init) before `main`, from an ELF constructor: the one-line opt-in
/// for test binaries (whose `main` is the test harness's) and for programs
/// that prefer not to touch `main`.
///
/// Put it once at the top level of the crate root, of each integration test
/// file that starts processes, or of a `#[cfg(test)]` module.
///
/// # Examples
///
/// In `tests/my_test.rs`:
///
/// ```
/// multiprocess::init_before_main!();
///
/// fn child() {}
///
/// // #[test]
/// fn starts_a_process() {
///     let p = multiprocess::Process::new(child, ());
///     p.start().unwrap();
///     assert_eq!(p.join().unwrap(), 0);
/// }
/// # starts_a_process();
/// ```
#[macro_export]
macro_rules! init_before_main {
    () => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROCESS_INIT_BEFORE_MAIN: extern "C" fn() = {
            extern "C" fn __multiprocess_init() {
                $crate::init();
            }
            __multiprocess_init
        };
    };
}
