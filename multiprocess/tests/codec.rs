//! What crosses a process boundary and what is refused, in words: a custom
//! `Serialize` error keeps its text in every error that reports it (Python's
//! `MaybeEncodingError`), serde features the encoding cannot round trip are
//! refused at the sender, and a task may return the caller's own type.

mod common;

use common::{LIMIT, bounded};
use multiprocess::{
    Executor, Pipe, Pool, PoolError, Process, Queue, SendError, StartError, TaskError, TaskReturn,
};
use serde::{Deserialize, Serialize};

multiprocess::init_before_main!();

/// A value whose serialization always fails with its own reason.
#[derive(Deserialize, Debug, PartialEq)]
struct Refuses(u32);
impl Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("no way"))
    }
}

fn make_refuses(x: u32) -> Result<Refuses, String> {
    Ok(Refuses(x))
}

fn take_refuses(r: Refuses) -> u32 {
    r.0
}

#[test]
fn a_custom_serialize_error_keeps_its_text_in_queue_put() {
    let q: Queue<Refuses> = Queue::new().unwrap();
    let err = q.put(Refuses(7)).unwrap_err();
    assert!(err.to_string().contains("no way"), "{err}");
    assert_eq!(err.into_inner(), Refuses(7));
}

#[test]
fn a_custom_serialize_error_keeps_its_text_in_pipe_send() {
    let (a, _b) = Pipe::new::<Refuses, Refuses>().unwrap();
    match a.send(Refuses(7)) {
        Err(SendError::Encode(value, e)) => {
            assert!(e.to_string().contains("no way"), "{e}");
            assert_eq!(value, Refuses(7));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_custom_serialize_error_keeps_its_text_in_pool_arguments_and_results() {
    bounded(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        match pool.apply(take_refuses, (Refuses(1),)) {
            Err(e @ PoolError::Encode(_)) => assert!(e.to_string().contains("no way"), "{e}"),
            other => panic!("{other:?}"),
        }
        match pool.apply(make_refuses, (1,)) {
            Err(PoolError::Task {
                error: error @ TaskError::Unserializable { .. },
                ..
            }) => assert!(error.to_string().contains("no way"), "{error}"),
            other => panic!("{other:?}"),
        }
    });
}

/// The caller's own type, returned by a task with no hand-written impl.
#[derive(Serialize, Deserialize, TaskReturn, Debug, PartialEq)]
struct Stats {
    n: usize,
    mean: f64,
}

/// A generic one: the derive bounds the impl by the type's serde bounds.
#[derive(Serialize, Deserialize, TaskReturn, Debug, PartialEq)]
struct Tagged<T> {
    tag: String,
    value: T,
}

fn stats(xs: Vec<f64>) -> Stats {
    Stats {
        n: xs.len(),
        mean: xs.iter().sum::<f64>() / xs.len() as f64,
    }
}

fn tagged(x: u32) -> Tagged<Vec<u32>> {
    Tagged {
        tag: format!("#{x}"),
        value: vec![x; 2],
    }
}

#[test]
fn a_task_returns_its_own_derived_type_from_pool_and_executor() {
    bounded(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(
            pool.apply(stats, (vec![1.0, 2.0, 6.0],)).unwrap(),
            Stats { n: 3, mean: 3.0 }
        );
        let got = pool.map(tagged, 0..3).unwrap();
        assert_eq!(
            got[2],
            Tagged {
                tag: "#2".into(),
                value: vec![2, 2]
            }
        );
        drop(pool);
        let ex = Executor::new(1).unwrap();
        let fut = ex.submit(tagged, (5,)).unwrap();
        assert_eq!(fut.take_result().unwrap().value, vec![5, 5]);
        match ex.submit(echo_loose, (Loose::Number(1),)) {
            Err(e) => assert!(e.to_string().contains("untagged"), "{e}"),
            Ok(_) => panic!("an untagged argument was submitted"),
        }
    });
}

/// serde's untagged enum: encodes fine, but its Deserialize needs
/// `deserialize_any`, which postcard will never implement.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(untagged)]
enum Loose {
    Number(u32),
    Text(String),
}

/// A field skipped when empty: fewer fields written than read back.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sparse {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    tags: Vec<u32>,
    id: u8,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Inner {
    a: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Flat {
    #[serde(flatten)]
    inner: Inner,
}

fn echo_loose(x: Loose) -> u32 {
    match x {
        Loose::Number(n) => n,
        Loose::Text(_) => 0,
    }
}

fn make_loose(x: u32) -> Result<Loose, String> {
    Ok(Loose::Number(x))
}

#[test]
fn an_untagged_enum_is_refused_at_queue_put_naming_the_cause() {
    let q: Queue<Loose> = Queue::new().unwrap();
    for value in [Loose::Number(3), Loose::Text("x".repeat(1000))] {
        let err = q.put(value.clone()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("untagged") && text.contains("Vec<u8>"),
            "{text}"
        );
        assert_eq!(err.into_inner(), value, "the value is handed back");
    }
    assert_eq!(q.qsize(), 0, "nothing was put");
}

#[test]
fn skip_serializing_if_and_flatten_are_refused_at_queue_put() {
    // The first `Sparse` this process sends skips its field (the check
    // judges a type by its first value; no other test sends a `Sparse`).
    let q: Queue<Sparse> = Queue::new().unwrap();
    let err = q
        .put(Sparse {
            tags: vec![],
            id: 9,
        })
        .unwrap_err();
    assert!(err.to_string().contains("skip_serializing_if"), "{err}");
    assert_eq!(
        err.into_inner(),
        Sparse {
            tags: vec![],
            id: 9
        }
    );
    let q: Queue<Flat> = Queue::new().unwrap();
    let err = q
        .put(Flat {
            inner: Inner { a: 1 },
        })
        .unwrap_err();
    assert!(err.to_string().contains("flatten"), "{err}");
}

#[test]
fn an_untagged_enum_is_refused_at_pipe_send_naming_the_cause() {
    let (a, b) = Pipe::new::<Loose, Loose>().unwrap();
    match a.send(Loose::Number(4)) {
        Err(SendError::Encode(value, e)) => {
            assert!(e.to_string().contains("untagged"), "{e}");
            assert_eq!(value, Loose::Number(4));
        }
        other => panic!("{other:?}"),
    }
    // Nothing was sent; the pipe still works for a type that round trips.
    let (c, d) = Pipe::new::<Inner, Inner>().unwrap();
    c.send(Inner { a: 2 }).unwrap();
    assert_eq!(d.recv().unwrap(), Inner { a: 2 });
    drop(a);
    assert!(b.recv().is_err());
}

#[test]
fn an_untagged_enum_as_pool_argument_or_result_fails_naming_the_cause() {
    bounded(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        // Arguments: refused by the caller, nothing submitted.
        match pool.apply(echo_loose, (Loose::Number(1),)) {
            Err(e @ PoolError::Encode(_)) => assert!(e.to_string().contains("untagged"), "{e}"),
            other => panic!("{other:?}"),
        }
        match pool.map(echo_loose, vec![Loose::Number(1), Loose::Number(2)]) {
            Err(e @ PoolError::Encode(_)) => assert!(e.to_string().contains("untagged"), "{e}"),
            other => panic!("{other:?}"),
        }
        // Results: the caller's decode names the cause.
        match pool.apply(make_loose, (1,)) {
            Err(e) => assert!(e.to_string().contains("untagged"), "{e}"),
            Ok(v) => panic!("{v:?}"),
        }
        // The pool keeps working.
        assert_eq!(pool.apply(take_refuses_not, (2,)).unwrap(), 2);
    });
}

fn take_refuses_not(x: u32) -> u32 {
    x
}

fn loose_target(_x: Loose) {}

#[test]
fn an_untagged_enum_as_process_argument_is_refused_at_start() {
    bounded(LIMIT, || {
        let p = Process::new(loose_target, (Loose::Number(1),));
        match p.start() {
            Err(e @ StartError::Encode(_)) => assert!(e.to_string().contains("untagged"), "{e}"),
            other => panic!("{other:?}"),
        }
    });
}
