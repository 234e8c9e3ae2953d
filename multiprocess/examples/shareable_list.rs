//! A `ShareableList` shared by name (Python's `shared_memory.ShareableList`
//! documentation example): the parent creates a mixed list, a child attaches
//! it by name and changes three slots (one of them to another kind), the
//! parent reads the changes and hits the slot's fixed capacity.
//!
//! The same program in Python:
//! ```python
//! from multiprocessing import Process, shared_memory
//!
//! def modify(name):
//!     c = shared_memory.ShareableList(name=name)
//!     c[2] = -78.5
//!     c[3] += 1
//!     c[-1] = -999
//!     c[2] = 'dry ice'
//!     c.shm.close()
//!
//! if __name__ == "__main__":
//!     a = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
//!     print([type(entry).__name__ for entry in a])
//!     print(a[2])
//!     p = Process(target=modify, args=(a.shm.name,))
//!     p.start()
//!     p.join()
//!     print(list(a))
//!     try:
//!         a[2] = 'larger than previously allocated storage space'
//!     except ValueError as e:
//!         print("ValueError:", e)
//!     print(a[2])
//!     print(len(a))
//!     print(a.index(-999))
//!     print(a.count(b'howdy'))
//!     print(a.count(b'HoWdY'))
//!     a.shm.close()
//!     a.shm.unlink()
//! ```
//!
//! Both print:
//! ```text
//! ['str', 'bytes', 'float', 'int', 'NoneType', 'bool', 'int']
//! -273.154
//! ['howdy', b'HoWdY', 'dry ice', 101, None, True, -999]
//! ValueError: bytes/str item exceeds available storage
//! dry ice
//! 7
//! 6
//! 0
//! 1
//! ```

use multiprocess::{Item, Process, ShareableList, ShareableListError, items};

/// Attaches the list by name and changes slots 2, 3 and 6.
fn modify(name: String) -> Result<(), ShareableListError> {
    let c = ShareableList::attach(&name)?;
    c.set(2, -78.5)?;
    c.set(3, c.get_int(3)? + 1)?;
    c.set(c.len() - 1, -999)?;
    c.set(2, "dry ice")?; // a float slot takes a short str
    Ok(())
}

/// `[a, b, c]` with each element as Python's `repr` shows it.
fn python_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let shown: Vec<String> = items.into_iter().map(|x| x.to_string()).collect();
    format!("[{}]", shown.join(", "))
}

/// The example's body (the tour calls it too).
pub(crate) fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = ShareableList::new(items![
        "howdy",
        b"HoWdY",
        -273.154,
        100,
        Item::None,
        true,
        42
    ])?;
    let kinds = a.to_vec()?.into_iter().map(|x| format!("'{}'", x.kind()));
    println!("{}", python_list(kinds));
    println!("{}", a.get(2)?);

    let p = Process::new(modify, (a.name().to_owned(),));
    p.start()?;
    assert_eq!(p.join()?, 0, "the child failed");
    println!("{}", python_list(a.to_vec()?));

    match a.set(2, "larger than previously allocated storage space") {
        Err(ShareableListError::ExceedsStorage { .. }) => {
            println!("ValueError: bytes/str item exceeds available storage")
        }
        other => panic!("expected ExceedsStorage, got {other:?}"),
    }
    println!("{}", a.get_str(2)?); // unchanged: 'dry ice' without quotes, as print(a[2])
    println!("{}", a.len());
    println!("{}", a.index(-999)?.expect("-999 is in the list"));
    println!("{}", a.count(b"howdy")?);
    println!("{}", a.count(b"HoWdY")?);
    a.unlink()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiprocess::init();
    run()
}
