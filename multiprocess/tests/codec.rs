//! What crosses a process boundary and what is refused, in words: a custom
//! `Serialize` error keeps its text in every error that reports it (Python's
//! `MaybeEncodingError`), serde features the encoding cannot round trip are
//! refused at the sender, and a task may return the caller's own type.

mod common;

use common::{LIMIT, bounded};
use multiprocess::{Executor, Pipe, Pool, PoolError, Queue, SendError, TaskError, TaskReturn};
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
        assert_eq!(fut.result().unwrap().value, vec![5, 5]);
    });
}
