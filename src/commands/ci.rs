//! `lmcache-e2e ci`: runs a suite with the console and results writer as
//! its event sinks, then delivers the reports whatever the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use crate::ci_env::CiEnv;
use crate::cli::CiArgs;
use crate::config::TestParams;
use crate::console::{CiGroups, Verbosity};
use crate::error::Error;
use crate::run::{self, Events, ResultsWriter};

pub(crate) async fn run(args: CiArgs) -> Result<(), Error> {
    let mut loaded = super::load_suite(&args.suite)?;
    if args.sequential {
        for p in loaded.params.values_mut() {
            if let TestParams::Mmlu(m) = p {
                m.sequential = true;
            }
        }
    }
    let selected: Vec<String> = loaded
        .suite
        .selected_tests(args.only.as_deref())?
        .into_iter()
        .map(|(n, _)| n.clone())
        .collect();
    let ci = CiEnv::from_process();
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let console = super::console(verbosity, &ci);
    let events = Events::new(vec![
        Arc::new(ResultsWriter),
        Arc::new(console.clone()),
        Arc::new(CiGroups { ci: ci.ci }),
    ]);
    let run_cfg = &loaded.suite.run;
    let build_id = run_cfg
        .build_id
        .clone()
        .unwrap_or_else(|| format!("local_{}", chrono::Utc::now().format("%Y%m%d_%H%M%S")));
    let results_dir = args
        .results_dir
        .clone()
        .or_else(|| run_cfg.results_dir.clone())
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/lmcache_ci_results_{build_id}")));
    let request = run::Request {
        loaded: &loaded,
        selected,
        results_dir,
        build_id,
        meta: ci.meta.clone(),
    };
    let (results, outcome) = run::run(request, &events).await?;
    // Reports go out whatever the outcome: a failed or interrupted run is
    // the one maintainers most need to see.
    let plan = super::delivery_plan(&args.report, &ci, true);
    let delivered = super::report::deliver(&results, &plan, &console).await;
    match delivered {
        Ok(_) => Ok(outcome?),
        // The run's own failure says more than the report's.
        Err(e) => Err(outcome.err().map_or_else(|| e.into(), Error::Run)),
    }
}
