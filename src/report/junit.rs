//! JUnit XML: one test case per check and per MMLU subject, for Buildkite
//! Test Analytics and GitHub's test reporters.

use std::fmt::Write;

use super::format::{evidence, number};
use crate::results::{CheckOutcome, RunResults, TestRecord, TestStatus, Verdict};

/// Text for an attribute or element: escaped, without the control
/// characters XML 1.0 forbids (logs and servers may send them).
fn xml(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| matches!(c, '\t' | '\n' | '\r') || !c.is_control())
        .collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}

enum Outcome {
    /// With the evidence behind the pass, when there is any.
    Pass(Option<String>),
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
            Verdict::Pass | Verdict::Warning | Verdict::Flaky => {
                Outcome::Pass((c.interval.is_some() || c.n.is_some()).then_some(detail))
            }
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

pub(crate) fn render(results: &RunResults) -> String {
    let suites: Vec<(&TestRecord, Vec<Case>)> =
        results.tests.iter().map(|t| (t, cases_of(t))).collect();
    let count =
        |cases: &[Case], f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let is_failure = |o: &Outcome| matches!(o, Outcome::Failure { .. });
    let is_error = |o: &Outcome| matches!(o, Outcome::Error { .. });
    let is_skipped = |o: &Outcome| matches!(o, Outcome::Skipped(_));
    let all: Vec<&Case> = suites.iter().flat_map(|(_, c)| c).collect();
    let total_time = results.finished_at.map_or(0.0, |f| {
        (f - results.started_at).num_milliseconds() as f64 / 1000.0
    });
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
        xml(&format!("lmcache-e2e {}", results.suite)),
        all.len(),
        all.iter().filter(|c| is_failure(&c.outcome)).count(),
        all.iter().filter(|c| is_error(&c.outcome)).count(),
        all.iter().filter(|c| is_skipped(&c.outcome)).count(),
        total_time,
    );
    for (t, cases) in &suites {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
            xml(&t.name),
            cases.len(),
            count(cases, is_failure),
            count(cases, is_error),
            count(cases, is_skipped),
            t.duration_secs.unwrap_or(0.0),
            t.started_at
                .unwrap_or(results.started_at)
                .format("%Y-%m-%dT%H:%M:%S"),
        );
        let classname = xml(&format!("{}.{}", results.suite, t.name));
        for c in cases {
            let open = format!(
                "    <testcase classname=\"{classname}\" name=\"{}\" time=\"{:.3}\"",
                xml(&c.name),
                c.time
            );
            match &c.outcome {
                Outcome::Pass(None) => {
                    let _ = writeln!(out, "{open}/>");
                }
                Outcome::Pass(Some(evidence)) => {
                    let _ = writeln!(
                        out,
                        "{open}>\n      <system-out>{}</system-out>\n    </testcase>",
                        xml(evidence)
                    );
                }
                Outcome::Failure { message, detail } => {
                    let _ = writeln!(
                        out,
                        "{open}>\n      <failure message=\"{}\" type=\"gate\">{}</failure>\n    </testcase>",
                        xml(message),
                        xml(detail)
                    );
                }
                Outcome::Error { message, kind } => {
                    let _ = writeln!(
                        out,
                        "{open}>\n      <error message=\"{}\" type=\"{kind}\">{}</error>\n    </testcase>",
                        xml(message),
                        xml(message)
                    );
                }
                Outcome::Skipped(why) => {
                    let _ = writeln!(
                        out,
                        "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(why)
                    );
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
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
                "timestamp=\"{}\"",
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
            cases[0].contains("name=\"run\" time=\"110.875\""),
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
        assert_eq!(
            xml("a\u{1b}[31m<b>&\"x\""),
            "a[31m&lt;b&gt;&amp;&quot;x&quot;"
        );
    }
}
