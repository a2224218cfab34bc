//! The layout the design asks for (ARCHITECTURE section 2, docs/dialects.md), checked on the
//! source itself: the engine names no backend (a backend's code lives in its dialect's
//! folder), no module of the engine takes part in an import circle, and the report reads a
//! run's figures, never the runtime that made them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Words that name a backend, a backend's topic or a backend's API.
const BACKEND_WORDS: [&str; 5] = ["hawkbit", "goosebit", "embedded", "fleet/v1", "/api/v1"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Where `ddi` (hawkBit's device API) stands as a word of its own in `line`: not inside a
/// longer lowercase word such as "adding", but in `ddi`, `DDI`, `operator_ddi` or `DdiState`.
fn names_ddi(line: &str) -> bool {
    let bytes = line.as_bytes();
    let lower = line.to_ascii_lowercase();
    lower.match_indices("ddi").any(|(at, _)| {
        let before = at.checked_sub(1).map(|k| bytes[k]);
        let after = bytes.get(at + 3).copied();
        let starts_word = match before {
            Some(b) if b.is_ascii_alphabetic() => bytes[at].is_ascii_uppercase() && b.is_ascii_lowercase(),
            _ => true,
        };
        starts_word && !after.is_some_and(|b| b.is_ascii_lowercase())
    })
}

#[test]
fn the_engine_names_no_backend() {
    let mut hits = Vec::new();
    for file in rust_files(&src().join("engine")) {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let named = BACKEND_WORDS.iter().any(|w| lower.contains(w)) || names_ddi(line);
            if named {
                hits.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "sim/src/engine/ names a backend; its code belongs in its dialect's folder:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_ddi_check_finds_the_word_and_only_the_word() {
    for named in ["DDI server", "operator_ddi", "DdiState", "use ddi;", "(ddi)"] {
        assert!(names_ddi(named), "{named}");
    }
    for plain in ["adding", "Addition", "a middling paddington"] {
        assert!(!names_ddi(plain), "{plain}");
    }
}

/// The module a source file is: `engine/driver.rs` is `engine::driver`, `dialect/mod.rs` is
/// `dialect`, `lib.rs` is the crate.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).expect("below src");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// The code of a file without its comments (doc comments name paths in prose).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file's code reaches into the crate with: every `crate::a::b` and `super::a`,
/// and every name inside the braces of a `use` that follows one, resolved to absolute module
/// paths (the items they end in are left on: the caller matches the longest module).
fn paths_in(module: &[String], code: &str) -> Vec<Vec<String>> {
    // `super` in `a/b.rs` and in `a/b/mod.rs` (module a::b both) is `a`.
    let parent = |levels: usize| -> Vec<String> {
        let keep = module.len().saturating_sub(levels);
        module[..keep].to_vec()
    };
    let mut found = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let starts = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != ':';
        let (base, skip) = if starts && rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if starts && rest.starts_with("super::") {
            let mut levels = 1;
            let mut j = i + 7;
            while code.chars().skip(j).take(7).collect::<String>() == "super::" {
                levels += 1;
                j += 7;
            }
            (parent(levels), j - i)
        } else {
            i += 1;
            continue;
        };
        i += skip;
        // The path's segments up to a brace, a space or punctuation.
        let mut segments = base;
        loop {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            if i > start {
                segments.push(bytes[start..i].iter().collect());
            }
            if i + 1 < bytes.len() && bytes[i] == ':' && bytes[i + 1] == ':' {
                i += 2;
                if i < bytes.len() && bytes[i] == '{' {
                    // A group: each name in it, one level deep.
                    let close = bytes[i..].iter().position(|c| *c == '}').map_or(bytes.len(), |k| i + k);
                    let group: String = bytes[i + 1..close].iter().collect();
                    for name in group.split(',') {
                        let head: String = name.trim().chars().take_while(|c| ident(*c)).collect();
                        if !head.is_empty() && head != "self" {
                            let mut path = segments.clone();
                            path.push(head);
                            found.push(path);
                        }
                    }
                    i = close;
                    break;
                }
                continue;
            }
            break;
        }
        found.push(segments);
    }
    found
}

/// The crate's modules and which modules each imports.
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let files = rust_files(&src());
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let code = code_of(&std::fs::read_to_string(file).expect("readable"));
        let mut edges = BTreeSet::new();
        // A module's own children, named by relative paths (`validate::check_scenario` in
        // `scenario/mod.rs`).
        for child in modules
            .iter()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(&module))
        {
            let named = format!("{}::", child[module.len()]);
            let found = code
                .match_indices(&named)
                .any(|(at, _)| !code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            if found {
                edges.insert(child.clone());
            }
        }
        // Imports of the crate's own modules, not of a module's own ancestors (a child that
        // uses its parent's items is a part of it) nor of the crate root.
        for path in paths_in(&module, &code) {
            // The longest prefix that is a module of its own.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p));
            if let Some(target) = target
                && target != module
                && !module.starts_with(&target)
            {
                edges.insert(target);
            }
        }
        graph.insert(module, edges);
    }
    graph
}

/// The strongly connected components of more than one module (import circles), by Tarjan.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Search<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[next].min(self.low[node]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].min(self.low[node]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.clone());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.found
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn no_import_circle_runs_through_the_engine() {
    let graph = import_graph();
    assert!(
        graph
            .get(&vec!["engine".to_owned(), "driver".to_owned()])
            .is_some_and(|e| e.len() > 3),
        "the graph sees the engine's imports: {:?}",
        graph.get(&vec!["engine".to_owned(), "driver".to_owned()])
    );
    let through_engine: Vec<String> = circles(&graph)
        .into_iter()
        .filter(|c| c.iter().any(|m| m.first().is_some_and(|top| top == "engine")))
        .map(|c| c.iter().map(|m| name(m)).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(
        through_engine.is_empty(),
        "modules import each other in a circle through the engine:\n{}",
        through_engine.join("\n")
    );
}

#[test]
fn the_report_reads_figures_not_the_runtime() {
    let graph = import_graph();
    let into_runtime: Vec<String> = graph
        .iter()
        .filter(|(module, _)| module.first().is_some_and(|top| top == "report"))
        .flat_map(|(module, edges)| {
            edges
                .iter()
                .filter(|t| t.first().is_some_and(|top| top == "engine" || top == "dialect"))
                .map(move |t| format!("{} imports {}", name(module), name(t)))
        })
        .collect();
    assert!(into_runtime.is_empty(), "{}", into_runtime.join("\n"));
}

#[test]
fn a_circle_is_found_where_there_is_one() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let graph: BTreeMap<_, BTreeSet<_>> = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    let found = circles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    let paths = paths_in(
        &m("engine::driver"),
        "use super::context::{Life, Member};\nuse crate::dialect::{self, Devices};\nlet x = crate::plan::serial(1);",
    );
    assert!(paths.contains(&m("engine::context::Life")), "{paths:?}");
    assert!(paths.contains(&m("dialect::Devices")), "{paths:?}");
    assert!(paths.contains(&m("plan::serial")), "{paths:?}");
}
