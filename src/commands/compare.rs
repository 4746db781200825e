//! `lmcache-e2e compare`: the MMLU comparison and gate on jsonl files written
//! by today's Python scripts, so a team can adopt the tool one step at a time.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use crate::config::{CheckConfig, Role};
use crate::gate;
use crate::results::{Metric, Verdict};
use crate::workload::mmlu::compare::{compare, summary_text, SubjectScore};
use crate::workload::mmlu::comparison_metrics;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CompareError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path} line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} is not named like an MMLU result (`<model>-baseline.jsonl`, `<model>-lmcache.jsonl`, `dynamo-baseline-<model>.jsonl` or `dynamo-lmcache-<model>.jsonl`)")]
    Name { path: PathBuf },
    #[error("no {missing} file for model `{model}` (have {have}); pass both files of each run")]
    Unpaired {
        model: String,
        missing: &'static str,
        have: PathBuf,
    },
}

/// `compare FILES...`: prints each model's report and fails (exit 1) on a
/// regression.
pub(crate) fn command(args: &crate::cli::CompareArgs) -> Result<(), crate::error::Error> {
    let reports = run(&args.files, args.max_accuracy_drop, args.max_subject_drop)?;
    for r in &reports {
        println!("{}", r.text);
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.model.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Failed(format!(
            "LMCache changed MMLU accuracy beyond the thresholds for: {}",
            failed.join(", ")
        )))
    }
}

/// The scheme, model and role a result file name says.
fn parse_name(path: &Path) -> Option<(&'static str, String, Role)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".jsonl")?;
    for (prefix, role) in [
        ("dynamo-baseline-", Role::Baseline),
        ("dynamo-lmcache-", Role::Lmcache),
    ] {
        if let Some(model) = name.strip_prefix(prefix) {
            return Some(("dynamo", model.to_string(), role));
        }
    }
    for (suffix, role) in [("-baseline", Role::Baseline), ("-lmcache", Role::Lmcache)] {
        if let Some(model) = name.strip_suffix(suffix) {
            return Some(("lmcache", model.to_string(), role));
        }
    }
    None
}

/// Reads `{"<subject>": {"accuracy", "num_questions"}}` lines; `total` is
/// recomputed, not trusted.
pub(crate) fn read_scores(path: &Path) -> Result<IndexMap<String, SubjectScore>, CompareError> {
    let text = std::fs::read_to_string(path).map_err(|source| CompareError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = IndexMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |message: String| CompareError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let obj = v
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| bad("expected one {\"<subject>\": {...}} object".into()))?;
        let (subject, score) = obj.iter().next().expect("one entry");
        if subject == "total" {
            continue;
        }
        let accuracy = score
            .get("accuracy")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("`{subject}` has no numeric accuracy")))?;
        let num_questions = score
            .get("num_questions")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("`{subject}` has no num_questions")))?;
        out.insert(
            subject.clone(),
            SubjectScore {
                accuracy,
                num_questions,
            },
        );
    }
    Ok(out)
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
            parse_name(f).ok_or_else(|| CompareError::Name { path: f.clone() })?;
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
        let outcomes = gate::evaluate(&checks, &metrics, &crate::results::Paired::new());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_naming_schemes_are_understood() {
        assert_eq!(
            parse_name(Path::new("d/Llama-3.1-8B-Instruct-lmcache.jsonl")),
            Some(("lmcache", "Llama-3.1-8B-Instruct".into(), Role::Lmcache))
        );
        assert_eq!(
            parse_name(Path::new("dynamo-baseline-Qwen3-0.6B.jsonl")),
            Some(("dynamo", "Qwen3-0.6B".into(), Role::Baseline))
        );
        assert_eq!(parse_name(Path::new("results.jsonl")), None);
    }
}
