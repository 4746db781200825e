//! How a run ended, turned into its status, its tests' and its error:
//! what the results say once the engines are stopped.

use crate::config::{self, Schedule};
use crate::engine::{self, tail_lines, EngineError, TAIL_LINES};
use crate::results::{RunResults, RunStatus, TestStatus};
use crate::workload::ErrorClass;

use super::error::RunError;
use super::events::{Event, Events};
use super::signals::Received;

/// A test that could not run to the end, and what kind of failure it was.
pub(super) struct Broken {
    pub(super) test: String,
    pub(super) class: ErrorClass,
    pub(super) message: String,
}

pub(super) enum Ended {
    Done(Result<Vec<Broken>, RunError>),
    Died(EngineError),
    Signal(Received),
    Panic(String),
}

/// The exit code of a run that could not tell. Engines one after the
/// other cannot add trials after the fact: a check that asked for them
/// never had its budget, so it only warns.
pub(super) fn inconclusive_exit(run: &config::RunConfig, ran: Option<&str>) -> i32 {
    match (run.schedule, ran) {
        (Schedule::Sequential, _) | (Schedule::Auto, Some("sequential")) => 0,
        _ => run.inconclusive_exit,
    }
}

/// Records how the run ended and turns the ending into the run's error (or
/// none). Every engine's last lines are kept for the report.
pub(super) fn finish(
    results: &mut RunResults,
    ended: Ended,
    events: &Events,
    inconclusive_exit: i32,
) -> Result<(), RunError> {
    let outcome: Result<(), RunError> = match ended {
        Ended::Done(Ok(broken)) => verdict(results, broken, inconclusive_exit),
        Ended::Done(Err(e)) => {
            results.status = RunStatus::Error;
            results.message = Some(first_line(&e.to_string()));
            mark_running(results, TestStatus::Error, "the run stopped with an error");
            Err(e)
        }
        Ended::Died(e) => {
            let message = first_line(&e.to_string());
            events.say(&Event::EngineDied { message: &message });
            results.status = RunStatus::Error;
            mark_running(results, TestStatus::Error, &message);
            results.message = Some(message);
            Err(RunError::Engine(e))
        }
        Ended::Signal(s) => {
            results.status = RunStatus::Interrupted;
            results.signal = Some(s.name.to_string());
            results.message = Some(format!(
                "interrupted by {}; engines stopped, partial results kept",
                s.name
            ));
            mark_running(
                results,
                TestStatus::Interrupted,
                &format!("interrupted by {}", s.name),
            );
            Err(RunError::Interrupted {
                name: s.name,
                number: s.number,
            })
        }
        Ended::Panic(msg) => {
            results.status = RunStatus::Error;
            results.message = Some(format!("internal error: {msg}"));
            mark_running(results, TestStatus::Error, "internal error");
            Err(RunError::Internal(msg))
        }
    };
    for e in &mut results.engines {
        if let Some(log) = &e.log {
            e.log_findings = engine::logscan::scan(&results.results_dir.join(log));
            e.log_tail = tail_lines(&results.results_dir.join(log), TAIL_LINES);
            let title = format!("last {} lines of {} ({log})", e.log_tail.len(), e.name);
            events.say(&Event::LogTail {
                title: &title,
                lines: &e.log_tail,
                passed: outcome.is_ok(),
            });
        }
    }
    results.finished_at = Some(chrono::Utc::now());
    outcome
}

pub(super) fn mark_running(results: &mut RunResults, status: TestStatus, why: &str) {
    for t in results
        .tests
        .iter_mut()
        .filter(|t| t.status == TestStatus::Running)
    {
        t.status = status;
        t.error = Some(why.to_string());
    }
}

/// A run that went to its end: passed, failed by a gate, or stopped by a
/// test that could not run (whose class says what to fix).
pub(super) fn verdict(
    results: &mut RunResults,
    mut broken: Vec<Broken>,
    inconclusive_exit: i32,
) -> Result<(), RunError> {
    let failed: Vec<&str> = results
        .tests
        .iter()
        .filter(|t| matches!(t.status, TestStatus::Failed | TestStatus::Error))
        .map(|t| t.name.as_str())
        .collect();
    if failed.is_empty() {
        let undecided = undecided_checks(results);
        if undecided.is_empty() {
            results.status = RunStatus::Passed;
            return Ok(());
        }
        let message = format!("could not tell: {}", undecided.join("; "));
        results.status = RunStatus::Inconclusive;
        results.message = Some(message.clone());
        // A check that asked for more trials was meant to decide: the
        // suite's policy sets the exit code. One that only warns keeps 0.
        let meant_to_decide = results.tests.iter().flat_map(|t| &t.checks).any(|c| {
            c.verdict == crate::results::Verdict::Inconclusive
                && c.on_inconclusive.wants_more_trials()
        });
        return match (meant_to_decide, inconclusive_exit) {
            (true, 1) => Err(RunError::Undecided(message)),
            _ => Ok(()),
        };
    }
    let message = format!("failed tests: {}", failed.join(", "));
    results.status = RunStatus::Failed;
    // A bad input file is the first thing to fix, then the machine, then
    // the engine; a test that only failed to measure is a failed run.
    broken.sort_by_key(|b| b.class);
    match broken.into_iter().find(|b| b.class != ErrorClass::Failed) {
        Some(b) => Err(RunError::Workload {
            test: b.test,
            class: b.class,
            message: b.message,
        }),
        None => Err(RunError::Failed(message)),
    }
}

/// Each hard check that ended inconclusive, with its interval and bound:
/// `test.check: +3.1 … +17.2 % straddles <= 10 %`.
pub(super) fn undecided_checks(results: &RunResults) -> Vec<String> {
    results
        .tests
        .iter()
        .filter(|t| t.status == TestStatus::Inconclusive)
        .flat_map(|t| t.checks.iter().map(move |c| (t, c)))
        .filter(|(_, c)| c.verdict == crate::results::Verdict::Inconclusive)
        .map(|(t, c)| {
            // A percent to a tenth; any other figure to three places.
            let (unit, places) = if c.unit == "%" { (" %", 1) } else { ("", 3) };
            match &c.interval {
                Some(i) => format!(
                    "{}.{} ({:+.places$} … {:+.places$}{unit} straddles {} {}{unit})",
                    t.name, c.name, i.low, i.high, c.op, c.threshold
                ),
                None => format!("{}.{}", t.name, c.name),
            }
        })
        .collect()
}

pub(super) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

pub(super) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}
