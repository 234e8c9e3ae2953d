//! Value, RawValue, Array and RawArray across real processes (CPython's
//! `_TestValue`, `_TestArray`): child writes visible after join, increments
//! under the lock, shared locks, bounds.

mod common;

use bytemuck::{Pod, Zeroable};
use common::{LIMIT, bounded};
use multiprocess::{Array, IndexError, Process, RLock, RawArray, RawValue, Value};

multiprocess::init_before_main!();

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Point {
    x: i32,
    y: i32,
    weight: f64,
}

#[allow(clippy::type_complexity)]
fn write_all(
    vals: (
        Value<i32>,
        Value<f64>,
        Value<i16>,
        Value<i64>,
        Value<u8>,
        Value<Point>,
    ),
) {
    let (a, b, c, d, e, p) = vals;
    a.set(-7);
    b.set(2.5);
    c.set(i16::MIN);
    d.set(1 << 40);
    e.set(b'x');
    *p.lock() = Point {
        x: 1,
        y: -2,
        weight: 0.5,
    };
}

#[test]
fn child_writes_are_visible_after_join() {
    bounded(LIMIT, || {
        let vals = (
            Value::new(0i32).unwrap(),
            Value::new(0f64).unwrap(),
            Value::new(0i16).unwrap(),
            Value::new(0i64).unwrap(),
            Value::new(0u8).unwrap(),
            Value::new(Point::zeroed()).unwrap(),
        );
        let p = Process::new(write_all, (vals.clone(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(vals.0.get(), -7);
        assert_eq!(vals.1.get(), 2.5);
        assert_eq!(vals.2.get(), i16::MIN);
        assert_eq!(vals.3.get(), 1 << 40);
        assert_eq!(vals.4.get(), b'x');
        assert_eq!(
            vals.5.get(),
            Point {
                x: 1,
                y: -2,
                weight: 0.5
            }
        );
    });
}

fn increment(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        *counter.lock() += 1;
    }
}

#[test]
fn four_processes_increment_under_the_lock() {
    bounded(LIMIT, || {
        let counter = Value::new(0u64).unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| Process::new(increment, (counter.clone(), 1000)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(counter.get(), 4000);
    });
}

fn increment_unlocked(counter: Value<u64>, times: u32) {
    for _ in 0..times {
        // get and set each take the lock, but not together: updates may be
        // lost, which is allowed.
        counter.set(counter.get() + 1);
    }
}

#[test]
fn separate_get_and_set_never_exceed_the_count() {
    bounded(LIMIT, || {
        let counter = Value::new(0u64).unwrap();
        let ps: Vec<Process> = (0..4)
            .map(|_| Process::new(increment_unlocked, (counter.clone(), 1000)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        let n = counter.get();
        assert!((1..=4000).contains(&n), "{n}");
    });
}

fn add_pair(a: Value<i64>, b: Value<i64>, lock: RLock, times: u32) {
    for _ in 0..times {
        // Each guard takes the shared lock in turn, and gives it back: this
        // thread holds no level of it between the two. (A check through
        // `try_acquire` would race the other process's release.)
        *a.lock() += 1;
        assert_eq!(lock.depth(), 0);
        *b.lock() -= 1;
        assert_eq!(lock.depth(), 0);
    }
}

#[test]
fn with_lock_shares_the_lock_across_values_and_processes() {
    bounded(LIMIT, || {
        let lock = RLock::new().unwrap();
        let a = Value::with_lock(0i64, lock.clone()).unwrap();
        let b = Value::with_lock(0i64, lock.clone()).unwrap();
        {
            let _g = a.lock();
            assert!(lock.is_locked());
            assert_eq!(b.get_lock().depth(), 1, "one lock, held by this thread");
        }
        assert!(!lock.is_locked());
        let ps: Vec<Process> = (0..2)
            .map(|_| Process::new(add_pair, (a.clone(), b.clone(), lock.clone(), 500)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            assert_eq!(p.join().unwrap(), 0);
        }
        assert_eq!(a.get(), 1000);
        assert_eq!(b.get(), -1000);
    });
}

fn raw_write(v: RawValue<f64>, a: RawArray<u16>) {
    v.set(v.get() + 1.25);
    a.set(1, 9).unwrap();
    a.copy_from_slice(&[a.get(0).unwrap() + 1, a.get(1).unwrap(), 3])
        .unwrap();
}

#[test]
fn raw_value_and_raw_array_get_set_across_processes() {
    bounded(LIMIT, || {
        let v = RawValue::new(1.0f64).unwrap();
        let a = RawArray::<u16>::new(3).unwrap();
        assert_eq!(a.to_vec(), [0, 0, 0]);
        let p = Process::new(raw_write, (v.clone(), a.clone()));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(v.get(), 2.25);
        assert_eq!(a.to_vec(), [1, 9, 3]);
        assert_eq!(a.get(3), None);
        assert!(a.set(3, 0).is_err());
    });
}

fn mutate_array(a: Array<i32>) {
    let mut g = a.lock();
    for x in g.iter_mut() {
        *x += 10;
    }
    g[0] = -1;
}

#[test]
fn array_is_zeroed_indexable_and_child_mutation_is_visible() {
    bounded(LIMIT, || {
        let a = Array::<i32>::new(5).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a.to_vec(), [0; 5]);
        a.set(2, 7).unwrap();
        assert_eq!(a.get(2), Some(7));
        assert_eq!(a.lock()[1..3], [0, 7]);
        a.lock()[3..5].copy_from_slice(&[8, 9]);
        let p = Process::new(mutate_array, (a.clone(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(a.to_vec(), [-1, 10, 17, 18, 19]);
        let b = Array::from_slice(&[1.5f64, 2.5]).unwrap();
        assert_eq!(b.to_vec(), [1.5, 2.5]);
    });
}

#[test]
fn array_bounds_are_errors() {
    let a = Array::<u8>::new(3).unwrap();
    assert_eq!(a.get(3), None);
    let err: IndexError = a.set(3, 1).unwrap_err();
    assert_eq!((err.index, err.len), (3, 3));
    assert_eq!(
        err.to_string(),
        "index 3 is out of range for an array of length 3"
    );
    let err = a.copy_from_slice(&[1, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot copy 2 values into an array of length 3"
    );
    assert!(Array::<u8>::new(0).unwrap().is_empty());
}

#[test]
fn value_travels_to_a_child() {
    bounded(LIMIT, || {
        let v = Value::new(41i32).unwrap();
        *v.lock() += 1;
        let p = Process::new(read_value_exit, (v.clone(),));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
    });
}

fn read_value_exit(v: Value<i32>) {
    assert_eq!(v.get(), 42);
}
