//! `lmcache-e2e list`: a suite's tests (the names `--only` matches), with
//! `--checks` what each gates on and could, with `--presets` the presets.

use crate::cli::ListArgs;
use crate::config::{metrics, PRESETS};
use crate::error::Error;

/// `name (unit, smaller is better)`, as far as the spec says.
fn shown(s: &metrics::MetricSpec) -> String {
    let mut about: Vec<&str> = Vec::new();
    if !s.unit.is_empty() {
        about.push(s.unit);
    }
    match s.better {
        Some(crate::results::Better::Smaller) => about.push("smaller is better"),
        Some(crate::results::Better::Bigger) => about.push("bigger is better"),
        None => {}
    }
    if s.judged == metrics::Judged::EveryTrial {
        about.push("in every trial");
    }
    match about.is_empty() {
        true => s.name.to_string(),
        false => format!("{} ({})", s.name, about.join(", ")),
    }
}

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
        let specs = loaded.params[name.as_str()].kind().metrics();
        out.line(format_args!(
            "  can gate on: {}; any vLLM or LMCache counter of the engines' /metrics (vllm:…, lmcache…); {}",
            specs.iter().map(shown).collect::<Vec<_>>().join(", "),
            metrics::CACHE_SHARES.join(", ")
        ));
    }
    Ok(())
}
