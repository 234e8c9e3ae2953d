//! What a pool runs: plain functions over serde values, returning a value or
//! a `Result`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Display;

use serde::Serialize;
use serde::de::DeserializeOwned;

use std::marker::PhantomData;

use super::worker::{ChunkEntry, TaskEntry, run_chunk};
use crate::sys::code::{self, Body, Signature};

/// The trampoline of task `F` with arguments `Args`: runs a chunk of calls
/// of the task (recreated by `sys::code`).
struct RunChunk<F, Args>(PhantomData<fn(Args) -> F>);

impl<F, Args> Body for RunChunk<F, Args>
where
    F: Task<Args>,
    Args: DeserializeOwned + 'static,
{
    type Sig = ChunkEntry;
    type Target = F;

    fn run(task: F, (payload, ctx, out): <ChunkEntry as Signature>::In<'_>) {
        run_chunk(move |args: Args| task.run(args), payload, ctx, out)
    }
}

/// What a pool task may return: a plain value, which is its result, or a
/// `Result`, whose `Err` becomes a [`TaskError::Failed`](crate::TaskError::Failed)
/// carrying the error's `Display` text (as a raised exception does in Python).
///
/// Implemented for `Result<T, E: Display>` and for the standard library's
/// serde types (numbers, `bool`, `char`, `String`, `()`, `Vec`, `Option`,
/// `Box`, tuples, maps and sets). For your own serde type, derive it:
///
/// ```no_run
/// use multiprocess::{Pool, TaskReturn};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, TaskReturn)]
/// struct Stats { mean: f64 }
///
/// fn stats(xs: Vec<f64>) -> Stats {
///     Stats { mean: xs.iter().sum::<f64>() / xs.len() as f64 }
/// }
///
/// # multiprocess::init_before_main!();
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.apply(stats, (vec![1.0, 3.0],))?.mean, 2.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// or return `Result<Stats, E>` from the task. Generic types work too: the
/// derive implements the trait wherever the type is `Serialize +
/// DeserializeOwned + Send + 'static`.
///
/// Why a derive and not a blanket impl for every serde type: such an impl
/// would overlap the one for `Result<T, E>` (a `Result` of serde types is a
/// serde type), and Rust has no way to say "every serde type except
/// `Result`", so the two cannot coexist; a marker type parameter on
/// [`Task`] instead would make every task returning `Result<T, String>`
/// ambiguous. Without the derive (or the `Result`), the compiler says so:
///
/// ```compile_fail,E0277
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Stats { mean: f64 }
///
/// fn stats(x: f64) -> Stats { Stats { mean: x } }
///
/// let pool = multiprocess::Pool::new(1).unwrap();
/// // error: `stats` cannot be run as a pool task ... add #[derive(multiprocess::TaskReturn)]
/// pool.apply(stats, (1.0,));
/// ```
#[diagnostic::on_unimplemented(
    message = "a pool task cannot return `{Self}`: it does not implement `TaskReturn`",
    label = "the task's return type must implement `TaskReturn`",
    note = "add `#[derive(multiprocess::TaskReturn)]` next to serde's `Serialize, Deserialize` on the type, or return `Result<{Self}, E>` with `E: Display`"
)]
pub trait TaskReturn: Send + 'static {
    /// The value sent back to the pool's caller.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The result, or the error's text.
    fn into_result(self) -> Result<Self::Output, String>;
}

impl<T, E> TaskReturn for Result<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display + Send + 'static,
{
    type Output = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

macro_rules! plain_return {
    ($([$($g:ident),*] $t:ty),* $(,)?) => {$(
        impl<$($g),*> TaskReturn for $t
        where
            $t: Serialize + DeserializeOwned + Send + 'static,
        {
            type Output = $t;
            fn into_result(self) -> Result<$t, String> {
                Ok(self)
            }
        }
    )*};
}

plain_return!(
    [] (), [] bool, [] char, [] String,
    [] u8, [] u16, [] u32, [] u64, [] u128, [] usize,
    [] i8, [] i16, [] i32, [] i64, [] i128, [] isize,
    [] f32, [] f64,
    [T] Vec<T>, [T] Option<T>, [T] Box<T>, [T] VecDeque<T>,
    [T] BTreeSet<T>, [T] HashSet<T>, [K, V] BTreeMap<K, V>, [K, V] HashMap<K, V>,
    [A] (A,), [A, B] (A, B), [A, B, C] (A, B, C), [A, B, C, D] (A, B, C, D),
    [A, B, C, D, E] (A, B, C, D, E), [A, B, C, D, E, F] (A, B, C, D, E, F),
);

/// A function that a [`Pool`](crate::Pool) can run with arguments of type
/// `Args` (a tuple).
///
/// Implemented for every `fn` item and non-capturing closure of arity 0 to 6
/// whose parameters are serde values and whose return type is a
/// [`TaskReturn`]. As for a [`Process`](crate::Process) target, the function
/// is named across processes by its code offset, so it must not capture
/// anything (a capturing closure is a compile-time error).
///
/// A task that borrows an argument is refused at compile time: arguments
/// are decoded in the worker, so they must be owned. rustc reports it in its
/// own words, not through this trait's message (the failure is a lifetime
/// one, which `#[diagnostic::on_unimplemented]` cannot catch):
/// "implementation of `Deserialize` is not general enough: `&str` must
/// implement `Deserialize<'0>`, for any lifetime `'0`" — take `String`, not
/// `&str` (`Vec<T>`, not `&[T]`):
///
/// ```compile_fail
/// fn shout(s: &str) -> String { s.to_uppercase() }
///
/// let pool = multiprocess::Pool::new(1).unwrap();
/// // error: implementation of `Deserialize` is not general enough
/// pool.apply(shout, ("hi",));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be run as a pool task with arguments `{Args}`",
    label = "not a pool task for these arguments",
    note = "a task is a fn item or a closure that captures nothing, taking 0 to 6 arguments that are owned serde values (take `String`, not `&str`; `Vec<T>`, not `&[T]`: arguments are decoded in the worker, so they must be owned)",
    note = "a task returns a `TaskReturn`: a standard serde value, `Result<T, E: Display>`, or your own serde type with `#[derive(multiprocess::TaskReturn)]` on it",
    note = "the arguments are passed as a tuple: `pool.apply(f, (x,))` for one"
)]
pub trait Task<Args>: Copy + Send + Sync + 'static {
    /// The task's result type.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs the task.
    #[doc(hidden)]
    fn run(self, args: Args) -> Result<Self::Output, String>;

    /// The worker entry point for this task and argument type.
    #[doc(hidden)]
    fn entry(self) -> TaskEntry;

    /// Checks that `args` (an `Args`, or for `map` its one element, which
    /// encodes the same) would decode as this task's arguments in the
    /// worker: serde attributes the encoding cannot round trip are refused
    /// by the caller (see `codec/probe.rs`).
    #[doc(hidden)]
    fn check_args<V: Serialize + ?Sized>(args: &V) -> Result<(), crate::EncodeError>
    where
        Self: Sized;
}

/// [`Task::check_args`] on the first of `items` (the check is once per
/// type, so one item is enough).
pub(crate) fn check_first<F: Task<Args>, Args, V: Serialize>(
    items: &[V],
) -> Result<(), crate::EncodeError> {
    items.first().map_or(Ok(()), F::check_args)
}

macro_rules! impl_task {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a),*> Task<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + Sync + 'static,
            Ret: TaskReturn,
            $($a: Serialize + DeserializeOwned + Send + 'static,)*
        {
            type Output = Ret::Output;

            #[allow(non_snake_case)]
            fn run(self, args: ($($a,)*)) -> Result<Ret::Output, String> {
                let ($($a,)*) = args;
                (self)($($a),*).into_result()
            }

            fn entry(self) -> TaskEntry {
                const {
                    assert!(
                        std::mem::size_of::<Func>() == 0,
                        "a pool task must be a fn item or a closure that captures nothing"
                    )
                };
                code::entry::<RunChunk<Func, ($($a,)*)>>(self)
            }

            fn check_args<V: Serialize + ?Sized>(args: &V) -> Result<(), crate::EncodeError> {
                crate::codec::check_as::<($($a,)*), V>(args)
            }
        }
    };
}

impl_task!();
impl_task!(A1);
impl_task!(A1, A2);
impl_task!(A1, A2, A3);
impl_task!(A1, A2, A3, A4);
impl_task!(A1, A2, A3, A4, A5);
impl_task!(A1, A2, A3, A4, A5, A6);
