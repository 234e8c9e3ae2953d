//! A dict and a list in a `Manager` (Python's `multiprocessing` documentation
//! example for managers): a child fills the dict and reverses the list, the
//! parent prints both.
//!
//! The same program in Python:
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!         print(d)
//!         print(l)
//! ```
//!
//! Both print:
//! ```text
//! {1: '1', '2': 2, 0.25: None}
//! [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//! ```

use std::fmt;

use multiprocess::{DictProxy, ListProxy, Manager, Process};
use serde::{Deserialize, Serialize};

/// The Python values this example stores, printed as Python's `repr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Py {
    Int(i64),
    Float(f64),
    Str(String),
    None,
}

impl fmt::Display for Py {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::Int(i) => write!(f, "{i}"),
            Py::Float(x) => write!(f, "{x}"),
            Py::Str(s) => write!(f, "'{s}'"),
            Py::None => write!(f, "None"),
        }
    }
}

fn f(d: DictProxy<Py, Py>, l: ListProxy<i64>) {
    d.insert(Py::Int(1), Py::Str("1".into())).unwrap();
    d.insert(Py::Str("2".into()), Py::Int(2)).unwrap();
    d.insert(Py::Float(0.25), Py::None).unwrap();
    let mut items = l.to_vec().unwrap();
    items.reverse();
    l.clear().unwrap();
    l.extend(items).unwrap();
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::new()?;
    let d = manager.dict::<Py, Py>()?;
    let l = manager.list::<i64>()?;
    l.extend(0..10)?;
    let p = Process::new(f, (d.clone(), l.clone()));
    p.start()?;
    assert_eq!(p.join()?, 0, "the child failed");
    let shown: Vec<String> = d
        .items()?
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("{{{}}}", shown.join(", "));
    let shown: Vec<String> = l.to_vec()?.iter().map(|x| x.to_string()).collect();
    println!("[{}]", shown.join(", "));
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
