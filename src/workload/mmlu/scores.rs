//! MMLU result files as today's Python scripts write them: their names
//! (`<model>-baseline.jsonl`, `dynamo-lmcache-<model>.jsonl`) and their
//! `{"<subject>": {"accuracy", "num_questions"}}` lines, read as hostile input.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use super::compare::SubjectScore;
use crate::results::Role;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ScoresError {
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
}

/// The scheme, model and role a result file name says.
pub(crate) fn parse_name(path: &Path) -> Option<(&'static str, String, Role)> {
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
pub(crate) fn read_scores(path: &Path) -> Result<IndexMap<String, SubjectScore>, ScoresError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScoresError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = IndexMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |message: String| ScoresError::Parse {
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
