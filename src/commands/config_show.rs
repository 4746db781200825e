//! `lmcache-e2e config show`: every effective value and where it came from.

use crate::cli::SuiteArgs;
use crate::error::Error;

pub(crate) fn run(args: &SuiteArgs) -> Result<(), Error> {
    let loaded = super::common::load_suite(args)?;
    let rows = loaded.show();
    let width = rows
        .iter()
        .map(|(k, v, _)| k.len() + v.len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = super::common::Out::new();
    out.line(format_args!("# effective suite (base: {})", loaded.base));
    for (var, key) in loaded.env_overridden() {
        out.line(format_args!(
            "# the environment overrides {key} ({var}); run.env_overrides = false refuses it"
        ));
    }
    for (key, value, source) in rows {
        let line = format!("{key} = {value}");
        out.line(format_args!("{line:<width$}  # {source}"));
    }
    // The values are shown either way; what the suite lacks here fails it.
    let all: Vec<String> = loaded.suite.tests.keys().cloned().collect();
    Ok(loaded.preflight(&all)?)
}
