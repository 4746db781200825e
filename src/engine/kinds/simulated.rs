//! Kind `sim`: this binary's simulated engine (`lmcache-e2e sim serve`) as
//! a child process. It resolves to its own command line and then runs
//! exactly as a `process` engine does, so the real path is the one tested.

use futures_util::future::BoxFuture;

use super::process::Process;
use crate::config::EngineConfig;
use crate::engine::backend::{Backend, Planned, Resolve, Started};
use crate::engine::spec::{EngineError, EngineSpec, Launch};

pub(crate) struct Simulated;

impl Backend for Simulated {
    fn planned(&self, _e: &EngineConfig) -> Planned {
        Planned::Command("lmcache-e2e sim serve".into())
    }

    fn resolve(&self, e: &EngineConfig, r: &Resolve<'_>) -> Result<Launch, EngineError> {
        let program = std::env::current_exe().map_err(|source| EngineError::Spawn {
            engine: r.name.to_string(),
            command: "lmcache-e2e sim serve".into(),
            source,
        })?;
        let mut opts = e.sim.clone().unwrap_or_default();
        if r.model != "auto" {
            opts.served_model_name = r.model.to_string();
        }
        let mut args: Vec<String> = ["sim", "serve", "--host", "{host}", "--port", "{port}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(opts.to_args());
        args.extend(e.args.iter().cloned());
        Ok(super::process::launch(program, args, e, r))
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
