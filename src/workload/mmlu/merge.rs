//! Shards of an MMLU test merged: their records read back and compared as
//! one run's.

use indexmap::IndexMap;

use super::measure::{role_metrics, summarize};
use super::records::{records_jsonl, records_of, Record};
use crate::results::Role;
use crate::workload::api::{Merged, PartError, ShardPart};

/// A test split by subject over shards: every shard's answers together,
/// in the unsharded run's subject order, scored and compared as one run
/// would.
pub(super) fn merge_parts(parts: &[ShardPart<'_>], order: &[String]) -> Result<Merged, PartError> {
    let mut answers: IndexMap<Role, Vec<Record>> = IndexMap::new();
    let mut dir_rel = String::new();
    for part in parts {
        for role in [Role::Baseline, Role::Lmcache] {
            let suffix = format!("{role}_questions.jsonl");
            let Some(rel) = part.record.files.iter().find(|f| f.ends_with(&suffix)) else {
                return Err(PartError {
                    path: part.dir.join(&part.record.name),
                    why: format!("test `{}` lists no {suffix}", part.record.name),
                });
            };
            dir_rel = rel.strip_suffix(&suffix).unwrap_or_default().to_string();
            let bytes = (part.read)(rel)?;
            answers
                .entry(role)
                .or_default()
                .extend(records_of(&bytes, &part.dir.join(rel))?);
        }
    }
    let rank: IndexMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    for records in answers.values_mut() {
        records.sort_by_key(|r| (rank.get(r.subject.as_str()).copied(), r.index));
    }
    let (b, l) = (&answers[&Role::Baseline], &answers[&Role::Lmcache]);
    let summary = summarize(b, l);
    let mut files = vec![
        (
            format!("{dir_rel}{}_questions.jsonl", Role::Baseline),
            records_jsonl(b),
        ),
        (
            format!("{dir_rel}{}_questions.jsonl", Role::Lmcache),
            records_jsonl(l),
        ),
    ];
    files.extend(
        summary
            .files
            .into_iter()
            .map(|(name, body)| (format!("{dir_rel}{name}"), body)),
    );
    Ok(Merged {
        metrics: IndexMap::from([
            (Role::Baseline, role_metrics(b)),
            (Role::Lmcache, role_metrics(l)),
        ]),
        compared: summary.metrics,
        summary: format!("{} questions of {} subjects", l.len(), order.len()),
        notes: summary.notes,
        tables: summary.tables,
        files,
    })
}
