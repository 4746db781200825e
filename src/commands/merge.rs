//! `lmcache-e2e merge`: a sharded suite's results directories into one,
//! reported as one run (one PR comment, one annotation).

use crate::ci_env::CiEnv;
use crate::cli::MergeArgs;
use crate::console::Verbosity;
use crate::error::Error;
use crate::results::{RunResults, RunStatus};
use crate::run::merge::{self, ShardDir};

pub(crate) async fn run(args: MergeArgs) -> Result<(), Error> {
    if std::fs::read_dir(&args.into).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Usage(format!(
            "failed to merge into {}: it is not empty; give a new or empty directory",
            args.into.display()
        )));
    }
    // Other jobs' artifacts: hostile until checked.
    let shards = args
        .dirs
        .iter()
        .map(|dir| {
            Ok(ShardDir {
                dir: dir.clone(),
                results: RunResults::read_untrusted(dir, args.max_results_mib)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let ci = CiEnv::from_process();
    let console = super::common::console(Verbosity::Normal, &ci);
    let mut results = merge::merge(shards, &args.into)?;
    console.info(&format!(
        "merged {} shards into {}: {} tests",
        results.merged_from.len(),
        args.into.display(),
        results.tests.len()
    ));
    // A history that cannot be read must not cost the run its reports.
    let history = super::common::apply_history(&args.history, &ci, &mut results, &console);
    console.table(&results);
    let plan = super::common::delivery_plan(&args.report, &ci, true);
    super::common::deliver(&results, &plan, &console).await?;
    history?;
    match results.status {
        RunStatus::Passed => Ok(()),
        _ => Err(Error::Failed(
            results
                .message
                .clone()
                .unwrap_or_else(|| "the merged run failed".into()),
        )),
    }
}
