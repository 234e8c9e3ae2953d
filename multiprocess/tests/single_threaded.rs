//! Behaviours that need a plain `main` (no test harness threads): the Fork
//! start method, closures, and "a child never re-runs main".
//!
//! Run as a `harness = false` test; it prints the plain closing line
//! `N passed, 0 failed` and exits non-zero on the first failure.

use std::path::PathBuf;
use std::time::Duration;

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

fn main() {
    let marker: PathBuf = std::env::temp_dir().join(format!(
        "multiprocess-main-runs-{}",
        std::env::var("MULTIPROCESS_TEST_RUN").unwrap_or_else(|_| std::process::id().to_string())
    ));
    multiprocess::init();
    // Everything below runs in the parent only. Children inherit the
    // variable, so if one re-ran main it would append to the same file.
    // SAFETY-free: set before any thread exists.
    if std::env::var_os("MULTIPROCESS_TEST_RUN").is_none() {
        // Re-run ourselves with the variable set, so children see it.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env("MULTIPROCESS_TEST_RUN", std::process::id().to_string())
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&marker)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"main\n"))
        .unwrap();

    let mut passed = 0;
    let mut check = |name: &str, ok: bool| {
        if ok {
            passed += 1;
            println!("test {name} ... ok");
        } else {
            println!("test {name} ... FAILED");
            println!("0 passed, 1 failed");
            std::process::exit(1);
        }
    };

    let fork = get_context(StartMethod::Fork);
    for (target_code, p) in [
        (0, fork.process(exits_with, (0,))),
        (3, fork.process(exits_with, (3,))),
        (1, fork.process(panics, ())),
    ] {
        p.start().unwrap();
        check(
            "fork_exit_code",
            p.join_timeout(Duration::from_secs(30)).unwrap() == Some(target_code),
        );
    }

    // A closure that captures state: only Fork can run it.
    let captured = vec![1u8, 2, 3];
    let out = marker.with_extension("closure");
    let out2 = out.clone();
    let p = fork.process_closure(move || {
        std::fs::write(&out2, format!("{captured:?}")).unwrap();
    });
    p.start().unwrap();
    check(
        "fork_closure_runs",
        p.join_timeout(Duration::from_secs(30)).unwrap() == Some(0),
    );
    check(
        "fork_closure_sees_captures",
        std::fs::read_to_string(&out).unwrap() == "[1, 2, 3]",
    );
    let _ = std::fs::remove_file(&out);

    let p = fork.process(sleeps, (60_000,));
    p.start().unwrap();
    p.terminate().unwrap();
    check(
        "fork_terminate",
        p.join_timeout(Duration::from_secs(30)).unwrap() == Some(-15),
    );

    // Spawn and ForkServer children never run main past init().
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let ps: Vec<_> = (0..3)
            .map(|_| get_context(m).process(exits_with, (0,)))
            .collect();
        for p in &ps {
            p.start().unwrap();
        }
        for p in &ps {
            check(
                "child_exits_zero",
                p.join_timeout(Duration::from_secs(30)).unwrap() == Some(0),
            );
        }
    }
    let runs = std::fs::read_to_string(&marker).unwrap();
    let _ = std::fs::remove_file(&marker);
    check("children_never_rerun_main", runs == "main\n");

    println!("{passed} passed, 0 failed");
}
