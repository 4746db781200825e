//! Kind `toy`, which exists only in the unit tests: its `command` run
//! through `sh -c`. It shows what adding an engine kind takes: this module,
//! its two lines in `kinds/mod.rs`, and its variant with its row in
//! `config/engine.rs`; the loader, the preflight, placement, faults and the
//! supervisor then know it without a line of their own.

use futures_util::future::BoxFuture;

use super::process::Process;
use crate::config::EngineConfig;
use crate::engine::backend::{Backend, Planned, Resolve, Started};
use crate::engine::spec::{EngineError, EngineSpec, Launch};

pub(crate) struct Toy;

impl Backend for Toy {
    fn planned(&self, e: &EngineConfig) -> Planned {
        Planned::Command(format!("sh -c {}", e.command.as_deref().unwrap_or("?")))
    }

    fn resolve(&self, e: &EngineConfig, r: &Resolve<'_>) -> Result<Launch, EngineError> {
        let line = std::iter::once(e.command.clone().unwrap_or_default())
            .chain(e.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let args = vec!["-c".to_string(), line];
        Ok(super::process::launch("/bin/sh".into(), args, e, r))
    }

    fn start<'a>(
        &'a self,
        spec: &'a EngineSpec,
        log: Option<std::fs::File>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Started>, EngineError>> {
        Process.start(spec, log, run_id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{load, EngineKind, LoadRequest, Loaded};
    use crate::engine::backend::Planned;
    use crate::engine::spec::Launch;
    use crate::engine::{planned, resolve, Supervisor};

    fn load_str(dir: &std::path::Path, text: &str) -> Result<Loaded, String> {
        let path = dir.join("suite.toml");
        std::fs::write(&path, text).unwrap();
        load(&LoadRequest {
            overlays: &[],
            preset: None,
            file: Some(&path),
            sets: &[],
            env: &|_| None,
            kinds: &crate::workload::test_kinds(),
        })
        .map_err(|e| e.to_string())
    }

    const SUITE: &str = r#"
[engines.base]
role = "baseline"
kind = "toy"
command = "exec sleep"
args = ["30"]
[engines.lm]
role = "lmcache"
kind = "sim"
[tests.det]
kind = "determinism"
[tests.det.checks.same]
metric = "mismatched_outputs"
max = 0
"#;

    /// The toy kind is loaded, refused where its row says, planned,
    /// resolved with the run's substitutions, started as a process group
    /// and stopped, all by the code every kind goes through.
    #[tokio::test]
    async fn a_new_engine_kind_is_its_backend_its_row_and_its_variant() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_str(dir.path(), SUITE).unwrap();
        let e = &loaded.suite.engines["base"];
        assert_eq!(e.kind, EngineKind::Toy);
        assert!(matches!(planned(e), Planned::Command(c) if c == "sh -c exec sleep"));

        let lacking = SUITE.replace("command = \"exec sleep\"\n", "");
        let err = load_str(dir.path(), &lacking).unwrap_err();
        assert!(
            err.contains("engines.base.command") && err.contains("kind `toy` needs a command"),
            "{err}"
        );
        let misplaced = SUITE.replace(
            "args = [\"30\"]",
            "args = [\"30\"]\nurl = \"http://127.0.0.1:1\"",
        );
        let err = load_str(dir.path(), &misplaced).unwrap_err();
        assert!(err.contains("kind `toy` does not use `url`"), "{err}");

        let specs = resolve(&loaded.suite, dir.path(), "m", None, "toy-run", &[]).unwrap();
        let spec = specs.iter().find(|s| s.name == "base").unwrap();
        let Launch::Process { program, args, .. } = &spec.launch else {
            panic!("{:?}", spec.launch);
        };
        assert_eq!(program.to_str(), Some("/bin/sh"));
        assert_eq!(args, &["-c", "exec sleep 30"]);

        let sup = Supervisor::new("toy-run", Duration::from_secs(5), dir.path());
        assert!(sup.spawn(spec).await.unwrap().is_some());
        assert_eq!(sup.exit_status("base"), None);
        let killed = sup.stop_all(std::future::pending()).await;
        assert!(killed.is_empty(), "sleep stops on SIGTERM: {killed:?}");
        assert!(sup.exit_status("base").is_some());
    }
}
