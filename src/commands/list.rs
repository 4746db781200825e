//! `lmcache-e2e list`: a suite's tests (the names `--only` matches), with
//! `--checks` what each gates on and could, with `--presets` the presets.

use crate::cli::ListArgs;
use crate::config::{metrics, PRESETS};
use crate::error::Error;

pub(crate) fn run(args: &ListArgs) -> Result<(), Error> {
    let mut out = super::common::Out::new();
    if args.presets {
        for p in PRESETS {
            out.line(format_args!("{:<12} {}", p.name, p.about));
        }
        return Ok(());
    }
    let loaded = super::common::load_suite(&args.suite)?;
    for (name, test) in &loaded.suite.tests {
        let state = if test.enabled { "" } else { "  (disabled)" };
        out.line(format_args!(
            "{name}  [{}]  {} checks{state}",
            test.kind,
            test.checks.len()
        ));
        if !args.checks {
            continue;
        }
        for (check, c) in &test.checks {
            out.line(format_args!("  {check}: {}", c.describe()));
        }
        out.line(format_args!(
            "  can gate on: {}; any vLLM or LMCache counter of the engines' /metrics (vllm:…, lmcache…); {}",
            loaded.params[name.as_str()].kind().metrics().join(", "),
            metrics::CACHE_SHARES.join(", ")
        ));
    }
    Ok(())
}
