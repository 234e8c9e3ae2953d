//! Behaviours that need a process with a single thread: the Fork start method
//! and closures, and "a child never re-runs main". A `harness = false` test
//! on libtest-mimic, forced to run its tests on the main thread (libtest would
//! put each test on a thread of its own, and `Fork` refuses to fork a
//! multi-threaded process). Works under `cargo test` and `cargo nextest run`.

use std::path::PathBuf;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use multiprocess::{StartMethod, get_context};

fn exits_with(code: i32) {
    std::process::exit(code);
}
fn panics() {
    panic!("deliberate panic in forked child");
}
fn sleeps(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn check(ok: bool, what: &str) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}

const WAIT: Duration = Duration::from_secs(30);

fn fork_exit_codes() -> Result<(), Failed> {
    let fork = get_context(StartMethod::Fork);
    for (want, p) in [
        (0, fork.process(exits_with, (0,))),
        (3, fork.process(exits_with, (3,))),
        (1, fork.process(panics, ())),
    ] {
        p.start()?;
        let got = p.join_timeout(WAIT)?;
        check(
            got == Some(want),
            &format!("exit code {got:?}, want {want}"),
        )?;
    }
    Ok(())
}

fn fork_runs_a_capturing_closure() -> Result<(), Failed> {
    let captured = vec![1u8, 2, 3];
    let out = std::env::temp_dir().join(format!("multiprocess-closure-{}", std::process::id()));
    let target = out.clone();
    let p = get_context(StartMethod::Fork).process_closure(move || {
        std::fs::write(&target, format!("{captured:?}")).unwrap();
    });
    p.start()?;
    check(p.join_timeout(WAIT)? == Some(0), "closure child failed")?;
    let text = std::fs::read_to_string(&out)?;
    std::fs::remove_file(&out)?;
    check(text == "[1, 2, 3]", &format!("child saw {text:?}"))
}

fn fork_terminate() -> Result<(), Failed> {
    let p = get_context(StartMethod::Fork).process(sleeps, (60_000,));
    p.start()?;
    p.terminate()?;
    let got = p.join_timeout(WAIT)?;
    check(got == Some(-15), &format!("exit code {got:?}"))
}

const MARKER_ENV: &str = "MULTIPROCESS_TEST_MARKER";

/// Re-runs this binary on `rerun_main_inner` with a marker file named in the
/// environment (children inherit it): each run of `main` past `init()`
/// appends a line, so a child that re-ran main would show.
fn children_never_rerun_main() -> Result<(), Failed> {
    let marker: PathBuf =
        std::env::temp_dir().join(format!("multiprocess-main-{}", std::process::id()));
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "rerun_main_inner", "--test-threads", "1"])
        .env(MARKER_ENV, &marker)
        .output()?;
    let runs = std::fs::read_to_string(&marker).unwrap_or_default();
    let _ = std::fs::remove_file(&marker);
    check(out.status.success(), &String::from_utf8_lossy(&out.stdout))?;
    check(
        runs == "main\n",
        &format!("main ran {} times", runs.lines().count()),
    )
}

fn rerun_main_inner() -> Result<(), Failed> {
    if std::env::var_os(MARKER_ENV).is_none() {
        return Ok(()); // only meaningful when started by the test above
    }
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let ps: Vec<_> = (0..3)
            .map(|_| get_context(m).process(exits_with, (0,)))
            .collect();
        for p in &ps {
            p.start()?;
        }
        for p in &ps {
            check(p.join_timeout(WAIT)? == Some(0), "child failed")?;
        }
    }
    Ok(())
}

fn main() {
    multiprocess::init();
    if let Some(marker) = std::env::var_os(MARKER_ENV) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(marker)
            .unwrap();
        std::io::Write::write_all(&mut f, b"main\n").unwrap();
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1); // run every test on the main thread
    let tests = vec![
        Trial::test("fork_exit_codes", fork_exit_codes),
        Trial::test(
            "fork_runs_a_capturing_closure",
            fork_runs_a_capturing_closure,
        ),
        Trial::test("fork_terminate", fork_terminate),
        Trial::test("children_never_rerun_main", children_never_rerun_main),
        Trial::test("rerun_main_inner", rerun_main_inner),
    ];
    libtest_mimic::run(&args, tests).exit();
}
