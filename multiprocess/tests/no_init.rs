//! A binary that forgets `multiprocess::init()` gets a clear error instead of
//! children that re-run its `main` (a fork bomb). Plain `main`, no harness.

use multiprocess::{StartError, StartMethod, get_context};

fn child() {}

fn main() {
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let p = get_context(m).process(child, ());
        match p.start() {
            Err(StartError::InitNotCalled) => println!("test {m:?}_refuses_without_init ... ok"),
            other => {
                println!("test {m:?}_refuses_without_init ... FAILED: {other:?}");
                println!("0 passed, 1 failed");
                std::process::exit(1);
            }
        }
    }
    println!("2 passed, 0 failed");
}
