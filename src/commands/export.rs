//! `lmcache-e2e export`: a results directory's numbers in another
//! dashboard's format.

use crate::cli::ExportArgs;
use crate::error::Error;
use crate::report::export;
use crate::results::{write_atomic, RunResults};

pub(crate) fn run(args: &ExportArgs) -> Result<(), Error> {
    // The format first: a misspelt one is a usage error, whatever the
    // results directory holds.
    let format = export::find(export::FORMATS, &args.format)
        .map_err(|e| Error::Usage(format!("--format: {e}")))?;
    let results = RunResults::read_untrusted(&args.results_dir, args.max_results_mib)?;
    let value = format.export(&results);
    let json = serde_json::to_string_pretty(&value).expect("json serializes") + "\n";
    match &args.output {
        Some(path) => write_atomic(path, json.as_bytes())?,
        None => super::common::Out::new().text(&json),
    }
    Ok(())
}
