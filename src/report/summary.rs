//! `summary.md`: the run's verdict and the baseline-vs-LMCache comparison as
//! Markdown, rendered with an embedded tera template from the results model.

use serde::Serialize;
use tera::{Context, Tera};

use super::results::{CheckKind, CheckOutcome, RunResults, RunStatus, TestStatus, Verdict};

const TEMPLATE: &str = include_str!("../../templates/summary.md.tera");

#[derive(Serialize)]
struct CheckView {
    name: String,
    metric: String,
    baseline: String,
    lmcache: String,
    change: String,
    threshold: String,
    verdict: &'static str,
    message: Option<String>,
}

#[derive(Serialize)]
struct TestView {
    icon: &'static str,
    name: String,
    kind: String,
    status: &'static str,
    error: Option<String>,
    notes: Vec<String>,
    checks: Vec<CheckView>,
}

#[derive(Serialize)]
struct EngineView {
    name: String,
    role: String,
    url: String,
    ready: String,
    tail: Vec<String>,
}

/// Makes text from users, servers and logs inert in a table cell: no
/// column breaks, no HTML, no Markdown emphasis or links.
pub(crate) fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

/// Log lines go into a fenced block: only a fence could break out of it.
fn fence_safe(s: &str) -> String {
    s.replace("```", "ˋˋˋ")
}

fn number(v: f64, unit: &str) -> String {
    // Counts (requests, tokens) read best without decimals; times with three.
    let digits = if unit != "s" && unit != "%" && v.fract() == 0.0 {
        0
    } else if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    match unit {
        "" => format!("{v:.digits$}"),
        "%" => format!("{v:+.1} %"),
        u => format!("{v:.digits$} {u}"),
    }
}

fn opt_number(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "–".to_string(), |v| number(v, unit))
}

fn check_view(c: &CheckOutcome, metric_unit: &str) -> CheckView {
    let threshold = match c.kind {
        CheckKind::Absolute => {
            format!("{} {} {}", c.engine, c.op, number(c.threshold, metric_unit))
        }
        CheckKind::Relative => format!("change {} {}", c.op, number(c.threshold, "%")),
    };
    CheckView {
        name: md_escape(&c.name),
        metric: md_escape(&c.metric),
        baseline: opt_number(c.baseline, metric_unit),
        lmcache: opt_number(c.lmcache, metric_unit),
        change: opt_number(c.change_pct, "%"),
        threshold: md_escape(&threshold),
        verdict: match c.verdict {
            Verdict::Pass => "✅ pass",
            Verdict::Fail => "❌ fail",
            Verdict::Warning => "⚠️ warning",
            Verdict::Flaky => "🔁 flaky",
        },
        message: c.message.as_deref().map(md_escape),
    }
}

fn test_status(s: TestStatus) -> (&'static str, &'static str) {
    match s {
        TestStatus::Passed => ("✅", "passed"),
        TestStatus::Warning => ("⚠️", "passed with warnings"),
        TestStatus::Flaky => ("🔁", "flaky: passed after a retry"),
        TestStatus::Failed => ("❌", "failed"),
        TestStatus::Error => ("💥", "error"),
        TestStatus::Interrupted => ("🛑", "interrupted"),
        TestStatus::NotRun => ("⏭️", "not run"),
        TestStatus::Running => ("⏳", "running"),
    }
}

pub(crate) fn render(results: &RunResults) -> Result<String, tera::Error> {
    let (icon, verdict) = match results.status {
        RunStatus::Passed => ("✅", "passed".to_string()),
        RunStatus::Failed => ("❌", "failed".to_string()),
        RunStatus::Interrupted => (
            "🛑",
            format!(
                "interrupted by {}",
                results.signal.as_deref().unwrap_or("a signal")
            ),
        ),
        RunStatus::Error => ("💥", "error".to_string()),
        RunStatus::Running => ("⏳", "running".to_string()),
    };
    // Failures first, so a glance at the comment shows what broke.
    let mut tests: Vec<&_> = results.tests.iter().collect();
    tests.sort_by_key(|t| match t.status {
        TestStatus::Failed | TestStatus::Error => 0,
        TestStatus::Interrupted => 1,
        TestStatus::Flaky | TestStatus::Warning => 2,
        _ => 3,
    });
    let tests: Vec<TestView> = tests
        .into_iter()
        .map(|t| {
            let (icon, status) = test_status(t.status);
            let unit_of = |metric: &str| {
                t.metrics
                    .values()
                    .find_map(|m| m.get(metric))
                    .map(|m| m.unit.clone())
                    .unwrap_or_default()
            };
            let mut checks: Vec<&CheckOutcome> = t.checks.iter().collect();
            checks.sort_by_key(|c| match c.verdict {
                Verdict::Fail => 0,
                Verdict::Flaky => 1,
                Verdict::Warning => 2,
                Verdict::Pass => 3,
            });
            TestView {
                icon,
                name: md_escape(&t.name),
                kind: md_escape(&t.kind),
                status,
                error: t.error.as_deref().map(md_escape),
                notes: t.notes.iter().map(|n| md_escape(n)).collect(),
                checks: checks
                    .into_iter()
                    .map(|c| check_view(c, &unit_of(&c.metric)))
                    .collect(),
            }
        })
        .collect();
    let engines: Vec<EngineView> = results
        .engines
        .iter()
        .map(|e| EngineView {
            name: md_escape(&e.name),
            role: e.role.to_string(),
            url: md_escape(&e.url),
            ready: opt_number(e.ready_secs, "s"),
            // Log tails matter when something went wrong.
            tail: if results.status == RunStatus::Passed {
                Vec::new()
            } else {
                e.log_tail.iter().map(|l| fence_safe(l)).collect()
            },
        })
        .collect();
    let duration = results
        .finished_at
        .map(|f| (f - results.started_at).num_milliseconds() as f64 / 1000.0)
        .map_or_else(|| "unfinished".to_string(), |d| number(d, "s"));
    let mut ctx = Context::new();
    ctx.insert("icon", icon);
    ctx.insert("suite", &md_escape(&results.suite));
    ctx.insert("verdict", &verdict);
    ctx.insert("message", &results.message.as_deref().map(md_escape));
    ctx.insert("tests", &tests);
    ctx.insert("engines", &engines);
    ctx.insert("build_id", &results.build_id.replace('`', "'"));
    ctx.insert(
        "started",
        &results
            .started_at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    ctx.insert("duration", &duration);
    ctx.insert(
        "results_dir",
        &results.results_dir.display().to_string().replace('`', "'"),
    );
    // Markdown, not HTML: tera's autoescape would mangle it; md_escape
    // already neutralised every user-controlled value.
    Tera::one_off(TEMPLATE, &ctx, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Role, Severity};
    use crate::report::results::{EngineRecord, Metric, TestRecord};
    use indexmap::IndexMap;

    fn sample() -> RunResults {
        let started = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .to_utc();
        let metrics =
            |v: f64| IndexMap::from([("query_ttft_per_prompt".to_string(), Metric::new(v, "s"))]);
        let check = |name: &str, kind, threshold, verdict, value| CheckOutcome {
            name: name.into(),
            metric: "query_ttft_per_prompt".into(),
            kind,
            engine: Role::Lmcache,
            op: "<=".into(),
            threshold,
            unit: if kind == CheckKind::Relative {
                "%".into()
            } else {
                "s".into()
            },
            severity: Severity::Error,
            baseline: Some(0.753),
            lmcache: Some(0.214),
            change_pct: Some(-71.58),
            value,
            verdict,
            message: None,
        };
        RunResults {
            schema_version: 1,
            tool_version: "0.1.0".into(),
            suite: "sim | <b>x</b>".into(),
            source: "preset `sim`".into(),
            build_id: "local_1".into(),
            run_id: "r1".into(),
            results_dir: "/tmp/r".into(),
            status: RunStatus::Failed,
            message: None,
            signal: None,
            started_at: started,
            finished_at: Some(started + chrono::Duration::milliseconds(12_345)),
            engines: vec![EngineRecord {
                name: "lmcache".into(),
                role: Role::Lmcache,
                kind: "sim".into(),
                url: "http://127.0.0.1:8000".into(),
                pid: Some(42),
                log: Some("logs/lmcache.log".into()),
                ready_secs: Some(0.31),
                log_tail: vec!["INFO ready".into(), "```injected".into()],
            }],
            tests: vec![
                TestRecord {
                    name: "ok".into(),
                    kind: "long_doc_qa".into(),
                    status: TestStatus::Passed,
                    metrics: IndexMap::from([
                        (Role::Baseline, metrics(0.753)),
                        (Role::Lmcache, metrics(0.214)),
                    ]),
                    checks: vec![check(
                        "ttft_abs",
                        CheckKind::Absolute,
                        0.22,
                        Verdict::Pass,
                        Some(0.214),
                    )],
                    files: vec![],
                    error: None,
                    duration_secs: Some(3.0),
                    notes: Vec::new(),
                    attempts: Vec::new(),
                },
                TestRecord {
                    name: "long_doc_qa".into(),
                    kind: "long_doc_qa".into(),
                    status: TestStatus::Failed,
                    metrics: IndexMap::from([
                        (Role::Baseline, metrics(0.753)),
                        (Role::Lmcache, metrics(0.214)),
                    ]),
                    checks: vec![check(
                        "ttft_vs_baseline",
                        CheckKind::Relative,
                        -80.0,
                        Verdict::Fail,
                        Some(-71.58),
                    )],
                    files: vec![],
                    error: None,
                    duration_secs: Some(3.0),
                    notes: Vec::new(),
                    attempts: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn summary_shows_failures_first_and_escapes_user_text() {
        let md = render(&sample()).unwrap();
        insta::assert_snapshot!(md);
        let failed = md
            .find("long\\_doc\\_qa (long\\_doc\\_qa): failed")
            .unwrap();
        let passed = md.find("ok (long\\_doc\\_qa): passed").unwrap();
        assert!(failed < passed);
        assert!(!md.contains("<b>"));
        assert!(!md.contains("```injected"));
    }

    #[test]
    fn escape_neutralises_table_and_html() {
        assert_eq!(md_escape("a|b<script>"), "a\\|b\\<script\\>");
        assert_eq!(md_escape("x\ny"), "x y");
    }
}
