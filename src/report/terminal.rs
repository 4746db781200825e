//! The verdict table for a terminal or a CI log: aligned columns, colour
//! only when asked, no Markdown escapes (`summary.md` keeps the Markdown).

use std::fmt::Write as _;

use super::format::verdict_rank;
use crate::results::{
    CheckKind, CheckOutcome, RunResults, RunStatus, TestRecord, TestStatus, Verdict,
};

/// The widest a line of the table gets: a CI log or a split terminal
/// shows 100 columns without wrapping.
pub(crate) const WIDTH: usize = 100;

const COLUMNS: usize = 6;
const HEADERS: [&str; COLUMNS] = ["Verdict", "Check", "Baseline", "LMCache", "Change", "Bound"];
const VERDICT: usize = 0;
const CHECK: usize = 1;
/// Numbers read best right-aligned.
const NUMBERS: std::ops::RangeInclusive<usize> = 2..=4;

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

/// A check's row, and its second line: the metric when the check's name is
/// not it, and the evidence.
fn row(t: &TestRecord, c: &CheckOutcome) -> ([String; COLUMNS], String) {
    let metric_unit = if c.kind == CheckKind::Relative {
        ""
    } else {
        c.unit.as_str()
    };
    // The change a relative check judged (a paired estimate) is the one
    // every row of its metric shows.
    let change = t
        .checks
        .iter()
        .find(|o| o.kind == CheckKind::Relative && o.metric == c.metric && o.interval.is_some())
        .and_then(|o| o.value)
        .or(c.change_pct);
    let cells = [
        verdict_text(c.verdict).to_string(),
        c.name.clone(),
        number(c.baseline, metric_unit),
        number(c.lmcache, metric_unit),
        change.map_or("-".into(), |p| format!("{p:+.1} %")),
        format!("{} {} {}", c.op, c.threshold, c.unit)
            .trim_end()
            .to_string(),
    ];
    let evidence = super::format::evidence(c).replace('–', "-");
    let detail: Vec<String> = [
        (c.metric != c.name).then(|| c.metric.clone()),
        (evidence != "-").then_some(evidence),
    ]
    .into_iter()
    .flatten()
    .collect();
    (cells, detail.join(" · "))
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

fn test_rank(t: &TestRecord) -> u8 {
    match t.status {
        TestStatus::Error | TestStatus::Failed => 0,
        TestStatus::Interrupted => 1,
        _ => t
            .checks
            .iter()
            .map(|c| verdict_rank(c.verdict))
            .min()
            .unwrap_or(5),
    }
}

fn status_word(s: TestStatus) -> &'static str {
    match s {
        TestStatus::Passed => "passed",
        TestStatus::Warning => "passed with warnings",
        TestStatus::Flaky => "flaky",
        TestStatus::Inconclusive => "inconclusive",
        TestStatus::Failed => "FAILED",
        TestStatus::Error => "could not run",
        TestStatus::Interrupted => "interrupted",
        TestStatus::NotRun => "not run",
        TestStatus::Running => "running",
    }
}

/// A test's heading in the table, and its rows.
struct Group {
    heading: String,
    rows: Vec<([String; COLUMNS], String)>,
}

fn groups(results: &RunResults) -> Vec<Group> {
    let mut tests: Vec<&TestRecord> = results.tests.iter().collect();
    tests.sort_by_key(|t| test_rank(t));
    tests
        .into_iter()
        .map(|t| {
            let mut checks: Vec<&CheckOutcome> = t.checks.iter().collect();
            checks.sort_by_key(|c| verdict_rank(c.verdict));
            let mut rows: Vec<_> = checks.into_iter().map(|c| row(t, c)).collect();
            let missing = match t.status {
                TestStatus::Error => Some("could not run"),
                TestStatus::Interrupted => Some("interrupted"),
                TestStatus::NotRun | TestStatus::Running => Some("not run"),
                _ => None,
            };
            if let Some(word) = missing.filter(|_| t.checks.is_empty()) {
                let mut r: [String; COLUMNS] = Default::default();
                r[VERDICT] = word.into();
                r[CHECK] = "-".into();
                rows.push((r, String::new()));
            }
            Group {
                heading: format!("{} ({}): {}", t.name, t.kind, status_word(t.status)),
                rows,
            }
        })
        .collect()
}

/// Every check of every test, failing tests and checks first, within
/// [`WIDTH`] columns: a check name too long for its column takes a line
/// of its own, and each check's metric and evidence wrap on the lines
/// under it. Then the findings and a one-line verdict.
pub(crate) fn render(results: &RunResults, colour: bool) -> String {
    let groups = groups(results);
    let mut width = HEADERS.map(|h| h.chars().count());
    for (cells, _) in groups.iter().flat_map(|g| &g.rows) {
        for (w, cell) in width.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The check column gets what the others leave.
    let others: usize = width
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != CHECK)
        .map(|(_, w)| w + 2)
        .sum();
    width[CHECK] = width[CHECK].min(WIDTH.saturating_sub(others + 2).max(HEADERS[CHECK].len()));
    let mut out = String::new();
    let line = |cells: &[String; COLUMNS], out: &mut String, paint_verdict: bool| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(width).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            let shown = if i == VERDICT && paint_verdict {
                paint(cell, verdict_colour(cell), colour)
            } else {
                cell.clone()
            };
            if NUMBERS.contains(&i) {
                let _ = write!(l, "{}{shown}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{shown}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(&HEADERS.map(String::from), &mut out, false);
    line(&width.map(|w| "-".repeat(w)), &mut out, false);
    // A check's metric and evidence sit under its name.
    let indent = " ".repeat(width[VERDICT] + 2);
    let hanging = format!("{indent}  ");
    let detail_opts = textwrap::Options::new(WIDTH)
        .initial_indent(&indent)
        .subsequent_indent(&hanging);
    for g in &groups {
        let _ = writeln!(out, "{}", g.heading);
        for (cells, detail) in &g.rows {
            if cells[CHECK].chars().count() > width[CHECK] {
                let _ = writeln!(out, "{}{}", " ".repeat(width[VERDICT] + 2), cells[CHECK]);
                let mut rest = cells.clone();
                rest[CHECK] = String::new();
                line(&rest, &mut out, true);
            } else {
                line(cells, &mut out, true);
            }
            if !detail.is_empty() {
                for l in textwrap::wrap(detail, &detail_opts) {
                    let _ = writeln!(out, "{l}");
                }
            }
        }
    }
    findings(results, &mut out);
    controls(results, &mut out);
    if let Some(s) = super::format::statistics(results) {
        let _ = writeln!(out);
        for l in textwrap::wrap(&s, WIDTH) {
            let _ = writeln!(out, "{l}");
        }
    }
    let _ = writeln!(out, "\n{}", headline(results, colour));
    out
}

/// The controls: each one's expected and reached verdicts, and why.
fn controls(results: &RunResults, out: &mut String) {
    if results.controls.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nControl            Expected  Got    Evidence");
    for c in &results.controls {
        let line = format!(
            "{:<18} {:<9} {:<6} {}{}",
            c.name,
            c.expected.to_uppercase(),
            c.got.to_uppercase(),
            if c.held { "" } else { "MISSED: " },
            c.evidence
        );
        let opts =
            textwrap::Options::new(WIDTH).subsequent_indent("                                    ");
        for l in textwrap::wrap(&line, opts) {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// Findings shown under the table for tests that did not pass.
const FINDINGS_PER_TEST: usize = 5;

/// What a test that did not pass found (or why it could not run), so the
/// reason is on screen next to the verdict.
fn findings(results: &RunResults, out: &mut String) {
    let failing = results.tests.iter().filter(|t| {
        !t.caveats.is_empty()
            || matches!(
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
            .chain(t.caveats.iter().cloned())
            .chain(
                t.checks
                    .iter()
                    .filter(|c| c.verdict != Verdict::Pass)
                    .filter_map(|c| Some(format!("{}: {}", c.name, c.message.as_deref()?))),
            )
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
            let opts = textwrap::Options::new(WIDTH).subsequent_indent("    ");
            for l in textwrap::wrap(&format!("{}: {line}", t.name), opts) {
                let _ = writeln!(out, "{l}");
            }
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
        RunStatus::Inconclusive => ("COULD NOT TELL", "33"),
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
    if !results.controls.is_empty() {
        let held = results.controls.iter().filter(|c| c.held).count();
        let _ = write!(s, "; controls: {held} of {} held", results.controls.len());
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
        for (case, results) in samples::all() {
            let text = render(&results, false);
            let widest = text
                .lines()
                .filter(|l| !l.contains("results in "))
                .map(|l| l.chars().count())
                .max()
                .unwrap_or(0);
            assert!(widest <= WIDTH, "{case}: {widest} columns\n{text}");
        }
        let coloured = render(&r, true);
        assert!(coloured.contains("\x1b[31mFAIL\x1b[0m"));
    }
}
