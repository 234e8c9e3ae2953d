//! A binary that forgets `multiprocess::init()` gets a clear error instead of
//! children that re-run its `main` (a fork bomb). `harness = false` on
//! libtest-mimic, so that no `init_before_main!` is involved either.

use libtest_mimic::{Arguments, Failed, Trial};
use multiprocess::{StartError, StartMethod, get_context};

fn child() {}

fn refuses(m: StartMethod) -> Result<(), Failed> {
    match get_context(m).process(child, ()).start() {
        Err(StartError::InitNotCalled) => Ok(()),
        other => Err(format!("{m:?}: {other:?}").into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("spawn_refuses_without_init", || refuses(StartMethod::Spawn)),
        Trial::test("forkserver_refuses_without_init", || {
            refuses(StartMethod::ForkServer)
        }),
    ];
    libtest_mimic::run(&args, tests).exit();
}
