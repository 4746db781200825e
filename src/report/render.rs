//! Markdown reports from the results model: the job summary, the PR comment
//! and the Buildkite annotation, rendered with tera templates (embedded,
//! overridable from a directory) and shrunk to fit each destination's limit.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tera::{Context, Tera};

use super::format::{
    code_safe, evidence, fence_safe, link_target, md_escape, number, opt_number, statistics,
    verdict_rank, Mark,
};
use super::ReportError;
use crate::results::{
    Chart, CheckKind, CheckOutcome, DetailTable, RunResults, RunStatus, TestRecord, TestStatus,
    Verdict,
};

/// The embedded templates, by the file name an override directory uses.
const EMBEDDED: [(&str, &str); 4] = [
    ("body.md.tera", include_str!("../../templates/body.md.tera")),
    (
        "summary.md.tera",
        include_str!("../../templates/summary.md.tera"),
    ),
    (
        "pr_comment.md.tera",
        include_str!("../../templates/pr_comment.md.tera"),
    ),
    (
        "buildkite.md.tera",
        include_str!("../../templates/buildkite.md.tera"),
    ),
];

/// Where a report goes, which decides its template, its size limit and
/// whether Mermaid renders there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// `$GITHUB_STEP_SUMMARY` and `RESULTS_DIR/summary.md`.
    Summary,
    PrComment,
    Buildkite,
}

impl Destination {
    fn template(self) -> &'static str {
        match self {
            Destination::Summary => "summary.md.tera",
            Destination::PrComment => "pr_comment.md.tera",
            Destination::Buildkite => "buildkite.md.tera",
        }
    }

    /// The destination's limit, in bytes (GitHub counts characters for
    /// comments; bytes are never fewer, so this is safe).
    pub(crate) fn limit(self) -> usize {
        match self {
            Destination::Summary => 1024 * 1024,
            Destination::PrComment => 65_536,
            Destination::Buildkite => 1024 * 1024,
        }
    }

    fn limit_name(self) -> &'static str {
        match self {
            Destination::Summary => "GitHub's 1 MiB job-summary limit",
            Destination::PrComment => "GitHub's 65,536-character comment limit",
            Destination::Buildkite => "Buildkite's 1 MiB annotation limit",
        }
    }
}

/// How much a report shows; each step drops more to fit a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Detail {
    Full,
    /// Without engine log tails.
    NoLogs,
    /// Without log tails and detail tables (MMLU per subject, changed answers).
    NoTables,
    /// The verdict and the check tables only.
    Minimal,
}

const DETAILS: [Detail; 4] = [
    Detail::Full,
    Detail::NoLogs,
    Detail::NoTables,
    Detail::Minimal,
];

pub(crate) struct Templates {
    tera: Tera,
}

impl Templates {
    /// The embedded templates, with any file of the same name in `dir`
    /// taking their place (extra `.tera` files there can be included).
    pub(crate) fn load(dir: Option<&Path>) -> Result<Self, ReportError> {
        let mut sources: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Read {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !name.ends_with(".tera") {
                    continue;
                }
                let path = entry.path();
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ReportError::Read { path, source })?;
                match sources.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = text,
                    None => sources.push((name, text)),
                }
            }
        }
        let mut tera = Tera::default();
        // Markdown, not HTML: autoescape would mangle it, and every value
        // from users, servers or logs is escaped for Markdown beforehand.
        tera.autoescape_on(vec![]);
        tera.add_raw_templates(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            .map_err(|e| ReportError::Template {
                dir: dir.map_or_else(|| PathBuf::from("(embedded)"), Path::to_path_buf),
                message: error_chain(&e),
            })?;
        Ok(Self { tera })
    }

    pub(crate) fn render(
        &self,
        target: Destination,
        results: &RunResults,
        detail: Detail,
        comment_id: &str,
    ) -> Result<String, ReportError> {
        let omitted = (detail != Detail::Full).then(|| {
            let what = match detail {
                Detail::Full => unreachable!(),
                Detail::NoLogs => "Engine log tails were",
                Detail::NoTables => "Engine log tails and detail tables were",
                Detail::Minimal => "Everything but the checks was",
            };
            format!(
                "{what} left out to fit {}; {} all.",
                target.limit_name(),
                where_in_full(results)
            )
        });
        let ctx = context(results, target, detail, omitted, comment_id);
        let text = self
            .tera
            .render(target.template(), &ctx)
            .map_err(|e| ReportError::Render {
                template: target.template().to_string(),
                message: error_chain(&e),
            })?;
        // Template comments and includes leave blank lines at the edges.
        Ok(format!("{}\n", text.trim()))
    }

    /// Renders with as much detail as fits the target's limit, and as a last
    /// resort cuts the text, saying so.
    pub(crate) fn render_fitting(
        &self,
        target: Destination,
        results: &RunResults,
        comment_id: &str,
    ) -> Result<(String, Detail), ReportError> {
        self.render_within(target, results, comment_id, target.limit())
    }

    pub(crate) fn render_within(
        &self,
        target: Destination,
        results: &RunResults,
        comment_id: &str,
        limit: usize,
    ) -> Result<(String, Detail), ReportError> {
        let mut last = String::new();
        for detail in DETAILS {
            last = self.render(target, results, detail, comment_id)?;
            if last.len() <= limit {
                return Ok((last, detail));
            }
        }
        let tail = format!(
            "\n\n… cut to fit {}; {} in full.\n",
            target.limit_name(),
            where_in_full(results)
        );
        let mut cut = limit.saturating_sub(tail.len());
        while !last.is_char_boundary(cut) {
            cut -= 1;
        }
        last.truncate(cut);
        last.push_str(&tail);
        Ok((last, Detail::Minimal))
    }
}

/// Where a reader finds what a shrunk report left out: the job's page
/// (GitHub shows the full job summary there) and the results artifact.
fn where_in_full(results: &RunResults) -> String {
    let m = &results.meta;
    let page = m.build_url.as_deref().and_then(link_target);
    match (page, m.artifact.as_deref()) {
        (Some(url), Some(name)) => format!(
            "the [job's full summary]({url}) and the artifact `{}` have them",
            code_safe(name)
        ),
        (Some(url), None) => format!("the [job's full summary]({url}) has them"),
        (None, Some(name)) => format!("the artifact `{}` has them", code_safe(name)),
        (None, None) => "summary.md in the results directory has them".to_string(),
    }
}

/// The hidden marker that finds this suite's PR comment again.
pub(crate) fn marker(comment_id: &str) -> String {
    format!("<!-- lmcache-e2e:comment-id={} -->", safe_id(comment_id))
}

/// Comment ids and annotation contexts: letters, digits, `.`, `_` and `-`.
pub(crate) fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[derive(Serialize)]
struct CheckView {
    name: String,
    metric: String,
    baseline: String,
    lmcache: String,
    change: String,
    /// The paired estimate that judged it, where it is not `change`.
    paired: Option<String>,
    evidence: String,
    threshold: String,
    verdict: String,
}

#[derive(Serialize)]
struct ChartView {
    title: String,
    mermaid: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct TableView {
    title: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    omitted: usize,
}

#[derive(Serialize)]
struct TestView {
    /// Shown unfolded: it did not simply pass.
    open: bool,
    /// Nothing to show beyond its line (it did not run): no fold.
    empty: bool,
    checks_passed: usize,
    icon: &'static str,
    name: String,
    kind: String,
    /// The name and kind as `<summary>` shows them (no Markdown there).
    summary: String,
    status: &'static str,
    duration: Option<String>,
    error: Option<String>,
    findings: Vec<String>,
    checks: Vec<CheckView>,
    charts: Vec<ChartView>,
    tables: Vec<TableView>,
}

#[derive(Serialize)]
struct EngineView {
    name: String,
    /// The name as `<summary>` shows it.
    plain_name: String,
    role: String,
    kind: String,
    url: String,
    ready: String,
    version: String,
    gpu: String,
    log: String,
    /// The most frequent kinds of warning and error in its log.
    findings: Vec<String>,
    tail: Vec<String>,
}

/// GPU memory an engine held once ready, and what was left in use after
/// it stopped (with a mark when that was not back to where it started).
fn gpu_memory_cell(g: Option<&crate::results::GpuMemory>) -> String {
    let Some(g) = g else {
        return "–".to_string();
    };
    let gib = |mib: f64| number(mib / 1024.0, "GiB");
    let ready = match (g.at_ready_mib, g.before_start_mib) {
        (Some(r), Some(b)) => format!("{} when ready", gib((r - b).max(0.0))),
        _ => "–".to_string(),
    };
    match (g.after_stop_mib, g.released) {
        (Some(a), Some(true)) => format!("{ready}, {} in use after stop", gib(a)),
        (Some(a), _) => format!(
            "{ready}, {} {} still in use after stop",
            Mark::Warning.icon(),
            gib(a)
        ),
        _ => ready,
    }
}

/// Its GPU memory, the GPU it was given and the KV cache it reported.
fn gpu_cell(e: &crate::results::EngineRecord) -> String {
    let mut cell = gpu_memory_cell(e.gpu_memory.as_ref());
    if let Some(g) = &e.gpu {
        cell = format!("GPU {g}: {cell}");
    }
    if let Some(kv) = e.kv_cache_tokens {
        cell.push_str(&format!("; KV cache {} tokens", thousands(kv)));
    }
    cell
}

/// `163792` as `163,792`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn log_cell(f: Option<&crate::results::LogFindings>) -> String {
    match f {
        None => "–".to_string(),
        Some(f) if f.warnings + f.errors == 0 => "no warnings".to_string(),
        Some(f) => {
            let mark = if f.errors > 0 {
                Mark::Fail
            } else {
                Mark::Warning
            }
            .icon();
            format!("{mark} {} warnings, {} errors", f.warnings, f.errors)
        }
    }
}

fn findings_lines(f: Option<&crate::results::LogFindings>) -> Vec<String> {
    f.map(|f| {
        f.top
            .iter()
            .map(|k| format!("{} × {}: {}", k.count, k.level, fence_safe(&k.example)))
            .collect()
    })
    .unwrap_or_default()
}

/// A label inside Mermaid's double quotes.
fn mermaid_label(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '`' | '\n' | '\r' | '<' | '>' | '#' | ';'))
        .collect()
}

fn check_view(c: &CheckOutcome, metric_unit: &str) -> CheckView {
    let threshold = match c.kind {
        CheckKind::Absolute => {
            format!(
                "{} {} {}",
                c.engine,
                c.op.sign(),
                number(c.threshold, metric_unit)
            )
        }
        CheckKind::Relative => format!("change {} {}", c.op.sign(), number(c.threshold, "%")),
    };
    CheckView {
        name: md_escape(&c.name),
        metric: md_escape(&c.metric),
        baseline: opt_number(c.baseline, metric_unit),
        lmcache: opt_number(c.lmcache, metric_unit),
        change: opt_number(c.change_pct, "%"),
        paired: None,
        evidence: md_escape(&evidence(c)),
        threshold: md_escape(&threshold),
        verdict: verdict_label(c.verdict),
    }
}

pub(crate) fn verdict_label(v: Verdict) -> String {
    let word = match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Warning => "warning",
        Verdict::Flaky => "flaky",
        Verdict::Inconclusive => "inconclusive",
    };
    format!("{} {word}", Mark::from(v).icon())
}

pub(crate) fn test_status(s: TestStatus) -> (&'static str, &'static str) {
    let word = match s {
        TestStatus::Passed => "passed",
        TestStatus::Warning => "passed with warnings",
        TestStatus::Flaky => "flaky: passed after a retry",
        TestStatus::Inconclusive => "inconclusive: the evidence cannot tell",
        TestStatus::Failed => "failed",
        TestStatus::Error => "error",
        TestStatus::Interrupted => "interrupted",
        TestStatus::NotRun => "not run",
        TestStatus::Running => "running",
    };
    (Mark::from(s).icon(), word)
}

fn chart_view(c: &Chart) -> ChartView {
    let roles: Vec<String> = c.series.keys().map(|r| r.to_string()).collect();
    let values = |v: &[f64]| {
        v.iter()
            .map(|x| {
                if x.is_finite() {
                    format!("{x:.4}")
                } else {
                    "0".into()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // xychart-beta has no legend: the title says which mark is which.
    let marks: Vec<String> = c
        .series
        .keys()
        .enumerate()
        .map(|(i, r)| format!("{r} {}", if i == 0 { "bars" } else { "line" }))
        .collect();
    // From zero: a y-axis cut at the data makes 0.113 → 0.105 s look like
    // a large change.
    let top = c
        .series
        .values()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let mut mermaid = format!(
        "xychart-beta\n    title \"{}: {}\"\n    x-axis [{}]\n    y-axis \"{}\" 0 --> {top:.4}",
        mermaid_label(&c.title),
        mermaid_label(&marks.join(", ")),
        c.x.iter()
            .map(|x| format!("\"{}\"", mermaid_label(x)))
            .collect::<Vec<_>>()
            .join(", "),
        mermaid_label(&if c.y_label.is_empty() {
            c.y_unit.clone()
        } else {
            format!("{} ({})", c.y_label, c.y_unit)
        }),
    );
    for (i, v) in c.series.values().enumerate() {
        let kind = if i == 0 { "bar" } else { "line" };
        mermaid.push_str(&format!("\n    {kind} [{}]", values(v)));
    }
    ChartView {
        title: md_escape(&c.title),
        mermaid,
        header: roles.iter().map(|r| md_escape(r)).collect(),
        rows: c
            .x
            .iter()
            .enumerate()
            .map(|(i, x)| {
                std::iter::once(md_escape(x))
                    .chain(
                        c.series
                            .values()
                            .map(|v| opt_number(v.get(i).copied(), &c.y_unit)),
                    )
                    .collect()
            })
            .collect(),
    }
}

fn table_view(t: &DetailTable) -> TableView {
    TableView {
        title: md_escape(&t.title),
        columns: t.columns.iter().map(|c| md_escape(c)).collect(),
        rows: t
            .rows
            .iter()
            .map(|r| r.iter().map(|c| md_escape(c)).collect())
            .collect(),
        omitted: t.omitted_rows,
    }
}

fn test_view(t: &TestRecord, detail: Detail) -> TestView {
    let (icon, status) = test_status(t.status);
    let unit_of = |metric: &str| {
        t.metrics
            .values()
            .find_map(|m| m.get(metric))
            .map(|m| m.unit.clone())
            .unwrap_or_default()
    };
    let mut checks: Vec<&CheckOutcome> = t.checks.iter().collect();
    checks.sort_by_key(|c| verdict_rank(c.verdict));
    let findings = if detail == Detail::Minimal {
        Vec::new()
    } else {
        t.caveats
            .iter()
            .map(|c| format!("{} {c}", Mark::Warning.icon()))
            .chain(
                checks
                    .iter()
                    .filter_map(|c| Some(format!("{}: {}", c.name, c.message.as_deref()?))),
            )
            .chain(t.notes.iter().cloned())
            .map(|f| md_escape(&f))
            .collect()
    };
    // One change per metric: where a relative check judged a paired
    // estimate, every row of that metric shows it, not the means' change.
    let judged = |metric: &str| {
        t.checks
            .iter()
            .find(|c| c.kind == CheckKind::Relative && c.metric == metric && c.interval.is_some())
            .and_then(|c| c.value)
    };
    let charts: Vec<ChartView> = if detail == Detail::Minimal {
        Vec::new()
    } else {
        t.charts.iter().map(chart_view).collect()
    };
    TestView {
        open: !matches!(t.status, TestStatus::Passed | TestStatus::NotRun),
        empty: t.error.is_none()
            && t.checks.is_empty()
            && findings.is_empty()
            && charts.is_empty()
            && t.tables.is_empty(),
        summary: format!(
            "{} ({})",
            super::format::html_text(&t.name),
            super::format::html_text(&t.kind)
        ),
        checks_passed: t
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Pass)
            .count(),
        icon,
        name: md_escape(&t.name),
        kind: md_escape(&t.kind),
        status,
        duration: t.duration_secs.map(|d| number(d, "s")),
        error: t.error.as_deref().map(md_escape),
        findings,
        checks: checks
            .into_iter()
            .map(|c| {
                let mut v = check_view(c, &unit_of(&c.metric));
                // The change beside the two figures is theirs; a paired
                // estimate that judged the check is its own, labelled line.
                if let Some(paired) = judged(&c.metric)
                    .filter(|_| c.kind == CheckKind::Relative || c.interval.is_some())
                {
                    if c.change_pct.is_none_or(|m| (m - paired).abs() >= 0.05) {
                        v.paired = Some(number(paired, "%"));
                    }
                }
                v
            })
            .collect(),
        charts,
        tables: t.tables.iter().map(table_view).collect(),
    }
}

/// Worst first: the order of tests and of the counts line.
fn severity(s: TestStatus) -> u8 {
    match s {
        TestStatus::Failed => 0,
        TestStatus::Error => 1,
        TestStatus::Interrupted => 2,
        TestStatus::Inconclusive => 3,
        TestStatus::Flaky => 4,
        TestStatus::Warning => 5,
        TestStatus::Running => 6,
        TestStatus::Passed => 7,
        TestStatus::NotRun => 8,
    }
}

/// The one-line verdict's icon and words.
pub(crate) fn run_verdict(results: &RunResults) -> (&'static str, String) {
    let words = match results.status {
        RunStatus::Inconclusive => format!(
            "could not tell ({})",
            results
                .message
                .as_deref()
                .and_then(|m| m.strip_prefix("could not tell: "))
                .unwrap_or("see the evidence")
        ),
        RunStatus::Passed => "passed".to_string(),
        RunStatus::Failed => "failed".to_string(),
        RunStatus::Interrupted => format!(
            "interrupted by {}",
            results.signal.as_deref().unwrap_or("a signal")
        ),
        RunStatus::Error => "error".to_string(),
        RunStatus::Running => "running".to_string(),
    };
    (Mark::from(results.status).icon(), words)
}

/// The controls table: each control's expected and reached verdicts.
fn controls(results: &RunResults) -> Vec<serde_json::Value> {
    results
        .controls
        .iter()
        .map(|c| {
            let about = if c.about.is_empty() {
                String::new()
            } else {
                format!("{}: ", c.about)
            };
            serde_json::json!({
                "icon": if c.held { Mark::Pass } else { Mark::Fail }.icon(),
                "name": md_escape(&c.name),
                "expected": c.expected.to_uppercase(),
                "got": if c.held { c.got.to_uppercase() } else { format!("**{}**", c.got.to_uppercase()) },
                "evidence": md_escape(&format!("{about}{}", c.evidence)),
            })
        })
        .collect()
}

fn duration_of(results: &RunResults) -> Option<f64> {
    results
        .finished_at
        .map(|f| (f - results.started_at).num_milliseconds() as f64 / 1000.0)
}

fn counts(results: &RunResults) -> String {
    let mut by: Vec<(&'static str, usize)> = Vec::new();
    let mut tests: Vec<&TestRecord> = results.tests.iter().collect();
    tests.sort_by_key(|t| severity(t.status));
    for t in tests {
        let (_, status) = test_status(t.status);
        match by.iter_mut().find(|(s, _)| *s == status) {
            Some(slot) => slot.1 += 1,
            None => by.push((status, 1)),
        }
    }
    let n = results.tests.len();
    let parts: Vec<String> = by.iter().map(|(s, c)| format!("{c} {s}")).collect();
    let mut line = format!(
        "{n} test{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join(", ")
    );
    if let Some(d) = duration_of(results) {
        line.push_str(&format!(" · {}", number(d, "s")));
    }
    line
}

fn meta_items(results: &RunResults) -> Vec<String> {
    let m = &results.meta;
    let mut items = Vec::new();
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(commit) = m.commit.as_deref().filter(|c| hex(c) && !c.is_empty()) {
        let short = &commit[..commit.len().min(10)];
        items.push(
            match m
                .repository
                .as_deref()
                .and_then(|r| link_target(&format!("https://github.com/{r}/commit/{commit}")))
            {
                Some(url) => format!("commit [`{short}`]({url})"),
                None => format!("commit `{short}`"),
            },
        );
    }
    if let Some(b) = &m.branch {
        items.push(format!("branch {}", md_escape(b)));
    }
    if let Some(pr) = m.pr_number {
        items.push(format!("PR #{pr}"));
    }
    let models = models_served(results);
    if !models.is_empty() {
        let models: Vec<String> = models.iter().map(|x| md_escape(x)).collect();
        items.push(format!("model {}", models.join(", ")));
    }
    if !m.gpus.is_empty() {
        let gpus: Vec<String> = m.gpus.iter().map(|x| md_escape(x)).collect();
        items.push(gpus.join(", "));
    }
    let build = m.ci_build.as_deref().map_or_else(
        || format!("build {}", md_escape(&results.build_id)),
        md_escape,
    );
    items.push(match m.build_url.as_deref().and_then(link_target) {
        Some(url) => format!("[{build}]({url})"),
        None => build,
    });
    items.push(
        results
            .started_at
            .format("started %Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    // A runner's local path means nothing to a reader; the artifact does.
    items.push(
        match (
            m.artifact.as_deref(),
            m.artifact_url.as_deref().and_then(link_target),
        ) {
            (Some(name), Some(url)) => format!("results: artifact [`{}`]({url})", code_safe(name)),
            (Some(name), None) => format!("results: artifact `{}`", code_safe(name)),
            _ => format!(
                "results in {}",
                md_escape(&results.results_dir.display().to_string())
            ),
        },
    );
    items
}

/// The models the engines said they serve (what `auto` became), else the
/// suite's names.
fn models_served(results: &RunResults) -> Vec<String> {
    let mut served: Vec<String> = Vec::new();
    for m in results.engines.iter().flat_map(|e| e.served_models.iter()) {
        if !served.contains(m) {
            served.push(m.clone());
        }
    }
    if served.is_empty() {
        results.meta.models.clone()
    } else {
        served
    }
}

/// How long an engine took to serve, and whether its start compiled
/// (cold) or loaded what an earlier start compiled (warm).
fn ready_cell(e: &crate::results::EngineRecord) -> String {
    let ready = opt_number(e.ready_secs, "s");
    match e.start.as_ref().map(|s| s.state.as_str()) {
        Some(state @ ("cold" | "warm" | "partly warm")) if e.ready_secs.is_some() => {
            format!("{ready}, {state}")
        }
        _ => ready,
    }
}

/// The engine table stays open when an engine failed, logged errors or
/// kept GPU memory; otherwise it folds.
fn engines_need_a_look(results: &RunResults) -> bool {
    results.status == RunStatus::Error
        || results.engines.iter().any(|e| {
            e.ready_secs.is_none()
                || e.log_findings.as_ref().is_some_and(|f| f.errors > 0)
                || e.gpu_memory
                    .as_ref()
                    .is_some_and(|g| g.released == Some(false))
        })
}

fn context(
    results: &RunResults,
    target: Destination,
    detail: Detail,
    omitted: Option<String>,
    comment_id: &str,
) -> Context {
    let (icon, verdict) = run_verdict(results);
    // Failures first, so a glance shows what broke.
    let mut tests: Vec<&TestRecord> = results.tests.iter().collect();
    tests.sort_by_key(|t| severity(t.status));
    let tests: Vec<TestView> = tests.into_iter().map(|t| test_view(t, detail)).collect();
    let engines: Vec<EngineView> = results
        .engines
        .iter()
        .map(|e| EngineView {
            name: md_escape(&e.name),
            plain_name: super::format::html_text(&e.name),
            role: e.role.to_string(),
            kind: md_escape(&e.kind),
            url: md_escape(&e.url),
            ready: ready_cell(e),
            version: e.version.as_deref().map_or("–".to_string(), md_escape),
            gpu: gpu_cell(e),
            log: log_cell(e.log_findings.as_ref()),
            findings: findings_lines(e.log_findings.as_ref()),
            // Log tails matter when something went wrong.
            tail: if matches!(results.status, RunStatus::Passed | RunStatus::Inconclusive) {
                Vec::new()
            } else {
                e.log_tail.iter().map(|l| fence_safe(l)).collect()
            },
        })
        .collect();
    let mut ctx = Context::new();
    ctx.insert(
        "target",
        match target {
            Destination::Buildkite => "buildkite",
            Destination::Summary | Destination::PrComment => "github",
        },
    );
    ctx.insert("icon", icon);
    ctx.insert("suite", &md_escape(&results.suite));
    ctx.insert("verdict", &verdict);
    ctx.insert("counts", &counts(results));
    ctx.insert("problems", &super::glance::problems(results));
    ctx.insert("headlines", &super::glance::headlines(results));
    ctx.insert("engines_open", &engines_need_a_look(results));
    // An undecided run's message is its headline already.
    let message = results
        .message
        .as_deref()
        .filter(|_| results.status != RunStatus::Inconclusive);
    ctx.insert("message", &message.map(md_escape));
    ctx.insert("omitted", &omitted);
    ctx.insert("tests", &tests);
    ctx.insert("controls", &controls(results));
    ctx.insert("engines", &engines);
    ctx.insert("show_logs", &(detail == Detail::Full));
    ctx.insert("show_tables", &(detail <= Detail::NoLogs));
    ctx.insert("meta", &meta_items(results));
    ctx.insert("statistics", &statistics(results).map(|s| md_escape(&s)));
    ctx.insert("marker", &marker(comment_id));
    ctx.insert("history", &super::trend::history(results));
    ctx.insert("shards", &super::trend::shards_line(results));
    ctx.insert("tool_version", &md_escape(&results.tool_version));
    let commit_short = results
        .meta
        .commit
        .as_deref()
        .filter(|c| c.chars().all(|c| c.is_ascii_hexdigit()) && !c.is_empty())
        .map_or_else(
            || format!("build {}", md_escape(&results.build_id)),
            |c| format!("commit `{}`", &c[..c.len().min(10)]),
        );
    ctx.insert("commit_short", &commit_short);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;

    fn embedded() -> Templates {
        Templates::load(None).unwrap()
    }

    #[test]
    fn failures_come_first_and_user_text_is_escaped() {
        let md = embedded()
            .render(
                Destination::Summary,
                &samples::gate_failure(),
                Detail::Full,
                "sim",
            )
            .unwrap();
        let failed = md
            .find("long\\_doc\\_qa (long\\_doc\\_qa): failed")
            .unwrap();
        let passed = md.find("✅ mmlu (mmlu): passed").unwrap();
        assert!(failed < passed, "{md}");
        assert!(!md.contains("<b>"), "{md}");
        assert!(!md.contains("```injected"), "{md}");
    }

    #[test]
    fn a_very_large_run_fits_the_comment_and_links_to_the_full_summary() {
        let t = embedded();
        let results = samples::large();
        let (md, detail) = t
            .render_fitting(Destination::PrComment, &results, "sim")
            .unwrap();
        assert!(md.chars().count() <= 65_536, "{}", md.len());
        assert!(detail > Detail::Full, "{detail:?}");
        assert!(
            md.contains("[job's full summary](https://github.com/LMCache/LMCache/actions/runs/99)"),
            "{md}"
        );
        // The failure is named in the first lines, whatever was cut.
        let top: String = md.lines().take(6).collect::<Vec<_>>().join("\n");
        assert!(
            top.contains("long\\_doc\\_qa@model-07 › query\\_ttft\\_vs\\_baseline"),
            "{top}"
        );
        let head: String = md.lines().take(40).collect::<Vec<_>>().join("\n");
        insta::assert_snapshot!("pr_comment__large_head", head);
    }

    #[test]
    fn every_target_and_outcome_renders_as_expected() {
        let t = embedded();
        for (case, results) in samples::all() {
            for (name, target) in [
                ("summary", Destination::Summary),
                ("pr_comment", Destination::PrComment),
                ("buildkite", Destination::Buildkite),
            ] {
                let md = t.render(target, &results, Detail::Full, "sim").unwrap();
                insta::assert_snapshot!(format!("{name}__{case}"), md);
            }
        }
    }

    #[test]
    fn a_report_too_big_for_a_comment_drops_details_first_and_says_so() {
        let t = embedded();
        let mut r = samples::gate_failure();
        r.status = RunStatus::Failed;
        // 70 kB of log lines: only the logs must go.
        r.engines[0].log_tail = (0..700)
            .map(|i| format!("{i:>5} {}", "x".repeat(95)))
            .collect();
        let (md, detail) = t.render_fitting(Destination::PrComment, &r, "sim").unwrap();
        assert_eq!(detail, Detail::NoLogs);
        assert!(md.len() <= 65_536);
        assert!(md.contains("MMLU accuracy per subject"), "tables stay");
        assert!(md.contains(
            "Engine log tails were left out to fit GitHub's 65,536-character comment limit"
        ));
        // Tables too big as well: they go next.
        r.tests[0].tables[0].rows = (0..2000)
            .map(|i| {
                vec![
                    format!("subject_{i}"),
                    "10".into(),
                    "0.5".into(),
                    "0.5".into(),
                    "+0.0".into(),
                ]
            })
            .collect();
        let (md, detail) = t.render_fitting(Destination::PrComment, &r, "sim").unwrap();
        assert_eq!(detail, Detail::NoTables);
        assert!(!md.contains("subject_1999"));
        assert!(
            md.contains("| query\\_ttft\\_vs\\_baseline<br>"),
            "checks stay"
        );
        assert!(md.starts_with(&marker("sim")));
    }

    #[test]
    fn a_report_that_cannot_shrink_enough_is_cut_below_the_limit() {
        let t = embedded();
        let mut r = samples::gate_failure();
        r.tests[0].checks = (0..5000)
            .map(|i| {
                let mut c = r.tests[0].checks[0].clone();
                c.name = format!("check_{i}");
                c
            })
            .collect();
        let (md, detail) = t
            .render_within(Destination::Buildkite, &r, "sim", 100_000)
            .unwrap();
        assert_eq!(detail, Detail::Minimal);
        assert!(md.len() <= 100_000);
        assert!(md.ends_with("in full.\n"), "{md}");
    }

    #[test]
    fn an_override_directory_replaces_one_template_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pr_comment.md.tera"),
            "{{ marker }}\nCustom: {{ suite }} {{ verdict }}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = samples::passed();
        let pr = t
            .render(Destination::PrComment, &r, Detail::Full, "gpu")
            .unwrap();
        assert_eq!(
            pr,
            "<!-- lmcache-e2e:comment-id=gpu -->\nCustom: sim passed\n"
        );
        let summary = t
            .render(Destination::Summary, &r, Detail::Full, "gpu")
            .unwrap();
        assert!(summary.starts_with("## ✅ LMCache e2e · sim: passed"));
    }

    #[test]
    fn a_broken_override_names_the_directory_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.md.tera"), "{% if %}").unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("summary.md.tera"), "{err}");
    }

    /// The comment as GitHub shows it (cmark-gfm's rules, which comrak
    /// follows): no Markdown escapes left as backslashes in `<summary>`, no
    /// table wider than six columns, the verdict first in every check
    /// table, no fold with nothing in it, charts that start at zero.
    #[test]
    fn the_comment_reads_as_github_shows_it() {
        let t = embedded();
        let mut opts = comrak::Options::default();
        opts.extension.table = true;
        opts.extension.tagfilter = true;
        opts.render.unsafe_ = true;
        for (case, mut r) in samples::all() {
            // A test whose name Markdown would escape, and one not run.
            r.tests[0].name = "long_doc_qa_v2".into();
            r.tests
                .push(TestRecord::new("lm_eval", "lm_eval", TestStatus::NotRun));
            let md = t
                .render(Destination::PrComment, &r, Detail::Full, "sim")
                .unwrap();
            let html = comrak::markdown_to_html(&md, &opts);
            for summary in html.split("<summary>").skip(1) {
                let text = summary.split("</summary>").next().unwrap();
                assert!(!text.contains('\\'), "{case}: a backslash in {text:?}");
            }
            for table in html.split("<table>").skip(1) {
                let head = table.split("</tr>").next().unwrap();
                let columns = head.matches("<th>").count() + head.matches("<th ").count();
                assert!(columns <= 6, "{case}: {columns} columns: {head}");
                if head.contains("Check (metric)") {
                    assert!(
                        head.trim_start().starts_with("<thead>\n<tr>\n<th>Verdict"),
                        "{case}: {head}"
                    );
                }
            }
            let mut rest = html.as_str();
            while let Some(i) = rest.find("</summary>") {
                rest = &rest[i + "</summary>".len()..];
                assert!(
                    !rest.trim_start().starts_with("</details>"),
                    "{case}: an empty fold"
                );
            }
            for chart in md.split("xychart-beta").skip(1) {
                let axis = chart
                    .lines()
                    .find(|l| l.trim_start().starts_with("y-axis"))
                    .unwrap();
                assert!(axis.contains("\" 0 --> "), "{case}: {axis}");
            }
        }
    }

    /// What GitHub and Buildkite will show: rendered with a GFM renderer,
    /// every table comes out as a table, every fold as a fold, and nothing
    /// from users or logs as markup.
    #[test]
    fn gfm_renders_the_tables_and_folds_as_intended() {
        let t = embedded();
        let mut opts = comrak::Options::default();
        opts.extension.table = true;
        opts.extension.autolink = true;
        opts.extension.tagfilter = true;
        // GitHub passes <details> and comments through; so must we here.
        opts.render.unsafe_ = true;
        for (case, r) in samples::all() {
            for target in [
                Destination::Summary,
                Destination::PrComment,
                Destination::Buildkite,
            ] {
                let md = t.render(target, &r, Detail::Full, "sim").unwrap();
                let html = comrak::markdown_to_html(&md, &opts);
                let charts: usize = r.tests.iter().map(|t| t.charts.len()).sum();
                let expected = usize::from(!r.engines.is_empty())
                    + usize::from(!super::super::glance::headlines(&r).is_empty())
                    + r.tests.iter().filter(|t| !t.checks.is_empty()).count()
                    + r.tests.iter().map(|t| t.tables.len()).sum::<usize>()
                    + usize::from(r.history.is_some())
                    + if target == Destination::Buildkite {
                        charts
                    } else {
                        0
                    };
                assert_eq!(
                    html.matches("<table>").count(),
                    expected,
                    "{case} {target:?}:\n{html}"
                );
                let folds = html.matches("<details>").count();
                assert_eq!(folds, html.matches("</details>").count(), "{case}");
                let logs = r.engines.iter().filter(|e| !e.log_tail.is_empty()).count();
                let log_folds = if matches!(r.status, RunStatus::Passed | RunStatus::Inconclusive) {
                    0
                } else {
                    logs
                };
                let table_folds: usize = r.tests.iter().map(|t| t.tables.len()).sum();
                let finding_folds = r
                    .engines
                    .iter()
                    .filter(|e| e.log_findings.as_ref().is_some_and(|f| !f.top.is_empty()))
                    .count();
                // Passing tests fold, and the engine table unless an
                // engine needs a look.
                let passing = r
                    .tests
                    .iter()
                    .filter(|t| matches!(t.status, TestStatus::Passed | TestStatus::NotRun))
                    .count();
                let engine_fold = usize::from(!r.engines.is_empty() && !engines_need_a_look(&r));
                assert_eq!(
                    folds,
                    log_folds + table_folds + finding_folds + passing + engine_fold,
                    "{case} {target:?}"
                );
                if charts > 0 && target != Destination::Buildkite {
                    assert!(
                        html.contains("<pre><code class=\"language-mermaid\">xychart-beta"),
                        "{case}"
                    );
                }
                for markup in ["<b>", "<img", "<script", "<a href=\"javascript"] {
                    assert!(
                        !html.contains(markup),
                        "{case} {target:?}: {markup} in\n{html}"
                    );
                }
                assert_eq!(
                    html.starts_with("<!-- lmcache-e2e:comment-id=sim -->"),
                    target == Destination::PrComment
                );
            }
        }
    }

    #[test]
    fn escaping_neutralises_tables_html_and_links() {
        assert_eq!(md_escape("a|b<script>"), "a\\|b\\<script\\>");
        assert_eq!(md_escape("x\ny"), "x y");
        assert_eq!(md_escape("[x](javascript:1)"), "\\[x\\](javascript:1)");
        assert_eq!(link_target("javascript:alert(1)"), None);
        assert_eq!(
            link_target("https://x/a) [y](z").as_deref(),
            Some("https://x/a%29%20[y]%28z")
        );
        assert_eq!(safe_id("a b<c>"), "a-b-c-");
    }
}
