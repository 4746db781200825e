//! The verdict table for a terminal or a CI log: aligned columns, colour
//! only when asked, no Markdown escapes (`summary.md` keeps the Markdown).

use std::fmt::Write as _;

use crate::results::{CheckKind, CheckOutcome, RunResults, RunStatus, TestStatus, Verdict};

const COLUMNS: usize = 9;
const HEADERS: [&str; COLUMNS] = [
    "Test",
    "Check",
    "Metric",
    "Baseline",
    "LMCache",
    "Change",
    "Evidence",
    "Threshold",
    "Verdict",
];
/// The verdict, painted.
const VERDICT: usize = COLUMNS - 1;

fn number(v: Option<f64>, unit: &str) -> String {
    match v {
        // Counts read as counts.
        Some(v) if v.fract() == 0.0 && unit != "s" => format!("{v:.0} {unit}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1} {unit}"),
        Some(v) => format!("{v:.4} {unit}"),
        None => "-".to_string(),
    }
    .trim_end()
    .to_string()
}

fn row(test: &str, c: &CheckOutcome) -> [String; COLUMNS] {
    let metric_unit = if c.kind == CheckKind::Relative {
        ""
    } else {
        c.unit.as_str()
    };
    [
        test.to_string(),
        c.name.clone(),
        c.metric.clone(),
        number(c.baseline, metric_unit),
        number(c.lmcache, metric_unit),
        c.change_pct.map_or("-".into(), |p| format!("{p:+.1} %")),
        super::render::evidence(c).replace('–', "-"),
        format!("{} {} {}", c.op, c.threshold, c.unit)
            .trim_end()
            .to_string(),
        verdict_text(c.verdict).to_string(),
    ]
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Warning => "warning",
        Verdict::Flaky => "flaky",
        Verdict::Inconclusive => "inconclusive",
    }
}

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn verdict_colour(word: &str) -> &'static str {
    match word {
        "pass" => "32",
        "inconclusive" => "36",
        "FAIL" | "could not run" => "31",
        _ => "33",
    }
}

/// Every check of every test, failures first, then a one-line verdict.
pub(crate) fn render(results: &RunResults, colour: bool) -> String {
    let mut rows: Vec<(bool, [String; COLUMNS])> = Vec::new();
    for t in &results.tests {
        for c in &t.checks {
            rows.push((c.verdict == Verdict::Fail, row(&t.name, c)));
        }
        let missing = match t.status {
            TestStatus::Error => Some("could not run"),
            TestStatus::Interrupted => Some("interrupted"),
            TestStatus::NotRun | TestStatus::Running if t.checks.is_empty() => Some("not run"),
            _ => None,
        };
        if let Some(word) = missing.filter(|_| t.checks.is_empty()) {
            let mut r: [String; COLUMNS] = Default::default();
            r[0] = t.name.clone();
            r[1] = "-".into();
            r[VERDICT] = word.into();
            rows.push((t.status == TestStatus::Error, r));
        }
    }
    rows.sort_by_key(|(failed, _)| !failed);
    let mut width = HEADERS.map(|h| h.chars().count());
    for (_, r) in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String; COLUMNS], out: &mut String, paint_last: bool| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
            let pad = w - cell.chars().count();
            let shown = if i == VERDICT && paint_last {
                paint(cell, verdict_colour(cell), colour)
            } else {
                cell.clone()
            };
            // Numbers read best right-aligned.
            if (3..=5).contains(&i) {
                let _ = write!(l, "{}{shown}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{shown}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&HEADERS.map(String::from), &mut out, false);
    let rule: [String; COLUMNS] = width.map(|w| "-".repeat(w));
    line(&rule, &mut out, false);
    for (_, r) in &rows {
        line(r, &mut out, true);
    }
    findings(results, &mut out);
    if let Some(s) = super::render::statistics(results) {
        let _ = writeln!(out, "\n{s}");
    }
    let _ = writeln!(out, "\n{}", headline(results, colour));
    out
}

/// Findings shown under the table for tests that did not pass.
const FINDINGS_PER_TEST: usize = 5;

/// What a test that did not pass found (or why it could not run), so the
/// reason is on screen next to the verdict.
fn findings(results: &RunResults, out: &mut String) {
    let failing = results.tests.iter().filter(|t| {
        matches!(
            t.status,
            TestStatus::Failed | TestStatus::Error | TestStatus::Flaky
        )
    });
    let mut first = true;
    for t in failing {
        let lines = t
            .error
            .iter()
            .map(|e| e.lines().next().unwrap_or_default().to_string())
            .chain(t.notes.iter().cloned());
        for (i, line) in lines.enumerate() {
            if first {
                out.push('\n');
                first = false;
            }
            if i == FINDINGS_PER_TEST {
                let _ = writeln!(out, "{}: … more in summary.md", t.name);
                break;
            }
            let _ = writeln!(out, "{}: {line}", t.name);
        }
    }
}

fn headline(results: &RunResults, colour: bool) -> String {
    let count = |s: &[TestStatus]| {
        results
            .tests
            .iter()
            .filter(|t| s.contains(&t.status))
            .count()
    };
    let passed = count(&[TestStatus::Passed, TestStatus::Warning, TestStatus::Flaky]);
    let inconclusive = count(&[TestStatus::Inconclusive]);
    let failed = count(&[TestStatus::Failed, TestStatus::Error]);
    let (word, code) = match results.status {
        RunStatus::Passed => ("PASSED", "32"),
        RunStatus::Failed => ("FAILED", "31"),
        RunStatus::Interrupted => ("INTERRUPTED", "33"),
        RunStatus::Error | RunStatus::Running => ("ERROR", "31"),
    };
    let mut s = format!(
        "{}: {passed} of {} tests passed, {failed} failed",
        paint(word, code, colour),
        results.tests.len()
    );
    if inconclusive > 0 {
        let _ = write!(s, ", {inconclusive} inconclusive");
    }
    let not_run = count(&[TestStatus::NotRun]);
    if not_run > 0 {
        let _ = write!(s, ", {not_run} not run");
    }
    if let Some(m) = &results.message {
        let _ = write!(s, " ({m})");
    }
    let _ = write!(s, "; results in {}", results.results_dir.display());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;

    #[test]
    fn failures_come_first_aligned_and_without_markdown() {
        let r = samples::gate_failure();
        let text = render(&r, false);
        insta::assert_snapshot!(text);
        assert!(
            !text.contains('`') && !text.contains('\\') && !text.contains('|'),
            "{text}"
        );
        assert!(!text.contains("\x1b["), "no colour when not asked");
        let coloured = render(&r, true);
        assert!(coloured.contains("\x1b[31mFAIL\x1b[0m"));
    }
}
