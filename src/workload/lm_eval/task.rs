//! lm_eval tasks written from local data, for runners without the Hugging
//! Face hub: GSM8K from a `.jsonl` of the hub's rows, or MMLU from the
//! `data.tar.xz` LMCache's correctness suite reads, each as a
//! `generate_until` task YAML that `--include_path` finds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::workload::api::{ErrorClass, WorkloadError};
use crate::workload::mmlu::prompt::Variant;
use crate::workload::mmlu::{self, MmluParams};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    #[error("failed to read lm_eval data {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lm_eval data {path}, line {line}: {why}; give one JSON object per line with string fields `question` and `answer` (the rows of openai/gsm8k's test split), or MMLU's data.tar.xz")]
    Row {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("lm_eval data {path} holds no rows")]
    Empty { path: PathBuf },
    #[error("failed to write the lm_eval task {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<TaskError> for WorkloadError {
    fn from(e: TaskError) -> Self {
        let class = match e {
            TaskError::Write { .. } => ErrorClass::Setup,
            _ => ErrorClass::BadInput,
        };
        WorkloadError::Kind(class, Box::new(e))
    }
}

/// A task written for lm_eval: its name and the folder to include.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LocalTask {
    pub name: String,
    pub include: PathBuf,
}

/// The data's layout, from its name: `.jsonl`/`.json` rows are GSM8K's,
/// anything else (an archive, a folder, `builtin`) MMLU's.
fn is_gsm8k(data: &str) -> bool {
    data.ends_with(".jsonl") || data.ends_with(".json")
}

/// Writes the task for `data` (relative to `suite_dir`) under
/// `out/tasks`: at most `limit` rows, as lm_eval's `--limit` reads no more.
pub(crate) async fn write(
    data: &str,
    suite_dir: &Path,
    out: &Path,
    limit: usize,
) -> Result<LocalTask, WorkloadError> {
    let include = out.join("tasks");
    std::fs::create_dir_all(&include).map_err(|source| TaskError::Write {
        path: include.clone(),
        source,
    })?;
    if is_gsm8k(data) {
        let source = suite_dir.join(data);
        check_gsm8k(&source)?;
        let source = std::path::absolute(&source).map_err(|e| TaskError::Read {
            path: source.clone(),
            source: e,
        })?;
        return Ok(write_yaml(&include, "gsm8k_local", &gsm8k_yaml(&source))?);
    }
    let rows = include.join("mmlu_local.jsonl");
    write_mmlu_rows(data, suite_dir, out, limit, &rows).await?;
    Ok(write_yaml(&include, "mmlu_local", &mmlu_yaml(&rows))?)
}

fn write_yaml(include: &Path, name: &str, yaml: &str) -> Result<LocalTask, TaskError> {
    let path = include.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).map_err(|source| TaskError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(LocalTask {
        name: name.into(),
        include: include.to_path_buf(),
    })
}

/// Every line a JSON object with string `question` and `answer`: lm_eval
/// would otherwise fail deep in a template with no word of which row.
pub(crate) fn check_gsm8k(path: &Path) -> Result<(), TaskError> {
    let read = |source| TaskError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut rows = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        if line.trim().is_empty() {
            continue;
        }
        let row = |why: String| TaskError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| row(format!("not JSON ({e})")))?;
        for field in ["question", "answer"] {
            if !v.get(field).is_some_and(Value::is_string) {
                return Err(row(format!("no string `{field}`")));
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// MMLU's questions as LMCache's correctness suite asks them (its header,
/// five examples from `dev`, its answer cue), subject after subject.
async fn write_mmlu_rows(
    data: &str,
    suite_dir: &Path,
    out: &Path,
    limit: usize,
    rows: &Path,
) -> Result<(), WorkloadError> {
    let params = MmluParams {
        data: data.into(),
        extract_dir: Some(out.join("mmlu_data")),
        number_of_subjects: usize::MAX,
        variant: Variant::Lmcache,
        ..MmluParams::default()
    };
    let plan = mmlu::plan(&params, out, suite_dir, None).await?;
    let text: String = plan
        .items
        .iter()
        .take(limit)
        .map(|item| {
            serde_json::json!({
                "subject": item.subject,
                "prompt": item.prompt,
                "answer": item.label.to_string(),
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(rows, text).map_err(|source| TaskError::Write {
        path: rows.to_path_buf(),
        source,
    })?;
    Ok(())
}

/// A JSON string is a YAML scalar: paths and templates quoted either way.
fn quoted(s: &str) -> String {
    Value::String(s.into()).to_string()
}

fn header(name: &str, rows: &Path) -> String {
    format!(
        "task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\noutput_type: generate_until\n",
        quoted(&rows.display().to_string())
    )
}

/// lm_eval's own `gsm8k` task (5.0: its prompt, stops, answer extraction
/// and scoring) over local rows.
fn gsm8k_yaml(rows: &Path) -> String {
    header("gsm8k_local", rows)
        + r#####"doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["Question:", "</s>", "<|im_end|>"]
  do_sample: false
  temperature: 0.0
filter_list:
  - name: "strict-match"
    filter:
      - function: "regex"
        regex_pattern: "#### (\\-?[0-9\\.\\,]+)"
      - function: "take_first"
  - name: "flexible-extract"
    filter:
      - function: "regex"
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{2,})|(-?[0-9]+)"
      - function: "take_first"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore: [",", "\\$", "(?s).*#### ", "\\.$"]
metadata:
  version: 3.0
"#####
}

/// MMLU as a generation task: the suite's two-token answer, its letter.
fn mmlu_yaml(rows: &Path) -> String {
    header("mmlu_local", rows)
        + &format!(
            r#"doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\n"]
  max_gen_toks: {}
  do_sample: false
  temperature: 0.0
filter_list:
  - name: "first-letter"
    filter:
      - function: "regex"
        regex_pattern: "([ABCD])"
      - function: "take_first"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"#,
            Variant::Lmcache.max_tokens()
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_rows_are_checked_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gsm8k.jsonl");
        std::fs::write(
            &p,
            "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n\n{\"question\": 3}\n",
        )
        .unwrap();
        let e = check_gsm8k(&p).unwrap_err().to_string();
        assert!(
            e.contains("gsm8k.jsonl, line 3: no string `question`"),
            "{e}"
        );
        std::fs::write(&p, "not json\n").unwrap();
        let e = check_gsm8k(&p).unwrap_err().to_string();
        assert!(e.contains("line 1: not JSON"), "{e}");
        std::fs::write(&p, "\n").unwrap();
        assert!(check_gsm8k(&p)
            .unwrap_err()
            .to_string()
            .contains("holds no rows"));
        std::fs::write(&p, "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n").unwrap();
        check_gsm8k(&p).unwrap();
    }

    #[tokio::test]
    async fn gsm8k_task_points_at_the_rows_and_keeps_lm_evals_scoring() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("test.jsonl"),
            "{\"question\": \"1+1?\", \"answer\": \"2\\n#### 2\"}\n",
        )
        .unwrap();
        let t = write("test.jsonl", dir.path(), &dir.path().join("out"), 10)
            .await
            .unwrap();
        assert_eq!(t.name, "gsm8k_local");
        let yaml = std::fs::read_to_string(t.include.join("gsm8k_local.yaml")).unwrap();
        let rows = dir.path().join("test.jsonl").display().to_string();
        assert!(yaml.contains(&format!("    test: \"{rows}\"\n")), "{yaml}");
        assert!(yaml.contains("name: \"strict-match\""));
    }

    #[tokio::test]
    async fn mmlu_rows_are_the_correctness_suites_prompts_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let t = write("builtin", dir.path(), &out, 3).await.unwrap();
        assert_eq!(t.name, "mmlu_local");
        let rows = std::fs::read_to_string(t.include.join("mmlu_local.jsonl")).unwrap();
        let rows: Vec<Value> = rows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 3);
        let prompt = rows[0]["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("The following are multiple choice questions"));
        assert!(prompt.ends_with("Do not include any other text in your response. Answer:"));
        assert!(["A", "B", "C", "D"].contains(&rows[0]["answer"].as_str().unwrap()));
        let yaml = std::fs::read_to_string(t.include.join("mmlu_local.yaml")).unwrap();
        assert!(yaml.contains("max_gen_toks: 2\n"), "{yaml}");
        assert!(yaml.contains("doc_to_text: \"{{prompt}}\"\n"), "{yaml}");
    }
}
