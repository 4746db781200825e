//! What an export format is: a name for `--format` and a function from a
//! run's results to the JSON another dashboard reads.

use serde_json::Value;

use crate::results::RunResults;

/// One export format. A new one is its module under `report/export/`, a
/// row of [`super::FORMATS`](crate::report::export::FORMATS) and its name in
/// `export --format`'s help (`cli.rs`): three files.
pub(crate) trait Exporter: Sync {
    /// `--format NAME`.
    fn name(&self) -> &'static str;

    /// The document, from results alone.
    fn export(&self, results: &RunResults) -> Value;
}
