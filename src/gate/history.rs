//! A run against the default branch's recent runs: per check, where its
//! value falls among theirs and the change points in their series. Only
//! runs with the same fingerprint are compared. Pure.

use crate::results::history::Entry;
use crate::results::{ChangePoint, HistoryView, MetricHistory};

use super::changepoint;

/// How many of the default branch's latest runs are looked at.
pub(crate) const WINDOW: usize = 30;

/// `None` when the history has no run comparable with `current`.
pub(crate) fn view(history: &[Entry], current: &Entry) -> Option<HistoryView> {
    let key = current.fingerprint.key();
    let same: Vec<&Entry> = history
        .iter()
        .filter(|e| e.fingerprint == current.fingerprint)
        .collect();
    let recent = &same[same.len().saturating_sub(WINDOW)..];
    if recent.is_empty() {
        return None;
    }
    let metrics = current
        .checks
        .iter()
        .filter_map(|(name, point)| {
            let runs: Vec<(&Entry, f64)> = recent
                .iter()
                .filter_map(|e| Some((*e, e.checks.get(name)?.value)))
                .collect();
            if runs.is_empty() {
                return None;
            }
            let series: Vec<f64> = runs.iter().map(|(_, v)| *v).collect();
            let change_points = changepoint::e_divisive(&series, seed_of(name))
                .into_iter()
                .map(|f| ChangePoint {
                    at: f.at,
                    commit: runs[f.at].0.commit.clone(),
                    change_pct: shift_pct(&series, f.at),
                    p: f.p,
                })
                .collect();
            Some(MetricHistory {
                key: name.clone(),
                unit: point.unit.clone(),
                percentile: Some(percentile_rank(&series, point.value)),
                current: Some(point.value),
                series,
                change_points,
            })
        })
        .collect();
    Some(HistoryView {
        runs: recent.len(),
        fingerprint: key,
        method: changepoint::METHOD.to_string(),
        metrics,
    })
}

/// Mid-rank percentile of `v` among `series` (ties count half).
fn percentile_rank(series: &[f64], v: f64) -> f64 {
    let below = series.iter().filter(|x| **x < v).count() as f64;
    let equal = series.iter().filter(|x| **x == v).count() as f64;
    100.0 * (below + equal / 2.0) / series.len() as f64
}

/// The mean of the series from `at` on against the mean before it, in
/// percent of the latter.
fn shift_pct(series: &[f64], at: usize) -> Option<f64> {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (before, after) = (mean(&series[..at]), mean(&series[at..]));
    (before != 0.0).then(|| 100.0 * (after - before) / before.abs())
}

/// Each check gets its own permutation stream, the same every run.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::history::{Fingerprint, Point};
    use indexmap::IndexMap;

    fn entry(i: usize, v: f64, suite: &str) -> Entry {
        Entry {
            at: chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
            commit: Some(format!("c{i}")),
            branch: Some("main".into()),
            build_url: None,
            fingerprint: Fingerprint {
                suite_hash: Some(suite.into()),
                tool_version: "0.1.0".into(),
                models: vec!["m".into()],
                engines: Vec::new(),
                gpus: Vec::new(),
            },
            checks: IndexMap::from([(
                "long_doc_qa: ttft".to_string(),
                Point {
                    value: v,
                    unit: "s".into(),
                    low: None,
                    high: None,
                    n: None,
                },
            )]),
        }
    }

    #[test]
    fn only_runs_with_the_same_fingerprint_are_compared() {
        let mut history: Vec<Entry> = (0..20).map(|i| entry(i, 1.0 + i as f64, "a")).collect();
        history.extend((20..25).map(|i| entry(i, 100.0, "b")));
        let v = view(&history, &entry(99, 10.5, "a")).unwrap();
        assert_eq!(v.runs, 20);
        let m = &v.metrics[0];
        assert_eq!(m.series.len(), 20);
        assert_eq!(m.percentile, Some(50.0));
        assert!(view(&history, &entry(99, 1.0, "c")).is_none());
    }

    #[test]
    fn a_step_in_the_default_branch_is_reported_with_its_commit() {
        let history: Vec<Entry> = (0..30)
            .map(|i| {
                entry(
                    i,
                    if i < 18 { 2.0 } else { 2.3 } + (i % 4) as f64 * 0.01,
                    "a",
                )
            })
            .collect();
        let v = view(&history, &entry(99, 2.3, "a")).unwrap();
        let cp = &v.metrics[0].change_points;
        assert_eq!(cp.len(), 1, "{cp:?}");
        assert_eq!(cp[0].at, 18);
        assert_eq!(cp[0].commit.as_deref(), Some("c18"));
        assert!((cp[0].change_pct.unwrap() - 15.0).abs() < 1.0);
    }

    #[test]
    fn the_window_keeps_the_latest_runs() {
        let history: Vec<Entry> = (0..50).map(|i| entry(i, i as f64, "a")).collect();
        let v = view(&history, &entry(99, 0.0, "a")).unwrap();
        assert_eq!(v.runs, WINDOW);
        assert_eq!(v.metrics[0].series[0], 20.0);
    }
}
