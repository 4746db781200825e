//! What an MMLU pass produces: the questions planned, each answer recorded,
//! and the files they are written to (the reference's names and formats).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::compare::SubjectScore;
use super::data::DataError;
use super::prompt::Variant;
use crate::config::RunConfig;
use crate::workload::api::{ErrorClass, PartError, WorkloadError};

/// One question, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub subject: String,
    pub index: usize,
    pub label: char,
    pub prompt: String,
}

/// The prompts of a run, built once and sent to every engine.
#[derive(Debug)]
pub(crate) struct Plan {
    pub items: Vec<Item>,
    pub subjects: Vec<String>,
    pub fewshot_used: IndexMap<String, usize>,
    pub data_dir: PathBuf,
}

/// What one engine answered to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub subject: String,
    pub index: usize,
    pub label: char,
    /// `None` when every attempt failed: such a question is counted as a
    /// failure and as wrong, never scored as "A".
    pub prediction: Option<char>,
    pub raw: Option<String>,
    /// The store pass's answer on the LMCache engine.
    pub store_raw: Option<String>,
    pub engine: String,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MmluError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("failed to find MMLU subject `{subject}` in {dir}; available: {available}")]
    UnknownSubject {
        subject: String,
        dir: PathBuf,
        available: String,
    },
    #[error("failed to write the generated MMLU data in {path}: {source}")]
    Builtin {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<MmluError> for WorkloadError {
    fn from(e: MmluError) -> Self {
        WorkloadError::Kind(e.class(), Box::new(e))
    }
}

impl MmluError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            MmluError::Builtin { .. } => ErrorClass::Setup,
            MmluError::Data(_) | MmluError::UnknownSubject { .. } => ErrorClass::BadInput,
        }
    }
}

pub(crate) fn records_jsonl(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("record serializes") + "\n")
        .collect()
}

/// One engine's answers as a shard wrote them; a line that is no answer
/// refuses the merge, naming the file and line.
pub(super) fn records_of(bytes: &[u8], path: &Path) -> Result<Vec<Record>, PartError> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| {
            serde_json::from_slice(l).map_err(|e| PartError {
                path: path.to_path_buf(),
                why: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Writes `mmlu/<file>` and returns its path relative to the results dir.
pub(crate) fn write_file(
    results_dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<String, WorkloadError> {
    crate::workload::shared::write_output(results_dir, "mmlu", name, bytes)
}

/// The jsonl file of today's scripts: one `{"<subject>": {...}}` per line,
/// then `{"total": {...}}` with the unweighted mean, as they wrote it.
pub(crate) fn legacy_jsonl(scores: &IndexMap<String, SubjectScore>) -> String {
    let mut out = String::new();
    for (s, x) in scores {
        out.push_str(
            &json!({ s: {"accuracy": x.accuracy, "num_questions": x.num_questions} }).to_string(),
        );
        out.push('\n');
    }
    let total_n: u64 = scores.values().map(|x| x.num_questions).sum();
    let mean = scores.values().map(|x| x.accuracy).sum::<f64>() / scores.len().max(1) as f64;
    out.push_str(&json!({"total": {"accuracy": mean, "num_questions": total_n}}).to_string());
    out.push('\n');
    out
}

pub(crate) fn legacy_name(variant: Variant, role: &str, model: &str) -> String {
    match variant {
        Variant::Lmcache | Variant::LmcacheHttp => {
            format!("{}-{role}.jsonl", RunConfig::model_tail(model))
        }
        Variant::Dynamo => format!("dynamo-{role}-{}.jsonl", RunConfig::model_tail(model)),
    }
}
