//! `lmcache-e2e export`: a results directory's numbers in another
//! dashboard's format.

use crate::cli::{ExportArgs, ExportFormat};
use crate::error::Error;
use crate::report::export::{self, Better};
use crate::results::{write_atomic, RunResults};

pub(crate) fn run(args: &ExportArgs) -> Result<(), Error> {
    let results = RunResults::read_untrusted(&args.results_dir, args.max_results_mib)?;
    let value = match args.format {
        ExportFormat::Bencher => export::bencher(&results),
        ExportFormat::BenchmarkSmaller => export::github_benchmark(&results, Better::Smaller),
        ExportFormat::BenchmarkBigger => export::github_benchmark(&results, Better::Bigger),
    };
    let json = serde_json::to_string_pretty(&value).expect("json serializes") + "\n";
    match &args.output {
        Some(path) => write_atomic(path, json.as_bytes())?,
        None => super::common::Out::new().text(&json),
    }
    Ok(())
}
