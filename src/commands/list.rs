//! `lmcache-e2e list`: a suite's tests, the names `--only` matches.

use crate::cli::SuiteArgs;
use crate::error::Error;

pub(crate) fn run(args: &SuiteArgs) -> Result<(), Error> {
    let loaded = super::load_suite(args)?;
    for (name, test) in &loaded.suite.tests {
        let state = if test.enabled { "" } else { "  (disabled)" };
        println!(
            "{name}  [{}]  {} checks{state}",
            test.kind.as_str(),
            test.checks.len()
        );
    }
    Ok(())
}
