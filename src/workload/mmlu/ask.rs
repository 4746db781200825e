//! Asking the questions: the data located and planned, then each engine
//! asked (LMCache twice, store then load), its answers recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::json;

use super::data::{self};
use super::params::MmluParams;
use super::prompt::{self};
use super::records::{Item, MmluError, Plan, Record};
use crate::client::{ClientError, OpenAiClient};
use crate::results::Metric;
use crate::workload::api::WorkloadError;
use crate::workload::progress::Progress;

/// Prepares data and prompts. `tokenizer` measures few-shot examples when
/// the suite gives a token budget and the server can tokenize.
pub(crate) async fn plan(
    params: &MmluParams,
    results_dir: &Path,
    suite_dir: &Path,
    tokenizer: Option<(&OpenAiClient, &str)>,
) -> Result<Plan, WorkloadError> {
    let data_dir = locate_data(params, results_dir, suite_dir).map_err(WorkloadError::from)?;
    let subjects = chosen_subjects(params, &data_dir).map_err(WorkloadError::from)?;
    let mut items = Vec::new();
    let mut fewshot_used = IndexMap::new();
    for subject in &subjects {
        let read = |kind: &str| {
            data::read_questions(&data_dir.join(kind).join(format!("{subject}_{kind}.csv")))
        };
        let dev = read("dev").map_err(|e| WorkloadError::from(MmluError::from(e)))?;
        let test = read("test").map_err(|e| WorkloadError::from(MmluError::from(e)))?;
        let mut head = prompt::header(params.variant, subject);
        let mut used = 0;
        let mut spent = 0u64;
        for example in dev.iter().take(params.num_fewshot) {
            let text = prompt::format_example(params.variant, example, true);
            if let (Some(budget), Some((client, model))) = (params.fewshot_token_budget, tokenizer)
            {
                let n = client
                    .tokenize_count(model, &text)
                    .await
                    .map_err(WorkloadError::client(client))?;
                if let Some(n) = n {
                    if spent + n > budget {
                        break;
                    }
                    spent += n;
                }
            }
            head.push_str(&text);
            used += 1;
        }
        fewshot_used.insert(subject.clone(), used);
        let limit = params.max_questions_per_subject.unwrap_or(usize::MAX);
        for (index, q) in test.iter().take(limit).enumerate() {
            items.push(Item {
                subject: subject.clone(),
                index,
                label: q.answer,
                prompt: prompt::prompt(&head, params.variant, q),
            });
        }
    }
    Ok(Plan {
        items,
        subjects,
        fewshot_used,
        data_dir,
    })
}

/// The subjects a run asks: the suite's list (each must exist), or the
/// first `number_of_subjects` in sorted order.
pub(super) fn chosen_subjects(
    params: &MmluParams,
    data_dir: &Path,
) -> Result<Vec<String>, MmluError> {
    let all = data::subjects(data_dir)?;
    if params.subjects.is_empty() {
        return Ok(all.into_iter().take(params.number_of_subjects).collect());
    }
    if let Some(s) = params.subjects.iter().find(|s| !all.contains(s)) {
        return Err(MmluError::UnknownSubject {
            subject: s.clone(),
            dir: data_dir.to_path_buf(),
            available: all.join(", "),
        });
    }
    Ok(params.subjects.clone())
}

/// The subjects a run asks and how many questions each: what a sharded
/// suite splits an MMLU test by.
pub(crate) fn subject_sizes(
    params: &MmluParams,
    results_dir: &Path,
    suite_dir: &Path,
) -> Result<Vec<(String, usize)>, MmluError> {
    let data_dir = locate_data(params, results_dir, suite_dir)?;
    let limit = params.max_questions_per_subject.unwrap_or(usize::MAX);
    chosen_subjects(params, &data_dir)?
        .into_iter()
        .map(|s| {
            let path = data_dir.join("test").join(format!("{s}_test.csv"));
            let n = data::read_questions(&path)?.len().min(limit);
            Ok((s, n))
        })
        .collect()
}

pub(super) fn locate_data(
    params: &MmluParams,
    results_dir: &Path,
    suite_dir: &Path,
) -> Result<PathBuf, MmluError> {
    let into = params
        .extract_dir
        .clone()
        .unwrap_or_else(|| results_dir.join("mmlu_data"));
    if params.data == "builtin" {
        let dir = into.join("builtin");
        data::write_builtin(&dir).map_err(|source| MmluError::Builtin {
            path: dir.clone(),
            source,
        })?;
        return Ok(dir);
    }
    let source = suite_dir.join(&params.data);
    Ok(data::prepare(&source, &into)?.data_dir)
}

/// What one engine answered, and, for a load pass that emptied the GPU's
/// prefix cache before each question, how much of it LMCache served.
pub(crate) struct Answered {
    pub records: Vec<Record>,
    pub load_share: Option<(String, Metric)>,
}

/// Sends every question to one engine; `store_then_load` sends each twice:
/// at once (the reference), or, with `reset_prefix_cache`, as a store pass
/// over every question, then a load pass that empties the GPU's prefix
/// cache before each question.
pub(crate) async fn run(
    client: &OpenAiClient,
    model: &str,
    params: &MmluParams,
    plan: &Plan,
    engine: &str,
    store_then_load: bool,
    progress: &Arc<Progress>,
) -> Result<Answered, WorkloadError> {
    let model = crate::workload::shared::resolve_model(client, model).await?;
    let ask = Asking {
        client,
        model: &model,
        params,
        engine,
    };
    if !(store_then_load && params.reset_prefix_cache) {
        progress.start("questions", plan.items.len() as u64);
        let records = ask
            .pass(
                plan,
                Pass::Once {
                    twice: store_then_load,
                },
                progress,
            )
            .await?;
        return Ok(Answered {
            records,
            load_share: None,
        });
    }
    progress.start("store pass", plan.items.len() as u64);
    let stored = ask
        .pass(plan, Pass::Once { twice: false }, progress)
        .await?;
    progress.start("load pass", plan.items.len() as u64);
    let before = crate::workload::shared::LoadShare::read(client).await;
    let mut loaded = ask.pass(plan, Pass::LoadAfterReset, progress).await?;
    let after = crate::workload::shared::LoadShare::read(client).await;
    // The load pass is scored; the store pass's answer is kept beside it,
    // and a question that failed to store is not counted as loaded.
    for (l, s) in loaded.iter_mut().zip(stored) {
        l.attempts += s.attempts;
        match s.raw {
            Some(raw) => l.store_raw = Some(raw),
            None => {
                l.prediction = None;
                l.raw = None;
                l.error = s.error.or(Some("the store pass failed".into()));
            }
        }
    }
    Ok(Answered {
        records: loaded,
        load_share: before
            .zip(after)
            .and_then(|(b, a)| crate::workload::shared::LoadShare::metric(&b, &a)),
    })
}

/// How a pass asks each question.
#[derive(Clone, Copy)]
pub(super) enum Pass {
    /// Once, or twice in a row with the second scored (`twice`).
    Once { twice: bool },
    /// One question at a time, each after the GPU's prefix cache was
    /// emptied: vLLM refuses a reset while requests run, and a single reset
    /// before the pass is not enough (on the H200 the few-shot header every
    /// question of a subject shares was back on the GPU after its first
    /// question, and LMCache served 13 % of what it was asked).
    LoadAfterReset,
}

/// One engine's side of a pass over the questions.
pub(super) struct Asking<'a> {
    client: &'a OpenAiClient,
    model: &'a str,
    params: &'a MmluParams,
    engine: &'a str,
}

impl Asking<'_> {
    /// Every question as `how` says, in plan order. A failed reset ends
    /// the pass: without it the answers would not be LMCache's.
    async fn pass(
        &self,
        plan: &Plan,
        how: Pass,
        progress: &Arc<Progress>,
    ) -> Result<Vec<Record>, WorkloadError> {
        let params = self.params;
        let (limit, twice, reset) = match how {
            Pass::Once { twice } if !params.sequential => {
                (params.max_inflight_requests, twice, false)
            }
            Pass::Once { twice } => (1, twice, false),
            Pass::LoadAfterReset => (1, false, true),
        };
        let max_tokens = params.max_tokens.unwrap_or(params.variant.max_tokens());
        let pause = Duration::from_secs_f64(params.store_load_pause_secs.max(0.0));
        let retries = params.max_retries;
        let seed = params.seed;
        let answers = crate::workload::shared::bounded(plan.items.clone(), limit, |item| {
            let client = self.client.clone();
            let model = self.model.to_string();
            let engine = self.engine.to_string();
            let progress = progress.clone();
            async move {
                if reset {
                    WorkloadError::reset_before_load(&client).await?;
                }
                let body = json!({
                    "model": model,
                    "prompt": item.prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "seed": seed,
                    "n": 1,
                    "stream": false,
                });
                let mut attempts = 0;
                let mut store_raw = None;
                let mut outcome = ask(&client, &body, retries, &mut attempts).await;
                if twice && outcome.is_ok() {
                    store_raw = outcome.as_ref().ok().cloned();
                    tokio::time::sleep(pause).await;
                    outcome = ask(&client, &body, retries, &mut attempts).await;
                }
                progress.finished(outcome.is_ok());
                let (prediction, raw, error) = match outcome {
                    Ok(text) => (Some(prompt::parse_answer(&text)), Some(text), None),
                    Err(e) => (None, None, Some(e.to_string())),
                };
                Ok::<_, WorkloadError>(Record {
                    subject: item.subject,
                    index: item.index,
                    label: item.label,
                    prediction,
                    raw,
                    store_raw,
                    engine,
                    attempts,
                    error,
                })
            }
        })
        .await;
        answers.into_iter().collect()
    }
}

/// One completion, retried with backoff on failure.
pub(super) async fn ask(
    client: &OpenAiClient,
    body: &serde_json::Value,
    retries: u32,
    attempts: &mut u32,
) -> Result<String, ClientError> {
    let mut delay = Duration::from_millis(200);
    loop {
        *attempts += 1;
        match client.completion(body).await {
            Ok((text, _)) => return Ok(text),
            Err(e) if *attempts > retries => return Err(e),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
