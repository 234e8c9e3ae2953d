//! The layering rule of ARCHITECTURE.md, checked on the sources: `src/sys/`
//! is the floor and names nothing above it.
//!
//! Every file under `src/sys/` may name the crate only as `crate::sys::…`
//! (itself) or `crate::deadline::…` (a leaf of plain `std` time arithmetic,
//! checked below to name nothing of the crate). Any other `crate::X`, a
//! `super::super` (or, in `sys/mod.rs`, any `super::`) that climbs out of
//! `sys`, `#[path]` and `include!` are reported with their file and line.
//! Comments are not code and are skipped: an intra-doc link creates no
//! dependency.

use std::path::{Path, PathBuf};

/// What `src/sys/` may name with `crate::`.
const ALLOWED: &[&str] = &["sys", "deadline"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The line without its `//` comment (a naive cut: a `//` inside a string
/// literal also ends the code, which can only hide text, never invent it).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// The names a `crate::` path starts with: one, or those of a `{…}` group
/// (whose first path segments are taken).
fn names_after(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match rest.strip_prefix('{') {
        Some(group) => {
            let inner = group.split('}').next().unwrap_or(group);
            inner
                .split(',')
                .map(ident)
                .filter(|n| !n.is_empty())
                .collect()
        }
        None => vec![ident(rest)],
    }
}

/// The violations in one file's text, as `(line number, what)`.
fn violations(text: &str, is_mod_rs: bool, allowed: &[&str]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_block_comment = false;
    for (i, line) in text.lines().enumerate() {
        let mut code = code_of(line).to_string();
        // Block comments, roughly: whole lines between `/*` and `*/`.
        if in_block_comment {
            match code.find("*/") {
                Some(end) => {
                    code = code[end + 2..].to_string();
                    in_block_comment = false;
                }
                None => continue,
            }
        }
        if let Some(start) = code.find("/*") {
            in_block_comment = !code[start..].contains("*/");
            code.truncate(start);
        }
        let n = i + 1;
        for (at, _) in code.match_indices("crate::") {
            // `$crate::` in a macro is the crate's root too.
            let rest = &code[at + "crate::".len()..];
            for name in names_after(rest) {
                if !allowed.contains(&name.as_str()) {
                    found.push((n, format!("names `crate::{name}`, above sys")));
                }
            }
        }
        if code.contains("super::super") {
            found.push((n, "climbs out with `super::super`".into()));
        } else if is_mod_rs && code.contains("super::") {
            found.push((n, "climbs out with `super::` from sys/mod.rs".into()));
        }
        if code.contains("#[path") {
            found.push((
                n,
                "a `#[path]` attribute can pull in a file from elsewhere".into(),
            ));
        }
        if code.contains("include!") {
            found.push((n, "`include!` can pull in text from elsewhere".into()));
        }
        if code.contains("extern crate self") {
            found.push((n, "`extern crate self` names the crate root".into()));
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn sys_names_nothing_above_it() {
    let mut files = Vec::new();
    rust_files(&src().join("sys"), &mut files);
    files.sort();
    assert!(files.len() > 10, "found only {files:?} under src/sys");
    let mut report = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod_rs = file.file_name().is_some_and(|f| f == "mod.rs")
            && file.parent() == Some(&src().join("sys"));
        for (line, what) in violations(&text, is_mod_rs, ALLOWED) {
            let shown = file
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(file);
            report.push(format!("{}:{line}: {what}", shown.display()));
        }
    }
    assert!(
        report.is_empty(),
        "src/sys/ must not depend on the layers above it:\n{}",
        report.join("\n")
    );
}

#[test]
fn deadline_is_a_leaf() {
    let text = std::fs::read_to_string(src().join("deadline.rs")).unwrap();
    let found = violations(&text, true, &[]);
    assert!(
        found.is_empty(),
        "src/deadline.rs, which sys may use, must name nothing of the crate: {found:?}"
    );
}

#[test]
fn the_checker_finds_what_it_should() {
    let text = "\
use crate::sys::fd;
use crate::pool::Task;
/// [`Connection`](crate::Connection) in a comment is fine
let x = crate::deadline::after(d); // crate::queue in a comment
use crate::{sys, handle};
use super::super::sync::raw_lock;
/* crate::process
   crate::shared */ use crate::connection;
fn f() -> $crate::Process {}
";
    let found: Vec<usize> = violations(text, false, ALLOWED)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(found, [2, 5, 6, 8, 9]);
    let found = violations("use super::shm;\n", true, ALLOWED);
    assert_eq!(found.len(), 1);
    assert!(violations("use super::shm;\n", false, ALLOWED).is_empty());
}
