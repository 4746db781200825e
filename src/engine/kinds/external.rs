//! Kind `external`: a server that already runs at `url`. It is used, never
//! started, stopped or cleaned up.

use futures_util::future::BoxFuture;

use crate::config::EngineConfig;
use crate::engine::backend::{Backend, Planned, Resolve, Started};
use crate::engine::spec::{EngineError, EngineSpec, Launch};

pub(crate) struct External;

impl Backend for External {
    fn planned(&self, e: &EngineConfig) -> Planned {
        Planned::Running(e.url.clone().unwrap_or_else(|| "?".into()))
    }

    fn resolve(&self, _e: &EngineConfig, _r: &Resolve<'_>) -> Result<Launch, EngineError> {
        Ok(Launch::External)
    }

    fn start<'a>(
        &'a self,
        _spec: &'a EngineSpec,
        _log: Option<std::fs::File>,
        _run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Started>, EngineError>> {
        Box::pin(async { Ok(None) })
    }
}
