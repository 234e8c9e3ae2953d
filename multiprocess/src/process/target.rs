//! What a process runs: plain functions over serde values.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;

use crate::sys::code::{self, Body, Signature};

/// The signature of a child entry point: decodes the arguments from bytes
/// plus descriptors, runs the target, and returns the process exit code.
pub struct ChildEntry;

impl Signature for ChildEntry {
    type In<'a> = (&'a [u8], Vec<OwnedFd>);
    type Out = i32;
}

/// A child entry point (see `sys::code`).
pub(crate) type Entry = code::Entry<ChildEntry>;

/// The trampoline of target `F` with arguments `Args`: decodes the
/// arguments and calls the target (recreated by `sys::code`).
struct RunTarget<F, Args>(PhantomData<fn(Args) -> F>);

impl<F, Args> Body for RunTarget<F, Args>
where
    F: Target<Args>,
    Args: DeserializeOwned + 'static,
{
    type Sig = ChildEntry;
    type Target = F;

    fn run(target: F, (bytes, fds): <ChildEntry as Signature>::In<'_>) -> i32 {
        let args: Args = match crate::codec::decode(bytes, fds) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("multiprocess: cannot decode the process arguments: {e}");
                return 1;
            }
        };
        target.call(args)
    }
}

/// What a target function may return: `()` (exit code 0), or a `Result` whose
/// `Err` is printed to the child's stderr and gives exit code 1, as an
/// uncaught exception does in Python.
#[diagnostic::on_unimplemented(
    message = "a process target cannot return `{Self}`",
    label = "the target's return type",
    note = "a target returns `()` or `Result<(), E>` with `E: Debug`; to send a value back, pass a `Queue` or a `Connection` as an argument and put it there (or use a `Pool`, whose tasks return values)"
)]
pub trait TargetResult {
    /// The process exit code for this result.
    fn exit_code(self) -> i32;
}

impl TargetResult for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl<E: Debug> TargetResult for Result<(), E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                match super::header::get() {
                    Some(header) => eprintln!("{header}\nError: {e:?}"),
                    None => eprintln!("Error: {e:?}"),
                }
                LAST_ERROR.with(|last| *last.borrow_mut() = Some(format!("{e:?}")));
                1
            }
        }
    }
}

thread_local! {
    /// The text of the last `Err` a target returned on this thread, for
    /// callers that report it elsewhere (a pool worker's initializer).
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` (which calls a target) and returns its result with the text of
/// the `Err` the target returned, if it returned one.
pub(crate) fn with_error_text<R>(f: impl FnOnce() -> R) -> (R, Option<String>) {
    LAST_ERROR.with(|last| last.borrow_mut().take());
    let r = f();
    (r, LAST_ERROR.with(|last| last.borrow_mut().take()))
}

/// A function that a [`Process`](crate::Process) can run with arguments of
/// type `Args` (a tuple).
///
/// Implemented for every `fn` item and non-capturing closure of arity 0 to 6
/// whose parameters are serde values and whose return type is a
/// [`TargetResult`]. Because a spawned child is a fresh execution of the same
/// binary, the target must not capture anything: a capturing closure is a
/// compile-time error (use [`Context::process_closure`](crate::Context::process_closure)
/// with the `Fork` start method for those).
///
/// A target that borrows an argument is refused at compile time: arguments
/// are decoded in the child, so they must be owned. rustc reports it in its
/// own words, not through this trait's message (the failure is a lifetime
/// one, which `#[diagnostic::on_unimplemented]` cannot catch):
/// "implementation of `Deserialize` is not general enough: `&str` must
/// implement `Deserialize<'0>`, for any lifetime `'0`" — take `String`, not
/// `&str` (`Vec<T>`, not `&[T]`):
///
/// ```compile_fail
/// fn greet(name: &str) { println!("hello {name}"); }
///
/// // error: implementation of `Deserialize` is not general enough
/// let p = multiprocess::Process::new(greet, ("world",));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a process target with arguments `{Args}`",
    label = "not a process target for these arguments",
    note = "a target is a fn item or a closure that captures nothing, taking 0 to 6 arguments that are owned serde values (take `String`, not `&str`; `Vec<T>`, not `&[T]`: arguments are decoded in the child, so they must be owned), and returning `()` or `Result<(), E: Debug>`",
    note = "the arguments are passed as a tuple: `Process::new(f, (x,))` for one"
)]
pub trait Target<Args>: Copy + Send + Sync + 'static {
    /// Runs the target and returns its exit code.
    #[doc(hidden)]
    fn call(self, args: Args) -> i32;

    /// The child entry point for this target and argument type.
    #[doc(hidden)]
    fn entry(self) -> Entry;

    /// Checks that `args` would decode as this target's arguments in the
    /// child (serde attributes the encoding cannot round trip are refused
    /// at `start`; see `codec/probe.rs`).
    #[doc(hidden)]
    fn check_args<V: Serialize + ?Sized>(args: &V) -> Result<(), crate::EncodeError>
    where
        Self: Sized;
}

macro_rules! impl_target {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a),*> Target<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + Sync + 'static,
            Ret: TargetResult,
            $($a: Serialize + DeserializeOwned + Send + 'static,)*
        {
            #[allow(non_snake_case)]
            fn call(self, args: ($($a,)*)) -> i32 {
                let ($($a,)*) = args;
                (self)($($a),*).exit_code()
            }

            fn entry(self) -> Entry {
                const {
                    assert!(
                        std::mem::size_of::<Func>() == 0,
                        "a process target must be a fn item or a closure that captures nothing"
                    )
                };
                code::entry::<RunTarget<Func, ($($a,)*)>>(self)
            }

            fn check_args<V: Serialize + ?Sized>(args: &V) -> Result<(), crate::EncodeError> {
                crate::codec::check_as::<($($a,)*), V>(args)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);
