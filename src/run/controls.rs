//! Control runs: after the suite, each `[controls.NAME]` runs as a suite
//! of its own (engines started anew, results under `controls/NAME/`), and
//! its verdict is compared with the one it had to reach. A control that
//! misses fails the run: the suite cannot see what it checks.

use std::path::Path;

use crate::config::{Expect, Loaded};
use crate::engine::fault::fired_line;
use crate::results::{
    CheckOutcome, ControlRecord, RunMeta, RunResults, RunStatus, TestStatus, Verdict,
};

use super::{Events, Request, RunError};

/// One control, loaded as the suite it makes.
pub(crate) struct Control {
    pub name: String,
    pub loaded: Loaded,
}

/// Runs every control one after the other and records what each
/// concluded in `results`; a signal stops them all at once.
pub(crate) async fn run_all(
    controls: Vec<Control>,
    results: &mut RunResults,
    build_id: &str,
    meta: &RunMeta,
    events: &Events,
) -> Result<(), RunError> {
    for c in controls {
        events.info(format!("control `{}`: starting", c.name));
        let dir = results.results_dir.join("controls").join(&c.name);
        let selected: Vec<String> = c
            .loaded
            .suite
            .selected_tests(&[])
            .map_err(|e| RunError::Internal(format!("control `{}`: {e}", c.name)))?
            .into_iter()
            .map(|(n, _)| n.clone())
            .collect();
        let request = Request {
            loaded: &c.loaded,
            selected,
            results_dir: dir.clone(),
            build_id: format!("{build_id}-control-{}", c.name),
            meta: meta.clone(),
            shard: None,
        };
        let (run, outcome) = super::run(request, events).await?;
        if let Err(e @ RunError::Interrupted { .. }) = outcome {
            return Err(e);
        }
        let record = judge(&c, &run, &dir);
        events.info(format!(
            "control `{}`: expected {}, got {}{}: {}",
            record.name,
            record.expected.to_uppercase(),
            record.got.to_uppercase(),
            if record.held { "" } else { " (MISSED)" },
            record.evidence
        ));
        results.controls.push(record);
        events.emit(&super::Event::Checkpoint(results))?;
    }
    Ok(())
}

/// A run whose controls missed fails, whatever its own tests said.
pub(crate) fn verdict(results: &mut RunResults) -> Option<String> {
    let missed: Vec<String> = results
        .controls
        .iter()
        .filter(|c| !c.held)
        .map(|c| {
            format!(
                "control `{}` expected {}, got {}",
                c.name,
                c.expected.to_uppercase(),
                c.got.to_uppercase()
            )
        })
        .collect();
    if missed.is_empty() {
        return None;
    }
    let message = format!(
        "{}: the suite cannot be trusted to see what it checks",
        missed.join("; ")
    );
    if matches!(results.status, RunStatus::Passed | RunStatus::Inconclusive) {
        results.status = RunStatus::Failed;
    }
    results.message = Some(match results.message.take() {
        Some(m) => format!("{m}; {message}"),
        None => message.clone(),
    });
    Some(message)
}

/// What a control's run concluded, against what it had to.
fn judge(c: &Control, run: &RunResults, dir: &Path) -> ControlRecord {
    let config = &c.loaded.suite.controls[&c.name];
    // Every failed check, as `test.check`, with its outcome.
    let (failed_names, failed): (Vec<String>, Vec<&CheckOutcome>) = run
        .tests
        .iter()
        .flat_map(|t| t.checks.iter().map(move |k| (t, k)))
        .filter(|(_, k)| k.verdict == Verdict::Fail)
        .map(|(t, k)| (format!("{}.{}", t.name, k.name), k))
        .unzip();
    let broke = run
        .tests
        .iter()
        .any(|t| matches!(t.status, TestStatus::Error | TestStatus::Interrupted))
        || run.status == RunStatus::Error;
    let got = match (broke, failed.is_empty()) {
        (true, _) => "error",
        (false, false) => "fail",
        (false, true) => "pass",
    };
    let wanted = config.fails.is_empty() || config.fails.iter().any(|f| failed_names.contains(f));
    let held = match config.expect {
        Expect::Pass => got == "pass",
        Expect::Fail => got == "fail" && wanted,
    };
    let mut evidence = evidence(
        run,
        &failed_names,
        &failed,
        config.expect,
        &config.fails,
        wanted,
    );
    if let Some(fault) = c
        .loaded
        .suite
        .engines
        .values()
        .find_map(|e| e.fault)
        .map(|f| f.as_str())
    {
        let fired = fault_fired(&dir.join("logs"), fault);
        evidence.push_str(&if fired {
            format!("; the `{fault}` fault fired")
        } else {
            format!("; the `{fault}` fault never fired (no `{}` in the engines' logs): it did not reach LMCache", fired_line(fault))
        });
    }
    ControlRecord {
        name: c.name.clone(),
        about: config.about.clone(),
        expected: config.expect.as_str().to_string(),
        got: got.to_string(),
        held,
        evidence,
        results_dir: format!("controls/{}", c.name),
    }
}

fn evidence(
    run: &RunResults,
    names: &[String],
    failed: &[&CheckOutcome],
    expect: Expect,
    wanted: &[String],
    hit: bool,
) -> String {
    if let Some(m) = run
        .message
        .as_deref()
        .filter(|_| run.status == RunStatus::Error)
    {
        return format!("it could not run: {m}");
    }
    if failed.is_empty() {
        let checks: usize = run.tests.iter().map(|t| t.checks.len()).sum();
        let blind: Vec<&str> = run
            .tests
            .iter()
            .flat_map(|t| t.caveats.iter())
            .filter(|c| c.starts_with("cannot fail"))
            .map(String::as_str)
            .take(1)
            .collect();
        let mut s = format!("all {checks} checks held");
        if let Some(b) = blind.first() {
            s.push_str(&format!(" ({b})"));
        }
        return s;
    }
    let mut shown: Vec<String> = names
        .iter()
        .zip(failed)
        .take(3)
        .map(|(n, k)| format!("{n} {}", measured(k)))
        .collect();
    if names.len() > 3 {
        shown.push(format!("{} more", names.len() - 3));
    }
    let mut s = format!("failed: {}", shown.join(", "));
    if expect == Expect::Fail && !hit {
        s.push_str(&format!(
            " (none of the checks it names: {})",
            wanted.join(", ")
        ));
    }
    s
}

/// A failed check's figure against its bound, as one phrase.
fn measured(k: &CheckOutcome) -> String {
    match k.value {
        Some(v) => format!(
            "= {} {} ({} {} {})",
            num(v),
            k.unit,
            k.op,
            num(k.threshold),
            k.unit
        ),
        None => "(no value)".to_string(),
    }
}

/// A figure with the digits that matter.
fn num(v: f64) -> String {
    let s = match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Whether any engine log of the control says the fault changed a request.
fn fault_fired(logs: &Path, fault: &str) -> bool {
    let line = fired_line(fault);
    std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .any(|e| {
            std::fs::read(e.path())
                .map(|b| String::from_utf8_lossy(&b).contains(&line))
                .unwrap_or(false)
        })
}
