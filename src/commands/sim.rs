//! `lmcache-e2e sim serve`: the simulated engine, until killed.

use crate::cli::SimServeArgs;
use crate::engine::EngineError;
use crate::error::Error;

pub(crate) async fn run(args: SimServeArgs) -> Result<(), Error> {
    crate::sim::serve(&args.host, args.port, args.options)
        .await
        .map_err(|e| {
            Error::Engine(EngineError::Spawn {
                engine: "sim".into(),
                command: "lmcache-e2e sim serve".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })
}
