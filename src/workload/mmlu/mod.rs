//! MMLU correctness: the same questions to baseline and LMCache (each prompt
//! twice on LMCache, store then load), scored with the reference's parser,
//! compared per subject and per question.

pub(crate) mod compare;
pub(crate) mod data;
pub(crate) mod prompt;
pub(crate) mod scores;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::compare::{Comparison, SubjectScore};
use futures_util::future::BoxFuture;

use self::data::DataError;
pub(crate) use self::prompt::Variant;
use super::api::{
    own, Ctx, ErrorClass, Merged, Output, PartError, ShardPart, Workload, WorkloadError,
    WorkloadKind,
};
use super::progress::Progress;
use crate::client::{ClientError, OpenAiClient};
use crate::config::{
    at_least_one, invalid, seconds_ok, ConfigError, Invalid, KindParams, RunConfig, TestKind,
    TestParams, Typing, Wants,
};
use crate::results::{DetailTable, Metric, Role};
use schemars::SchemaGenerator;

/// Parameters of the MMLU test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MmluParams {
    /// `data.tar.xz`, an extracted `data/` directory, or `builtin` (a small
    /// generated dataset, for the sim).
    pub data: String,
    /// Where an archive is extracted (default: `<results dir>/mmlu_data`).
    pub extract_dir: Option<PathBuf>,
    /// The first N subjects in sorted order (the pipeline passes 25).
    pub number_of_subjects: usize,
    /// Explicit subjects; overrides `number_of_subjects`.
    pub subjects: Vec<String>,
    /// At most this many test questions per subject (all when absent).
    pub max_questions_per_subject: Option<usize>,
    pub variant: Variant,
    /// Few-shot examples from `dev`, at most.
    pub num_fewshot: usize,
    /// Stop adding examples once their tokens (the server's `/tokenize`,
    /// when it has one) would exceed this.
    pub fewshot_token_budget: Option<u64>,
    /// Default: 2 for `lmcache`, 3 for `dynamo`.
    pub max_tokens: Option<u32>,
    pub seed: u64,
    pub max_inflight_requests: usize,
    /// One request at a time, as the original scripts did.
    pub sequential: bool,
    /// On the LMCache engine send each prompt twice and score the second.
    pub store_then_load: bool,
    pub store_load_pause_secs: f64,
    /// With `store_then_load`: every question is asked once (the store
    /// pass), then again one at a time, each right after the engine's GPU
    /// prefix cache was emptied (vLLM's `POST /reset_prefix_cache`, served
    /// with `VLLM_SERVER_DEV_MODE=1`): the load pass, scored, whose prefixes
    /// only LMCache can serve. With vLLM's prefix caching on, the second ask
    /// is otherwise the GPU's hit and never reads LMCache's KV back.
    /// `load_pass_external_pct` says how much of it LMCache served.
    pub reset_prefix_cache: bool,
    /// With `store_then_load` and `reset_prefix_cache`: the baseline asks
    /// each question twice in a row too and its second answer (its prefix
    /// from vLLM's own GPU prefix cache) is the one compared, like with
    /// like: on vLLM 0.26 a reused prefix is answered otherwise than a
    /// fresh prefill now and then even batch invariant, from either cache
    /// (docs/runs/2026-12-06-h200-real-weights/: 4 of 372 answers).
    pub baseline_reuses_prefix: bool,
    /// Attempts after the first for a request that fails.
    pub max_retries: u32,
}

impl Default for MmluParams {
    fn default() -> Self {
        Self {
            data: "data.tar.xz".to_string(),
            extract_dir: None,
            number_of_subjects: 25,
            subjects: Vec::new(),
            max_questions_per_subject: None,
            variant: Variant::Lmcache,
            num_fewshot: 5,
            fewshot_token_budget: Some(4000),
            max_tokens: None,
            seed: 42,
            max_inflight_requests: 16,
            sequential: false,
            store_then_load: true,
            store_load_pause_secs: 0.5,
            reset_prefix_cache: false,
            baseline_reuses_prefix: true,
            max_retries: 3,
        }
    }
}

impl MmluParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.number_of_subjects == 0 && self.subjects.is_empty() {
            return invalid(
                Some("number_of_subjects"),
                "must be at least 1 (or name the subjects)",
            );
        }
        at_least_one(&[("max_inflight_requests", self.max_inflight_requests as u64)])?;
        if !seconds_ok(self.store_load_pause_secs) {
            return invalid(
                Some("store_load_pause_secs"),
                "must be zero or more seconds",
            );
        }
        Ok(())
    }
}

impl KindParams for MmluParams {
    fn validate(&self) -> Result<(), Invalid> {
        MmluParams::validate(self)
    }

    fn wants(&self) -> Vec<Wants> {
        (self.data != "builtin")
            .then(|| Wants::File {
                key: "data",
                path: self.data.clone(),
                fix: "give the MMLU data.tar.xz (or its extracted data/ directory), e.g. --set tests.NAME.data=PATH, or \"builtin\"",
            })
            .into_iter()
            .collect()
    }

    fn tokens_per_trial(&self) -> f64 {
        question_tokens(self) * (self.number_of_subjects.max(self.subjects.len()) * 100) as f64
    }

    fn set_sequential(&mut self) {
        self.sequential = true;
    }
}

impl WorkloadKind for Kind {
    fn prepare(
        &self,
        params: &TestParams,
        results_dir: &Path,
        suite_dir: &Path,
    ) -> Result<(), WorkloadError> {
        locate_data(own::<MmluParams>(params), results_dir, suite_dir)?;
        Ok(())
    }

    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(Mmlu::new(own::<MmluParams>(params).clone()))
    }

    /// Its subjects, each costing its questions.
    fn parts(
        &self,
        params: &TestParams,
        results_dir: &Path,
        suite_dir: &Path,
    ) -> Result<Vec<(String, f64)>, WorkloadError> {
        let p = own::<MmluParams>(params);
        let per_question = question_tokens(p);
        Ok(subject_sizes(p, results_dir, suite_dir)?
            .into_iter()
            .map(|(s, n)| (s, n as f64 * per_question))
            .collect())
    }

    fn only(&self, params: &TestParams, parts: &[String]) -> TestParams {
        let mut part = params.clone();
        if let Some(p) = part.get_mut::<MmluParams>() {
            p.subjects = parts.to_vec();
        }
        part
    }

    fn merge(
        &self,
        parts: &[ShardPart<'_>],
        order: &[String],
    ) -> Option<Result<Merged, PartError>> {
        Some(merge_parts(parts, order))
    }
}

/// A test split by subject over shards: every shard's answers together,
/// in the unsharded run's subject order, scored and compared as one run
/// would.
fn merge_parts(parts: &[ShardPart<'_>], order: &[String]) -> Result<Merged, PartError> {
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

/// One engine's answers as a shard wrote them; a line that is no answer
/// refuses the merge, naming the file and line.
fn records_of(bytes: &[u8], path: &Path) -> Result<Vec<Record>, PartError> {
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

/// Tokens one MMLU question costs over both engines (few-shot examples of
/// ~100 tokens each, LMCache asked twice).
pub(crate) fn question_tokens(p: &MmluParams) -> f64 {
    let passes = if p.store_then_load { 3.0 } else { 2.0 };
    passes * 100.0 * (p.num_fewshot + 1) as f64 / 2.0
}

/// The kind `mmlu`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "mmlu"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<MmluParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<MmluParams>().to_value()
    }

    fn metrics(&self) -> &'static [&'static str] {
        &[
            "accuracy",
            "accuracy_unweighted",
            "questions",
            "failed_requests",
            "paired_questions",
            "right_to_wrong",
            "wrong_to_right",
            "accuracy_drop",
            "accuracy_drop_unweighted",
            "max_subject_drop",
            "max_subject_change",
            "changed_answers",
            "load_pass_external_pct",
        ]
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("accuracy_drop", "metric = \"accuracy_drop\"\nmax = 0.01"),
            ("changed_answers", "metric = \"changed_answers\"\nmax = 0"),
        ]
    }

    fn method(&self, metric: &str, _relative: bool) -> Option<&'static str> {
        (metric == "accuracy_drop").then_some(crate::results::method::MCNEMAR)
    }

    fn judges_outputs(&self) -> bool {
        true
    }
}

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
fn chosen_subjects(params: &MmluParams, data_dir: &Path) -> Result<Vec<String>, MmluError> {
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

fn locate_data(
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
    let model = super::shared::resolve_model(client, model).await?;
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
    let before = super::shared::LoadShare::read(client).await;
    let mut loaded = ask.pass(plan, Pass::LoadAfterReset, progress).await?;
    let after = super::shared::LoadShare::read(client).await;
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
            .and_then(|(b, a)| super::shared::LoadShare::metric(&b, &a)),
    })
}

/// How a pass asks each question.
#[derive(Clone, Copy)]
enum Pass {
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
struct Asking<'a> {
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
        let answers = super::shared::bounded(plan.items.clone(), limit, |item| {
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
async fn ask(
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

pub(crate) fn records_jsonl(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("record serializes") + "\n")
        .collect()
}

/// Writes `mmlu/<file>` and returns its path relative to the results dir.
pub(crate) fn write_file(
    results_dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<String, WorkloadError> {
    super::shared::write_output(results_dir, "mmlu", name, bytes)
}

/// Changed answers named as they are found; all are in the file.
const NOTE_LIMIT: usize = 20;
/// Changed answers listed in the report's table; all are in the file.
const TABLE_LIMIT: usize = 200;

/// The MMLU test: prompts built once (with the first engine's tokenizer)
/// and sent unchanged to every engine, then compared per question.
pub(crate) struct Mmlu {
    params: MmluParams,
    plan: Option<(Plan, String)>,
    records: IndexMap<Role, Vec<Record>>,
}

impl Mmlu {
    pub(crate) fn new(params: MmluParams) -> Self {
        Self {
            params,
            plan: None,
            records: IndexMap::new(),
        }
    }
}

impl Workload for Mmlu {
    fn plan<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let (_, client) = ctx.engine(first)?;
            let model = super::shared::resolve_model(&client, ctx.model).await?;
            let plan = plan(
                &self.params,
                ctx.out_dir,
                ctx.suite_dir,
                Some((&client, &model)),
            )
            .await?;
            let mut counts: Vec<usize> = plan.fewshot_used.values().copied().collect();
            counts.sort_unstable();
            counts.dedup();
            (ctx.say)(format!(
                "{} questions from {} subjects ({}), few-shot examples per subject: {}",
                plan.items.len(),
                plan.subjects.len(),
                plan.data_dir.display(),
                counts
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            self.plan = Some((plan, model));
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        _phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let p = &self.params;
            let (target, client) = ctx.engine(role)?;
            let (plan, model) = self.plan.as_ref().expect("planned before the first engine");
            // The baseline's scored answer reuses a prefix where LMCache's
            // does (its load pass, after resets): like with like.
            let twice = p.store_then_load
                && (role == Role::Lmcache || (p.reset_prefix_cache && p.baseline_reuses_prefix));
            // Only LMCache's GPU cache is emptied: the baseline's second ask
            // must find its prefix there.
            let mut asked = p.clone();
            asked.reset_prefix_cache &= role == Role::Lmcache;
            (ctx.say)(format!(
                "asking {role} (`{}`){}",
                target.name,
                if twice {
                    ", each prompt twice (store, then load)"
                } else {
                    ""
                }
            ));
            let Answered {
                records,
                load_share,
            } = run(
                &client,
                model,
                &asked,
                plan,
                &target.name,
                twice,
                ctx.progress,
            )
            .await?;
            let mut metrics = role_metrics(&records);
            metrics.extend(load_share);
            (ctx.say)(format!(
                "{role}: accuracy {:.4} over {} questions, {} failed requests",
                metrics["accuracy"].value,
                metrics["questions"].value,
                metrics["failed_requests"].value
            ));
            let files = [
                (
                    legacy_name(p.variant, role.as_str(), model),
                    legacy_jsonl(&scores(&records)),
                ),
                (format!("{role}_questions.jsonl"), records_jsonl(&records)),
            ];
            for (file, body) in files {
                out.files
                    .push(write_file(ctx.out_dir, &file, body.as_bytes())?);
            }
            out.metrics.insert(role, metrics);
            self.records.insert(role, records);
            Ok(())
        })
    }

    fn finish(&mut self, ctx: &Ctx<'_>, out: &mut Output) -> Result<(), WorkloadError> {
        let (Some(b), Some(l)) = (
            self.records.get(&Role::Baseline),
            self.records.get(&Role::Lmcache),
        ) else {
            return Err(WorkloadError::NeedsEngine {
                test: ctx.test.to_string(),
                what: "both a baseline and an LMCache engine".into(),
            });
        };
        let summary = summarize(b, l);
        for c in summary.changed.iter().take(NOTE_LIMIT) {
            (ctx.say)(format!(
                "changed answer: {} question {} (correct {}): baseline {}, LMCache {}",
                c.subject,
                c.index,
                c.label,
                answer(c.baseline),
                answer(c.lmcache)
            ));
        }
        if let Some(m) = out.metrics.get_mut(&Role::Lmcache) {
            m.extend(summary.metrics);
        }
        out.notes.extend(summary.notes);
        out.tables.extend(summary.tables);
        for (file, body) in summary.files {
            out.files
                .push(write_file(ctx.out_dir, &file, body.as_bytes())?);
        }
        Ok(())
    }
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

fn answer(c: Option<char>) -> String {
    c.map_or("no answer".to_string(), String::from)
}

/// Per subject, worst drop first: the subject to look at.
fn subject_table(comparison: &Comparison) -> DetailTable {
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

fn changed_table(changed: &[Changed]) -> DetailTable {
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
