//! JUnit XML: one test case per check and per MMLU subject, for Buildkite
//! Test Analytics and GitHub's test reporters, written by `quick-junit`
//! (nextest's), which escapes, drops what XML forbids and counts.

use std::time::Duration;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::format::{evidence, number};
use crate::results::{CheckOutcome, RunResults, TestRecord, TestStatus, Verdict};

enum Outcome {
    /// With the evidence behind the pass, when there is any.
    Pass(Option<String>),
    /// Passed on its last attempt after failing an earlier one: a pass with
    /// a flaky failure, as nextest reports a retried test.
    Flaky(String),
    Failure {
        message: String,
        detail: String,
    },
    Error {
        message: String,
        kind: &'static str,
    },
    Skipped(String),
}

struct Case {
    name: String,
    time: f64,
    outcome: Outcome,
}

fn check_case(c: &CheckOutcome) -> Case {
    let value = c
        .value
        .map_or_else(|| "no value".to_string(), |v| number(v, &c.unit));
    let rule = format!("{} {} {}", c.metric, c.op, number(c.threshold, &c.unit));
    let shown = evidence(c);
    let detail = format!(
        "check {}: {rule}; value {value}; evidence {shown}; baseline {}; lmcache {}; change {}{}",
        c.name,
        c.baseline.map_or("–".into(), |v| v.to_string()),
        c.lmcache.map_or("–".into(), |v| v.to_string()),
        c.change_pct.map_or("–".into(), |v| format!("{v:+.2} %")),
        c.message
            .as_deref()
            .map(|m| format!("\n{m}"))
            .unwrap_or_default()
    );
    Case {
        name: c.name.clone(),
        time: 0.0,
        outcome: match c.verdict {
            // A warning or a flaky pass does not fail the build; the
            // detail still shows in the case's output.
            Verdict::Pass | Verdict::Warning => {
                Outcome::Pass((c.interval.is_some() || c.n.is_some()).then_some(detail))
            }
            Verdict::Flaky => Outcome::Flaky(detail),
            Verdict::Fail => Outcome::Failure {
                message: format!("{value} does not meet {rule}"),
                detail,
            },
            // Neither a pass nor a fail: a failure when the check says so,
            // else skipped, so the tally never counts it as a pass.
            Verdict::Inconclusive if c.on_inconclusive.fails() => Outcome::Failure {
                message: format!("inconclusive: {} straddles {rule}", evidence(c)),
                detail,
            },
            Verdict::Inconclusive => {
                Outcome::Skipped(format!("inconclusive: {} straddles {rule}", evidence(c)))
            }
        },
    }
}

/// One case per MMLU subject: a subject fails when its accuracy dropped by
/// more than the test's `max_subject_drop` check allows.
fn subject_cases(t: &TestRecord) -> Vec<Case> {
    let Some(table) = t.tables.iter().find(|tb| {
        tb.columns.first().map(String::as_str) == Some("Subject")
            && tb.columns.iter().any(|c| c == "Change")
    }) else {
        return Vec::new();
    };
    let change_col = table
        .columns
        .iter()
        .position(|c| c == "Change")
        .expect("found above");
    let limit = t
        .checks
        .iter()
        .find(|c| c.metric == "max_subject_drop")
        .map(|c| c.threshold);
    table
        .rows
        .iter()
        .filter_map(|row| {
            let subject = row.first()?;
            let change: f64 = row.get(change_col)?.parse().ok()?;
            let outcome = match limit {
                Some(l) if -change > l => Outcome::Failure {
                    message: format!("accuracy dropped by {:.4} (allowed {l})", -change),
                    detail: format!("{}: {}", table.columns.join(", "), row.join(", ")),
                },
                _ => Outcome::Pass(None),
            };
            Some(Case {
                name: format!("subject {subject}"),
                time: 0.0,
                outcome,
            })
        })
        .collect()
}

fn cases_of(t: &TestRecord) -> Vec<Case> {
    let time = t.duration_secs.unwrap_or(0.0);
    let mut cases: Vec<Case> = t.checks.iter().map(check_case).collect();
    cases.extend(subject_cases(t));
    let problem = match t.status {
        TestStatus::Error => Some(Outcome::Error {
            message: t
                .error
                .clone()
                .unwrap_or_else(|| "the test could not run".into()),
            kind: "error",
        }),
        TestStatus::Interrupted => Some(Outcome::Error {
            message: t.error.clone().unwrap_or_else(|| "interrupted".into()),
            kind: "interrupted",
        }),
        TestStatus::NotRun | TestStatus::Running => Some(Outcome::Skipped(
            t.error.clone().unwrap_or_else(|| "not run".into()),
        )),
        TestStatus::Failed if t.checks.is_empty() => Some(Outcome::Failure {
            message: t.error.clone().unwrap_or_else(|| "failed".into()),
            detail: t.notes.join("\n"),
        }),
        _ => None,
    };
    // The workload's run is a case of its own and carries the test's time:
    // the checks are judgements of it, made in no time. Summing the cases
    // gives the test's duration, and no check looks slow.
    let ran = Case {
        name: "run".into(),
        time,
        outcome: problem.unwrap_or_else(|| Outcome::Pass(Some(ran_evidence(t)))),
    };
    cases.insert(0, ran);
    cases
}

/// What a test that ran to the end did, for its `run` case.
fn ran_evidence(t: &TestRecord) -> String {
    let roles: Vec<String> = t.metrics.keys().map(|r| r.to_string()).collect();
    let mut s = format!(
        "{} ran for {:.1} s against {}",
        t.kind,
        t.duration_secs.unwrap_or(0.0),
        if roles.is_empty() {
            "no engine".to_string()
        } else {
            roles.join(" and ")
        }
    );
    if t.attempts.len() > 1 {
        s.push_str(&format!(" in {} attempts", t.attempts.len()));
    }
    s
}

/// Seconds as a duration; none for what results.json may hold that is not
/// one (negative, NaN, infinite).
fn secs(x: f64) -> Duration {
    Duration::try_from_secs_f64(x).unwrap_or(Duration::ZERO)
}

/// A case as quick-junit writes it.
fn junit_case(c: &Case, classname: &str) -> TestCase {
    let status = match &c.outcome {
        Outcome::Pass(_) => TestCaseStatus::success(),
        Outcome::Flaky(detail) => {
            let mut s = TestCaseStatus::success();
            let mut failed = TestRerun::new(NonSuccessKind::Failure);
            failed
                .set_message("failed on an earlier attempt")
                .set_type("gate")
                .set_description(detail.as_str());
            s.add_rerun(failed).set_rerun_kind(FlakyOrRerun::Flaky);
            s
        }
        Outcome::Failure { message, detail } => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(message.as_str())
                .set_type("gate")
                .set_description(detail.as_str());
            s
        }
        Outcome::Error { message, kind } => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(message.as_str())
                .set_type(*kind)
                .set_description(message.as_str());
            s
        }
        Outcome::Skipped(why) => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(why.as_str());
            s
        }
    };
    let mut case = TestCase::new(c.name.as_str(), status);
    case.set_classname(classname).set_time(secs(c.time));
    if let Outcome::Pass(Some(evidence)) = &c.outcome {
        case.set_system_out(evidence.as_str());
    }
    case
}

pub(crate) fn render(results: &RunResults) -> String {
    let mut report = Report::new(format!("lmcache-e2e {}", results.suite));
    if let Some(f) = results.finished_at {
        report.set_time(secs(
            (f - results.started_at).num_milliseconds() as f64 / 1000.0,
        ));
    }
    for t in &results.tests {
        let mut suite = TestSuite::new(t.name.as_str());
        suite
            .set_timestamp(t.started_at.unwrap_or(results.started_at).fixed_offset())
            .set_time(secs(t.duration_secs.unwrap_or(0.0)));
        let classname = format!("{}.{}", results.suite, t.name);
        suite.add_test_cases(cases_of(t).iter().map(|c| junit_case(c, &classname)));
        report.add_test_suite(suite);
    }
    // Writing into a String fails only on a bug in the writer.
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- failed to write JUnit XML: {e} -->\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;
    use crate::results::{Interval, OnInconclusive};

    #[test]
    fn a_gate_failure_is_a_failed_case_with_the_rule() {
        let mut r = samples::gate_failure();
        // college_physics dropped 0.0098: over this limit.
        let limit = r.tests[0]
            .checks
            .iter_mut()
            .find(|c| c.metric == "max_subject_drop")
            .unwrap();
        limit.threshold = 0.005;
        let xml = render(&r);
        assert!(xml.contains("name=\"query_ttft_vs_baseline\""), "{xml}");
        assert!(
            xml.contains(
                "<failure message=\"-68.2 % does not meet query_ttft_per_prompt &lt;= -80.0 %\""
            ),
            "{xml}"
        );
        assert!(xml.contains("name=\"subject college_physics\""), "{xml}");
        assert!(xml.contains("failures=\"2\""), "{xml}");
    }

    /// On the H200 every testsuite carried the run's start and each test's
    /// whole time sat on its first check.
    #[test]
    fn each_suite_starts_when_its_test_did_and_its_time_is_the_runs() {
        let mut r = samples::passed();
        let start = r.started_at + chrono::Duration::seconds(311);
        r.tests[0].started_at = Some(start);
        r.tests[0].duration_secs = Some(110.875);
        let xml = render(&r);
        let first = xml.split("<testsuite ").nth(1).unwrap();
        assert!(
            first.contains(&format!(
                "timestamp=\"{}",
                start.format("%Y-%m-%dT%H:%M:%S")
            )),
            "{first}"
        );
        let cases: Vec<&str> = first
            .split("</testsuite>")
            .next()
            .unwrap()
            .split("<testcase ")
            .skip(1)
            .collect();
        assert!(
            cases[0].starts_with("name=\"run\"") && cases[0].contains("time=\"110.875\""),
            "{}",
            cases[0]
        );
        assert!(
            cases[0].contains("ran for 110.9 s against baseline and lmcache"),
            "{}",
            cases[0]
        );
        assert!(
            cases[1..].iter().all(|c| c.contains("time=\"0.000\"")),
            "checks take no time: {first}"
        );
    }

    #[test]
    fn inconclusive_is_skipped_or_a_failure_as_the_check_says() {
        let mut r = samples::inconclusive();
        let xml = render(&r);
        let case = xml
            .split("name=\"accuracy_drop\"")
            .nth(1)
            .unwrap()
            .split("</testcase>")
            .next()
            .unwrap();
        assert!(
            case.contains("<skipped message=\"inconclusive: 95 % CI -0.004 … 0.019 · n = 264 · p = 0.289 straddles"),
            "{case}"
        );
        r.tests[1].checks[0].on_inconclusive = OnInconclusive::MoreTrialsThenFail;
        let xml = render(&r);
        assert!(
            xml.contains("<failure message=\"inconclusive: 95 % CI"),
            "{xml}"
        );
    }

    #[test]
    fn a_pass_with_evidence_carries_it_in_system_out() {
        let mut r = samples::passed();
        let c = r.tests[0]
            .checks
            .iter_mut()
            .find(|c| c.kind == crate::results::CheckKind::Relative)
            .unwrap();
        c.interval = Some(Interval {
            low: -70.1,
            high: -66.0,
            level: 0.95,
        });
        c.n = Some(60);
        let name = c.name.clone();
        let xml = render(&r);
        let case = xml
            .split(&format!("name=\"{name}\""))
            .nth(1)
            .unwrap()
            .split("</testcase>")
            .next()
            .unwrap();
        assert!(
            case.contains("<system-out>")
                && case.contains("evidence 95 % CI -70.1 % … -66.0 % · n = 60"),
            "{case}"
        );
    }

    #[test]
    fn interrupted_and_failed_to_start_are_errors() {
        let xml = render(&samples::interrupted());
        assert!(
            xml.contains("<error message=\"interrupted by SIGTERM\" type=\"interrupted\">"),
            "{xml}"
        );
        let xml = render(&samples::engine_failed());
        assert!(xml.contains("type=\"error\""), "{xml}");
        assert!(xml.contains("errors=\"1\""), "{xml}");
    }

    #[test]
    fn control_characters_and_markup_are_made_safe() {
        let mut r = samples::gate_failure();
        r.tests[0].checks[0].name = "a\u{1b}[31m<b>&\"x\"\u{0}".into();
        let xml = render(&r);
        assert!(!xml.contains('\u{1b}') && !xml.contains('\u{0}'), "{xml}");
        assert!(
            xml.contains("name=\"a&lt;b&gt;&amp;&quot;x&quot;\""),
            "{xml}"
        );
        // It reads back (well-formed), the name as it was less the escape.
        let back = Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let names: Vec<&str> = back.test_suites[0]
            .test_cases
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert!(names.contains(&"a<b>&\"x\""), "{names:?}");
    }

    #[test]
    fn a_flaky_check_passes_with_its_earlier_failure_shown() {
        let mut r = samples::gate_failure();
        r.tests[0].checks[0].verdict = Verdict::Flaky;
        let xml = render(&r);
        assert!(
            xml.contains("<flakyFailure message=\"failed on an earlier attempt\" type=\"gate\">"),
            "{xml}"
        );
    }
}
