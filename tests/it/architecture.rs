//! The house's shape, enforced on the source: every `crate::`, `super::`,
//! `self::` and child-module path in `src/` is an arrow from its file to the
//! file that defines what it names. These rules hold on those arrows:
//! - layers: an arrow between top modules follows the layers table of docs/layout.md
//!   (between `<!-- layers -->` markers, the one copy of it), the top rows
//!   (`error`, `cli`, `commands`, `main`) included;
//! - no circle: the arrows between files form no cycle, inside a folder too
//!   (a folder's `mod.rs` may use its files, so they do not use it back);
//! - no sideways step at the top: a subcommand's module uses no other
//!   subcommand; what two of them share lives in `commands/common.rs`;
//! - short functions: clippy's `too_many_lines` at 80, denied in CI (this
//!   file checks that it stays configured);
//! - the registry: every workload module that implements a kind is a row of
//!   the table in `workload/mod.rs`, and every row is such a module.
//!
//! Arrows out of a file's `#[cfg(test)]` module are not the program's and
//! count for none of the rules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `layer -> top modules it may import`.
fn allowed(readme: &str) -> BTreeMap<String, BTreeSet<String>> {
    let table = readme
        .split("<!-- layers -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /layers -->").next())
        .expect("docs/layout.md has the layers table between <!-- layers --> markers");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty() && c != "—")
            .collect()
    };
    let mut layers = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        for layer in names(cells[0]) {
            layers.insert(layer, names(cells[1]));
        }
    }
    layers
}

fn readme_layers() -> BTreeMap<String, BTreeSet<String>> {
    allowed(&std::fs::read_to_string(Path::new(ROOT).join("docs/layout.md")).unwrap())
}

/// The module path a file defines: `gate/mod.rs` → `[gate]`, `main.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && stem == "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// One source tree: each file's text and the module it defines.
struct Tree {
    files: BTreeMap<PathBuf, String>,
    modules: BTreeMap<Vec<String>, PathBuf>,
}

impl Tree {
    fn read(src: &Path) -> Self {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut paths = Vec::new();
        walk(src, &mut paths);
        let mut files = BTreeMap::new();
        let mut modules = BTreeMap::new();
        for p in paths {
            let rel = p.strip_prefix(src).unwrap().to_path_buf();
            modules.insert(module_of(&rel), rel.clone());
            files.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
        Self { files, modules }
    }

    /// The file defining the longest prefix of `path` that is a file module.
    fn resolve(&self, path: &[String]) -> Option<&PathBuf> {
        (0..=path.len())
            .rev()
            .find_map(|k| self.modules.get(&path[..k]))
    }

    /// The child modules that are files of the module `m`.
    fn children(&self, m: &[String]) -> Vec<String> {
        self.modules
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k.last().unwrap().clone())
            .collect()
    }
}

/// An arrow: a line of `from` names something `to` defines.
#[derive(Debug, Clone)]
struct Arrow {
    from: PathBuf,
    line: usize,
    to: PathBuf,
    in_tests: bool,
}

/// The text with `//` comments blanked (offsets kept), so a path named in
/// a comment is no arrow; `://` in URLs is not a comment.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut cut = l.len();
            let b = l.as_bytes();
            for i in 0..b.len().saturating_sub(1) {
                if b[i] == b'/' && b[i + 1] == b'/' && (i == 0 || b[i - 1] != b':') {
                    cut = i;
                    break;
                }
            }
            format!("{}{}", &l[..cut], " ".repeat(l.len() - cut))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).to_string(), i)
}

/// The paths of a `use` tree or an inline path starting at `i` (just after
/// a root and its `::`): `a::b`, `{a::B, c::{d, e}}`. Each comes back as
/// its segments; `self` inside a group is dropped (it names the prefix).
fn tree_at(s: &[u8], mut i: usize) -> Vec<Vec<String>> {
    let mut segs = Vec::new();
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            let mut out = Vec::new();
            i += 1;
            loop {
                for mut sub in tree_at(s, i) {
                    let mut full = segs.clone();
                    full.append(&mut sub);
                    out.push(full);
                }
                // Skip to the `,` or `}` that ends this item, nested groups included.
                let mut depth = 0;
                while i < s.len() {
                    match s[i] {
                        b'{' => depth += 1,
                        b'}' if depth == 0 => break,
                        b'}' => depth -= 1,
                        b',' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    return out;
                }
                i += 1;
            }
        }
        let (id, next) = ident_at(s, i);
        if id.is_empty() {
            break;
        }
        if id != "self" {
            segs.push(id);
        }
        i = next;
        if s[i..].starts_with(b"::") {
            i += 2;
        } else {
            break;
        }
    }
    vec![segs]
}

/// Every arrow out of every file, with the line it is on.
fn arrows(tree: &Tree) -> Vec<Arrow> {
    let mut out = Vec::new();
    for (rel, text) in &tree.files {
        let me = module_of(rel);
        let children = tree.children(&me);
        let code = code_only(text);
        let bytes = code.as_bytes();
        let inline = Inline::scan(bytes);
        let mut i = 0;
        while i < bytes.len() {
            let (id, next) = ident_at(bytes, i);
            if id.is_empty() {
                i += 1;
                continue;
            }
            let after_path_sep = i >= 2 && &bytes[i - 2..i] == b"::";
            let word_start =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if word_start && !after_path_sep && bytes[next..].starts_with(b"::") {
                // Inside `mod tests { mod fuzz { .. } }`, `super` starts there.
                let here = [me.clone(), inline.at(i)].concat();
                let base: Option<Vec<String>> = match id.as_str() {
                    "crate" => Some(Vec::new()),
                    "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
                    "self" => Some(here),
                    child if children.iter().any(|c| c == child) => {
                        let mut m = me.clone();
                        m.push(child.to_string());
                        Some(m)
                    }
                    _ => None,
                };
                if let Some(base) = base {
                    for segs in tree_at(bytes, next + 2) {
                        let mut path = base.clone();
                        for s in segs {
                            if s == "super" {
                                path.pop();
                            } else {
                                path.push(s);
                            }
                        }
                        if let Some(to) = tree.resolve(&path) {
                            if to != rel {
                                out.push(Arrow {
                                    from: rel.clone(),
                                    line: code[..i].matches('\n').count() + 1,
                                    to: to.clone(),
                                    in_tests: inline.in_tests(i),
                                });
                            }
                        }
                    }
                }
            }
            i = next;
        }
    }
    out
}

/// The inline modules (`mod tests { .. }`) of a file: where each opens and
/// closes, and whether `#[cfg(test)]` marks it, so a path inside one
/// resolves from there and a test module's paths are told apart. What a
/// test module uses is no arrow of the program: it may build its fixtures
/// from above (a suite loaded with the real kinds), as a dev-dependency may.
struct Inline {
    spans: Vec<(usize, usize, String, bool)>,
}

impl Inline {
    fn scan(s: &[u8]) -> Self {
        let mut spans = Vec::new();
        let mut open: Vec<(usize, Option<(String, bool)>)> = Vec::new();
        let mut pending: Option<(String, bool)> = None;
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                // Braces inside string literals do not nest code.
                b'"' => {
                    i += 1;
                    while i < s.len() && s[i] != b'"' {
                        i += if s[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'\'' if i + 2 < s.len() && s[i + 2] == b'\'' => i += 2,
                b'{' => open.push((i, pending.take())),
                b'}' => {
                    if let Some((start, Some((name, test)))) = open.pop() {
                        spans.push((start, i, name, test));
                    }
                }
                b';' => pending = None,
                _ => {
                    let word_start =
                        i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_');
                    if word_start && s[i..].starts_with(b"mod ") {
                        let (name, next) = ident_at(s, i + 4);
                        pending = Some((name, cfg_test_before(&s[..i])));
                        i = next;
                        continue;
                    }
                }
            }
            i += 1;
        }
        spans.sort();
        Self { spans }
    }

    /// The inline modules enclosing offset `i`, outermost first.
    fn at(&self, i: usize) -> Vec<String> {
        self.spans
            .iter()
            .filter(|(a, b, ..)| *a < i && i < *b)
            .map(|(_, _, n, _)| n.clone())
            .collect()
    }

    /// Whether offset `i` is inside a `#[cfg(test)]` module.
    fn in_tests(&self, i: usize) -> bool {
        self.spans.iter().any(|(a, b, _, t)| *t && *a < i && i < *b)
    }
}

/// Whether the code before a `mod` keyword ends in `#[cfg(test)]` (with a
/// visibility between; comments are blanked already).
fn cfg_test_before(before: &[u8]) -> bool {
    let text = String::from_utf8_lossy(before);
    let text = text.trim_end();
    let text = ["pub(crate)", "pub(super)", "pub"]
        .iter()
        .find_map(|v| text.strip_suffix(v))
        .unwrap_or(text);
    text.trim_end().ends_with("#[cfg(test)]")
}

fn top_of(rel: &Path) -> String {
    module_of(rel)
        .first()
        .cloned()
        .unwrap_or_else(|| "main".into())
}

/// Arrows between top modules that the table does not allow.
fn layer_violations(tree: &Tree, layers: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = BTreeSet::new();
    for rel in tree.files.keys() {
        if !layers.contains_key(&top_of(rel)) {
            bad.insert(format!(
                "{}: module `{}` is not in the layers table of docs/layout.md",
                rel.display(),
                top_of(rel)
            ));
        }
    }
    for a in arrows(tree).into_iter().filter(|a| !a.in_tests) {
        let (from, to) = (top_of(&a.from), top_of(&a.to));
        let Some(may) = layers.get(&from) else {
            continue;
        };
        if from != to && !may.contains(&to) {
            bad.insert(format!(
                "{}:{}: `{from}` imports `{to}`, but may import only {}",
                a.from.display(),
                a.line,
                if may.is_empty() {
                    "nothing of ours".to_string()
                } else {
                    may.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
    bad.into_iter().collect()
}

/// Every circle between files, each as `a.rs:3 → b.rs:9 → a.rs`, found as
/// the shortest cycle through each strongly connected set (Tarjan).
fn circles(tree: &Tree) -> Vec<String> {
    let mut next: BTreeMap<&PathBuf, BTreeMap<&PathBuf, usize>> = BTreeMap::new();
    let all = arrows(tree);
    for a in all.iter().filter(|a| !a.in_tests) {
        next.entry(&a.from)
            .or_default()
            .entry(&a.to)
            .or_insert(a.line);
    }
    let nodes: Vec<&PathBuf> = tree.files.keys().collect();
    let mut sets = Vec::new();
    tarjan(&nodes, &next, &mut sets);
    let mut out = Vec::new();
    for set in sets.into_iter().filter(|s| s.len() > 1) {
        let start = *set.iter().min().unwrap();
        // Breadth-first from `start` back to itself, inside the set.
        let mut came: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(n) = queue.pop_front() {
            for &m in next.get(n).map(|m| m.keys()).into_iter().flatten() {
                if !set.contains(&m) {
                    continue;
                }
                if m == start {
                    last = Some(n);
                    break 'search;
                }
                if !came.contains_key(m) {
                    came.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        let mut path = vec![last.unwrap()];
        while *path.last().unwrap() != start {
            path.push(came[path.last().unwrap()]);
        }
        path.reverse();
        path.push(start);
        let steps: Vec<String> = path
            .windows(2)
            .map(|w| format!("{}:{}", w[0].display(), next[w[0]][w[1]]))
            .collect();
        out.push(format!("{} → {}", steps.join(" → "), start.display()));
    }
    out
}

fn tarjan<'a>(
    nodes: &[&'a PathBuf],
    next: &BTreeMap<&'a PathBuf, BTreeMap<&'a PathBuf, usize>>,
    sets: &mut Vec<BTreeSet<&'a PathBuf>>,
) {
    struct State<'a> {
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
    }
    fn visit<'a>(
        v: &'a PathBuf,
        next: &BTreeMap<&'a PathBuf, BTreeMap<&'a PathBuf, usize>>,
        st: &mut State<'a>,
        sets: &mut Vec<BTreeSet<&'a PathBuf>>,
    ) {
        let i = st.index.len();
        st.index.insert(v, i);
        st.low.insert(v, i);
        st.stack.push(v);
        st.on.insert(v);
        for &w in next.get(v).map(|m| m.keys()).into_iter().flatten() {
            if !st.index.contains_key(w) {
                visit(w, next, st, sets);
                let l = st.low[v].min(st.low[w]);
                st.low.insert(v, l);
            } else if st.on.contains(w) {
                let l = st.low[v].min(st.index[w]);
                st.low.insert(v, l);
            }
        }
        if st.low[v] == st.index[v] {
            let mut set = BTreeSet::new();
            while let Some(w) = st.stack.pop() {
                st.on.remove(w);
                set.insert(w);
                if w == v {
                    break;
                }
            }
            sets.push(set);
        }
    }
    let mut st = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
    };
    for &n in nodes {
        if !st.index.contains_key(n) {
            visit(n, next, &mut st, sets);
        }
    }
}

/// A subcommand's module (a file of `commands/` other than `mod.rs` and
/// `common.rs`) using another of them.
fn sideways(tree: &Tree) -> Vec<String> {
    let subcommand = |p: &Path| {
        p.starts_with("commands")
            && !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("mod.rs" | "common.rs")
            )
    };
    let mut bad = BTreeSet::new();
    for a in arrows(tree) {
        if subcommand(&a.from) && subcommand(&a.to) {
            bad.insert(format!(
                "{}:{}: a subcommand uses `{}`; move what they share to commands/common.rs",
                a.from.display(),
                a.line,
                a.to.display()
            ));
        }
    }
    bad.into_iter().collect()
}

/// Short functions are clippy's `too_many_lines` at 80 lines, for the
/// program and its tests, denied in CI: the rule cannot be dropped by
/// removing one line unnoticed.
#[test]
fn clippy_keeps_every_function_under_80_lines() {
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap();
    assert!(
        read("clippy.toml").contains("too-many-lines-threshold = 80"),
        "clippy.toml"
    );
    for krate in ["src/main.rs", "tests/it/main.rs"] {
        assert!(
            read(krate).contains("#![warn(clippy::too_many_lines)]"),
            "{krate} turns the lint on"
        );
    }
    assert!(
        read("scripts/test.sh").contains("clippy --all-targets --locked -- -D warnings"),
        "CI denies clippy's warnings"
    );
}

/// The rows of the registry's table in `workload/mod.rs` (`&mmlu::Kind,`),
/// by module.
fn registry_rows(tree: &Tree) -> BTreeSet<String> {
    let table = tree
        .files
        .get(Path::new("workload/mod.rs"))
        .map(String::as_str)
        .unwrap_or_default();
    table
        .lines()
        .filter_map(|l| l.trim().strip_prefix('&')?.strip_suffix("::Kind,"))
        .map(String::from)
        .collect()
}

/// The workload modules that implement a kind (`impl WorkloadKind for Kind`).
fn kind_modules(tree: &Tree) -> BTreeSet<String> {
    tree.files
        .iter()
        .filter(|(rel, text)| {
            rel.starts_with("workload") && text.contains("impl WorkloadKind for Kind")
        })
        .map(|(rel, _)| module_of(rel)[1..].join("::"))
        .collect()
}

/// A kind the table lacks, and a row that names no kind.
fn unregistered_kinds(tree: &Tree) -> Vec<String> {
    let (rows, kinds) = (registry_rows(tree), kind_modules(tree));
    let mut bad: Vec<String> = kinds
        .difference(&rows)
        .map(|k| format!("workload/{k}: a kind the registry's table does not list"))
        .collect();
    bad.extend(
        rows.difference(&kinds)
            .map(|k| format!("workload/mod.rs: the table lists `{k}::Kind`, which is no kind")),
    );
    bad
}

#[test]
fn every_kind_is_in_the_registry_and_every_row_is_a_kind() {
    let tree = Tree::read(&Path::new(ROOT).join("src"));
    let bad = unregistered_kinds(&tree);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Both sides are read for real: the seven kinds this tool ships.
    assert!(
        registry_rows(&tree).len() >= 7,
        "{:?}",
        registry_rows(&tree)
    );
}

#[test]
fn a_kind_left_out_of_the_table_is_caught() {
    let kind = "//! a kind\nimpl WorkloadKind for Kind {}\n";
    let (_dir, tree) = toy(&[
        (
            "workload/mod.rs",
            "//! registry\nmod echo;\nmod mmlu;\nstatic KINDS: &[&dyn WorkloadKind] = &[\n    &mmlu::Kind,\n    &gone::Kind,\n];\n",
        ),
        ("workload/echo.rs", kind),
        ("workload/mmlu/mod.rs", kind),
    ]);
    assert_eq!(
        unregistered_kinds(&tree),
        [
            "workload/echo: a kind the registry's table does not list",
            "workload/mod.rs: the table lists `gone::Kind`, which is no kind"
        ]
    );
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let layers = readme_layers();
    assert!(
        layers.contains_key("results") && layers.contains_key("main"),
        "{layers:?}"
    );
    let bad = layer_violations(&Tree::read(&Path::new(ROOT).join("src")), &layers);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn no_circle_between_files() {
    let found = circles(&Tree::read(&Path::new(ROOT).join("src")));
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_subcommand_uses_another() {
    let bad = sideways(&Tree::read(&Path::new(ROOT).join("src")));
    assert!(bad.is_empty(), "sideways imports:\n{}", bad.join("\n"));
}

/// A tree of the given files, written to a temporary directory.
fn toy(files: &[(&str, &str)]) -> (tempfile::TempDir, Tree) {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let tree = Tree::read(dir.path());
    (dir, tree)
}

#[test]
fn an_upward_import_is_caught_with_its_file_and_line() {
    // The pure gate reaches up into the reports.
    let (_dir, tree) = toy(&[
        ("results.rs", "//! model\n"),
        ("report/mod.rs", "//! reports\n"),
        (
            "gate/mod.rs",
            "//! gate\nuse crate::results::Metric;\n// crate::report in a comment is fine\nuse crate::{config::Role, report::render};\n",
        ),
        ("config.rs", "//! config\n"),
    ]);
    let bad = layer_violations(&tree, &readme_layers());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].ends_with(
            "gate/mod.rs:4: `gate` imports `report`, but may import only config, results"
        ),
        "{}",
        bad[0]
    );
}

#[test]
fn a_top_row_importing_above_itself_is_caught() {
    // The error mapping reaching into a subcommand: the top rows are
    // layers too, not "anything".
    let (_dir, tree) = toy(&[
        (
            "error.rs",
            "//! errors\nuse crate::commands::compare::CompareError;\n",
        ),
        ("commands/mod.rs", "//! commands\nmod compare;\n"),
        ("commands/compare.rs", "//! compare\n"),
    ]);
    let bad = layer_violations(&tree, &readme_layers());
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("error.rs:2: `error` imports `commands`"),
        "{}",
        bad[0]
    );
}

#[test]
fn a_circle_inside_a_folder_is_caught_with_its_lines() {
    // Two backends using each other, and a folder's mod.rs used back by
    // the file it re-exports.
    let (_dir, tree) = toy(&[
        (
            "engine/mod.rs",
            "//! engines\nmod a;\nmod b;\nmod c;\npub(crate) use c::Spec;\n",
        ),
        ("engine/a.rs", "//! a\nuse super::b::launch;\n"),
        (
            "engine/b.rs",
            "//! b\n\npub(crate) fn launch() {\n    super::a::stop();\n}\n",
        ),
        ("engine/c.rs", "//! c\nuse super::{a, b::launch};\n"),
    ]);
    let found = circles(&tree);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0], "engine/a.rs:2 → engine/b.rs:4 → engine/a.rs",
        "{found:?}"
    );
    // `c` uses its own mod.rs (a re-export of c): a second circle once
    // `a`/`b` is cut.
    let (_dir, tree) = toy(&[
        (
            "engine/mod.rs",
            "//! engines\nmod c;\npub(crate) use c::Spec;\n",
        ),
        ("engine/c.rs", "//! c\nuse super::Spec;\n"),
    ]);
    assert_eq!(
        circles(&tree),
        ["engine/c.rs:2 → engine/mod.rs:3 → engine/c.rs"]
    );
}

#[test]
fn a_test_module_using_its_parent_is_no_circle() {
    let (_dir, tree) = toy(&[
        ("gate/mod.rs", "//! gate\nmod stats;\npub(crate) use stats::mean;\n"),
        (
            "gate/stats.rs",
            "//! stats\npub(crate) fn mean() {}\n\n#[cfg(test)]\nmod tests {\n    use super::super::mean;\n}\n",
        ),
    ]);
    assert!(circles(&tree).is_empty(), "{:?}", circles(&tree));
    // Code after a test module is the program's again.
    let (_dir, tree) = toy(&[
        ("gate/mod.rs", "//! gate\nmod stats;\npub(crate) use stats::mean;\n"),
        (
            "gate/stats.rs",
            "//! stats\n#[cfg(test)]\npub(crate) mod toy {\n    use super::super::mean;\n}\n\npub(crate) fn mean() {\n    super::mean();\n}\n",
        ),
    ]);
    assert_eq!(
        circles(&tree),
        ["gate/mod.rs:3 → gate/stats.rs:8 → gate/mod.rs"]
    );
}

#[test]
fn a_subcommand_using_another_is_caught() {
    let (_dir, tree) = toy(&[
        (
            "commands/mod.rs",
            "//! commands\nmod ci;\nmod common;\nmod report;\n",
        ),
        (
            "commands/ci.rs",
            "//! ci\nuse super::common::load;\nfn f() { super::report::deliver(); }\n",
        ),
        (
            "commands/report.rs",
            "//! report\nuse super::common::load;\n",
        ),
        ("commands/common.rs", "//! shared\n"),
    ]);
    let bad = sideways(&tree);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("commands/ci.rs:3: a subcommand uses `commands/report.rs`"),
        "{bad:?}"
    );
}

#[test]
fn grouped_nested_and_inline_paths_are_read() {
    let s = |t: &str| tree_at(t.as_bytes(), 0);
    assert_eq!(s("{a::B, c}"), [vec!["a", "B"], vec!["c"]]);
    assert_eq!(
        s("{backend::{Launch, Resolve}, self, gpu::State};"),
        [
            vec!["backend", "Launch"],
            vec!["backend", "Resolve"],
            vec![],
            vec!["gpu", "State"]
        ]
    );
    assert_eq!(s("report::render(&x)"), [vec!["report", "render"]]);
    assert_eq!(module_of(Path::new("gate/mod.rs")), ["gate"]);
    assert_eq!(module_of(Path::new("main.rs")), Vec::<String>::new());
    assert_eq!(
        module_of(Path::new("workload/mmlu/data.rs")),
        ["workload", "mmlu", "data"]
    );
}
