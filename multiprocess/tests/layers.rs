//! The layering of ARCHITECTURE.md, checked on the sources.
//!
//! 1. The top-level modules form layers, lowest first, and a module names
//!    only modules of lower layers; modules sharing a layer are independent
//!    and do not name each other ([`LAYERS`]):
//!    `deadline` (plain `std` time arithmetic) < `sys` (the floor: the only
//!    `unsafe`, every syscall) < `codec` < `process`, `connection` < `sync`
//!    < `queue`, `shared` < `pool`, `wait`, `init`, `fuzzing` < `lib.rs`
//!    (the root, which re-exports the public API).
//! 2. No import loops between files: the graph "file A names an item of
//!    file B" has no cycle. Edges between a file and its ancestors (a child
//!    using its `mod.rs`, a `mod.rs` declaring and re-exporting its
//!    children) are the normal shape of a module tree and are left out.
//! 3. `src/sys/` has no `#[path]`, `include!` or `extern crate self`, which
//!    could bring in code this reading of the module tree does not see.
//!
//! A file names another through `crate::…`/`$crate::…`, `super::…`,
//! `self::…` or a child module's name, `{…}` groups expanded. A path leads
//! to the longest prefix that is a file's module; a name that file imports
//! (`use`/`pub use x::Name`, as `lib.rs` re-exports the public types) is
//! followed to the file it comes from. Comments and string literals are not
//! code (an intra-doc link creates no dependency), nor are tests:
//! `#[cfg(test)] mod … { … }` blocks and `tests.rs` files may look across.
//! `#[cfg(loom)]` and `#[cfg(doc)]` code is real code and counts.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The top-level modules (files and directories directly under `src/`),
/// lowest layer first. `fuzzing.rs` is mounted as `__fuzz` but named here
/// by its file.
const LAYERS: &[&[&str]] = &[
    &["deadline", "backend"],
    &["sys"],
    &["codec"],
    &["process", "connection"],
    &["sync"],
    &["queue", "shared"],
    &["pool", "manager", "wait", "fuzzing"],
    // The Redis backend (feature `redis`) builds on the pool's jobs; `init`
    // dispatches to its worker loop.
    &["remote"],
    &["init"],
    &["lib.rs"],
];

/// The `.rs` files under `dir`, as `(path under src/, text)`.
fn rust_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.strip_prefix(src()).unwrap().to_string_lossy();
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((name.replace('\\', "/"), text));
        }
    }
}

/// The text with comments and string/char literals blanked out; newlines
/// are kept, so line numbers hold. (Block comments are taken as not nested.)
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, x)| c.get(i + k) == Some(&x));
    // The index just past the first `end` from `i` on, a `\` escaping the
    // next char if `escapes`.
    let past = |mut i: usize, end: &str, escapes: bool| {
        while i < c.len() && !at(i, end) {
            i += if escapes && c[i] == '\\' { 2 } else { 1 };
        }
        i + end.len()
    };
    let (mut out, mut i) = (String::with_capacity(text.len()), 0);
    while i < c.len() {
        let after_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        let hashes = c[i + 1..].iter().take_while(|&&x| x == '#').count();
        let end = if at(i, "//") {
            past(i, "\n", false)
        } else if at(i, "/*") {
            past(i + 2, "*/", false)
        } else if c[i] == '"' {
            past(i + 1, "\"", true)
        } else if c[i] == 'r' && !after_ident && c.get(i + 1 + hashes) == Some(&'"') {
            past(i + 2 + hashes, &format!("\"{}", "#".repeat(hashes)), false)
        } else if at(i, "'\\") {
            past(i + 1, "'", true) // '\n', '\'', '\u{…}'
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        let end = end.min(c.len());
        out.extend(
            c[i..end]
                .iter()
                .map(|&x| if x == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// One token of code and its line: an identifier, `::` or one other char.
struct Tok {
    text: String,
    line: usize,
}

fn tokens(code: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line.trim_start();
        while let Some(first) = rest.chars().next() {
            let len = if first.is_alphanumeric() || first == '_' {
                rest.find(|c: char| !c.is_alphanumeric() && c != '_')
                    .unwrap_or(rest.len())
            } else if rest.starts_with("::") {
                2
            } else {
                first.len_utf8()
            };
            let text = rest[..len].to_string();
            out.push(Tok { text, line: n + 1 });
            rest = rest[len..].trim_start();
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// A path as written: its segments, its line and the name a `use` binds.
type Written = (Vec<String>, usize, Option<String>);

/// Reads the path (or `use` tree) starting at `toks[i]` after `prefix`,
/// pushing each leaf to `out`; returns the index after it.
fn use_tree(toks: &[Tok], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Written>) -> usize {
    let t = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    while is_ident(t(i)) {
        let line = toks[i].line;
        if t(i) != "self" || prefix.is_empty() {
            prefix.push(t(i).to_string()); // `a::{self}` is `a`
        }
        let bound = |alias: &str| Some(alias.to_string()).filter(|a| is_ident(a));
        match (t(i + 1), t(i + 2)) {
            ("::", "{") => {
                i += 3;
                while i < toks.len() && t(i) != "}" {
                    i = use_tree(toks, i, prefix.clone(), out).max(i + 1);
                }
                return i + 1;
            }
            ("::", next) if is_ident(next) => i += 2,
            ("::", "*") => {
                out.push((prefix, line, None));
                return i + 3;
            }
            ("as", alias) => {
                out.push((prefix, line, bound(alias)));
                return i + 3;
            }
            _ => {
                let name = bound(prefix.last().unwrap());
                out.push((prefix, line, name));
                return i + 1;
            }
        }
    }
    i
}

/// What one source file names: its module, the crate paths it names (made
/// absolute, with their lines) and the names its `use` lines bind.
struct File {
    path: String,
    module: Vec<String>,
    named: Vec<(usize, Vec<String>)>,
    bindings: HashMap<String, Vec<String>>,
}

/// The module of a file by its path under `src/`: `pool/core.rs` is
/// `pool::core`, `pool/mod.rs` is `pool`, `lib.rs` is the root.
fn module_of(path: &str) -> Vec<String> {
    let mut module: Vec<String> = path[..path.len() - 3].split('/').map(Into::into).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    module
}

fn scan(path: &str, text: &str) -> File {
    let toks = tokens(&code_only(text));
    let t = |i: usize| toks.get(i).map_or("", |t| t.text.as_str());
    let children: HashSet<&str> = (0..toks.len())
        .filter(|&i| t(i) == "mod" && matches!(t(i + 2), ";" | "{"))
        .map(|i| t(i + 1))
        .collect();
    let mut file = File {
        path: path.to_string(),
        module: module_of(path),
        named: Vec::new(),
        bindings: HashMap::new(),
    };
    let (mut depth, mut inline, mut test_attr) = (0, Vec::<(&str, usize)>::new(), false);
    let mut i = 0;
    while i < toks.len() {
        let prev = if i == 0 { "" } else { t(i - 1) };
        match t(i) {
            "#" if t(i + 1) == "[" => {
                let end = (i..toks.len()).find(|&k| t(k) == "]").unwrap_or(toks.len());
                let attr: Vec<&str> = (i..end).map(t).collect();
                test_attr |=
                    attr.contains(&"cfg") && attr.contains(&"test") && !attr.contains(&"not");
                i = end;
            }
            "mod" if t(i + 2) == "{" && test_attr => {
                // Skip the test module: on to its closing brace.
                let (mut open, start) = (0, i);
                i = (start + 2..toks.len())
                    .find(|&k| {
                        open += (t(k) == "{") as i32 - (t(k) == "}") as i32;
                        open == 0
                    })
                    .unwrap_or(toks.len());
                test_attr = false;
            }
            "mod" if t(i + 2) == "{" => inline.push((t(i + 1), depth + 1)),
            "{" => (depth, test_attr) = (depth + 1, false),
            "}" => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                (depth, test_attr) = (depth - 1, false);
            }
            ";" => test_attr = false,
            s if (matches!(s, "crate" | "super" | "self") || children.contains(s))
                && t(i + 1) == "::"
                && prev != "::"
                && prev != "." =>
            {
                let mut here = file.module.clone();
                here.extend(inline.iter().map(|(m, _)| m.to_string()));
                let mut written = Vec::new();
                let next = use_tree(&toks, i, Vec::new(), &mut written);
                for (segs, line, binds) in written {
                    let Some(path) = absolute(&here, &segs) else {
                        continue;
                    };
                    if let (true, true, Some(name)) = (prev == "use", depth == 0, binds) {
                        file.bindings.insert(name, path.clone());
                    }
                    file.named.push((line, path));
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    file
}

/// A path written in module `here` as a path from the crate root.
fn absolute(here: &[String], segs: &[String]) -> Option<Vec<String>> {
    let ups = segs.iter().take_while(|s| *s == "super").count();
    let (base, rest) = match segs[0].as_str() {
        "crate" => (&here[..0], &segs[1..]),
        "super" => (here.get(..here.len().checked_sub(ups)?)?, &segs[ups..]),
        "self" => (here, &segs[1..]),
        _ => (here, segs),
    };
    Some(base.iter().chain(rest).cloned().collect())
}

/// The files of a crate and which names which, as `(from, line, to)`.
struct Graph {
    files: Vec<File>,
    edges: Vec<(usize, usize, usize)>,
}

/// Builds the graph from `(path under src/, text)` pairs.
fn graph(sources: &[(String, String)]) -> Graph {
    let files: Vec<File> = sources
        .iter()
        .filter(|(path, _)| !path.ends_with("tests.rs"))
        .map(|(path, text)| scan(path, text))
        .collect();
    let by_module: HashMap<&[String], usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (&f.module[..], i))
        .collect();
    // The file a path leads to: its longest prefix that is a file's module,
    // followed through that file's imports (a few steps at most).
    let resolve = |mut path: Vec<String>| {
        for step in 0.. {
            let k = (0..=path.len())
                .rev()
                .find(|&k| by_module.contains_key(&path[..k]))
                .expect("a crate root, lib.rs");
            let file = by_module[&path[..k]];
            match path.get(k).and_then(|name| files[file].bindings.get(name)) {
                Some(to) if step < 8 => path = [&to[..], &path[k + 1..]].concat(),
                _ => return file,
            }
        }
        unreachable!()
    };
    let mut edges = Vec::new();
    for (from, file) in files.iter().enumerate() {
        for (line, path) in &file.named {
            let to = resolve(path.clone());
            if to != from {
                edges.push((from, *line, to));
            }
        }
    }
    edges.sort();
    edges.dedup();
    Graph { files, edges }
}

/// A file's top-level module (`lib.rs` for the root).
fn top(file: &File) -> &str {
    file.module.first().map_or("lib.rs", |m| m.as_str())
}

/// Every use of a module of the same or a higher layer, and every top-level
/// module missing from the table.
fn layer_violations(g: &Graph, layers: &[&[&str]]) -> Vec<String> {
    let layer = |m: &str| layers.iter().position(|l| l.contains(&m));
    let missing: BTreeSet<&str> = g
        .files
        .iter()
        .map(top)
        .filter(|m| layer(m).is_none())
        .collect();
    let mut found: Vec<String> = (missing.iter())
        .map(|m| format!("top-level module `{m}` is not in the layer table"))
        .collect();
    for &(from, line, to) in &g.edges {
        let (a, b) = (top(&g.files[from]), top(&g.files[to]));
        if let (Some(la), Some(lb)) = (layer(a), layer(b))
            && a != b
            && lb >= la
        {
            found.push(format!(
                "src/{}:{line}: `{a}` (layer {la}) names `{b}` (layer {lb}), \
                     which is not in a lower layer (it names src/{})",
                g.files[from].path, g.files[to].path
            ));
        }
    }
    found
}

/// Every cycle of files (a strongly connected component of more than one
/// file) with the edges inside it; edges between a file and its ancestor
/// modules do not count.
fn cycles(g: &Graph) -> Vec<String> {
    let related = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let edges: Vec<_> = (g.edges.iter())
        .filter(|&&(a, _, b)| !related(&g.files[a].module, &g.files[b].module))
        .collect();
    // reach[v]: the files v leads to in one step or more.
    let mut reach = vec![BTreeSet::new(); g.files.len()];
    for &&(a, _, b) in &edges {
        reach[a].insert(b);
    }
    let mut changed = true;
    while changed {
        changed = false;
        for v in 0..reach.len() {
            let more: Vec<usize> = reach[v].iter().flat_map(|&w| reach[w].clone()).collect();
            let before = reach[v].len();
            reach[v].extend(more);
            changed |= reach[v].len() > before;
        }
    }
    let components: BTreeSet<Vec<usize>> = (0..reach.len())
        .filter(|&v| reach[v].contains(&v))
        .map(|v| {
            (0..reach.len())
                .filter(|&w| reach[v].contains(&w) && reach[w].contains(&v))
                .collect()
        })
        .collect();
    let name = |f: usize| format!("src/{}", g.files[f].path);
    components
        .iter()
        .map(|comp| {
            let files: Vec<String> = comp.iter().map(|&f| name(f)).collect();
            let inside = edges
                .iter()
                .filter(|(a, _, b)| comp.contains(a) && comp.contains(b));
            let lines: String = inside
                .map(|(a, line, b)| format!("\n    {}:{line} names {}", name(*a), name(*b)))
                .collect();
            format!("cycle: {}{lines}", files.join(", "))
        })
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's sources as `(path under src/, text)`, sorted by path.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    assert!(
        files.len() > 40,
        "found only {} files under src",
        files.len()
    );
    files
}

/// `#[path]`, `include!` and `extern crate self` would let code in from
/// outside the module tree this test reads; `src/sys/` has none.
#[test]
fn sys_pulls_in_nothing_from_elsewhere() {
    let mut report = Vec::new();
    for (path, text) in sources().iter().filter(|(p, _)| p.starts_with("sys/")) {
        for (n, code) in code_only(text).lines().enumerate() {
            for hatch in ["#[path", "include!", "extern crate self"] {
                if code.contains(hatch) {
                    report.push(format!("src/{path}:{}: `{hatch}` in sys", n + 1));
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "src/sys/ must not pull in code:\n{}",
        report.join("\n")
    );
}

#[test]
fn modules_name_only_lower_layers() {
    let found = layer_violations(&graph(&sources()), LAYERS);
    assert!(
        found.is_empty(),
        "a module may name only modules of lower layers (LAYERS in tests/layers.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_import_loops_between_files() {
    let found = cycles(&graph(&sources()));
    assert!(
        found.is_empty(),
        "files must not name each other in a loop (move the shared item to a file both use):\n{}",
        found.join("\n")
    );
}

#[test]
fn code_only_blanks_comments_and_literals() {
    let text = "a // b\n/* c\nd */ e \"f\\\"g\" r#\"h\"# 'i' '\\'' 'j\n";
    let code = code_only(text);
    assert_eq!(
        code.split_whitespace().collect::<Vec<_>>(),
        ["a", "e", "'j"]
    );
    assert_eq!(code.lines().count(), 3);
}

/// A small crate holding the loops this branch removed, and uses that are not loops.
fn synthetic() -> Vec<(String, String)> {
    [
        ("lib.rs", "mod pool; mod shared; mod sync; mod sys;\npub use pool::{Executor, Pool};\npub use shared::Item;\npub use sync::Lock;"),
        ("sys/mod.rs", "pub(crate) mod model;\npub(crate) mod pid;"),
        ("sys/model.rs", "fn f(pid: u32) {\n    assert!(pid & !super::pid::PID_MASK == 0);\n}"),
        ("sys/pid.rs", "#[cfg(loom)]\nuse super::model::Model;\npub const PID_MASK: u32 = 1;"),
        ("sync/mod.rs", "mod lock;\npub use self::lock::Lock;"),
        ("sync/lock.rs", "use crate::sys::pid;\nlet s = \"crate::Pool\"; // crate::Pool\n/* $crate::Pool */"),
        ("pool/mod.rs", "mod core; mod executor; mod future; mod result; mod wire; mod worker;\npub use executor::Executor;\npub use future::TaskFuture;\nuse self::core::Core;\npub struct Pool;"),
        ("pool/core.rs", "use super::result::{ListJob, IterJob};\nuse crate::{Lock, sys::{pid, model}};"),
        ("pool/result.rs", "use super::core::Core;\nuse super::Pool;"),
        ("pool/executor.rs", "use super::{\n    Pool,\n    future::TaskFuture,\n};"),
        ("pool/future.rs", "use super::Executor;\n#[cfg(test)]\nmod tests {\n    use super::super::core::Core;\n}"),
        ("pool/tests.rs", "use super::core::Core;"),
        ("pool/wire.rs", "use super::worker::Reply;"),
        ("pool/worker.rs", "/// [`Frame`](super::wire::Frame)\n#[cfg(all(test, loom))]\nmod model {\n    use super::super::wire::Frame;\n}"),
        ("shared/mod.rs", "mod item;\nmod shareable_list;\npub use item::Item;\npub use shareable_list::ShareableList;"),
        ("shared/item.rs", "use super::ShareableList;\nmacro_rules! items { () => { $crate::Item::from(1) } }"),
        ("shared/shareable_list.rs", "use super::item::{Item, ALIGN as A};\nuse crate::sync::Lock;"),
    ]
    .iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect()
}

#[test]
fn the_cycle_checker_finds_the_old_loops() {
    let found = cycles(&graph(&synthetic()));
    let files: Vec<&str> = found.iter().map(|c| c.lines().next().unwrap()).collect();
    assert_eq!(
        files,
        [
            "cycle: src/sys/model.rs, src/sys/pid.rs",
            "cycle: src/pool/core.rs, src/pool/result.rs",
            "cycle: src/pool/executor.rs, src/pool/future.rs",
            "cycle: src/shared/item.rs, src/shared/shareable_list.rs",
        ],
        "{found:#?}"
    );
    let executor = "src/pool/executor.rs:3 names src/pool/future.rs\n    \
                    src/pool/future.rs:1 names src/pool/executor.rs";
    assert!(found[2].ends_with(executor), "{}", found[2]);
}

#[test]
fn the_layer_checker_finds_what_it_should() {
    let layers: &[&[&str]] = &[&["sys"], &["sync"], &["pool", "shared"], &["lib.rs"]];
    let mut sources = synthetic();
    assert_eq!(
        layer_violations(&graph(&sources), layers),
        Vec::<String>::new()
    );
    let sys_fd = "use crate::sys::pid;\n/// [`Lock`](crate::Lock) // crate::Lock\n\
        let s = \"crate::Lock\"; /* crate::Lock\n crate::Lock */ use crate::{Lock, sys::model};\n\
        use super::super::pool;\nfn f() -> $crate::Pool {}";
    for (path, text) in [
        (
            "sync/event.rs",
            "use crate::{\n    sys::pid,\n    pool::Pool,\n};",
        ),
        ("sync/barrier.rs", "fn f() { crate::Executor::new(); }"),
        ("shared/named.rs", "use crate::pool::Pool;"),
        ("sys/fd.rs", sys_fd),
    ] {
        sources.push((path.into(), text.into()));
    }
    let found = layer_violations(&graph(&sources), layers);
    let places: Vec<&str> = found
        .iter()
        .map(|f| f.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        places,
        [
            "src/sync/event.rs:3",
            "src/sync/barrier.rs:1",
            "src/shared/named.rs:1",
            "src/sys/fd.rs:4",
            "src/sys/fd.rs:5",
            "src/sys/fd.rs:6",
        ],
        "{found:#?}"
    );
    assert_eq!(
        found[1],
        "src/sync/barrier.rs:1: `sync` (layer 1) names `pool` (layer 2), which is not in a \
         lower layer (it names src/pool/executor.rs)"
    );
    let missing = layer_violations(&graph(&sources), &[&["sys", "sync", "pool"]]);
    assert_eq!(
        missing[0],
        "top-level module `lib.rs` is not in the layer table"
    );
    assert_eq!(
        missing[1],
        "top-level module `shared` is not in the layer table"
    );
}
