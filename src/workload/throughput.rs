//! Serving throughput, natively: random prompts of an exact input length
//! (calibrated with the server's `/tokenize`), `ignore_eos` outputs, Poisson
//! arrivals or all at once, optionally bounded concurrency; results under
//! `vllm bench serve`'s field names so existing tooling reads them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::{own, Ctx, Output, Workload, WorkloadError, WorkloadKind};
use super::progress::Progress;
use super::vllm_bench::Bench;
use crate::client::{OpenAiClient, StreamOutcome};
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, invalid, Api, ConfigError, Invalid, KindParams, TestKind, TestParams, Typing,
    Wants,
};
use crate::results::{Metric, Role};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ThroughputParams {
    pub num_prompts: usize,
    /// Prompt tokens per request, as the engine's tokenizer counts them.
    pub input_len: usize,
    pub output_len: u32,
    /// The same seed gives both engines the same prompts and arrivals.
    pub seed: u64,
    /// Requests per second (Poisson arrivals); all at once when absent.
    pub request_rate: Option<f64>,
    pub max_concurrency: Option<usize>,
    pub endpoint: Api,
    /// Generate exactly `output_len` tokens (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// `native`, or `vllm-bench` to run `vllm bench serve` itself.
    pub driver: Driver,
    /// The `vllm` executable for `driver = "vllm-bench"`.
    pub vllm_command: String,
    /// One-token chat requests sent to each engine first, not measured
    /// (k3 sends 3).
    pub warmup_requests: usize,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Driver {
    #[default]
    Native,
    VllmBench,
}

impl Default for ThroughputParams {
    fn default() -> Self {
        Self {
            num_prompts: 50,
            input_len: 10_000,
            output_len: 1,
            seed: 0,
            request_rate: None,
            max_concurrency: None,
            endpoint: Api::Chat,
            ignore_eos: true,
            driver: Driver::Native,
            vllm_command: "vllm".to_string(),
            warmup_requests: 0,
        }
    }
}

impl ThroughputParams {
    /// The `vllm bench serve` run these parameters ask for.
    pub(crate) fn bench(&self) -> Bench {
        Bench {
            num_prompts: self.num_prompts,
            input_len: self.input_len,
            output_len: self.output_len,
            seed: self.seed,
            request_rate: self.request_rate,
            max_concurrency: self.max_concurrency,
            endpoint: self.endpoint,
            ignore_eos: self.ignore_eos,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("num_prompts", self.num_prompts as u64),
            ("input_len", self.input_len as u64),
            ("output_len", u64::from(self.output_len)),
            (
                "max_concurrency",
                self.max_concurrency.map_or(1, |c| c as u64),
            ),
        ])?;
        if self
            .request_rate
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            return invalid(
                Some("request_rate"),
                "must be a positive number of requests per second (leave it out for all at once)",
            );
        }
        Ok(())
    }
}

impl KindParams for ThroughputParams {
    fn validate(&self) -> Result<(), Invalid> {
        ThroughputParams::validate(self)
    }

    fn wants(&self) -> Vec<Wants> {
        vllm_bench_wanted(self.driver, &self.vllm_command)
    }

    fn tokens_per_trial(&self) -> f64 {
        ((self.num_prompts + self.warmup_requests) * (self.input_len + self.output_len as usize))
            as f64
    }
}

/// `vllm bench serve` on PATH when the driver runs it.
pub(crate) fn vllm_bench_wanted(driver: Driver, command: &str) -> Vec<Wants> {
    (driver == Driver::VllmBench)
        .then(|| Wants::Program {
            key: "vllm_command",
            name: command.to_string(),
            fix: "install vLLM (it runs `vllm bench serve`), or use driver = \"native\"",
        })
        .into_iter()
        .collect()
}

/// The vLLM `bench serve` style figures every throughput run reports.
pub(crate) const METRICS: &[MetricSpec] = {
    use MetricSpec as M;
    &[
        M::new("completed", "requests"),
        M::new("failed", "requests").smaller(),
        M::new("total_input_tokens", "tokens"),
        M::new("total_output_tokens", "tokens"),
        M::new("duration", "s").smaller(),
        M::new("request_throughput", "req/s").bigger(),
        M::new("output_throughput", "tok/s").bigger(),
        M::new("total_token_throughput", "tok/s").bigger(),
        M::new("mean_ttft_ms", "ms").smaller(),
        M::new("median_ttft_ms", "ms").smaller(),
        M::new("p99_ttft_ms", "ms").smaller(),
        M::new("mean_tpot_ms", "ms").smaller(),
        M::new("median_tpot_ms", "ms").smaller(),
        M::new("p99_tpot_ms", "ms").smaller(),
        M::new("mean_itl_ms", "ms").smaller(),
        M::new("median_itl_ms", "ms").smaller(),
        M::new("p99_itl_ms", "ms").smaller(),
        M::new("mean_e2el_ms", "ms").smaller(),
        M::new("median_e2el_ms", "ms").smaller(),
        M::new("p99_e2el_ms", "ms").smaller(),
        M::new("incomplete_requests", "requests").smaller(),
        M::new("input_token_mismatch", "tokens").smaller(),
        M::new("input_token_error_pct", "%").smaller(),
        M::new("achieved_prompt_tokens", "tokens"),
    ]
};

/// The kind `throughput`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "throughput"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<ThroughputParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<ThroughputParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        METRICS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "total_token_throughput",
            "metric = \"total_token_throughput\"\nmin_change_pct = -5",
        )]
    }

    fn pairs_trials(&self) -> bool {
        true
    }

    /// The gate of LMCache's throughput step is known to be noisy.
    fn default_attempts(&self) -> u32 {
        3
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, attempt: u32) -> Box<dyn Workload> {
        Box::new(Throughput::new(
            own::<ThroughputParams>(params).clone(),
            attempt,
        ))
    }
}

pub(crate) struct ThroughputOutput {
    pub metrics: IndexMap<String, Metric>,
    pub files: Vec<String>,
}

/// Short common words: most tokenizers make each one token, so calibration
/// converges in a step or two.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "was", "with", "as", "at",
    "by", "be", "this", "from", "or", "an", "are", "not", "but", "had", "his", "they", "you",
    "were", "her", "she", "there", "been", "one", "all", "we", "can", "has", "their", "if",
    "would", "what", "will", "so", "no", "when", "who", "more", "out", "up", "said", "time",
    "about", "other", "into", "than", "its", "some", "could", "them", "only", "new", "may",
    "these", "two", "first", "any", "like", "now", "my", "such", "make", "over", "our", "even",
    "most", "me", "state", "after", "also", "made", "many", "did", "must", "before", "back", "see",
    "through", "way", "where", "get", "much", "go", "well", "your", "know", "should", "down",
    "work", "year", "because", "come", "people", "just", "say", "each", "those",
];

fn words(rng: &mut StdRng, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect()
}

/// A prompt of `target` tokens for request `i`: random words, then words
/// added or removed until `/tokenize` agrees. Without `/tokenize`, words are
/// taken as tokens. Returns the prompt and its token count.
async fn prompt(
    client: &OpenAiClient,
    model: &str,
    seed: u64,
    i: usize,
    target: usize,
) -> Result<(String, usize), WorkloadError> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    // A distinct first word keeps prompts from sharing a cached prefix.
    let mut w: Vec<String> = vec![format!("{i}")];
    w.extend(
        words(&mut rng, target.saturating_sub(1))
            .into_iter()
            .map(String::from),
    );
    for _ in 0..12 {
        let text = w.join(" ");
        let counted = client.tokenize_count(model, &text).await;
        let Some(count) = counted.map_err(WorkloadError::client(client))? else {
            return Ok((text, w.len()));
        };
        let count = count as usize;
        if count == target {
            return Ok((text, count));
        }
        if count > target {
            let cut = (count - target).max(1).min(w.len().saturating_sub(1));
            w.truncate(w.len() - cut);
        } else {
            w.extend(
                words(&mut rng, target - count)
                    .into_iter()
                    .map(String::from),
            );
        }
    }
    let text = w.join(" ");
    let count = client
        .tokenize_count(model, &text)
        .await
        .map_err(WorkloadError::client(client))?
        .map_or(w.len(), |c| c as usize);
    Ok((text, count))
}

/// k3's warm-up: a few one-token chat requests to each server before the
/// measurement ("~25 s of cold-start overhead" otherwise). Returns how many
/// failed; they are not measured.
async fn warm_up(client: &OpenAiClient, model: &str, n: usize) -> usize {
    let mut failed = 0;
    for i in 0..n {
        let prompt = format!("Warm-up request {i}: say hello.");
        let out = client
            .chat_stream(model, &prompt, 1, &serde_json::Value::Null)
            .await;
        failed += usize::from(out.error.is_some());
    }
    failed
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

pub(crate) async fn run(
    client: &OpenAiClient,
    model: &str,
    p: &ThroughputParams,
    results_dir: &Path,
    label: &str,
    progress: &Arc<Progress>,
) -> Result<ThroughputOutput, WorkloadError> {
    let model = super::shared::resolve_model(client, model).await?;
    let mut prompts = Vec::with_capacity(p.num_prompts);
    progress.start("prompts calibrated", p.num_prompts as u64);
    for i in 0..p.num_prompts {
        prompts.push(prompt(client, &model, p.seed, i, p.input_len).await?);
        progress.finished(true);
    }
    progress.start("requests", p.num_prompts as u64);
    // Poisson arrivals from the seed, so both engines see the same schedule.
    let mut rng = StdRng::seed_from_u64(p.seed ^ 0x5ca1_ab1e);
    let mut at = 0.0f64;
    let arrivals: Vec<Duration> = (0..p.num_prompts)
        .map(|_| {
            let t = Duration::from_secs_f64(at);
            if let Some(rate) = p.request_rate.filter(|r| *r > 0.0 && r.is_finite()) {
                at += -(1.0 - rng.gen::<f64>()).ln() / rate;
            }
            t
        })
        .collect();
    let slots = p
        .max_concurrency
        .map(|n| Arc::new(Semaphore::new(n.max(1))));
    let extra = if p.ignore_eos {
        json!({"ignore_eos": true})
    } else {
        Value::Null
    };
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, ((text, _), arrival)) in prompts.iter().cloned().zip(arrivals).enumerate() {
        let (client, model, extra, slots, progress) = (
            client.clone(),
            model.clone(),
            extra.clone(),
            slots.clone(),
            progress.clone(),
        );
        let (api, max_tokens) = (p.endpoint, p.output_len);
        set.spawn(async move {
            tokio::time::sleep_until((start + arrival).into()).await;
            let _permit = match &slots {
                Some(s) => Some(
                    s.clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed"),
                ),
                None => None,
            };
            let o = client.stream(api, &model, &text, max_tokens, &extra).await;
            progress.finished(o.successful());
            (i, o)
        });
    }
    let mut outcomes: Vec<Option<StreamOutcome>> = vec![None; p.num_prompts];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, o)) = joined {
            outcomes[i] = Some(o);
        }
    }
    let duration = start.elapsed().as_secs_f64();
    let input_lens: Vec<usize> = prompts.iter().map(|(_, n)| *n).collect();
    let (metrics, doc) = summarize(p, &model, duration, &input_lens, &outcomes);
    let json = serde_json::to_string_pretty(&doc).expect("json");
    let file = super::shared::write_output(
        results_dir,
        "vllm_bench",
        &format!("{label}.json"),
        json.as_bytes(),
    )?;
    Ok(ThroughputOutput {
        metrics,
        files: vec![file],
    })
}

/// What the requests of one run added up to, as `vllm bench serve` counts
/// them (latencies in ms for the summary, in s for the per-request lists).
#[derive(Default)]
struct Tally {
    ttfts: Vec<f64>,
    tpots: Vec<f64>,
    itls: Vec<f64>,
    e2els: Vec<f64>,
    completed: usize,
    total_in: usize,
    total_out: u64,
    achieved_in: u64,
    output_lens: Vec<u64>,
    errors: Vec<String>,
    ttft_list: Vec<f64>,
    itl_lists: Vec<Vec<f64>>,
}

impl Tally {
    fn of(input_lens: &[usize], outcomes: &[Option<StreamOutcome>]) -> Self {
        let mut t = Tally::default();
        for (o, &input_len) in outcomes.iter().zip(input_lens) {
            match o.as_ref().filter(|o| o.successful()) {
                Some(o) => t.completed_one(o, input_len),
                None => t.failed_one(
                    o.as_ref()
                        .and_then(|o| o.error.clone())
                        .unwrap_or_else(|| "request lost".into()),
                ),
            }
        }
        t
    }

    fn failed_one(&mut self, error: String) {
        self.errors.push(error);
        self.output_lens.push(0);
        self.ttft_list.push(0.0);
        self.itl_lists.push(Vec::new());
    }

    fn completed_one(&mut self, o: &StreamOutcome, input_len: usize) {
        self.errors.push(String::new());
        self.completed += 1;
        self.total_in += input_len;
        self.achieved_in += o.prompt_tokens.unwrap_or(0);
        let out_tokens = o.completion_tokens.unwrap_or(o.chunk_times.len() as u64);
        self.total_out += out_tokens;
        self.output_lens.push(out_tokens);
        let ttft = o.ttft.map_or(0.0, |t| t.as_secs_f64());
        let e2el = o.end.duration_since(o.start).as_secs_f64();
        self.ttfts.push(ttft * 1000.0);
        self.ttft_list.push(ttft);
        self.e2els.push(e2el * 1000.0);
        if out_tokens > 1 {
            self.tpots
                .push((e2el - ttft) / (out_tokens - 1) as f64 * 1000.0);
        }
        let gaps: Vec<f64> = o
            .chunk_times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        self.itls.extend(gaps.iter().map(|g| g * 1000.0));
        self.itl_lists.push(gaps);
    }
}

fn summarize(
    p: &ThroughputParams,
    model: &str,
    duration: f64,
    input_lens: &[usize],
    outcomes: &[Option<StreamOutcome>],
) -> (IndexMap<String, Metric>, Value) {
    let t = Tally::of(input_lens, outcomes);
    let m = bench_metrics(p, duration, outcomes.len(), &t);
    let doc = bench_json(p, model, input_lens, &t, &m);
    (m, doc)
}

/// The figures `vllm bench serve` reports, and what the gate adds: every
/// request came back, at the asked length.
fn bench_metrics(
    p: &ThroughputParams,
    duration: f64,
    sent: usize,
    t: &Tally,
) -> IndexMap<String, Metric> {
    let failed = sent - t.completed;
    let d = duration.max(f64::MIN_POSITIVE);
    let mut m = IndexMap::new();
    let mut put = |k: &str, v: f64, unit: &str| {
        m.insert(k.to_string(), Metric::new(v, unit));
    };
    put("completed", t.completed as f64, "requests");
    put("failed", failed as f64, "requests");
    put("total_input_tokens", t.total_in as f64, "tokens");
    put("total_output_tokens", t.total_out as f64, "tokens");
    put("duration", duration, "s");
    put("request_throughput", t.completed as f64 / d, "req/s");
    put("output_throughput", t.total_out as f64 / d, "tok/s");
    put(
        "total_token_throughput",
        (t.total_in as f64 + t.total_out as f64) / d,
        "tok/s",
    );
    for (name, v) in [
        ("ttft", &t.ttfts),
        ("tpot", &t.tpots),
        ("itl", &t.itls),
        ("e2el", &t.e2els),
    ] {
        put(&format!("mean_{name}_ms"), mean(v), "ms");
        put(&format!("median_{name}_ms"), percentile(v, 50.0), "ms");
        put(&format!("p99_{name}_ms"), percentile(v, 99.0), "ms");
    }
    put(
        "incomplete_requests",
        p.num_prompts.saturating_sub(t.completed) as f64,
        "requests",
    );
    for (name, metric) in super::vllm_bench::input_tokens(&p.bench(), t.total_in as f64) {
        put(name, metric.value, &metric.unit);
    }
    put("achieved_prompt_tokens", t.achieved_in as f64, "tokens");
    m
}

/// The result file `vllm bench serve --save-result` writes, field for field.
fn bench_json(
    p: &ThroughputParams,
    model: &str,
    input_lens: &[usize],
    t: &Tally,
    m: &IndexMap<String, Metric>,
) -> Value {
    let mut doc = json!({
        "date": chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string(),
        "backend": match p.endpoint { Api::Chat => "openai-chat", Api::Completions => "openai" },
        "model_id": model,
        "tokenizer_id": model,
        "num_prompts": p.num_prompts,
        "request_rate": p.request_rate.map_or(json!("inf"), |r| json!(r)),
        "burstiness": 1.0,
        "max_concurrency": p.max_concurrency,
        "input_lens": input_lens,
        "output_lens": t.output_lens,
        "ttfts": t.ttft_list,
        "itls": t.itl_lists,
        "errors": t.errors,
    });
    for (k, v) in m {
        doc[k.as_str()] = if matches!(
            k.as_str(),
            "completed" | "failed" | "total_input_tokens" | "total_output_tokens"
        ) {
            json!(v.value as u64)
        } else {
            json!(v.value)
        };
    }
    doc
}

/// The throughput test: the same seeded prompts and arrivals to each
/// engine, natively or through `vllm bench serve`.
pub(crate) struct Throughput {
    params: ThroughputParams,
    attempt: u32,
}

impl Throughput {
    pub(crate) fn new(params: ThroughputParams, attempt: u32) -> Self {
        Self { params, attempt }
    }

    /// Each trial of each attempt draws new prompts and arrivals (the same
    /// for both engines within it), so an engine that kept earlier prompts
    /// gains nothing.
    fn params_for(&self, ctx: &Ctx<'_>) -> ThroughputParams {
        let round = (self.attempt.max(1) - 1) * ctx.trials + (ctx.trial.max(1) - 1);
        ThroughputParams {
            seed: self.params.seed.wrapping_add(u64::from(round)),
            ..self.params.clone()
        }
    }
}

impl Workload for Throughput {
    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        _phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let p = &self.params_for(ctx);
            let (target, client) = ctx.engine(role)?;
            let label = super::api::trial_label(role, ctx.trial);
            (ctx.say)(format!(
                "{} prompts of {} tokens against {role} (`{}`)",
                p.num_prompts, p.input_len, target.name
            ));
            if p.warmup_requests > 0 {
                let model = super::shared::resolve_model(&client, ctx.model).await?;
                let failed = warm_up(&client, &model, p.warmup_requests).await;
                (ctx.say)(format!(
                    "{role}: {} warm-up requests ({failed} failed), not measured",
                    p.warmup_requests
                ));
            }
            let r = match p.driver {
                Driver::Native => {
                    run(&client, ctx.model, p, ctx.out_dir, &label, ctx.progress).await?
                }
                Driver::VllmBench => {
                    let model = super::shared::resolve_model(&client, ctx.model).await?;
                    let metrics = super::vllm_bench::run(
                        &p.vllm_command,
                        &p.bench(),
                        &target.url,
                        &model,
                        ctx.out_dir,
                        &label,
                    )
                    .await?;
                    ThroughputOutput {
                        metrics,
                        files: vec![
                            format!("vllm_bench/{label}.json"),
                            format!("vllm_bench/{label}.log"),
                        ],
                    }
                }
            };
            let m = |k: &str| r.metrics.get(k).map_or(f64::NAN, |m| m.value);
            (ctx.say)(format!(
                "{role}: {}/{} completed, {:.0} tok/s total, mean TTFT {:.1} ms, {:.2} s",
                m("completed"),
                p.num_prompts,
                m("total_token_throughput"),
                m("mean_ttft_ms"),
                m("duration")
            ));
            out.metrics.insert(role, r.metrics);
            out.files.extend(r.files);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
