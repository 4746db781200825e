//! Comparing MMLU result files written by today's Python scripts: pair
//! each model's baseline and LMCache files, compare them and gate the
//! accuracy drops, so a team can adopt the tool one step at a time.

use std::path::PathBuf;

use indexmap::IndexMap;

use crate::config::{CheckConfig, Role};
use crate::gate;
use crate::results::ErrorClass;
use crate::results::{Metric, Verdict};
use crate::workload::mmlu::compare::{compare, summary_text};
use crate::workload::mmlu::comparison_metrics;
use crate::workload::mmlu::scores::{parse_name, read_scores, ScoresError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CompareError {
    #[error(transparent)]
    Scores(#[from] ScoresError),
    #[error("no {missing} file for model `{model}` (have {have}); pass both files of each run")]
    Unpaired {
        model: String,
        missing: &'static str,
        have: PathBuf,
    },
}

impl CompareError {
    /// The files given.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// The result of comparing one pair of files.
pub(crate) struct PairReport {
    pub model: String,
    pub text: String,
    pub passed: bool,
}

pub(crate) fn run(
    files: &[PathBuf],
    max_accuracy_drop: f64,
    max_subject_drop: f64,
) -> Result<Vec<PairReport>, CompareError> {
    let mut pairs: IndexMap<(&'static str, String), IndexMap<Role, PathBuf>> = IndexMap::new();
    for f in files {
        let (scheme, model, role) =
            parse_name(f).ok_or_else(|| ScoresError::Name { path: f.clone() })?;
        pairs
            .entry((scheme, model))
            .or_default()
            .insert(role, f.clone());
    }
    let checks: IndexMap<String, CheckConfig> = [
        ("accuracy_drop", max_accuracy_drop),
        ("max_subject_drop", max_subject_drop),
    ]
    .into_iter()
    .map(|(metric, max)| {
        (
            metric.to_string(),
            CheckConfig {
                max: Some(max),
                ..CheckConfig::on(metric)
            },
        )
    })
    .collect();
    let mut reports = Vec::new();
    for ((_, model), roles) in pairs {
        let get = |role: Role, missing: &'static str| {
            roles.get(&role).ok_or_else(|| CompareError::Unpaired {
                model: model.clone(),
                missing,
                have: roles.values().next().cloned().unwrap_or_default(),
            })
        };
        let (b, l) = (
            get(Role::Baseline, "baseline")?,
            get(Role::Lmcache, "lmcache")?,
        );
        let c = compare(&read_scores(b)?, &read_scores(l)?);
        let metrics: IndexMap<Role, IndexMap<String, Metric>> =
            IndexMap::from([(Role::Lmcache, comparison_metrics(&c, None))]);
        let kind = &crate::workload::mmlu::Kind;
        let outcomes = gate::evaluate(kind, &checks, &metrics, &crate::results::Paired::new());
        let mut text = format!(
            "== {model}: {} vs {}\n{}",
            b.display(),
            l.display(),
            summary_text(&c)
        );
        for o in &outcomes {
            text.push_str(&format!(
                "{}: {:.4} <= {:.4}: {}\n",
                o.metric,
                o.value.unwrap_or(f64::NAN),
                o.threshold,
                if o.verdict == Verdict::Pass {
                    "pass"
                } else {
                    "FAIL"
                }
            ));
        }
        reports.push(PairReport {
            passed: outcomes.iter().all(|o| o.verdict == Verdict::Pass),
            model,
            text,
        });
    }
    Ok(reports)
}
