//! What both engines' answers add up to: scores per subject, the paired
//! comparison (McNemar on changed answers), notes and tables.

use indexmap::IndexMap;
use serde::Serialize;

use super::compare::{self, Comparison, SubjectScore};
use super::records::Record;
use crate::results::{DetailTable, Metric};

/// Accuracy per subject, in subject order.
pub(crate) fn scores(records: &[Record]) -> IndexMap<String, SubjectScore> {
    let mut acc: IndexMap<String, (u64, u64)> = IndexMap::new();
    for r in records {
        let e = acc.entry(r.subject.clone()).or_default();
        e.1 += 1;
        if r.prediction == Some(r.label) {
            e.0 += 1;
        }
    }
    acc.into_iter()
        .map(|(s, (ok, n))| {
            (
                s,
                SubjectScore {
                    accuracy: ok as f64 / n.max(1) as f64,
                    num_questions: n,
                },
            )
        })
        .collect()
}

/// Per-engine metrics.
pub(crate) fn role_metrics(records: &[Record]) -> IndexMap<String, Metric> {
    let s = scores(records);
    let n: u64 = s.values().map(|x| x.num_questions).sum();
    let correct: f64 = s
        .values()
        .map(|x| x.accuracy * x.num_questions as f64)
        .sum();
    let unweighted = s.values().map(|x| x.accuracy).sum::<f64>() / s.len().max(1) as f64;
    let failed = records.iter().filter(|r| r.prediction.is_none()).count();
    let mut m = IndexMap::new();
    m.insert(
        "accuracy".into(),
        Metric::new(correct / n.max(1) as f64, ""),
    );
    m.insert("accuracy_unweighted".into(), Metric::new(unweighted, ""));
    m.insert("questions".into(), Metric::new(n as f64, "questions"));
    m.insert(
        "failed_requests".into(),
        Metric::new(failed as f64, "requests"),
    );
    m
}

/// A question whose answer differs between the engines.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Changed {
    pub subject: String,
    pub index: usize,
    pub label: char,
    pub baseline: Option<char>,
    pub lmcache: Option<char>,
}

pub(crate) fn changed(baseline: &[Record], lmcache: &[Record]) -> Vec<Changed> {
    let by_key: IndexMap<(&str, usize), &Record> = baseline
        .iter()
        .map(|r| ((r.subject.as_str(), r.index), r))
        .collect();
    lmcache
        .iter()
        .filter_map(|l| {
            let b = by_key.get(&(l.subject.as_str(), l.index))?;
            (b.prediction != l.prediction).then(|| Changed {
                subject: l.subject.clone(),
                index: l.index,
                label: l.label,
                baseline: b.prediction,
                lmcache: l.prediction,
            })
        })
        .collect()
}

/// The questions both engines were asked, paired: how many, and how many
/// went right → wrong and wrong → right with LMCache (a failed request
/// counts as wrong, as it scores). McNemar's test reads these.
pub(crate) fn discordance(baseline: &[Record], lmcache: &[Record]) -> IndexMap<String, Metric> {
    let by_key: IndexMap<(&str, usize), &Record> = baseline
        .iter()
        .map(|r| ((r.subject.as_str(), r.index), r))
        .collect();
    let (mut n, mut right_to_wrong, mut wrong_to_right) = (0u64, 0u64, 0u64);
    for l in lmcache {
        let Some(b) = by_key.get(&(l.subject.as_str(), l.index)) else {
            continue;
        };
        n += 1;
        match (b.prediction == Some(b.label), l.prediction == Some(l.label)) {
            (true, false) => right_to_wrong += 1,
            (false, true) => wrong_to_right += 1,
            _ => {}
        }
    }
    IndexMap::from([
        (
            "paired_questions".to_string(),
            Metric::new(n as f64, "questions"),
        ),
        (
            "right_to_wrong".to_string(),
            Metric::new(right_to_wrong as f64, "questions"),
        ),
        (
            "wrong_to_right".to_string(),
            Metric::new(wrong_to_right as f64, "questions"),
        ),
    ])
}

/// Metrics of LMCache against baseline, recorded on the LMCache side so
/// the gate bounds them like any other metric.
pub(crate) fn comparison_metrics(
    c: &Comparison,
    changed: Option<usize>,
) -> IndexMap<String, Metric> {
    let mut m = IndexMap::new();
    m.insert(
        "accuracy_drop".into(),
        Metric::new(c.baseline_weighted - c.lmcache_weighted, ""),
    );
    m.insert(
        "accuracy_drop_unweighted".into(),
        Metric::new(c.baseline_unweighted - c.lmcache_unweighted, ""),
    );
    m.insert(
        "max_subject_drop".into(),
        Metric::new(c.max_subject_drop, ""),
    );
    // Dynamo's comparison lists a subject that moved either way.
    let moved = c
        .rows
        .iter()
        .map(|r| r.difference.abs())
        .fold(0.0, f64::max);
    m.insert("max_subject_change".into(), Metric::new(moved, ""));
    if let Some(n) = changed {
        m.insert("changed_answers".into(), Metric::new(n as f64, "questions"));
    }
    m
}

/// What baseline's and LMCache's answers add up to: the comparison
/// metrics (on LMCache's side), notes, tables and files (name, body).
pub(crate) struct Summary {
    pub metrics: IndexMap<String, Metric>,
    pub changed: Vec<Changed>,
    pub notes: Vec<String>,
    pub tables: Vec<DetailTable>,
    pub files: Vec<(String, String)>,
}

/// Compares both engines' answers, per subject and per question; what a
/// test and a merge of its shards both conclude from the answers.
pub(crate) fn summarize(b: &[Record], l: &[Record]) -> Summary {
    let comparison = compare::compare(&scores(b), &scores(l));
    let changed = changed(b, l);
    let mut metrics = comparison_metrics(&comparison, Some(changed.len()));
    metrics.extend(discordance(b, l));
    let mut notes = Vec::new();
    if !changed.is_empty() {
        notes.push(format!(
            "changed answers: {} questions answered differently by LMCache (all in mmlu/changed_answers.jsonl)",
            changed.len()
        ));
    }
    let mut tables = vec![subject_table(&comparison)];
    if !changed.is_empty() {
        tables.push(changed_table(&changed));
    }
    if let Some(worst) = &comparison.worst_subject {
        notes.push(format!(
            "largest subject drop: {worst} ({:.4})",
            comparison.max_subject_drop
        ));
    }
    let changed_jsonl: String = changed
        .iter()
        .map(|c| serde_json::to_string(c).expect("serializes") + "\n")
        .collect();
    let files = vec![
        (
            "correctness-summary.txt".to_string(),
            compare::summary_text(&comparison),
        ),
        (
            "comparison.json".to_string(),
            serde_json::to_string_pretty(&comparison).expect("serializes"),
        ),
        ("changed_answers.jsonl".to_string(), changed_jsonl),
    ];
    Summary {
        metrics,
        changed,
        notes,
        tables,
        files,
    }
}

/// Changed answers named as they are found; all are in the file.
pub(super) const NOTE_LIMIT: usize = 20;

/// Changed answers listed in the report's table; all are in the file.
pub(super) const TABLE_LIMIT: usize = 200;

pub(super) fn answer(c: Option<char>) -> String {
    c.map_or("no answer".to_string(), String::from)
}

/// Per subject, worst drop first: the subject to look at.
pub(super) fn subject_table(comparison: &Comparison) -> DetailTable {
    let mut rows: Vec<&compare::SubjectRow> = comparison.rows.iter().collect();
    rows.sort_by(|a, b| a.difference.total_cmp(&b.difference));
    DetailTable {
        title: "MMLU accuracy per subject".into(),
        columns: ["Subject", "Questions", "Baseline", "LMCache", "Change"]
            .map(String::from)
            .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.subject.clone(),
                    r.num_questions.to_string(),
                    format!("{:.4}", r.baseline),
                    format!("{:.4}", r.lmcache),
                    format!("{:+.4}", r.difference),
                ]
            })
            .collect(),
        omitted_rows: 0,
    }
}

pub(super) fn changed_table(changed: &[Changed]) -> DetailTable {
    DetailTable {
        title: format!("Changed answers ({})", changed.len()),
        columns: ["Subject", "Question", "Correct", "Baseline", "LMCache"]
            .map(String::from)
            .to_vec(),
        rows: changed
            .iter()
            .take(TABLE_LIMIT)
            .map(|c| {
                vec![
                    c.subject.clone(),
                    c.index.to_string(),
                    c.label.to_string(),
                    answer(c.baseline),
                    answer(c.lmcache),
                ]
            })
            .collect(),
        omitted_rows: changed.len().saturating_sub(TABLE_LIMIT),
    }
}
