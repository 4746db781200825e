//! Baseline vs LMCache on MMLU: per-subject and total accuracies (weighted
//! by questions and not), the largest per-subject drop, and the questions
//! whose answer changed. Shared by `ci` and `compare` on today's jsonl files.

use std::fmt::Write as _;

use indexmap::IndexMap;
use serde::Serialize;

/// Accuracy and question count of one subject on one engine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct SubjectScore {
    pub accuracy: f64,
    pub num_questions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SubjectRow {
    pub subject: String,
    pub baseline: f64,
    pub lmcache: f64,
    /// `lmcache − baseline`.
    pub difference: f64,
    pub num_questions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    pub rows: Vec<SubjectRow>,
    pub baseline_weighted: f64,
    pub lmcache_weighted: f64,
    pub baseline_unweighted: f64,
    pub lmcache_unweighted: f64,
    /// Largest `baseline − lmcache` over subjects (0 when none dropped).
    pub max_subject_drop: f64,
    pub worst_subject: Option<String>,
}

/// As `summarize-results.py` does: the union of subjects, a subject missing
/// on one side scoring 0 there, totals weighted by questions.
pub(crate) fn compare(
    baseline: &IndexMap<String, SubjectScore>,
    lmcache: &IndexMap<String, SubjectScore>,
) -> Comparison {
    let mut subjects: Vec<&String> = baseline.keys().chain(lmcache.keys()).collect();
    subjects.sort();
    subjects.dedup();
    let rows: Vec<SubjectRow> = subjects
        .into_iter()
        .map(|s| {
            let (b, l) = (baseline.get(s), lmcache.get(s));
            let n = b.or(l).map_or(0, |x| x.num_questions);
            let (b, l) = (b.map_or(0.0, |x| x.accuracy), l.map_or(0.0, |x| x.accuracy));
            SubjectRow {
                subject: s.clone(),
                baseline: b,
                lmcache: l,
                difference: l - b,
                num_questions: n,
            }
        })
        .collect();
    let total_n: u64 = rows.iter().map(|r| r.num_questions).sum();
    let weighted = |f: fn(&SubjectRow) -> f64| {
        if total_n == 0 {
            0.0
        } else {
            rows.iter()
                .map(|r| f(r) * r.num_questions as f64)
                .sum::<f64>()
                / total_n as f64
        }
    };
    let unweighted = |f: fn(&SubjectRow) -> f64| {
        if rows.is_empty() {
            0.0
        } else {
            rows.iter().map(f).sum::<f64>() / rows.len() as f64
        }
    };
    let worst = rows
        .iter()
        .max_by(|a, b| (-a.difference).total_cmp(&-b.difference));
    Comparison {
        baseline_weighted: weighted(|r| r.baseline),
        lmcache_weighted: weighted(|r| r.lmcache),
        baseline_unweighted: unweighted(|r| r.baseline),
        lmcache_unweighted: unweighted(|r| r.lmcache),
        // `max` could keep a negative zero; a drop is 0 or more.
        max_subject_drop: worst
            .filter(|w| w.difference < 0.0)
            .map_or(0.0, |w| -w.difference),
        worst_subject: worst
            .filter(|w| w.difference < 0.0)
            .map(|w| w.subject.clone()),
        rows,
    }
}

/// `correctness-summary.txt` as the reference writes it.
pub(crate) fn summary_text(c: &Comparison) -> String {
    let mut s = format!(
        "{:<45} {:>10} {:>10} {:>11} {:>10}\n",
        "Subject", "Baseline", "LMCache", "Difference", "Questions"
    );
    for r in &c.rows {
        let _ = writeln!(
            s,
            "{:<45} {:>10.4} {:>10.4} {:>+11.4} {:>10}",
            r.subject, r.baseline, r.lmcache, r.difference, r.num_questions
        );
    }
    let total: u64 = c.rows.iter().map(|r| r.num_questions).sum();
    let diff = c.lmcache_weighted - c.baseline_weighted;
    let _ = writeln!(
        s,
        "{:<45} {:>10.4} {:>10.4} {:>+11.4} {:>10}",
        "TOTAL (question-weighted)", c.baseline_weighted, c.lmcache_weighted, diff, total
    );
    // summarize-results.py's last line; a difference that rounds to
    // nothing is no "BETTER by 0.0000" (seen on the H200).
    if format!("{:.4}", diff.abs()) == "0.0000" {
        let _ = writeln!(s, "\nLMCache performs THE SAME (difference below 0.00005)");
    } else {
        let _ = writeln!(
            s,
            "\nLMCache performs {} by {:.4}",
            if diff > 0.0 { "BETTER" } else { "WORSE" },
            diff.abs()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(v: &[(&str, f64, u64)]) -> IndexMap<String, SubjectScore> {
        v.iter()
            .map(|(s, a, n)| {
                (
                    s.to_string(),
                    SubjectScore {
                        accuracy: *a,
                        num_questions: *n,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn missing_subjects_score_zero_and_totals_are_weighted() {
        let b = scores(&[("a", 0.5, 100), ("b", 1.0, 10)]);
        let l = scores(&[("a", 0.5, 100)]);
        let c = compare(&b, &l);
        assert_eq!(c.rows.len(), 2);
        assert_eq!(c.rows[1].lmcache, 0.0);
        assert!((c.baseline_weighted - 60.0 / 110.0).abs() < 1e-12);
        assert!((c.lmcache_weighted - 50.0 / 110.0).abs() < 1e-12);
        assert!((c.baseline_unweighted - 0.75).abs() < 1e-12);
        assert_eq!(c.max_subject_drop, 1.0);
        assert_eq!(c.worst_subject.as_deref(), Some("b"));
        assert!(summary_text(&c).contains("LMCache performs WORSE by 0.0909"));
    }

    #[test]
    fn no_drop_when_lmcache_is_better_everywhere() {
        let c = compare(&scores(&[("a", 0.5, 4)]), &scores(&[("a", 0.75, 4)]));
        assert_eq!(c.max_subject_drop, 0.0);
        assert_eq!(c.worst_subject, None);
        assert!(summary_text(&c).contains("BETTER by 0.2500"));
        let same = compare(&scores(&[("a", 0.25, 4)]), &scores(&[("a", 0.25, 4)]));
        let text = summary_text(&same);
        assert!(text.contains("LMCache performs THE SAME"), "{text}");
        assert!(
            !text.contains("BETTER") && !text.contains("WORSE"),
            "{text}"
        );
    }
}
