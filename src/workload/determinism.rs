//! Determinism: the same prompts at temperature 0 to the LMCache engine
//! twice (store, then load) and, optionally, to the baseline engine; every
//! output must match per id. A differing or missing id fails, and the first
//! ones are shown with a short character-level diff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use futures_util::future::BoxFuture;

use super::api::{own, Ctx, ErrorClass, Output, Workload, WorkloadError, WorkloadKind};
use super::progress::Progress;
use crate::client::OpenAiClient;
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, invalid, seconds_ok, ConfigError, Invalid, KindParams, TestKind, TestParams,
    Typing, Wants,
};
use crate::results::{Metric, Role};
use schemars::SchemaGenerator;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeterminismParams {
    /// JSONL of `{"id": ..., "prompt": ...}`; the built-in set when absent.
    pub prompts: Option<PathBuf>,
    pub max_tokens: u32,
    pub seed: u64,
    /// Also ask the baseline engine and compare it with LMCache.
    pub compare_baseline: bool,
    /// Compare like with like: the baseline is asked twice too (store,
    /// then load with its prefix from vLLM's own GPU prefix cache), and
    /// each LMCache pass is compared with the baseline's same pass. On
    /// vLLM 0.26 a reused prefix is continued otherwise than a fresh
    /// prefill even batch invariant, from vLLM's cache as from LMCache's
    /// (docs/runs/2026-12-06-h200-real-weights/), so LMCache's load pass
    /// must match the baseline's load pass, not a fresh prefill. `false`:
    /// the baseline once, against LMCache's load, and LMCache's store
    /// against its load.
    pub baseline_reuses_prefix: bool,
    pub max_inflight_requests: usize,
    pub store_load_pause_secs: f64,
    /// The load pass one prompt at a time, each right after the LMCache
    /// engine's GPU prefix cache was emptied (vLLM's `POST
    /// /reset_prefix_cache`), so it reads LMCache's KV, not the GPU's;
    /// `load_pass_external_pct` says how much of it LMCache served.
    pub reset_prefix_cache: bool,
    /// Long prompts of real text added to the set: each several thousand
    /// words of one MMLU subject's questions with their answers (from
    /// `data`), then a request for a study guide, so a real model's
    /// continuation depends on the whole restored context.
    pub long_prompts: u32,
    /// Words of each long prompt (a word is about 1.3 tokens).
    pub long_prompt_words: u32,
    /// MMLU data for the long prompts: the suite's `data.tar.xz` or an
    /// extracted directory.
    pub data: Option<PathBuf>,
}

impl Default for DeterminismParams {
    fn default() -> Self {
        Self {
            prompts: None,
            max_tokens: 64,
            seed: 42,
            compare_baseline: true,
            baseline_reuses_prefix: true,
            max_inflight_requests: 16,
            store_load_pause_secs: 0.5,
            reset_prefix_cache: false,
            long_prompts: 0,
            long_prompt_words: 3000,
            data: None,
        }
    }
}

impl DeterminismParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("max_inflight_requests", self.max_inflight_requests as u64),
            ("max_tokens", u64::from(self.max_tokens)),
        ])?;
        if self.long_prompts > 0 && self.data.is_none() {
            return invalid(
                Some("data"),
                "long_prompts are made of MMLU's questions: give data = \"PATH/data.tar.xz\" (or an extracted directory)",
            );
        }
        if self.long_prompts > 0 && self.long_prompt_words < 100 {
            return invalid(Some("long_prompt_words"), "must be at least 100 words");
        }
        if !seconds_ok(self.store_load_pause_secs) {
            return invalid(
                Some("store_load_pause_secs"),
                "must be zero or more seconds",
            );
        }
        Ok(())
    }
}

impl KindParams for DeterminismParams {
    fn validate(&self) -> Result<(), Invalid> {
        DeterminismParams::validate(self)
    }

    fn wants(&self) -> Vec<Wants> {
        let prompts = self.prompts.iter().map(|p| Wants::File {
            key: "prompts",
            path: p.display().to_string(),
            fix: "give a JSONL file of {\"id\": …, \"prompt\": …}, or leave it out for the built-in prompts",
        });
        let data = self
            .data
            .iter()
            .filter(|_| self.long_prompts > 0)
            .map(|p| Wants::File {
                key: "data",
                path: p.display().to_string(),
                fix: "give MMLU's data.tar.xz (LMCache's .buildkite/correctness/) or an extracted data/ directory",
            });
        prompts.chain(data).collect()
    }

    fn tokens_per_trial(&self) -> f64 {
        let long = f64::from(self.long_prompts) * 1.3 * f64::from(self.long_prompt_words);
        (100 * (500 + self.max_tokens as usize)) as f64 + long
    }
}

/// The kind `determinism`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "determinism"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<DeterminismParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<DeterminismParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("mismatched_outputs", "outputs").smaller(),
            M::new("missing_outputs", "outputs").smaller(),
            M::new("compared_prompts", "prompts"),
            M::new("failed_requests", "requests").smaller(),
            M::new("load_pass_external_pct", "%").bigger().every_trial(),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (
                "identical_outputs",
                "metric = \"mismatched_outputs\"\nmax = 0",
            ),
            (
                "no_missing_outputs",
                "metric = \"missing_outputs\"\nmax = 0",
            ),
        ]
    }

    /// It compares with a baseline when the suite has one.
    fn roles(&self) -> &'static [Role] {
        &[Role::Lmcache]
    }

    fn judges_outputs(&self) -> bool {
        true
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(Determinism::new(own::<DeterminismParams>(params).clone()))
    }

    fn prepare(
        &self,
        params: &TestParams,
        results_dir: &Path,
        suite_dir: &Path,
    ) -> Result<(), WorkloadError> {
        let p = own::<DeterminismParams>(params);
        if let Some(data) = p.data.as_ref().filter(|_| p.long_prompts > 0) {
            super::mmlu::data::prepare(&suite_dir.join(data), &results_dir.join("mmlu_data"))
                .map_err(DeterminismError::from)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PromptCase {
    pub id: String,
    pub prompt: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeterminismError {
    #[error("failed to read the prompt file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path} line {line}: {message} (expected {{\"id\": \"...\", \"prompt\": \"...\"}})")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} has the id `{id}` twice")]
    DuplicateId { path: PathBuf, id: String },
    #[error("failed to make the long prompts from MMLU's data: {0}")]
    Data(#[from] super::mmlu::data::DataError),
}

impl From<DeterminismError> for WorkloadError {
    fn from(e: DeterminismError) -> Self {
        let class = match &e {
            DeterminismError::Data(d) => d.class(),
            _ => ErrorClass::BadInput,
        };
        WorkloadError::Kind(class, Box::new(e))
    }
}

/// Long prompts of real text: subject by subject (in MMLU's order, again
/// from the first when there are more prompts than subjects), that
/// subject's test questions with their answers until `long_prompt_words`,
/// then a request that needs all of it.
pub(crate) fn long_cases(
    params: &DeterminismParams,
    suite_dir: &Path,
    extract_into: &Path,
) -> Result<Vec<PromptCase>, DeterminismError> {
    use super::mmlu::data;
    let Some(source) = params.data.as_ref().filter(|_| params.long_prompts > 0) else {
        return Ok(Vec::new());
    };
    let dir = data::prepare(&suite_dir.join(source), extract_into)?.data_dir;
    let subjects = data::subjects(&dir)?;
    let mut cases = Vec::new();
    for i in 0..params.long_prompts as usize {
        let subject = &subjects[i % subjects.len()];
        let questions =
            data::read_questions(&dir.join("test").join(format!("{subject}_test.csv")))?;
        let mut prompt = format!(
            "The following are questions about {}, each with its answer.\n\n",
            subject.replace('_', " ")
        );
        let mut words = 0;
        // Past the subject's first pass, later questions first, so a
        // second prompt of one subject differs from its first.
        let start = (i / subjects.len()) * 7;
        for q in questions.iter().cycle().skip(start).take(questions.len()) {
            if words >= params.long_prompt_words as usize {
                break;
            }
            let block = format!(
                "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer: {}\n\n",
                q.question, q.choices[0], q.choices[1], q.choices[2], q.choices[3], q.answer
            );
            words += block.split_whitespace().count();
            prompt.push_str(&block);
        }
        prompt.push_str("Write a short study guide to the questions above, one paragraph per topic, naming the questions it draws on:\n");
        cases.push(PromptCase {
            id: format!("long-{subject}-{i}"),
            prompt,
        });
    }
    Ok(cases)
}

/// The built-in set: short and long prompts, the long ones past several
/// 256-token chunks so the load pass really reads KV back.
pub(crate) fn builtin() -> Vec<PromptCase> {
    let mut cases: Vec<PromptCase> = [
        "Explain what a KV cache is in one paragraph.",
        "Write a haiku about GPUs.",
        "List the first ten prime numbers.",
        "Translate 'the cache is warm' into French.",
        "What is 17 times 23? Show your work.",
        "Summarise the plot of Hamlet in three sentences.",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| PromptCase {
        id: format!("short-{i}"),
        prompt: p.to_string(),
    })
    .collect();
    let passage = "LMCache stores the key value cache of long contexts outside the GPU so that a later request with the same prefix can load it instead of recomputing it. ";
    for (i, reps) in [20, 40, 80].iter().enumerate() {
        cases.push(PromptCase {
            id: format!("long-{i}"),
            prompt: format!(
                "{}Question {i}: what does the passage above describe?",
                passage.repeat(*reps)
            ),
        });
    }
    cases
}

pub(crate) fn load_prompts(
    params: &DeterminismParams,
    suite_dir: &Path,
) -> Result<Vec<PromptCase>, DeterminismError> {
    let Some(file) = &params.prompts else {
        return Ok(builtin());
    };
    let path = suite_dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| DeterminismError::Read {
        path: path.clone(),
        source,
    })?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: PromptCase = serde_json::from_str(line).map_err(|e| DeterminismError::Parse {
            path: path.clone(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if !seen.insert(case.id.clone()) {
            return Err(DeterminismError::DuplicateId { path, id: case.id });
        }
        out.push(case);
    }
    Ok(out)
}

/// Outputs by id; `None` where the request failed.
pub(crate) type Outputs = IndexMap<String, Option<String>>;

pub(crate) async fn ask_all(
    client: &OpenAiClient,
    model: &str,
    p: &DeterminismParams,
    cases: &[PromptCase],
    progress: &Arc<Progress>,
) -> Result<Outputs, WorkloadError> {
    let model = super::shared::resolve_model(client, model).await?;
    let answers = super::shared::bounded(cases.to_vec(), p.max_inflight_requests, |case| {
        let client = client.clone();
        let progress = progress.clone();
        let body = request_body(&model, p, &case);
        async move {
            let answer = client.completion(&body).await.ok().map(|(t, _)| t);
            progress.finished(answer.is_some());
            (case.id, answer)
        }
    })
    .await;
    Ok(answers.into_iter().collect())
}

/// One prompt's request: greedy, seeded, `max_tokens` long.
fn request_body(model: &str, p: &DeterminismParams, case: &PromptCase) -> serde_json::Value {
    json!({"model": model, "prompt": case.prompt, "max_tokens": p.max_tokens, "temperature": 0, "seed": p.seed})
}

pub(crate) async fn pause(p: &DeterminismParams) {
    tokio::time::sleep(Duration::from_secs_f64(p.store_load_pause_secs.max(0.0))).await;
}

/// Where two outputs first differ, shown with a little context.
pub(crate) fn char_diff(a: &str, b: &str) -> String {
    let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let around = |s: &str| -> String {
        let from = at.saturating_sub(12);
        let snippet: String = s.chars().skip(from).take(36).collect();
        format!("{}{snippet:?}", if from > 0 { "…" } else { "" })
    };
    format!("at char {at}: {} vs {}", around(a), around(b))
}

/// One disagreement between two passes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Mismatch {
    pub id: String,
    pub between: String,
    pub detail: String,
    /// The first token (of the engine's tokenizer) where they differ, when
    /// the engine serves a tokenizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token: Option<usize>,
    /// Both outputs from a little before the difference, each cut to a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texts: Option<(String, String)>,
}

impl Mismatch {
    /// The report's line: prompt, passes, where, and both texts.
    pub(crate) fn line(&self) -> String {
        let at = match self.first_token {
            Some(t) => format!("from token {t}"),
            None => self
                .detail
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        match &self.texts {
            Some((a, b)) => format!("`{}` ({}) {at}: {a:?} vs {b:?}", self.id, self.between),
            None => format!("`{}` ({}): {}", self.id, self.between, self.detail),
        }
    }
}

/// Where two texts first differ, in characters.
fn first_char(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// A text from a little before `at` (a char index), on one line and cut.
pub(crate) fn one_line(s: &str, at: usize) -> String {
    const BEFORE: usize = 16;
    const WIDTH: usize = 72;
    let from = at.saturating_sub(BEFORE);
    let body: String = s
        .chars()
        .skip(from)
        .take(WIDTH)
        .map(|c| if c == '\n' { '⏎' } else { c })
        .collect();
    let more = s.chars().count() > from + WIDTH;
    format!(
        "{}{body}{}",
        if from > 0 { "…" } else { "" },
        if more { "…" } else { "" }
    )
}

/// The first differing token of each mismatch, from the engine's own
/// tokenizer (left unknown when it serves none), and both texts cut.
pub(crate) async fn locate(
    client: &OpenAiClient,
    model: &str,
    mismatches: &mut [Mismatch],
    texts: Vec<Option<(String, String)>>,
) {
    for (m, texts) in mismatches.iter_mut().zip(texts) {
        let Some((a, b)) = texts else {
            continue;
        };
        let at = first_char(&a, &b);
        m.texts = Some((one_line(&a, at), one_line(&b, at)));
        if let (Ok(Some(x)), Ok(Some(y))) = (
            client.tokenize_ids(model, &a).await,
            client.tokenize_ids(model, &b).await,
        ) {
            m.first_token = Some(x.iter().zip(&y).take_while(|(p, q)| p == q).count());
        }
    }
}

/// Compares passes per id: each pair is (name, reference, other).
pub(crate) fn compare(cases: &[PromptCase], pairs: &[(&str, &Outputs, &Outputs)]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for case in cases {
        for (between, a, b) in pairs {
            let (x, y) = (
                a.get(&case.id).cloned().flatten(),
                b.get(&case.id).cloned().flatten(),
            );
            let detail = match (&x, &y) {
                (Some(x), Some(y)) if x == y => continue,
                (Some(x), Some(y)) => char_diff(x, y),
                _ => "missing: the request failed on one side".to_string(),
            };
            out.push(Mismatch {
                id: case.id.clone(),
                between: between.to_string(),
                detail,
                first_token: None,
                texts: None,
            });
        }
    }
    out
}

pub(crate) fn metrics(cases: &[PromptCase], mismatches: &[Mismatch]) -> IndexMap<String, Metric> {
    let missing = mismatches
        .iter()
        .filter(|m| m.detail.starts_with("missing"))
        .count();
    let mut m = IndexMap::new();
    m.insert(
        "mismatched_outputs".into(),
        Metric::new((mismatches.len() - missing) as f64, "outputs"),
    );
    m.insert(
        "missing_outputs".into(),
        Metric::new(missing as f64, "outputs"),
    );
    m.insert(
        "compared_prompts".into(),
        Metric::new(cases.len() as f64, "prompts"),
    );
    m
}

/// Mismatches listed in the notes; the rest are in the files.
const NOTE_LIMIT: usize = 20;

/// The determinism test: prompts loaded once, asked of baseline (when
/// compared) and twice of LMCache, compared per id at the end.
pub(crate) struct Determinism {
    params: DeterminismParams,
    cases: Vec<PromptCase>,
    /// Outputs per pass: `baseline`, `store`, `load`.
    outputs: IndexMap<&'static str, Outputs>,
    /// The disagreements, located with the LMCache engine's tokenizer once
    /// its passes are done.
    mismatches: Option<Vec<Mismatch>>,
}

impl Determinism {
    pub(crate) fn new(params: DeterminismParams) -> Self {
        Self {
            params,
            cases: Vec::new(),
            outputs: IndexMap::new(),
            mismatches: None,
        }
    }

    /// Every pair of passes compared per id, as (label, first pass,
    /// second pass): each LMCache pass against the baseline's same pass
    /// when the baseline reused its prefix too; else LMCache's store
    /// against its load, and the baseline against the load when asked.
    fn pairs(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        if self.outputs.contains_key("baseline load") {
            return vec![
                ("baseline vs LMCache, fresh prefill", "baseline", "store"),
                (
                    "baseline vs LMCache, prefix reused",
                    "baseline load",
                    "load",
                ),
            ];
        }
        let mut pairs = vec![("LMCache store vs load", "store", "load")];
        if self.outputs.contains_key("baseline") {
            pairs.push(("baseline vs LMCache", "baseline", "load"));
        }
        pairs
    }

    /// The mismatches, once LMCache's passes are both in.
    fn compared(&self) -> Option<Vec<Mismatch>> {
        if !(self.outputs.contains_key("store") && self.outputs.contains_key("load")) {
            return None;
        }
        let pairs: Vec<(&str, &Outputs, &Outputs)> = self
            .pairs()
            .into_iter()
            .filter_map(|(label, a, b)| Some((label, self.outputs.get(a)?, self.outputs.get(b)?)))
            .collect();
        Some(compare(&self.cases, &pairs))
    }

    /// Both outputs a mismatch compares.
    fn texts_of(&self, m: &Mismatch) -> Option<(String, String)> {
        let get = |pass: &str| self.outputs.get(pass)?.get(&m.id).cloned().flatten();
        let (_, a, b) = self
            .pairs()
            .into_iter()
            .find(|(label, ..)| *label == m.between)?;
        Some((get(a)?, get(b)?))
    }

    async fn ask(
        &self,
        ctx: &Ctx<'_>,
        client: &OpenAiClient,
        pass: &str,
    ) -> Result<Outputs, WorkloadError> {
        ctx.progress.start(pass, self.cases.len() as u64);
        // Like with like: prompts that share a prefix (the built-in long
        // ones share a passage) hit it in the same order on both engines
        // only when they are asked one at a time.
        let mut p = self.params.clone();
        if p.baseline_reuses_prefix {
            p.max_inflight_requests = 1;
        }
        ask_all(client, ctx.model, &p, &self.cases, ctx.progress).await
    }

    /// The load pass one prompt at a time, each after the GPU's prefix
    /// cache was emptied, so every answer's prefix is LMCache's to serve.
    async fn ask_after_resets(
        &self,
        ctx: &Ctx<'_>,
        client: &OpenAiClient,
    ) -> Result<Outputs, WorkloadError> {
        ctx.progress.start("load pass", self.cases.len() as u64);
        let model = super::shared::resolve_model(client, ctx.model).await?;
        let mut outputs = Outputs::new();
        for case in &self.cases {
            WorkloadError::reset_before_load(client).await?;
            let body = request_body(&model, &self.params, case);
            let answer = client.completion(&body).await.ok().map(|(t, _)| t);
            ctx.progress.finished(answer.is_some());
            outputs.insert(case.id.clone(), answer);
        }
        Ok(outputs)
    }

    /// Each prompt asked twice in a row, one prompt at a time: the second
    /// answer's prefix comes from vLLM's own GPU prefix cache, which a
    /// whole pass of long prompts in between could have evicted.
    async fn ask_each_twice(
        &self,
        ctx: &Ctx<'_>,
        client: &OpenAiClient,
    ) -> Result<(Outputs, Outputs), WorkloadError> {
        ctx.progress
            .start("baseline, each prompt twice", 2 * self.cases.len() as u64);
        let model = super::shared::resolve_model(client, ctx.model).await?;
        let (mut store, mut load) = (Outputs::new(), Outputs::new());
        for case in &self.cases {
            let body = request_body(&model, &self.params, case);
            for pass in [&mut store, &mut load] {
                let answer = client.completion(&body).await.ok().map(|(t, _)| t);
                ctx.progress.finished(answer.is_some());
                pass.insert(case.id.clone(), answer);
            }
        }
        Ok((store, load))
    }

    fn write_files(
        &self,
        ctx: &Ctx<'_>,
        mismatches: &[Mismatch],
        out: &mut Output,
    ) -> Result<(), WorkloadError> {
        let outputs: String = self
            .cases
            .iter()
            .map(|c| {
                let get = |pass: &str| self.outputs.get(pass).and_then(|o| o.get(&c.id)).cloned().flatten();
                json!({"id": c.id, "baseline": get("baseline"), "baseline_load": get("baseline load"), "store": get("store"), "load": get("load")}).to_string() + "\n"
            })
            .collect();
        let listed: String = mismatches
            .iter()
            .map(|m| serde_json::to_string(m).expect("serializes") + "\n")
            .collect();
        for (file, body) in [("outputs.jsonl", outputs), ("mismatches.jsonl", listed)] {
            out.files.push(super::shared::write_output(
                ctx.out_dir,
                "determinism",
                file,
                body.as_bytes(),
            )?);
        }
        Ok(())
    }
}

impl Workload for Determinism {
    fn plan<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        _first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            self.cases = load_prompts(&self.params, ctx.suite_dir)?;
            let into = ctx.out_dir.join("mmlu_data");
            self.cases
                .extend(long_cases(&self.params, ctx.suite_dir, &into)?);
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
            if role == Role::Baseline && !self.params.compare_baseline {
                return Ok(());
            }
            let (target, client) = ctx.engine(role)?;
            let n = self.cases.len();
            if role == Role::Baseline && self.params.baseline_reuses_prefix {
                (ctx.say)(format!(
                    "{n} prompts to baseline (`{}`), then again with their prefixes in its GPU prefix cache",
                    target.name
                ));
                let (store, load) = self.ask_each_twice(ctx, &client).await?;
                self.outputs.insert("baseline", store);
                self.outputs.insert("baseline load", load);
            } else if role == Role::Baseline {
                (ctx.say)(format!("{n} prompts to baseline (`{}`)", target.name));
                let out = self.ask(ctx, &client, "baseline").await?;
                self.outputs.insert("baseline", out);
            } else {
                (ctx.say)(format!(
                    "{n} prompts to LMCache (`{}`), store then load",
                    target.name
                ));
                let store = self.ask(ctx, &client, "store pass").await?;
                pause(&self.params).await;
                let load = if self.params.reset_prefix_cache {
                    let before = super::shared::LoadShare::read(&client).await;
                    let load = self.ask_after_resets(ctx, &client).await?;
                    let after = super::shared::LoadShare::read(&client).await;
                    if let Some((k, v)) = before
                        .zip(after)
                        .and_then(|(b, a)| super::shared::LoadShare::metric(&b, &a))
                    {
                        out.metrics.entry(role).or_default().insert(k, v);
                    }
                    load
                } else {
                    self.ask(ctx, &client, "load pass").await?
                };
                self.outputs.insert("store", store);
                self.outputs.insert("load", load);
                if let Some(mut found) = self.compared() {
                    let model = super::shared::resolve_model(&client, ctx.model).await?;
                    let texts = found.iter().map(|m| self.texts_of(m)).collect();
                    locate(&client, &model, &mut found, texts).await;
                    self.mismatches = Some(found);
                }
            }
            Ok(())
        })
    }

    fn finish(&mut self, ctx: &Ctx<'_>, out: &mut Output) -> Result<(), WorkloadError> {
        let Some(mismatches) = self.mismatches.take().or_else(|| self.compared()) else {
            return Err(WorkloadError::NeedsEngine {
                test: ctx.test.to_string(),
                what: "an LMCache engine".into(),
            });
        };
        let mut m = metrics(&self.cases, &mismatches);
        let failed = self
            .outputs
            .values()
            .flat_map(|o| o.values())
            .filter(|v| v.is_none())
            .count();
        m.insert(
            "failed_requests".into(),
            Metric::new(failed as f64, "requests"),
        );
        out.metrics.entry(Role::Lmcache).or_default().extend(m);
        for m in mismatches.iter().take(NOTE_LIMIT) {
            out.notes.push(format!("differs: {}", m.line()));
        }
        if mismatches.len() > NOTE_LIMIT {
            out.notes.push(format!(
                "… and {} more in determinism/mismatches.jsonl",
                mismatches.len() - NOTE_LIMIT
            ));
        }
        self.write_files(ctx, &mismatches, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz_prompts {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::proptest;

        proptest! {
            #[test]
            fn fuzz_prompts_jsonl(bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/prompts.jsonl"))) {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("p.jsonl"), &bytes).unwrap();
                let params = DeterminismParams {
                    prompts: Some("p.jsonl".into()),
                    ..DeterminismParams::default()
                };
                if let Err(e) = timed("a prompt file", || load_prompts(&params, dir.path())) {
                    assert!(e.to_string().contains("p.jsonl"), "{e}");
                }
            }
        }
    }

    #[test]
    fn diff_points_at_the_first_difference() {
        assert_eq!(
            char_diff("abcdef", "abcxef"),
            "at char 3: \"abcdef\" vs \"abcxef\""
        );
        let d = char_diff(&"x".repeat(30), &format!("{}y", "x".repeat(29)));
        assert!(d.starts_with("at char 29: …"), "{d}");
    }

    #[test]
    fn mismatches_and_missing_ids_are_found() {
        let cases = vec![
            PromptCase {
                id: "a".into(),
                prompt: String::new(),
            },
            PromptCase {
                id: "b".into(),
                prompt: String::new(),
            },
        ];
        let one: Outputs = [
            ("a".to_string(), Some("x".to_string())),
            ("b".to_string(), Some("y".to_string())),
        ]
        .into_iter()
        .collect();
        let two: Outputs = [
            ("a".to_string(), Some("x".to_string())),
            ("b".to_string(), None),
        ]
        .into_iter()
        .collect();
        let found = compare(&cases, &[("store vs load", &one, &two)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "b");
        let m = metrics(&cases, &found);
        assert_eq!(m["missing_outputs"].value, 1.0);
        assert_eq!(m["mismatched_outputs"].value, 0.0);
        assert!(compare(&cases, &[("x", &one, &one)]).is_empty());
    }

    #[test]
    fn builtin_prompts_have_unique_ids() {
        let b = builtin();
        let ids: std::collections::HashSet<_> = b.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), b.len());
        assert!(b.iter().any(|c| c.prompt.split_whitespace().count() > 1000));
    }
}
