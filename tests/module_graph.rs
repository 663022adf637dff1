//! The module graph of `src/` is one-way: no two source files import each
//! other, directly or through others. Unit-test modules (`#[cfg(test)] mod
//! tests`, inline or in their own file) are left out, and so is a module's
//! use of its own submodules (a parent re-exporting what its children
//! define, the children importing the types the parent keeps: hyper's
//! `proto::h1` layout).
//!
//! Read from the text: `crate::…` and `super::…` paths (in `use` trees and
//! inline), resolved to the deepest module that has a file. A path to an
//! item of a module resolves to that module's file.
//!
//! And no file in `src/` is longer than [`MAX_LINES`]. Test modules in files
//! of their own (`tests.rs`, `*_tests.rs`) count too: a test file that
//! grows past the limit splits by what it tests, as the code does.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path (`["accesslog", "format"]`), the crate root being `[]`.
type ModPath = Vec<String>;

/// The longest a source file in `src/` may be, in lines.
const MAX_LINES: usize = 600;

#[test]
fn no_file_in_src_is_longer_than_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&root);
    assert!(files.len() > 20, "found the source files: {}", files.len());
    let mut long: Vec<(usize, String)> = files
        .iter()
        .map(|f| {
            let lines = fs::read_to_string(f)
                .expect("readable source")
                .lines()
                .count();
            let name = f
                .strip_prefix(&root)
                .expect("under src")
                .display()
                .to_string();
            (lines, name)
        })
        .filter(|(lines, _)| *lines > MAX_LINES)
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files in src/ longer than {MAX_LINES} lines (split them by concern):\n{}",
        long.iter()
            .map(|(lines, name)| format!("{name}: {lines}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn no_two_files_in_src_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&root);
    assert!(files.len() > 20, "found the source files: {}", files.len());
    let test_only = test_only_modules(&files);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &files {
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let text = strip_test_modules(&fs::read_to_string(file).expect("readable source"));
        for path in paths(&text) {
            let Some(target) = resolve(module, &path, &files) else {
                continue;
            };
            // Itself, or its own submodule: not an edge.
            if target.starts_with(module) || test_only.iter().any(|t| target.starts_with(t)) {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between files in src/:\n{}",
        cycles
            .iter()
            .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" -> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    let a = vec!["a".to_owned()];
    let b = vec!["b".to_owned()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(cycles(&edges).len(), 1);
    assert_eq!(
        paths("use crate::x::{y, z::{self, W}};\nlet v = super::q::R;"),
        vec![
            vec!["crate", "x", "y"],
            vec!["crate", "x", "z"],
            vec!["crate", "x", "z", "W"],
            vec!["super", "q", "R"],
        ]
    );
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "lib".to_owned()
    } else {
        m.join("::")
    }
}

/// Every module file under `root` (the library crate; `main.rs` is a crate of
/// its own).
fn modules(root: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    for path in rust_files(root) {
        let rel = path.strip_prefix(root).expect("under src");
        let mut parts: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("main") if parts.len() == 1 => continue,
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        out.insert(parts, path);
    }
    out
}

/// Every `.rs` file under `root`, at any depth.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("readable src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Modules declared `#[cfg(test)] mod NAME;` (test code in a file of its own).
fn test_only_modules(files: &BTreeMap<ModPath, PathBuf>) -> Vec<ModPath> {
    let mut out = Vec::new();
    for (module, file) in files {
        let text = fs::read_to_string(file).expect("readable source");
        let mut cfg_test = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[cfg(test)]") {
                cfg_test = true;
                continue;
            }
            if cfg_test
                && let Some(rest) = line
                    .strip_prefix("mod ")
                    .or_else(|| line.strip_prefix("pub(crate) mod "))
                && let Some(name) = rest.strip_suffix(';')
            {
                let mut m = module.clone();
                m.push(name.trim().to_owned());
                out.push(m);
            }
            if !line.starts_with("#[") {
                cfg_test = false;
            }
        }
    }
    out
}

/// The text without `#[cfg(test)] mod … { … }` blocks and without comments.
fn strip_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("//") {
            continue;
        }
        let opens_test_mod = trimmed == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                let next = next.trim();
                next.contains("mod ") && next.ends_with('{')
            });
        if opens_test_mod {
            let mut depth = 0usize;
            for line in lines.by_ref() {
                depth += line.matches('{').count();
                depth = depth.saturating_sub(line.matches('}').count());
                if depth == 0 && line.contains('}') {
                    break;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every `crate::…`/`super::…` path in `text`, `use` groups expanded.
fn paths(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':');
        if !starts {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        i += tree(text, i, Vec::new(), &mut out);
    }
    out
}

/// Reads one path or `use` tree at `start`; returns the bytes read.
fn tree<'a>(
    text: &'a str,
    start: usize,
    prefix: Vec<&'a str>,
    out: &mut Vec<Vec<&'a str>>,
) -> usize {
    let b = text.as_bytes();
    let mut i = start;
    let mut path = prefix;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1 - start;
                }
                i += tree(text, i, path.clone(), out);
            }
        }
        let ident_start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let ident = &text[ident_start..i];
        if ident.is_empty() {
            break;
        }
        if ident != "self" {
            path.push(ident);
        }
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            break;
        }
    }
    // `as alias` is harmless: the alias is read as no path.
    let bare_root = path.len() == 1 && matches!(path[0], "crate" | "super");
    if !path.is_empty() && !bare_root {
        out.push(path);
    }
    (i - start).max(1)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The deepest module with a file that `path`, read inside `from`, names.
fn resolve(from: &ModPath, path: &[&str], files: &BTreeMap<ModPath, PathBuf>) -> Option<ModPath> {
    let mut base: ModPath = Vec::new();
    let mut rest = path;
    match rest.first() {
        Some(&"crate") => rest = &rest[1..],
        Some(&"super") => {
            base = from.clone();
            while rest.first() == Some(&"super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut found = base.clone();
    let mut current = base;
    for segment in rest {
        current.push((*segment).to_owned());
        if files.contains_key(&current) {
            found = current.clone();
        } else {
            break;
        }
    }
    files.contains_key(&found).then_some(found)
}

/// One cycle per strongly connected component of two or more modules.
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    let nodes: BTreeSet<&ModPath> = edges.keys().chain(edges.values().flatten()).collect();
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reachable[n].contains(*n) {
            continue;
        }
        let component: Vec<ModPath> = nodes
            .iter()
            .filter(|m| reachable[n].contains(**m) && reachable[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
}
