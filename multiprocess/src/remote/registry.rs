//! Which functions run remotely, and under which build.
//!
//! Locally a task is a code offset checked against the executable's
//! identity. Across machines that would let anyone who can write to the
//! server choose where workers jump, so a remote task is *named*:
//! [`remote_task!`](crate::remote_task) puts an entry (its name
//! `module::fn`, its type, its argument and result types, and a runner) in
//! a link-time table. A worker runs only what the table has, by name, and
//! only tasks submitted by a caller with its own [`build_id`].

use std::any::TypeId;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::pool::Task;
use crate::pool::shared_with_remote::run_plain_chunk;

/// One registered function (made by [`remote_task!`](crate::remote_task)).
#[doc(hidden)]
pub struct __TaskEntry {
    /// `module_path!()::name`.
    pub name: &'static str,
    /// The fn item's type and its signature's fingerprint.
    pub describe: fn() -> (TypeId, String),
    /// Runs a chunk: the pool's encoded argument list in, its encoded
    /// chunk outcomes out.
    pub run: fn(&[u8]) -> Vec<u8>,
}

/// Every function registered with [`remote_task!`](crate::remote_task) in
/// this executable: complete at link time, before `main` or any
/// constructor runs.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static __TASKS: [__TaskEntry];

/// The type and signature fingerprint of `f` (for the registry).
#[doc(hidden)]
pub fn __describe<F: Task<Args>, Args: 'static>(_f: F) -> (TypeId, String) {
    (TypeId::of::<F>(), fingerprint::<Args, F::Output>())
}

pub(crate) fn fingerprint<Args: 'static, R: 'static>() -> String {
    format!(
        "{} -> {}",
        std::any::type_name::<Args>(),
        std::any::type_name::<R>()
    )
}

/// Runs a chunk of calls of `f` (the registry's runner): the local
/// pool's list encoding in, its chunk-outcome encoding out.
#[doc(hidden)]
pub fn __run<F, Args>(f: F, payload: &[u8]) -> Vec<u8>
where
    F: Task<Args>,
    Args: DeserializeOwned + Send + 'static,
{
    let mut out = Vec::new();
    run_plain_chunk(move |args: Args| f.run(args), payload, &mut out);
    out
}

/// What the registry knows about a task type, looked up at submit.
pub(crate) struct Registered {
    pub(crate) name: &'static str,
    pub(crate) fingerprint: String,
}

/// The registration of the fn item `F`, if [`remote_task!`](crate::remote_task) made one.
pub(crate) fn lookup<F: 'static>() -> Option<Registered> {
    let id = TypeId::of::<F>();
    __TASKS.iter().find_map(|e| {
        let (tid, fingerprint) = (e.describe)();
        (tid == id).then_some(Registered {
            name: e.name,
            fingerprint,
        })
    })
}

/// The runner and fingerprint registered under `name`.
pub(crate) fn by_name(name: &str) -> Option<(&'static __TaskEntry, String)> {
    __TASKS
        .iter()
        .find(|e| e.name == name)
        .map(|e| (e, (e.describe)().1))
}

/// The names of every registered function, sorted.
pub(crate) fn names() -> Vec<&'static str> {
    let mut v: Vec<_> = __TASKS.iter().map(|e| e.name).collect();
    v.sort_unstable();
    v
}

/// The SHA-256 of this process's executable, as 64 hex digits: the
/// identity of a build. Tasks go to workers of the caller's build only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct BuildId(pub String);

impl BuildId {
    /// The first 16 hex digits (what keys and messages show).
    pub fn short(&self) -> &str {
        &self.0[..16.min(self.0.len())]
    }
}

impl std::fmt::Display for BuildId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

/// This executable's [`BuildId`] (read and hashed once).
///
/// # Examples
///
/// ```
/// let id = multiprocess::remote::build_id();
/// assert_eq!(id.0.len(), 64);
/// ```
pub fn build_id() -> &'static BuildId {
    static ID: OnceLock<BuildId> = OnceLock::new();
    ID.get_or_init(|| {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        match std::fs::File::open("/proc/self/exe") {
            Ok(mut f) => {
                use std::io::Read;
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n @ 1..) = f.read(&mut buf) {
                    hasher.update(&buf[..n]);
                }
            }
            Err(_) => hasher.update(b"unknown executable"),
        }
        BuildId(
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    })
}

/// Registers functions to run on remote workers (see
/// [`multiprocess::remote`](crate::remote)): each is named
/// `module_path!()::name`, and a worker started from the same executable
/// runs it by that name.
///
/// Put it at module level, next to the functions. A function that is not
/// registered fails at submit with
/// [`PoolError::NotRegistered`](crate::PoolError::NotRegistered), and
/// nothing is sent.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
/// multiprocess::remote_task!(square, add);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! remote_task {
    ($($f:ident),+ $(,)?) => {$(
        const _: () = {
            #[$crate::__linkme::distributed_slice($crate::remote::__TASKS)]
            #[linkme(crate = $crate::__linkme)]
            static __MULTIPROCESS_REMOTE_TASK: $crate::remote::__TaskEntry =
                $crate::remote::__TaskEntry {
                    name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!($f)),
                    describe: || $crate::remote::__describe($f),
                    run: |payload| $crate::remote::__run($f, payload),
                };
        };
    )+};
}
