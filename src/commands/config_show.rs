//! `lmcache-e2e config show`: every effective value and where it came from.

use crate::cli::SuiteArgs;
use crate::error::Error;

pub(crate) fn run(args: &SuiteArgs) -> Result<(), Error> {
    let loaded = super::load_suite(args)?;
    let rows = loaded.show();
    let width = rows
        .iter()
        .map(|(k, v, _)| k.len() + v.len() + 3)
        .max()
        .unwrap_or(0);
    println!("# effective suite (base: {})", loaded.base);
    for (key, value, source) in rows {
        let line = format!("{key} = {value}");
        println!("{line:<width$}  # {source}");
    }
    Ok(())
}
