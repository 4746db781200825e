//! The history section of a report: per check, a sparkline of the default
//! branch's recent values, where this run falls among them and the change
//! points found; and which shards a merged run came from. Every piece of
//! outside text (names, commits from the store) is escaped here.

use serde::Serialize;

use super::format::{md_escape, number};
use crate::results::{HistoryView, MetricHistory, RunResults};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Points a sparkline shows at most (the latest).
const SPARK_POINTS: usize = 20;

#[derive(Debug, Serialize)]
pub(crate) struct TrendRow {
    check: String,
    trend: String,
    median: String,
    current: String,
    percentile: String,
    change_points: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct HistoryContext {
    runs: usize,
    fingerprint: String,
    method: String,
    rows: Vec<TrendRow>,
}

/// What the templates show of the history, if the run was compared.
pub(crate) fn history(results: &RunResults) -> Option<HistoryContext> {
    let v: &HistoryView = results.history.as_ref()?;
    Some(HistoryContext {
        runs: v.runs,
        fingerprint: md_escape(&v.fingerprint),
        method: md_escape(&v.method),
        rows: v.metrics.iter().map(row).collect(),
    })
}

fn row(m: &MetricHistory) -> TrendRow {
    let mut sorted = m.series.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    let change_points = if m.change_points.is_empty() {
        "none".to_string()
    } else {
        m.change_points
            .iter()
            .map(|c| {
                let commit = c
                    .commit
                    .as_deref()
                    .filter(|c| !c.is_empty() && c.chars().all(|x| x.is_ascii_hexdigit()))
                    .map(|c| format!(" `{}`", &c[..c.len().min(10)]))
                    .unwrap_or_default();
                let shift = c
                    .change_pct
                    .map(|p| format!(": {p:+.1} %"))
                    .unwrap_or_default();
                format!(
                    "run {} of {}{commit}{shift} (p = {:.3})",
                    c.at + 1,
                    m.series.len(),
                    c.p
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    TrendRow {
        check: md_escape(&m.key),
        trend: spark(&m.series, m.current),
        median: median.map_or("-".into(), |v| md_escape(&number(v, &m.unit))),
        current: m
            .current
            .map_or("-".into(), |v| md_escape(&number(v, &m.unit))),
        percentile: m.percentile.map_or("-".into(), |p| format!("{p:.0}")),
        change_points,
    }
}

/// The latest values as bars on one scale, then this run's after `→`.
pub(crate) fn spark(series: &[f64], current: Option<f64>) -> String {
    let shown = &series[series.len().saturating_sub(SPARK_POINTS)..];
    let all: Vec<f64> = shown
        .iter()
        .copied()
        .chain(current)
        .filter(|v| v.is_finite())
        .collect();
    if all.is_empty() {
        return String::new();
    }
    let (lo, hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let bar = |v: f64| {
        if !v.is_finite() {
            return ' ';
        }
        if hi <= lo {
            return BARS[3];
        }
        BARS[(((v - lo) / (hi - lo) * 7.0).round() as usize).min(7)]
    };
    let mut s: String = shown.iter().map(|v| bar(*v)).collect();
    if let Some(c) = current {
        s.push_str(" → ");
        s.push(bar(c));
    }
    s
}

/// "Merged from 3 shards: …", for a merged run.
pub(crate) fn shards_line(results: &RunResults) -> Option<String> {
    if results.merged_from.is_empty() {
        return None;
    }
    let parts: Vec<String> = results
        .merged_from
        .iter()
        .map(|s| {
            let took = s
                .duration_secs
                .map_or(String::new(), |d| format!(", {d:.0} s"));
            let status = format!("{:?}", s.status).to_lowercase();
            match &s.build_url {
                Some(u) if u.starts_with("https://") => {
                    format!("[shard {}]({}) ({status}{took})", s.index, md_escape(u))
                }
                _ => format!("shard {} ({status}{took})", s.index),
            }
        })
        .collect();
    Some(format!(
        "Merged from {} shards: {}.",
        results.merged_from.len(),
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_share_one_scale_with_the_current_run() {
        assert_eq!(spark(&[1.0, 2.0, 3.0], Some(3.0)), "▁▅█ → █");
        assert_eq!(spark(&[2.0, 2.0], None), "▄▄");
        assert_eq!(spark(&[], None), "");
        let long: Vec<f64> = (0..50).map(f64::from).collect();
        assert_eq!(spark(&long, None).chars().count(), SPARK_POINTS);
    }
}
