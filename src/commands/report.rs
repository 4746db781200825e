//! `lmcache-e2e report`: renders and delivers the reports again from a
//! results directory alone.

use crate::ci_env::CiEnv;
use crate::cli::ReportArgs;
use crate::console::Verbosity;
use crate::error::Error;
use crate::report::ReportError;
use crate::results::{write_atomic, RunResults};

pub(crate) async fn run(args: ReportArgs) -> Result<(), Error> {
    // Another job's artifact, perhaps a fork's: hostile until checked.
    let mut results = RunResults::read_untrusted(&args.results_dir, args.max_results_mib)?;
    // Another job downloads the results elsewhere: reports go beside them.
    results.results_dir = args.results_dir.clone();
    let ci = CiEnv::from_process();
    let console = super::common::console(Verbosity::Normal, &ci);
    let plan = super::common::delivery_plan(&args.report, &ci, false);
    let delivered = super::common::deliver(&results, &plan, &console).await?;
    let md = std::fs::read_to_string(&delivered).map_err(|source| ReportError::Read {
        path: delivered.clone(),
        source,
    })?;
    match args.output {
        Some(path) => write_atomic(&path, md.as_bytes())?,
        None => super::common::Out::new().line(&md),
    }
    Ok(())
}
