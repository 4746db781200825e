//! What a suite needs from this machine before any engine starts: the
//! programs its engines and workloads run (on PATH, or a path that exists)
//! and the files its tests read. Shared by `ci` (refused at once, exit 2,
//! every miss named with its key), `ci --dry-run`, `config show` and
//! `setup --check`.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::kind::{TestParams, Wants};
use super::suite::{EngineKind, Suite};

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
        match e.kind {
            EngineKind::Process => {
                if let Some(cmd) = e.command.as_deref().filter(|c| !c.is_empty()) {
                    out.push(program(
                        format!("engines.{name}.command"),
                        cmd,
                        "install it in the job's environment, or give its path",
                    ));
                }
            }
            EngineKind::Container => {
                if let Some(c) = &e.container {
                    out.push(program(
                        format!("engines.{name}.container.cli"),
                        &c.cli,
                        "install Docker (Debian: apt-get install docker.io) or set the cli to podman",
                    ));
                }
            }
            EngineKind::Sim => {
                if let Some(key) = e.sim.as_ref().and_then(|s| s.answer_key.as_ref()) {
                    out.push(file(
                        format!("engines.{name}.sim.answer_key"),
                        &at(&key.display().to_string()),
                        "point it at a directory of MMLU CSV files",
                    ));
                }
            }
            EngineKind::External => {}
        }
    }
    for name in selected {
        let Some(params) = params.get(name) else {
            continue;
        };
        let key = |k: &str| format!("tests.{name}.{k}");
        for want in params.params().wants() {
            out.push(match want {
                Wants::Program { key: k, name, fix } => program(key(k), &name, fix),
                Wants::File { key: k, path, fix } => file(key(k), &at(&path), fix),
            });
        }
    }
    out
}
