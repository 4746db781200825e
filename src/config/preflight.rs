//! What a suite needs from this machine before any engine starts: the
//! programs its engines and workloads run (on PATH, or a path that exists)
//! and the files its tests read. Shared by `ci` (refused at once, exit 2,
//! every miss named with its key), `ci --dry-run`, `config show` and
//! `setup --check`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::kind::TestParams;
use super::suite::Suite;
use super::wants::Wants;

/// One thing the suite needs here.
pub(crate) struct Need {
    /// The suite key that asks for it.
    pub key: String,
    /// `program `vllm`` or `file data.tar.xz`.
    pub what: String,
    /// Where it was found; `None`: missing.
    pub found: Option<String>,
    pub fix: String,
}

fn program(key: String, name: &str, fix: &str) -> Need {
    Need {
        found: which::which(name).ok().map(|p| p.display().to_string()),
        what: format!("program `{name}`"),
        fix: if name.contains('/') {
            format!("{name} is not an executable file; {fix}")
        } else {
            format!("`{name}` is not on PATH; {fix}")
        },
        key,
    }
}

fn file(key: String, path: &Path, fix: &str) -> Need {
    Need {
        found: path.exists().then(|| path.display().to_string()),
        what: format!("file {}", path.display()),
        fix: format!("{} does not exist; {fix}", path.display()),
        key,
    }
}

/// What `want`, asked for under the key `under`, comes to here.
fn need(under: &str, want: Wants, at: &dyn Fn(&str) -> PathBuf) -> Need {
    match want {
        Wants::Program { key, name, fix } => program(format!("{under}.{key}"), &name, fix),
        Wants::File { key, path, fix } => file(format!("{under}.{key}"), &at(&path), fix),
    }
}

/// Everything the engines and the tests `selected` need, in suite order,
/// from a suite whose tests' parameters may be only partly typed (a suite
/// with other problems reports these with them).
pub(crate) fn needs_of(
    suite: &Suite,
    params: &IndexMap<String, TestParams>,
    dir: &Path,
    selected: &[String],
) -> Vec<Need> {
    let at = |p: &str| -> PathBuf {
        if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            dir.join(p)
        }
    };
    let mut out = Vec::new();
    for (name, e) in &suite.engines {
        out.extend(
            e.wants()
                .into_iter()
                .map(|w| need(&format!("engines.{name}"), w, &at)),
        );
    }
    for name in selected {
        let Some(params) = params.get(name) else {
            continue;
        };
        let under = format!("tests.{name}");
        out.extend(
            params
                .params()
                .wants()
                .into_iter()
                .map(|w| need(&under, w, &at)),
        );
    }
    out
}
