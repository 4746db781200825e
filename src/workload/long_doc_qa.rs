//! Long document QA, natively: the semantics of LMCache's
//! `benchmarks/long_doc_qa/long_doc_qa.py` (pre-warmup, documents, a warmup
//! round, a query round repeated tile/interleave/random, hit:miss ratio, a
//! bound on in-flight requests, TTFT at the first streamed content).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::api::{own, Ctx, Output, Workload, WorkloadError, WorkloadKind};
use super::progress::Progress;
use crate::client::{OpenAiClient, StreamOutcome};
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, invalid, Api, ConfigError, EnvType, EnvVar, Invalid, KindParams, TestKind,
    TestParams, Typing,
};
use crate::results::method::Method;
use crate::results::{Chart, Metric, Role};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};

/// `"H:M"` into `(H, M)`, refusing `0:0`.
pub(crate) fn parse_hit_miss(ratio: &str) -> Option<(usize, usize)> {
    let (h, m) = ratio.split_once(':')?;
    let (h, m) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    (h + m > 0).then_some((h, m))
}

/// Parameters of the long document QA workload (reference section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LongDocQaParams {
    pub document_length: usize,
    pub num_documents: usize,
    pub output_len: u32,
    pub repeat_count: usize,
    pub repeat_mode: RepeatMode,
    pub shuffle_seed: u64,
    pub max_inflight_requests: usize,
    /// `H:M`: in the query round request i misses when `i % (H+M) >= H`.
    pub hit_miss_ratio: Option<String>,
    /// Pre-warmup prompts sent before the measured rounds.
    pub prewarmup_prompts: usize,
    pub prewarmup_length: usize,
    /// Fraction of the slowest and fastest query TTFTs left out of the mean.
    pub ttft_trim_fraction: f64,
    /// Ask the engine for at least this many tokens (vLLM's and llama.cpp's
    /// `min_tokens`): a small model may end its answer to a page of "hi" at
    /// once, and a stream with no content has no TTFT. Unset, as
    /// long_doc_qa.py sends.
    pub min_tokens: Option<u32>,
    /// long_doc_qa.py's `--eos-token-id`: biased against (`logit_bias`
    /// −100), so answers run to `output_len`.
    pub eos_token_id: Option<u32>,
    /// long_doc_qa.py's `--completions`: `"completions"` instead of chat.
    pub endpoint: Api,
    /// Size the documents to the engine: enough documents of
    /// `document_length` to hold this many times the GPU KV cache the
    /// first engine reports once ready (vLLM's `vllm:cache_config_info`),
    /// at most `num_documents`; so the query round finds them evicted from
    /// the GPU on an L4 as on an H200. Unset: `num_documents` as written.
    pub overflow_gpu_cache: Option<f64>,
}

impl Default for LongDocQaParams {
    fn default() -> Self {
        Self {
            document_length: 10_000,
            num_documents: 30,
            output_len: 200,
            repeat_count: 2,
            repeat_mode: RepeatMode::Tile,
            shuffle_seed: 0,
            max_inflight_requests: 5,
            hit_miss_ratio: None,
            prewarmup_prompts: 5,
            prewarmup_length: 1000,
            ttft_trim_fraction: 0.0,
            min_tokens: None,
            eos_token_id: None,
            endpoint: Api::Chat,
            overflow_gpu_cache: None,
        }
    }
}

/// Documents of `length` tokens that hold `factor` times `kv_tokens`, at
/// most `most` and at least one.
pub(crate) fn documents_to_overflow(
    kv_tokens: u64,
    factor: f64,
    length: usize,
    most: usize,
) -> usize {
    let want = (kv_tokens as f64 * factor / length.max(1) as f64).ceil();
    (want as usize).clamp(1, most.max(1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RepeatMode {
    Tile,
    Interleave,
    Random,
}

impl LongDocQaParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("num_documents", self.num_documents as u64),
            ("repeat_count", self.repeat_count as u64),
            ("max_inflight_requests", self.max_inflight_requests as u64),
        ])?;
        if self
            .hit_miss_ratio
            .as_deref()
            .is_some_and(|r| parse_hit_miss(r).is_none())
        {
            return invalid(
                Some("hit_miss_ratio"),
                "expected H:M with H + M > 0, e.g. \"2:2\"",
            );
        }
        if !(0.0..0.5).contains(&self.ttft_trim_fraction) {
            return invalid(
                Some("ttft_trim_fraction"),
                "must be at least 0 and below 0.5",
            );
        }
        if self.min_tokens.is_some_and(|n| n > self.output_len) {
            return invalid(Some("min_tokens"), "must not exceed output_len");
        }
        if self
            .overflow_gpu_cache
            .is_some_and(|f| !(f.is_finite() && f > 0.0))
        {
            return invalid(
                Some("overflow_gpu_cache"),
                "must be above 0 (1.5: documents holding one and a half GPU caches)",
            );
        }
        Ok(())
    }
}

impl KindParams for LongDocQaParams {
    fn validate(&self) -> Result<(), Invalid> {
        LongDocQaParams::validate(self)
    }

    fn tokens_per_trial(&self) -> f64 {
        // Warm-up and query rounds over every document, plus prewarm-up.
        (self.num_documents * self.document_length * 2 * self.repeat_count.max(1)
            + self.prewarmup_prompts * self.prewarmup_length) as f64
    }
}

/// The kind `long_doc_qa`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "long_doc_qa"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<LongDocQaParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<LongDocQaParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("query_ttft_per_prompt", "s")
                .smaller()
                .by(Method::RandomEffects),
            M::new("query_round_time_per_prompt", "s").smaller(),
            M::new("warmup_round_time_per_prompt", "s").smaller(),
            M::new("warmup_ttft_mean", "s").smaller(),
            M::new("query_ttft_p50", "s").smaller(),
            M::new("query_ttft_p99", "s").smaller(),
            M::new("warmup_round_time", "s").smaller(),
            M::new("query_round_time", "s").smaller(),
            M::new("ttft_gain", "×").bigger(),
            M::new("latency_gain", "×").bigger(),
            M::new("failed_requests", "requests").smaller(),
            M::new("requests", "requests"),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("query_ttft_vs_baseline", "metric = \"query_ttft_per_prompt\"\nmax_change_pct = 0\non_inconclusive = \"more-trials\""),
        ]
    }

    fn pairs_trials(&self) -> bool {
        true
    }

    fn env(&self) -> &'static [EnvVar] {
        const ENV: &[EnvVar] = &[
            EnvVar {
                var: "DOCUMENT_LENGTH",
                key: "document_length",
                ty: EnvType::Int,
            },
            EnvVar {
                var: "NUM_DOCUMENTS",
                key: "num_documents",
                ty: EnvType::Int,
            },
            EnvVar {
                var: "OUTPUT_LEN",
                key: "output_len",
                ty: EnvType::Int,
            },
            EnvVar {
                var: "MAX_LMCACHE_TTFT",
                key: "checks.query_ttft.max",
                ty: EnvType::Float,
            },
            EnvVar {
                var: "MAX_LMCACHE_QUERY_ROUND_TIME",
                key: "checks.query_round_time.max",
                ty: EnvType::Float,
            },
        ];
        ENV
    }

    fn serves_together(&self) -> bool {
        true
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, attempt: u32) -> Box<dyn Workload> {
        Box::new(LongDocQa::new(
            own::<LongDocQaParams>(params).clone(),
            attempt,
        ))
    }
}

/// One request as the per-round CSVs of `long_doc_qa.py` record it, plus
/// what the server reported.
#[derive(Debug, Clone)]
pub(crate) struct RequestRow {
    pub round: &'static str,
    pub prompt_id: usize,
    /// Seconds since the workload started.
    pub request_start: f64,
    /// Seconds; -1 when no content came, as the reference records it.
    pub ttft: f64,
    pub request_end: f64,
    pub successful: bool,
    pub is_miss: bool,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub error: Option<String>,
}

pub(crate) struct LongDocQaOutput {
    pub metrics: IndexMap<String, Metric>,
    /// Files written, relative to the results directory.
    pub files: Vec<String>,
    /// Each query-round request's TTFT in order (NaN where it failed): the
    /// same documents in the same order on both engines, so they pair.
    pub query_ttfts: Vec<f64>,
}

pub(crate) fn document(i: usize, length: usize) -> String {
    let mut s = String::with_capacity(length * 3 + 8);
    let _ = write!(s, "{i}");
    for _ in 0..length {
        s.push_str(" hi");
    }
    s
}

/// The reference's pre-warmup prompt: `f"{i}xx" + " ".join(["hi"] * n)`,
/// with no space between the two parts.
pub(crate) fn prewarmup_prompt(i: usize, length: usize) -> String {
    let mut s = format!("{i}xx");
    s.push_str(&vec!["hi"; length].join(" "));
    s
}

/// Order of document ids in the query round.
pub(crate) fn query_order(
    num_documents: usize,
    repeat_count: usize,
    mode: RepeatMode,
    seed: u64,
) -> Vec<usize> {
    let tile: Vec<usize> = (0..repeat_count).flat_map(|_| 0..num_documents).collect();
    match mode {
        RepeatMode::Tile => tile,
        RepeatMode::Interleave => (0..num_documents)
            .flat_map(|d| std::iter::repeat_n(d, repeat_count))
            .collect(),
        RepeatMode::Random => {
            let mut order = tile;
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            order
        }
    }
}

struct Job {
    prompt_id: usize,
    prompt: String,
    is_miss: bool,
}

/// Sampling fields beyond the defaults: `min_tokens`, and long_doc_qa.py's
/// `--eos-token-id` (a bias against that token, so every answer runs to
/// `output_len`).
fn sampling(params: &LongDocQaParams) -> serde_json::Value {
    let mut extra = serde_json::Map::new();
    if let Some(n) = params.min_tokens {
        extra.insert("min_tokens".into(), json!(n));
    }
    if let Some(id) = params.eos_token_id {
        extra.insert("logit_bias".into(), json!({ id.to_string(): -100 }));
    }
    if extra.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Object(extra)
    }
}

async fn run_round(
    client: &OpenAiClient,
    model: &str,
    round: Round<'_>,
    jobs: Vec<Job>,
    params: &LongDocQaParams,
) -> Vec<(Job, StreamOutcome)> {
    round.progress.start(round.name, jobs.len() as u64);
    let (max_tokens, extra, api) = (params.output_len, sampling(params), params.endpoint);
    super::shared::bounded(jobs, params.max_inflight_requests, |job| {
        let client = client.clone();
        let model = model.to_string();
        let progress = round.progress.clone();
        let extra = extra.clone();
        async move {
            let out = client
                .stream(api, &model, &job.prompt, max_tokens, &extra)
                .await;
            // Counted after the clock stopped: never inside a measurement.
            progress.finished(out.successful());
            (job, out)
        }
    })
    .await
}

/// The round being run, for progress.
#[derive(Clone, Copy)]
struct Round<'a> {
    name: &'static str,
    progress: &'a Arc<Progress>,
}

fn rows(round: &'static str, t0: Instant, done: &[(Job, StreamOutcome)]) -> Vec<RequestRow> {
    done.iter()
        .map(|(job, o)| RequestRow {
            round,
            prompt_id: job.prompt_id,
            request_start: o.start.duration_since(t0).as_secs_f64(),
            ttft: match (o.successful(), o.ttft) {
                (true, Some(t)) => t.as_secs_f64(),
                _ => -1.0,
            },
            request_end: o.end.duration_since(t0).as_secs_f64(),
            successful: o.successful(),
            is_miss: job.is_miss,
            prompt_tokens: o.prompt_tokens,
            completion_tokens: o.completion_tokens,
            error: o.error.clone(),
        })
        .collect()
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Mean after dropping `fraction` of the values at each end.
fn trimmed_mean(values: &[f64], fraction: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let cut = (v.len() as f64 * fraction).floor() as usize;
    mean(&v[cut..v.len() - cut])
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
    Some(v[rank.min(v.len() - 1)])
}

pub(crate) async fn run(
    client: &OpenAiClient,
    model: &str,
    params: &LongDocQaParams,
    results_dir: &Path,
    label: &str,
    progress: &Arc<Progress>,
    first_document: usize,
) -> Result<LongDocQaOutput, WorkloadError> {
    let round = |name| Round { name, progress };
    let model = super::shared::resolve_model(client, model).await?;
    let t0 = Instant::now();

    let prewarm: Vec<Job> = (0..params.prewarmup_prompts)
        .map(|i| Job {
            prompt_id: i,
            prompt: prewarmup_prompt(i, params.prewarmup_length),
            is_miss: false,
        })
        .collect();
    let prewarm = run_round(client, &model, round("prewarmup round"), prewarm, params).await;

    let docs: Vec<String> = (0..params.num_documents)
        .map(|i| document(first_document + i, params.document_length))
        .collect();
    let warmup_jobs: Vec<Job> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Job {
            prompt_id: i,
            prompt: d.clone(),
            is_miss: false,
        })
        .collect();
    let warmup_start = Instant::now();
    let warmup = run_round(client, &model, round("warmup round"), warmup_jobs, params).await;
    let warmup_time = warmup_start.elapsed();

    let ratio = params.hit_miss_ratio.as_deref().and_then(parse_hit_miss);
    let mut miss_rng = StdRng::seed_from_u64(params.shuffle_seed.wrapping_add(1));
    let order = query_order(
        params.num_documents,
        params.repeat_count,
        params.repeat_mode,
        params.shuffle_seed,
    );
    let query_jobs: Vec<Job> = order
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let is_miss = ratio.is_some_and(|(h, m)| i % (h + m) >= h);
            let prompt = if is_miss {
                // A fresh leading token keeps a miss from matching any cached prefix.
                format!("{} {}", miss_rng.gen_range(0..1_000_000_000u64), docs[d])
            } else {
                docs[d].clone()
            };
            Job {
                prompt_id: d,
                prompt,
                is_miss,
            }
        })
        .collect();
    let query_start = Instant::now();
    let query = run_round(client, &model, round("query round"), query_jobs, params).await;
    let query_time = query_start.elapsed();

    let mut all = rows("prewarmup", t0, &prewarm);
    let warmup_rows = rows("warmup", t0, &warmup);
    let query_rows = rows("query", t0, &query);
    let query_ttfts = query_rows
        .iter()
        .map(|r| if r.successful { r.ttft } else { f64::NAN })
        .collect();
    let metrics = compute_metrics(params, &warmup_rows, &query_rows, warmup_time, query_time);
    all.extend(warmup_rows);
    all.extend(query_rows);
    let files = write_outputs(results_dir, label, &metrics, &all, &model)?;
    Ok(LongDocQaOutput {
        metrics,
        files,
        query_ttfts,
    })
}

fn compute_metrics(
    params: &LongDocQaParams,
    warmup: &[RequestRow],
    query: &[RequestRow],
    warmup_time: Duration,
    query_time: Duration,
) -> IndexMap<String, Metric> {
    let ok_ttfts = |rows: &[RequestRow]| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.successful)
            .map(|r| r.ttft)
            .collect()
    };
    let q = ok_ttfts(query);
    let w = ok_ttfts(warmup);
    let per_prompt = |d: Duration, n: usize| d.as_secs_f64() / n.max(1) as f64;
    let mut m = IndexMap::new();
    // NaN marks "no successful request": the gate fails it, JSON writes null.
    let or_nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    m.insert(
        "query_ttft_per_prompt".into(),
        Metric::new(or_nan(trimmed_mean(&q, params.ttft_trim_fraction)), "s"),
    );
    m.insert(
        "query_round_time_per_prompt".into(),
        Metric::new(per_prompt(query_time, query.len()), "s"),
    );
    m.insert(
        "warmup_round_time_per_prompt".into(),
        Metric::new(per_prompt(warmup_time, warmup.len()), "s"),
    );
    m.insert(
        "warmup_ttft_mean".into(),
        Metric::new(or_nan(mean(&w)), "s"),
    );
    m.insert(
        "query_ttft_p50".into(),
        Metric::new(or_nan(percentile(&q, 50.0)), "s"),
    );
    m.insert(
        "query_ttft_p99".into(),
        Metric::new(or_nan(percentile(&q, 99.0)), "s"),
    );
    m.insert(
        "warmup_round_time".into(),
        Metric::new(warmup_time.as_secs_f64(), "s"),
    );
    m.insert(
        "query_round_time".into(),
        Metric::new(query_time.as_secs_f64(), "s"),
    );
    // long_doc_qa.py's `--expected-ttft-gain` and `--expected-latency-gain`
    // (gate them with `min`): within one engine, the cold round over the
    // warm one, as factors.
    let ratio = |cold: f64, warm: f64| if warm > 0.0 { cold / warm } else { f64::NAN };
    let gains = [
        (
            "ttft_gain",
            ratio(
                or_nan(mean(&w)),
                or_nan(trimmed_mean(&q, params.ttft_trim_fraction)),
            ),
        ),
        (
            "latency_gain",
            ratio(
                per_prompt(warmup_time, warmup.len()),
                per_prompt(query_time, query.len()),
            ),
        ),
    ];
    for (name, v) in gains {
        m.insert(name.into(), Metric::new(v, "×"));
    }
    let failed = warmup.iter().chain(query).filter(|r| !r.successful).count();
    m.insert(
        "failed_requests".into(),
        Metric::new(failed as f64, "requests"),
    );
    m.insert(
        "requests".into(),
        Metric::new((warmup.len() + query.len()) as f64, "requests"),
    );
    m
}

fn write_outputs(
    dir: &Path,
    label: &str,
    metrics: &IndexMap<String, Metric>,
    rows: &[RequestRow],
    model: &str,
) -> Result<Vec<String>, WorkloadError> {
    let write = |name: String, bytes: Vec<u8>| {
        super::shared::write_output(dir, "long_doc_qa", &name, &bytes)
    };
    let value = |k: &str| metrics.get(k).map(|m| m.value).filter(|v| v.is_finite());
    let result = json!({
        "query_ttft_per_prompt": value("query_ttft_per_prompt"),
        "query_round_time_per_prompt": value("query_round_time_per_prompt"),
        "warmup_round_time_per_prompt": value("warmup_round_time_per_prompt"),
        "model": model,
        "metrics": metrics.iter().map(|(k, m)| (k.clone(), json!({"value": value(k), "unit": m.unit}))).collect::<serde_json::Map<_, _>>(),
    });
    // One line: LMCache's scripts read the result with `tail -n 1`.
    let mut line = serde_json::to_vec(&result).expect("json");
    line.push(b'\n');
    let mut files = vec![write(format!("{label}_result.json"), line)?];
    // Per round, the columns long_doc_qa.py writes, under the phase's
    // directory as LMCache's k3 scripts collect them.
    for round in ["warmup", "query"] {
        let mut csv = String::from("prompt_id,request_start,ttft,request_end,successful,is_miss\n");
        for r in rows.iter().filter(|r| r.round == round) {
            let ttft = if r.successful { r.ttft } else { -1.0 };
            let _ = writeln!(
                csv,
                "{},{:.6},{:.6},{:.6},{},{}",
                r.prompt_id, r.request_start, ttft, r.request_end, r.successful, r.is_miss
            );
        }
        files.push(write(
            format!("{label}/{round}_round.csv"),
            csv.into_bytes(),
        )?);
    }

    let mut csv = String::from("round,prompt_id,request_start,ttft,request_end,successful,is_miss,prompt_tokens,completion_tokens,error\n");
    for r in rows {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6},{},{},{},{},{}",
            r.round,
            r.prompt_id,
            r.request_start,
            r.ttft,
            r.request_end,
            r.successful,
            r.is_miss,
            opt(r.prompt_tokens),
            opt(r.completion_tokens),
            csv_field(r.error.as_deref().unwrap_or("")),
        );
    }
    files.push(write(format!("{label}_requests.csv"), csv.into_bytes())?);

    // The human-readable block long_doc_qa.py prints.
    let round = |name: &str, prefix: &str| {
        let rs: Vec<&RequestRow> = rows.iter().filter(|r| r.round == name).collect();
        let ttfts: Vec<f64> = rs.iter().filter(|r| r.successful).map(|r| r.ttft).collect();
        format!(
            "{prefix} round mean TTFT: {:.3}s\n{prefix} round time: {:.3}s\n{prefix} round prompt count: {}\n",
            mean(&ttfts).unwrap_or(f64::NAN),
            metrics.get(&format!("{name}_round_time")).map_or(f64::NAN, |m| m.value),
            rs.len()
        )
    };
    let text = format!(
        "=== BENCHMARK RESULTS ===\n{}{}",
        round("warmup", "Warmup"),
        round("query", "Query")
    );
    files.push(write(format!("{label}_output.txt"), text.into_bytes())?);
    Ok(files)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The long document QA test: each engine in turn, then a chart of mean
/// TTFT per round, baseline against LMCache.
pub(crate) struct LongDocQa {
    params: LongDocQaParams,
    attempt: u32,
    /// Query TTFTs per role, per trial, for the paired statistics.
    query_ttfts: IndexMap<Role, Vec<Vec<f64>>>,
    /// How the document count was chosen, when sized to the engine.
    sizing: Option<String>,
}

impl LongDocQa {
    pub(crate) fn new(params: LongDocQaParams, attempt: u32) -> Self {
        Self {
            params,
            attempt,
            query_ttfts: IndexMap::new(),
            sizing: None,
        }
    }

    /// Each trial of each attempt asks about documents no engine has seen,
    /// so every trial starts from the same (cold) cache state; both engines
    /// get the same ones within a trial.
    fn first_document(&self, ctx: &Ctx<'_>) -> usize {
        let round = (self.attempt.max(1) - 1) * ctx.trials + (ctx.trial.max(1) - 1);
        self.params.num_documents * round as usize
    }
}

impl LongDocQa {
    /// Keeps what one engine's run measured: its query TTFTs for the
    /// pairing, its metrics and files, and a line saying them.
    fn keep(&mut self, ctx: &Ctx<'_>, role: Role, r: LongDocQaOutput, out: &mut Output) {
        let per_trial = self.query_ttfts.entry(role).or_default();
        per_trial.resize(ctx.trial.max(1) as usize, Vec::new());
        per_trial[ctx.trial.max(1) as usize - 1] = r.query_ttfts;
        // A figure no request could give (all failed) reads as such.
        let m = |k: &str, unit: &str| match r.metrics.get(k).map(|m| m.value) {
            Some(v) if v.is_finite() => format!("{v:.3} {unit}"),
            _ => "none (no request succeeded)".to_string(),
        };
        let failed = r.metrics.get("failed_requests").map_or(0.0, |m| m.value);
        (ctx.say)(format!(
            "{role}: query TTFT {}, query round {}, warmup round {}, {failed} failed requests",
            m("query_ttft_per_prompt", "s"),
            m("query_round_time_per_prompt", "s/prompt"),
            m("warmup_round_time_per_prompt", "s/prompt"),
        ));
        out.metrics.insert(role, r.metrics);
        out.files.extend(r.files);
    }

    /// One engine's run of this trial's documents. Every trial keeps its
    /// files: `lmcache_result.json`, then `lmcache_trial2_result.json`, ...
    async fn run_on(&self, ctx: &Ctx<'_>, role: Role) -> Result<LongDocQaOutput, WorkloadError> {
        let (_, client) = ctx.engine(role)?;
        let label = super::api::trial_label(role, ctx.trial);
        run(
            &client,
            ctx.model,
            &self.params,
            ctx.out_dir,
            &label,
            ctx.progress,
            self.first_document(ctx),
        )
        .await
    }
}

impl Workload for LongDocQa {
    /// Sizes the documents to the first engine's GPU KV cache, once: every
    /// trial and both engines then get the same count.
    fn plan<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let Some(factor) = self.params.overflow_gpu_cache else {
                return Ok(());
            };
            let (target, client) = ctx.engine(first)?;
            let kv = client
                .scrape(&format!("{}/metrics", client.base()))
                .await
                .ok()
                .flatten()
                .and_then(|t| crate::client::prometheus::kv_cache_tokens(&t));
            let (most, length) = (self.params.num_documents, self.params.document_length);
            let said = match kv {
                Some(kv) => {
                    let n = documents_to_overflow(kv, factor, length, most);
                    self.params.num_documents = n;
                    format!(
                        "documents per trial: {n} of {length} tokens ({:.2} × the {kv} tokens of GPU KV cache `{}` reports, at most num_documents = {most})",
                        (n * length) as f64 / kv as f64,
                        target.name
                    )
                }
                None => format!(
                    "documents per trial: {most} (num_documents): `{}` reports no GPU KV capacity (vllm:cache_config_info) to size them by",
                    target.name
                ),
            };
            (ctx.say)(said.clone());
            self.sizing = Some(said);
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
            let r = self.run_on(ctx, role).await?;
            self.keep(ctx, role, r, out);
            Ok(())
        })
    }

    /// Both engines get the same documents at the same moment: a burst on
    /// the host slows both, and the per-prompt ratio cancels it.
    fn run_together<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        roles: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let this = &*self;
            let runs = roles.iter().map(|role| async move {
                Ok::<_, WorkloadError>((*role, this.run_on(ctx, *role).await?))
            });
            let done = futures_util::future::try_join_all(runs).await?;
            for (role, r) in done {
                self.keep(ctx, role, r, out);
            }
            Ok(())
        })
    }

    /// Mean TTFT per round, baseline against LMCache: the cache's effect at
    /// a glance (the query round should drop).
    fn finish(&mut self, _ctx: &Ctx<'_>, out: &mut Output) -> Result<(), WorkloadError> {
        if let Some(s) = self.sizing.as_ref().filter(|s| !out.notes.contains(s)) {
            out.notes.push(s.clone());
        }
        // Per prompt, per trial: the finest pairing the bootstrap can use.
        if let (Some(b), Some(l)) = (
            self.query_ttfts.get(&Role::Baseline),
            self.query_ttfts.get(&Role::Lmcache),
        ) {
            let trials: Vec<Vec<(f64, f64)>> = b
                .iter()
                .zip(l)
                .map(|(b, l)| {
                    b.iter()
                        .zip(l)
                        .filter(|(b, l)| b.is_finite() && l.is_finite())
                        .map(|(b, l)| (*b, *l))
                        .collect()
                })
                .filter(|t: &Vec<(f64, f64)>| !t.is_empty())
                .collect();
            out.paired.insert("query_ttft_per_prompt".into(), trials);
        }
        let rounds = [
            ("warmup", "warmup_ttft_mean"),
            ("query", "query_ttft_per_prompt"),
        ];
        let series: IndexMap<Role, Vec<f64>> = out
            .metrics
            .iter()
            .map(|(role, m)| {
                let values = rounds
                    .iter()
                    .map(|(_, k)| m.get(*k).map_or(f64::NAN, |m| m.value))
                    .collect();
                (*role, values)
            })
            .collect();
        if series.len() >= 2 {
            out.charts.push(Chart {
                title: "Mean TTFT per round".into(),
                x: rounds.iter().map(|(r, _)| r.to_string()).collect(),
                y_label: "TTFT".into(),
                y_unit: "s".into(),
                series,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_prewarmup_prompts_match_the_reference() {
        assert_eq!(document(3, 4), "3 hi hi hi hi");
        assert_eq!(prewarmup_prompt(0, 3), "0xxhi hi hi");
    }

    #[test]
    fn documents_overflow_the_gpu_cache_the_engine_reports() {
        // vLLM 0.26 + Llama-3.1-8B at 0.25 of an H200 reported 163,792
        // tokens (tests/fixtures/vllm); 1.5 caches of 10,000-token documents.
        assert_eq!(documents_to_overflow(163_792, 1.5, 10_000, 30), 25);
        // An L4 (23,034 MiB) at 0.9: about 47,000 tokens beside the 15 GiB
        // of weights, as `recommend` computes it (no L4 has reported one to
        // us), with the 10,000-token documents it writes there.
        assert_eq!(documents_to_overflow(47_000, 1.5, 10_000, 39), 8);
        // The most the suite allows (LMCache's CPU cache) caps it.
        assert_eq!(documents_to_overflow(1_000_000, 1.5, 10_000, 30), 30);
        assert_eq!(documents_to_overflow(0, 1.5, 10_000, 30), 1);
    }

    #[test]
    fn repeat_modes() {
        assert_eq!(
            query_order(3, 2, RepeatMode::Tile, 0),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert_eq!(
            query_order(3, 2, RepeatMode::Interleave, 0),
            vec![0, 0, 1, 1, 2, 2]
        );
        let r = query_order(5, 2, RepeatMode::Random, 7);
        assert_eq!(r, query_order(5, 2, RepeatMode::Random, 7), "seeded");
        let mut sorted = r.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn trimmed_mean_and_percentiles() {
        let v = [5.0, 1.0, 2.0, 3.0, 100.0];
        assert_eq!(trimmed_mean(&v, 0.0), Some(22.2));
        assert_eq!(trimmed_mean(&v, 0.2), Some(10.0 / 3.0));
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 99.0), Some(100.0));
        assert_eq!(mean(&[]), None);
    }
}
