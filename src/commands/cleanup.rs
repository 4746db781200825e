//! `lmcache-e2e cleanup`: stops what a run left behind, from its state file
//! or by container label.

use std::time::Duration;

use crate::cli::CleanupArgs;
use crate::engine::{self, EngineError, LabelFilter};
use crate::error::Error;

pub(crate) async fn run(args: CleanupArgs) -> Result<(), Error> {
    let grace = Duration::from_secs_f64(args.grace_period_secs.max(0.0));
    let records = match (&args.results_dir, &args.run_id) {
        (Some(dir), _) => engine::cleanup_from_state(&dir.join("state.json"), grace).await?,
        (None, run_id) => {
            let cli = which::which(&args.cli).map_err(|source| EngineError::NotFound {
                engine: "cleanup".into(),
                command: args.cli.clone(),
                source,
            })?;
            let filter = match run_id {
                Some(id) => LabelFilter::Run(id),
                None => LabelFilter::Stale,
            };
            engine::cleanup_by_label(&cli, filter, grace).await?
        }
    };
    if records.is_empty() {
        println!("nothing to clean up");
    }
    for r in records {
        println!("{}: {}: {}", r.name, r.what, r.action);
    }
    Ok(())
}
