//! The worker process: runs chunks from its task queue until told to stop,
//! its task budget is spent, or the pool's process dies (workers are
//! daemons).

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::error::TaskError;
use super::wire::{
    ALL_OK, MIXED, Outcome, Progress, RawBytes, ResultMsg, ResultView, TaskView, WorkerArgs,
    decode_list_into, encode_list, put_with_tail,
};
use crate::codec;
use crate::process::{ChildEntry, with_error_text};
use crate::sys::code::{self, Signature};

/// The worker keeps its read and result buffers across chunks up to this
/// size (larger ones are freed after their chunk).
const KEEP_BUFFER: usize = 4 << 20;

/// The signature of a pool task entry point: runs one chunk of calls whose
/// encoded arguments are the payload, reporting progress through the
/// context, and appends the encoded outcomes to the output buffer.
pub struct ChunkEntry;

impl Signature for ChunkEntry {
    type In<'a> = (&'a [u8], &'a mut ChunkCtx<'a>, &'a mut Vec<u8>);
    type Out = ();
}

/// A pool task entry point (see `sys::code`).
pub(crate) type TaskEntry = code::Entry<ChunkEntry>;

/// What a running chunk knows about itself: its number, the calls to skip,
/// and where to record progress.
pub struct ChunkCtx<'a> {
    seq: u64,
    count: u32,
    skip: &'a [u32],
    progress: &'a Progress,
}

thread_local! {
    /// Whether a task is running on this thread (the panic hook records
    /// panics only then, and lets others print as usual).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// The last task panic's message, location and backtrace.
    static LAST_PANIC: RefCell<Option<(String, Option<String>, String)>> =
        const { RefCell::new(None) };
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Installs a panic hook that, while a task runs, keeps the panic's message
/// and backtrace for the pool instead of printing them (the caller gets
/// them in a `TaskError`, as Python re-raises a task's exception).
pub(crate) fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_TASK.with(Cell::get) {
            let message = payload_text(info.payload());
            let location = info.location().map(|l| l.to_string());
            let backtrace = std::backtrace::Backtrace::force_capture().to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location, backtrace)));
        } else {
            previous(info);
        }
    }));
}

pub(crate) fn call<R>(run: impl FnOnce() -> Result<R, String>) -> Outcome<R> {
    IN_TASK.with(|t| t.set(true));
    let result = catch_unwind(AssertUnwindSafe(run));
    IN_TASK.with(|t| t.set(false));
    match result {
        Ok(Ok(value)) => Outcome::Ok(value),
        Ok(Err(message)) => Outcome::Err(TaskError::Failed { message }),
        Err(payload) => {
            let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
            let (message, location, backtrace) = match recorded {
                Some((m, l, b)) => (m, l, Some(b)),
                None => (payload_text(&*payload), None, None),
            };
            Outcome::Err(TaskError::Panicked {
                message,
                location,
                backtrace,
            })
        }
    }
}

/// Runs a chunk: decodes the calls' arguments, runs each (recording
/// progress before each call), and encodes the outcomes into `out`. Called
/// from the task entry trampoline in `task.rs`.
///
/// While every call succeeds, the results are kept as a plain `Vec<R>` and
/// sent as one (`ALL_OK`): no per-call outcome tag to encode or decode. The
/// first failure or skipped call switches to one `Outcome` per call
/// (`MIXED`).
pub(crate) fn run_chunk<Args, R>(
    task: impl Fn(Args) -> Result<R, String>,
    payload: &[u8],
    ctx: &mut ChunkCtx<'_>,
    out: &mut Vec<u8>,
) where
    Args: DeserializeOwned + 'static,
    R: serde::Serialize + 'static,
{
    let mut items: Vec<Args> = Vec::new();
    match decode_list_into(payload, &mut items) {
        Ok(_) => {}
        Err(e) => {
            let error = TaskError::Decode {
                what: "arguments".into(),
                message: e.to_string(),
            };
            let outcomes: Vec<Outcome<R>> = (0..ctx.count)
                .map(|_| Outcome::Err(error.clone()))
                .collect();
            return encode_outcomes(outcomes, out);
        }
    };
    let mut oks: Vec<R> = Vec::with_capacity(items.len());
    let mut mixed: Option<Vec<Outcome<R>>> = None;
    let mut skip = ctx.skip.iter().copied().peekable();
    let index_word = ctx.progress.index_word();
    let mut started = false;
    for (i, args) in items.into_iter().enumerate() {
        let i = i as u32;
        let outcome = if skip.peek() == Some(&i) {
            skip.next();
            Outcome::Skipped
        } else {
            if started {
                index_word.store(u64::from(i), Ordering::Release);
            } else {
                ctx.progress.start(ctx.seq, i);
                started = true;
            }
            call(|| task(args))
        };
        match (&mut mixed, outcome) {
            (None, Outcome::Ok(v)) => oks.push(v),
            (Some(m), outcome) => m.push(outcome),
            (None, outcome) => {
                let mut m: Vec<Outcome<R>> = Vec::with_capacity(ctx.count as usize);
                m.extend(oks.drain(..).map(Outcome::Ok));
                m.push(outcome);
                mixed = Some(m);
            }
        }
    }
    // Past the last call: a death from now on (while sending the results)
    // blames no call, and the chunk is simply run again.
    ctx.progress.start(ctx.seq, ctx.count);
    match mixed {
        Some(outcomes) => encode_outcomes(outcomes, out),
        None => encode_all_ok(oks, out),
    }
}

/// Runs a chunk without a shared-memory context (a remote worker's): decodes
/// the calls' arguments, runs each, and encodes the outcomes into `out` in
/// the same format as [`run_chunk`], so the same jobs receive them.
#[cfg(feature = "redis")]
pub(crate) fn run_plain_chunk<Args, R>(
    task: impl Fn(Args) -> Result<R, String>,
    payload: &[u8],
    out: &mut Vec<u8>,
) where
    Args: DeserializeOwned + 'static,
    R: serde::Serialize + 'static,
{
    let mut items: Vec<Args> = Vec::new();
    if let Err(e) = decode_list_into(payload, &mut items) {
        let error = TaskError::Decode {
            what: "arguments".into(),
            message: e.to_string(),
        };
        return encode_outcomes::<R>(vec![Outcome::Err(error)], out);
    }
    let mut oks: Vec<R> = Vec::with_capacity(items.len());
    let mut mixed: Option<Vec<Outcome<R>>> = None;
    for args in items {
        match (&mut mixed, call(|| task(args))) {
            (None, Outcome::Ok(v)) => oks.push(v),
            (Some(m), outcome) => m.push(outcome),
            (None, outcome) => {
                let mut m: Vec<Outcome<R>> = oks.drain(..).map(Outcome::Ok).collect();
                m.push(outcome);
                mixed = Some(m);
            }
        }
    }
    match mixed {
        Some(outcomes) => encode_outcomes(outcomes, out),
        None => encode_all_ok(oks, out),
    }
}

/// Encodes the results of a chunk whose calls all succeeded (`ALL_OK`);
/// falls back to [`encode_outcomes`] if a result does not serialize.
fn encode_all_ok<R: serde::Serialize + 'static>(results: Vec<R>, out: &mut Vec<u8>) {
    let mut fds = Vec::new();
    out.clear();
    out.push(ALL_OK);
    if encode_list(&results, out, &mut fds).is_ok() && fds.is_empty() {
        return;
    }
    encode_outcomes(results.into_iter().map(Outcome::Ok).collect(), out)
}

/// Encodes the outcomes (`MIXED`); if that fails (a result that does not
/// serialize, or holds an OS handle), encodes them one by one, replacing
/// each failing result with an error, so the other results and the worker
/// survive.
fn encode_outcomes<R: serde::Serialize>(outcomes: Vec<Outcome<R>>, out: &mut Vec<u8>) {
    let mut fds = Vec::new();
    out.clear();
    out.push(MIXED);
    if codec::encode_into(&outcomes, out, &mut fds).is_ok() && fds.is_empty() {
        return;
    }
    out.clear();
    out.push(MIXED);
    fds.clear();
    codec::encode_into(&outcomes.len(), out, &mut fds).expect("a length always encodes");
    let mut one = Vec::new();
    for outcome in &outcomes {
        one.clear();
        fds.clear();
        let failure = match codec::encode_into(outcome, &mut one, &mut fds) {
            Ok(()) if fds.is_empty() => None,
            Ok(()) => {
                Some("a task result cannot carry an OS handle (Queue, Lock, Connection)".into())
            }
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => out.extend_from_slice(&one),
            Some(message) => {
                let error: Outcome<R> = Outcome::Err(TaskError::Unserializable { message });
                one.clear();
                codec::encode_into(&error, &mut one, &mut fds).expect("an error always encodes");
                out.extend_from_slice(&one);
            }
        }
    }
}

/// The worker process's target.
pub(crate) fn worker_main(args: WorkerArgs) {
    install_panic_hook();
    crate::sys::alloc::keep_freed_memory();
    let WorkerArgs {
        id,
        tasks,
        results,
        progress,
        init,
        max_tasks,
    } = args;
    if let Some(init) = init {
        let failure = match code::resolve::<ChildEntry>(init.entry, init.exe) {
            Err(e) => Some(e.to_string()),
            Ok(entry) => {
                let fds = init.fds.into_iter().map(|f| f.0).collect();
                let (outcome, text) = with_error_text(|| {
                    catch_unwind(AssertUnwindSafe(|| entry.call((&init.args, fds))))
                });
                match (outcome, text) {
                    (Ok(0), _) => None,
                    (Ok(_), Some(text)) => Some(format!("the initializer returned Err: {text}")),
                    (Ok(code), None) => Some(format!("the initializer failed (exit code {code})")),
                    (Err(p), _) => Some(format!("the initializer panicked: {}", payload_text(&*p))),
                }
            }
        };
        if let Some(message) = failure {
            let _ = results.put(ResultMsg::InitFailed {
                worker: id,
                message,
            });
            std::process::exit(1);
        }
    }
    // The pool, our parent, names each chunk's code by offset.
    let parent_code = match code::ParentCode::get() {
        Ok(proof) => proof,
        Err(e) => {
            eprintln!("multiprocess: pool worker cannot run its pool's tasks: {e}");
            std::process::exit(1);
        }
    };
    let mut done = 0u64;
    // Read and result buffers, kept across chunks.
    let mut input = Vec::new();
    let mut body = Vec::new();
    loop {
        tasks.get_encoded(&mut input, None);
        let (seq, entry, count, skip, payload) = match postcard::from_bytes(&input) {
            Ok(TaskView::Stop) => return,
            Ok(TaskView::Run {
                seq,
                entry,
                count,
                skip,
                payload,
            }) => (seq, entry, count, skip, payload),
            Err(e) => {
                eprintln!("multiprocess: pool worker cannot read its task queue: {e}");
                std::process::exit(1);
            }
        };
        let started = Instant::now();
        let entry = parent_code.resolve::<ChunkEntry>(entry);
        let mut ctx = ChunkCtx {
            seq,
            count,
            skip: &skip,
            progress: &progress,
        };
        entry.call((payload.0, &mut ctx, &mut body));
        let nanos = started.elapsed().as_nanos() as u64;
        let msg = ResultView::Done {
            worker: id,
            seq,
            nanos,
            body: RawBytes(&[]),
        };
        put_with_tail(&results, &msg, &body, None, None);
        for buf in [&mut input, &mut body] {
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
        }
        done += 1;
        if max_tasks.is_some_and(|max| done >= max) {
            return;
        }
    }
}
