//! The house rules of issue 26, checked on `src/` as it is: no function
//! over 80 lines, no file over 600 lines, no circle between files. Code
//! from the first `#[cfg(test)]` on does not count, and a file that uses
//! its own room's `mod.rs` (or `lib.rs`) is not in a circle with it: that
//! is the room's front door. A port of the two scripts the issue was
//! measured with (a function by indentation: from its `fn` line to the
//! `}` at the same indent; a file's uses: `use` items and `crate::`/
//! `super::` paths).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

const MAX_FN: usize = 80;
const MAX_FILE: usize = 600;

/// One file of the crate: where it is, its module path (`["exec", "ssh"]`;
/// `[]` for `lib.rs`), and its text before the tests.
struct Source {
    path: String,
    module: Vec<String>,
    /// `mod.rs` or `lib.rs`: `super::` starts from its own module.
    is_dir: bool,
    text: String,
}

impl Source {
    fn new(path: &str, text: &str) -> Source {
        let rel = path.trim_start_matches("src/").trim_end_matches(".rs");
        let mut module: Vec<String> = rel.split('/').map(String::from).collect();
        let is_dir = matches!(module.last().map(String::as_str), Some("mod" | "lib"));
        if is_dir {
            module.pop();
        }
        let end = text
            .find("#[cfg(test)]")
            .and_then(|i| text[..i].rfind('\n').map(|n| n + 1).or(Some(0)))
            .unwrap_or(text.len());
        Source {
            path: path.to_string(),
            module,
            is_dir,
            text: text[..end].to_string(),
        }
    }
}

/// Every `.rs` file under `dir` but the binary's `main.rs` (a crate of its
/// own, which reaches the library only by its name).
fn sources(dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let shown = p.to_string_lossy().to_string();
        if p.is_dir() {
            sources(&p, out);
        } else if shown.ends_with(".rs") && shown != "src/main.rs" {
            out.push(Source::new(&shown, &std::fs::read_to_string(&p).unwrap()));
        }
    }
}

/// `name` when `line` opens a function: `pub(..)`, `async`, `const`,
/// `unsafe` allowed before `fn`.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(r) = rest.strip_prefix("pub") {
        let r = match r.strip_prefix('(') {
            Some(inner) => &inner[inner.find(')')? + 1..],
            None => r,
        };
        rest = r.strip_prefix(char::is_whitespace)?.trim_start();
    }
    for word in ["async", "const", "unsafe"] {
        if let Some(r) = rest
            .strip_prefix(word)
            .and_then(|r| r.strip_prefix(char::is_whitespace))
        {
            rest = r.trim_start();
        }
    }
    let rest = rest
        .strip_prefix("fn")?
        .strip_prefix(char::is_whitespace)?
        .trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Each function longer than `MAX_FN` lines, as `FILE:LINE name N lines`.
fn long_functions(src: &Source) -> Vec<String> {
    let lines: Vec<&str> = src.text.lines().collect();
    let mut long = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        // A trait method without a body ends at `;` before any `{`.
        let Some(open) = (i..lines.len())
            .find(|&k| lines[k].contains('{') || lines[k].trim_end().ends_with(';'))
        else {
            continue;
        };
        if !lines[open].contains('{') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let closes = |l: &str| {
            let rest = l.get(indent..).unwrap_or("");
            l[..indent.min(l.len())].trim().is_empty()
                && rest.starts_with('}')
                && matches!(rest[1..].chars().next(), None | Some(' ' | ';' | ')'))
        };
        let one_line = lines[open].matches('{').count() == lines[open].matches('}').count();
        let end = if one_line {
            open
        } else {
            (i + 1..lines.len())
                .find(|&j| closes(lines[j]))
                .unwrap_or(lines.len())
        };
        let n = end - i + 1;
        if n > MAX_FN {
            long.push(format!("{}:{} {name} {n} lines", src.path, i + 1));
        }
    }
    long
}

/// `a::{b, c::{d, e}}` (whitespace gone) as `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
    let (mut depth, mut start) = (0, 0);
    let mut parts = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        match part.find('{') {
            Some(i) => {
                let inner = &part[i + 1..];
                let inner = inner.strip_suffix('}').unwrap_or(inner);
                expand(&format!("{prefix}{}", &part[..i]), inner, out)
            }
            None => out.push(format!("{prefix}{part}")),
        }
    }
}

/// The paths a file names: its `use` items, and every `crate::`/`super::` path.
fn named_paths(text: &str) -> Vec<String> {
    let text: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let starts_word = |i: usize| !text[..i].ends_with(word);
    let mut paths = Vec::new();
    for (i, _) in text.match_indices("use").filter(|&(i, _)| starts_word(i)) {
        let rest = &text[i + 3..];
        if rest.starts_with(char::is_whitespace) {
            let item: String = rest[..rest.find(';').unwrap_or(rest.len())]
                .split_whitespace()
                .collect();
            expand("", &item, &mut paths);
        }
    }
    for key in ["crate", "super"] {
        for (i, _) in text.match_indices(key).filter(|&(i, _)| starts_word(i)) {
            let mut end = i + key.len();
            while text[end..].starts_with("::") && text[end + 2..].starts_with(word) {
                end += 2 + text[end + 2..]
                    .find(|c: char| !word(c))
                    .unwrap_or(text.len() - end - 2);
            }
            if end > i + key.len() {
                paths.push(text[i..end].to_string());
            }
        }
    }
    paths
}

/// The files `src` uses, by index in `all` (never itself, never its own
/// room's front door).
fn uses(src: &Source, all: &BTreeMap<Vec<String>, usize>) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    for path in named_paths(&src.text) {
        let mut segs: Vec<&str> = path.split("::").collect();
        let mut base: Vec<String> = match segs[0] {
            "crate" => Vec::new(),
            "super" if src.is_dir => src.module.clone(),
            "super" => src.module[..src.module.len().saturating_sub(1)].to_vec(),
            "self" => src.module.clone(),
            _ => continue,
        };
        segs.remove(0);
        while segs.first() == Some(&"super") {
            base.pop();
            segs.remove(0);
        }
        base.extend(
            segs.iter()
                .filter(|s| s.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .map(|s| s.to_string()),
        );
        let target = (0..=base.len())
            .rev()
            .find_map(|n| all.get(&base[..n]).map(|&t| (n, t)));
        if let Some((n, t)) = target {
            if src.module.get(..n) != Some(&base[..n]) {
                found.insert(t);
            }
        }
    }
    found
}

/// Each circle between files: its files, then the uses inside it.
fn circles(all: &[Source]) -> Vec<String> {
    let index: BTreeMap<Vec<String>, usize> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (s.module.clone(), i))
        .collect();
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..all.len()).map(|i| graph.add_node(i)).collect();
    for (i, src) in all.iter().enumerate() {
        for t in uses(src, &index) {
            graph.add_edge(nodes[i], nodes[t], ());
        }
    }
    let name = |i: usize| match all[i].module.join("/") {
        n if n.is_empty() => "lib".to_string(),
        n => n,
    };
    let mut out = Vec::new();
    for comp in tarjan_scc(&graph).into_iter().filter(|c| c.len() > 1) {
        let inside: BTreeSet<usize> = comp.iter().map(|n| graph[*n]).collect();
        let mut names: Vec<String> = inside.iter().map(|&i| name(i)).collect();
        names.sort();
        let mut edges = Vec::new();
        for &a in &inside {
            for b in graph
                .neighbors(nodes[a])
                .map(|n| graph[n])
                .filter(|b| inside.contains(b))
            {
                edges.push(format!("{} -> {}", name(a), name(b)));
            }
        }
        edges.sort();
        out.push(format!(
            "circle {} ({})",
            names.join(" <-> "),
            edges.join(", ")
        ));
    }
    out.sort();
    out
}

/// Everything in `all` over the rules.
fn over(all: &[Source]) -> Vec<String> {
    let mut problems: Vec<String> = all.iter().flat_map(long_functions).collect();
    for src in all {
        let n = src.text.matches('\n').count();
        if n > MAX_FILE {
            problems.push(format!("{} {n} lines", src.path));
        }
    }
    problems.extend(circles(all));
    problems
}

#[test]
fn src_keeps_the_house_rules() {
    let mut all = Vec::new();
    sources(Path::new("src"), &mut all);
    assert!(
        all.len() > 50,
        "src/ read from {:?}",
        std::env::current_dir()
    );
    let problems = over(&all);
    assert!(
        problems.is_empty(),
        "over the house rules (issue 26):\n{}",
        problems.join("\n")
    );
}

/// A function of `n` lines at `indent`.
fn function(name: &str, indent: &str, n: usize) -> String {
    let body: String = (0..n - 2)
        .map(|i| format!("{indent}    let _x{i} = {i};\n"))
        .collect();
    format!("{indent}pub(super) async fn {name}() {{\n{body}{indent}}}\n")
}

#[test]
fn a_function_over_80_lines_is_named_and_one_of_80_is_not() {
    let text = format!(
        "{}trait T {{\n    fn declared(&self)\n        -> u32;\n    fn empty() {{}}\n}}\nimpl S {{\n{}}}\n{}",
        function("fits", "", 80),
        function("long", "    ", 81),
        "#[cfg(test)]\nmod tests {\n".to_string() + &function("a_test", "    ", 200) + "}\n",
    );
    let problems = over(&[Source::new("src/a.rs", &text)]);
    assert_eq!(
        problems,
        vec![format!("src/a.rs:{} long 81 lines", 80 + 5 + 2)]
    );
}

#[test]
fn a_file_over_600_lines_is_named_without_its_tests() {
    let lines = |n: usize| "// a line\n".repeat(n);
    let fits = Source::new(
        "src/fits.rs",
        &(lines(600) + "#[cfg(test)]\n" + &lines(900)),
    );
    let long = Source::new("src/long.rs", &lines(601));
    assert_eq!(
        over(&[fits, long]),
        vec!["src/long.rs 601 lines".to_string()]
    );
}

#[test]
fn a_circle_between_files_is_named_and_a_room_front_door_is_not() {
    let all = [
        Source::new("src/lib.rs", "pub mod room;\npub mod other;\n"),
        Source::new("src/room/mod.rs", "mod a;\nmod b;\nuse a::Thing;\n"),
        Source::new("src/room/a.rs", "use super::{b::{More, Other}, Door};\n"),
        Source::new(
            "src/room/b.rs",
            "fn f() { crate::room::a::Thing::new(); }\n",
        ),
        Source::new(
            "src/other.rs",
            "use crate::room::Door; // uses super::nothing::else\n",
        ),
    ];
    assert_eq!(
        over(&all),
        vec!["circle room/a <-> room/b (room/a -> room/b, room/b -> room/a)".to_string()]
    );
}
