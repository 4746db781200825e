//! The first lines of a report, read in five seconds: each check that
//! failed, could not be told or warned, with its numbers and its bound, and
//! the headline figures of LMCache against the baseline (query TTFT,
//! throughput, MMLU accuracy, cache hits).

use serde::Serialize;

use super::format::{md_escape, number, verdict_rank, Mark};
use crate::results::{CheckKind, CheckOutcome, Interval, Role, RunResults, TestRecord, Verdict};

/// At most this many problems are listed at the top; the rest are below.
const MAX_PROBLEMS: usize = 8;
/// At most this many rows of headline figures (the last may say how many
/// more the tests have).
const MAX_HEADLINES: usize = 8;

/// The problems the top of a report names: one line each, worst first.
#[derive(Debug, Serialize)]
pub(crate) struct Problems {
    pub lines: Vec<String>,
    /// Listed further down only.
    pub more: usize,
}

pub(crate) fn problems(results: &RunResults) -> Problems {
    let mut found: Vec<(u8, String)> = Vec::new();
    for t in &results.tests {
        if let Some(e) = &t.error {
            found.push((
                0,
                format!(
                    "{} {}: {}",
                    Mark::Error.icon(),
                    md_escape(&t.name),
                    md_escape(e)
                ),
            ));
        }
        for c in &t.checks {
            if c.verdict == Verdict::Pass {
                continue;
            }
            // After the errors (0).
            found.push((1 + verdict_rank(c.verdict), check_line(t, c, &md_escape)));
        }
    }
    found.sort_by_key(|(rank, _)| *rank);
    let more = found.len().saturating_sub(MAX_PROBLEMS);
    Problems {
        lines: found
            .into_iter()
            .take(MAX_PROBLEMS)
            .map(|(_, l)| l)
            .collect(),
        more,
    }
}

/// `❌ long_doc_qa › query_ttft_vs_baseline: change -68.2 % (95 % CI …),
/// needs <= -80.0 %`, with the check's own word when it has one.
pub(crate) fn check_line(t: &TestRecord, c: &CheckOutcome, esc: &dyn Fn(&str) -> String) -> String {
    let icon = Mark::from(c.verdict).icon();
    let unit = match c.kind {
        CheckKind::Relative => "%",
        CheckKind::Absolute => c.unit.as_str(),
    };
    let value = match (c.kind, c.value) {
        (_, None) => "no value".to_string(),
        (CheckKind::Relative, Some(v)) => format!("change {}", number(v, "%")),
        (CheckKind::Absolute, Some(v)) if c.metric == c.name => number(v, unit),
        (CheckKind::Absolute, Some(v)) => format!("{} {}", esc(&c.metric), number(v, unit)),
    };
    let interval = c
        .interval
        .map(|i| format!(" ({})", interval_text(&i, unit)))
        .unwrap_or_default();
    let verdict = match c.verdict {
        Verdict::Inconclusive => "; the interval straddles the bound",
        Verdict::Flaky => "; it passed on a retry",
        _ => "",
    };
    let word = c
        .message
        .as_deref()
        .map(|m| format!(": {}", esc(m)))
        .unwrap_or_default();
    format!(
        "{icon} {} › {}: {value}{interval}, needs {} {}{verdict}{word}",
        esc(&t.name),
        esc(&c.name),
        c.op.sign(),
        number(c.threshold, unit)
    )
}

fn interval_text(i: &Interval, unit: &str) -> String {
    format!(
        "{:.0} % CI {} … {}",
        i.level * 100.0,
        number(i.low, unit),
        number(i.high, unit)
    )
}

/// One headline figure of one test.
#[derive(Debug, Serialize)]
pub(crate) struct Headline {
    pub what: String,
    pub baseline: String,
    pub lmcache: String,
    pub change: String,
}

/// The figures a maintainer looks for first, by metric, with the words the
/// report gives them; a test shows the first of each group it has.
const FIGURES: &[&[(&str, &str)]] = &[
    &[("query_ttft_per_prompt", "query TTFT per prompt")],
    &[
        ("total_token_throughput", "total token throughput"),
        ("output_throughput", "output throughput"),
    ],
    &[("accuracy", "MMLU accuracy")],
];

/// Figure by figure (TTFT, throughput, MMLU, then cache hits), each over
/// the tests that have it.
pub(crate) fn headlines(results: &RunResults) -> Vec<Headline> {
    let mut rows = Vec::new();
    for group in FIGURES {
        for t in &results.tests {
            if let Some(row) = group.iter().find_map(|(m, what)| figure(t, m, what)) {
                rows.push(row);
            }
        }
    }
    rows.extend(results.tests.iter().filter_map(cache_hits));
    if rows.len() > MAX_HEADLINES {
        let more = rows.len() - (MAX_HEADLINES - 1);
        rows.truncate(MAX_HEADLINES - 1);
        rows.push(Headline {
            what: format!("… and {more} more figures in the tests below"),
            baseline: String::new(),
            lmcache: String::new(),
            change: String::new(),
        });
    }
    rows
}

fn value_of<'a>(t: &'a TestRecord, role: Role, metric: &str) -> Option<&'a crate::results::Metric> {
    t.metrics
        .get(&role)?
        .get(metric)
        .filter(|m| m.value.is_finite())
}

/// A metric both engines have, with the change the checks judged (the
/// paired estimate and its interval, where a relative check has one).
fn figure(t: &TestRecord, metric: &str, what: &str) -> Option<Headline> {
    let (b, l) = (
        value_of(t, Role::Baseline, metric)?,
        value_of(t, Role::Lmcache, metric)?,
    );
    let unit = b.unit.as_str();
    let change = if metric == "accuracy" {
        accuracy_change(t, b.value, l.value)
    } else {
        relative_change(t, metric, b.value, l.value)
    };
    // Accuracies differ in the third decimal: four are shown.
    let shown = |v: f64| {
        if metric == "accuracy" {
            format!("{v:.4}")
        } else {
            number(v, unit)
        }
    };
    Some(Headline {
        what: format!("{what} · {}", md_escape(&t.name)),
        baseline: shown(b.value),
        lmcache: shown(l.value),
        change,
    })
}

fn relative_change(t: &TestRecord, metric: &str, b: f64, l: f64) -> String {
    let judged = t
        .checks
        .iter()
        .find(|c| c.kind == CheckKind::Relative && c.metric == metric && c.value.is_some());
    match judged {
        Some(c) => {
            let v = c.value.unwrap_or(f64::NAN);
            match c.interval {
                Some(i) => format!(
                    "{} ({} … {})",
                    number(v, "%"),
                    number(i.low, "%"),
                    number(i.high, "%")
                ),
                None => number(v, "%"),
            }
        }
        None if b != 0.0 => number((l - b) / b * 100.0, "%"),
        None => "–".to_string(),
    }
}

/// MMLU's change is its accuracy drop, with McNemar's interval.
fn accuracy_change(t: &TestRecord, b: f64, l: f64) -> String {
    match value_of(t, Role::Lmcache, "accuracy_drop") {
        Some(d) => match d.interval {
            Some(i) => format!(
                "drop {} ({} … {})",
                number(d.value, ""),
                number(i.low, ""),
                number(i.high, "")
            ),
            None => format!("drop {}", number(d.value, "")),
        },
        None => format!("drop {}", number(b - l, "")),
    }
}

/// The proof LMCache was engaged: the test's first check the gate held to
/// every trial (a cache-hit bound), with LMCache's share of the prompt tokens and the worst trial.
fn cache_hits(t: &TestRecord) -> Option<Headline> {
    let c = t.checks.iter().find(|c| c.every_trial)?;
    let unit = c.unit.as_str();
    let mut notes = Vec::new();
    if let Some(share) = value_of(t, Role::Lmcache, "external_prefix_cache_hit_pct") {
        notes.push(format!(
            "{:.1} % of prompt tokens from LMCache",
            share.value
        ));
    }
    if let (Some(trial), Some(v)) = (c.worst_trial, c.value) {
        notes.push(format!("worst trial ({trial}): {}", number(v, unit)));
    }
    Some(Headline {
        what: format!(
            "cache hits ({}) · {}",
            md_escape(&c.metric),
            md_escape(&t.name)
        ),
        baseline: c.baseline.map_or("–".to_string(), |v| number(v, unit)),
        lmcache: c.lmcache.map_or("–".to_string(), |v| number(v, unit)),
        change: if notes.is_empty() {
            "–".to_string()
        } else {
            notes.join("; ")
        },
    })
}

/// One GitHub `::error` (or `::warning`) workflow command per check that
/// failed or warned, titled with its test and check, pointing at the suite
/// file when the suite came from one, so the job's page lists each.
pub(crate) fn github_annotations(results: &RunResults) -> Vec<String> {
    let file = if results.source.starts_with("preset ") || results.source.is_empty() {
        " ".to_string()
    } else {
        format!(" file={},", property(&results.source))
    };
    let mut out = Vec::new();
    for t in &results.tests {
        for c in &t.checks {
            let level = match c.verdict {
                Verdict::Fail => "error",
                Verdict::Warning | Verdict::Inconclusive => "warning",
                _ => continue,
            };
            // One line of plain text: no control character survives.
            let plain = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
            let line = check_line(t, c, &plain);
            out.push(format!(
                "::{level}{file}title={}::{}",
                property(&plain(&format!("lmcache-e2e: {} › {}", t.name, c.name))),
                message(&line)
            ));
        }
    }
    out
}

/// A workflow command's message: `%`, CR and LF encoded, as the runner
/// decodes them.
fn message(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`.
fn property(s: &str) -> String {
    message(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;

    #[test]
    fn a_failed_check_is_named_with_its_numbers_and_bound() {
        let p = problems(&samples::gate_failure());
        assert_eq!(
            p.lines,
            vec!["❌ long\\_doc\\_qa › query\\_ttft\\_vs\\_baseline: change -68.2 %, needs ≤ -80.0 %"]
        );
        assert_eq!(p.more, 0);
        assert!(problems(&samples::passed()).lines.is_empty());
    }

    #[test]
    fn each_failed_check_is_a_github_error_with_its_numbers() {
        let mut r = samples::gate_failure();
        r.source = ".github/e2e, gpu.toml".into();
        assert_eq!(
            github_annotations(&r),
            vec!["::error file=.github/e2e%2C gpu.toml,title=lmcache-e2e%3A long_doc_qa › query_ttft_vs_baseline::❌ long_doc_qa › query_ttft_vs_baseline: change -68.2 %25, needs ≤ -80.0 %25"]
        );
        assert!(github_annotations(&samples::passed()).is_empty());
    }

    #[test]
    fn the_cache_hit_row_names_the_share_and_the_worst_trial() {
        let mut r = samples::passed();
        let t = &mut r.tests[0];
        let mut hits = t.checks[0].clone();
        hits.name = "lmcache_cache_hits".into();
        hits.metric = "vllm:external_prefix_cache_hits_total".into();
        hits.unit = "tokens".into();
        (hits.baseline, hits.lmcache, hits.value) = (Some(0.0), Some(11264.0), Some(3584.0));
        (hits.every_trial, hits.worst_trial) = (true, Some(1));
        t.checks.push(hits);
        t.metrics.get_mut(&Role::Lmcache).unwrap().insert(
            "external_prefix_cache_hit_pct".into(),
            crate::results::Metric::new(53.27, "%"),
        );
        let rows = headlines(&r);
        let row = rows
            .iter()
            .find(|r| r.what.starts_with("cache hits"))
            .unwrap();
        assert_eq!(
            (row.lmcache.as_str(), row.change.as_str()),
            (
                "11264 tokens",
                "53.3 % of prompt tokens from LMCache; worst trial (1): 3584 tokens"
            )
        );
        // A check not held to every trial is no cache-hit row.
        r.tests[0].checks.last_mut().unwrap().every_trial = false;
        assert!(!headlines(&r)
            .iter()
            .any(|r| r.what.starts_with("cache hits")));
    }

    #[test]
    fn headlines_give_the_judged_change_and_mmlu_its_drop() {
        let rows = headlines(&samples::gate_failure());
        let ttft = rows
            .iter()
            .find(|r| r.what.starts_with("query TTFT"))
            .unwrap();
        assert_eq!(
            (ttft.baseline.as_str(), ttft.lmcache.as_str()),
            ("0.673 s", "0.214 s")
        );
        assert_eq!(ttft.change, "-68.2 %");
        let acc = rows.iter().find(|r| r.what.starts_with("MMLU")).unwrap();
        assert_eq!(acc.change, "drop 0.001");
    }
}
