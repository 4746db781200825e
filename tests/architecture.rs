//! The layers, enforced: every `crate::` path in `src/` must name a module
//! its layer may import. The table is written once, in the README's layout
//! section (between `<!-- layers -->` markers), and read from there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `layer -> modules it may import`; `None` for the edges (may import all).
fn allowed() -> BTreeMap<String, Option<BTreeSet<String>>> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let table = readme
        .split("<!-- layers -->")
        .nth(1)
        .and_then(|t| t.split("<!-- /layers -->").next())
        .expect("README.md has the layers table between <!-- layers --> markers");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty() && c != "—")
            .collect()
    };
    let mut layers = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        let may = cells[1].trim();
        let entry = if may == "anything" {
            None
        } else {
            Some(names(may))
        };
        for layer in names(cells[0]) {
            layers.insert(layer, entry.clone());
        }
    }
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top module a file belongs to: `src/gate/mod.rs` → `gate`.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every module named after `crate::` on a line, `use crate::{a, b::c}` too.
fn imports(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Lines that break the table: `file:line: layer imports module`.
fn violations(src: &Path, layers: &BTreeMap<String, Option<BTreeSet<String>>>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let layer = layer_of(src, &file);
        let Some(may) = layers.get(&layer) else {
            bad.push(format!(
                "{}: module `{layer}` is not in the README's layers table",
                file.display()
            ));
            continue;
        };
        let Some(may) = may else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for module in imports(code) {
                if module != layer && !may.contains(&module) {
                    bad.push(format!(
                        "{}:{}: `{layer}` imports `{module}`, but may import only {}",
                        file.display(),
                        n + 1,
                        if may.is_empty() {
                            "nothing of ours".to_string()
                        } else {
                            may.iter().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let layers = allowed();
    assert!(
        layers.contains_key("results") && layers.contains_key("gate"),
        "{layers:?}"
    );
    let bad = violations(&Path::new(ROOT).join("src"), &layers);
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn an_upward_import_is_caught_with_its_file_and_line() {
    // A copy of the tree where the pure gate reaches up into the reports.
    let copy = tempfile::tempdir().unwrap();
    let src = copy.path().join("src");
    std::fs::create_dir_all(src.join("gate")).unwrap();
    std::fs::write(src.join("results.rs"), "//! model\n").unwrap();
    std::fs::write(
        src.join("gate/mod.rs"),
        "//! gate\nuse crate::results::Metric;\n// crate::report in a comment is fine\nuse crate::{config::Role, report::render};\n",
    )
    .unwrap();
    let bad = violations(&src, &allowed());
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
fn grouped_and_inline_paths_are_read() {
    assert_eq!(imports("use crate::{a::B, c};"), ["a", "c"]);
    assert_eq!(
        imports("let x = crate::report::render(&crate::results::R);"),
        ["report", "results"]
    );
}
