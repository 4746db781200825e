//! `lmcache-e2e cleanup`: stops what a run left behind, from its state file
//! or by container label, and marks the run it swept as interrupted.

use std::path::Path;
use std::time::Duration;

use crate::cli::CleanupArgs;
use crate::engine::{self, LabelFilter};
use crate::error::Error;
use crate::results::{RunResults, RunStatus, TestStatus};

pub(crate) async fn run(args: CleanupArgs) -> Result<(), Error> {
    let grace = Duration::from_secs_f64(args.grace_period_secs.max(0.0));
    let records = match (&args.results_dir, &args.run_id) {
        (Some(dir), _) => {
            let state = dir.join("state.json");
            if !state.is_file() {
                return Err(Error::Usage(format!(
                    "there is no run to clean up in {}: it has no state.json (a run writes one when its first engine starts); give the results directory of the run to stop",
                    dir.display()
                )));
            }
            let records = engine::cleanup_from_state(&state, grace).await?;
            engine::mark_stopped(&state)?;
            mark_interrupted(dir)?;
            records
        }
        (None, run_id) => {
            let cli = which::which(&args.cli).map_err(|_| {
                Error::Missing(format!(
                    "failed to find `{}` on PATH: cleaning up by container label needs the Docker CLI (Debian: apt-get install docker.io), or give --cli",
                    args.cli
                ))
            })?;
            let filter = match run_id {
                Some(id) => LabelFilter::Run(id),
                None => LabelFilter::Stale,
            };
            engine::cleanup_by_label(&cli, filter, grace).await?
        }
    };
    let mut out = super::common::Out::new();
    if records.is_empty() {
        out.line("nothing to clean up");
    }
    for r in records {
        out.line(format!("{}: {}: {}", r.name, r.what, r.action));
    }
    Ok(())
}

/// A run still recorded as running when its engines were swept was killed
/// (its own handlers would have recorded how it ended): it reads as
/// interrupted from now on, not as running forever.
fn mark_interrupted(dir: &Path) -> Result<(), Error> {
    if !RunResults::path(dir).is_file() {
        return Ok(());
    }
    let mut results = RunResults::read_untrusted(dir, 64)?;
    if results.status != RunStatus::Running {
        return Ok(());
    }
    let why = "killed before it could finish; `lmcache-e2e cleanup` stopped its engines";
    results.status = RunStatus::Interrupted;
    results.message = Some(why.to_string());
    for t in results
        .tests
        .iter_mut()
        .filter(|t| t.status == TestStatus::Running)
    {
        t.status = TestStatus::Interrupted;
        t.error = Some(why.to_string());
    }
    results.finished_at.get_or_insert_with(chrono::Utc::now);
    results.results_dir = dir.to_path_buf();
    Ok(results.write()?)
}
