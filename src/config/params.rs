//! Every workload's parameters, as a suite's `[tests.NAME]` table holds
//! them, each with its own validation: config knows every kind's schema, so
//! a bad value is refused at load time naming its key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
            max_retries: 3,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    /// `.buildkite/correctness/mmlu-test.py`, as LMCache runs it today.
    #[default]
    Lmcache,
    /// The older HTTP scripts of the same suite (a bare `Answer:` cue,
    /// three tokens).
    LmcacheHttp,
    /// Dynamo's `tests/lmcache/`.
    Dynamo,
}

impl Variant {
    /// `max_tokens` each suite asks for.
    pub(crate) fn max_tokens(self) -> u32 {
        match self {
            Variant::Lmcache => 2,
            Variant::LmcacheHttp | Variant::Dynamo => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RequestRateParams {
    /// Requests per second, evenly spaced.
    pub qps: f64,
    pub duration_secs: f64,
    /// Tokens of the shared context at the head of each prompt.
    pub context_len: usize,
    /// Tokens of the question after it, unique per request.
    pub query_len: usize,
    pub output_len: u32,
    /// Requests cycle through this many contexts, so later ones can reuse KV.
    pub num_contexts: usize,
    pub endpoint: Api,
}

impl Default for RequestRateParams {
    fn default() -> Self {
        Self {
            qps: 2.0,
            duration_secs: 30.0,
            context_len: 5000,
            query_len: 50,
            output_len: 32,
            num_contexts: 4,
            endpoint: Api::Chat,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeterminismParams {
    /// JSONL of `{"id": ..., "prompt": ...}`; the built-in set when absent.
    pub prompts: Option<PathBuf>,
    pub max_tokens: u32,
    pub seed: u64,
    /// Also ask the baseline engine and compare it with LMCache.
    pub compare_baseline: bool,
    pub max_inflight_requests: usize,
    pub store_load_pause_secs: f64,
    /// The load pass one prompt at a time, each right after the LMCache
    /// engine's GPU prefix cache was emptied (vLLM's `POST
    /// /reset_prefix_cache`), so it reads LMCache's KV, not the GPU's;
    /// `load_pass_external_pct` says how much of it LMCache served.
    pub reset_prefix_cache: bool,
}

impl Default for DeterminismParams {
    fn default() -> Self {
        Self {
            prompts: None,
            max_tokens: 64,
            seed: 42,
            compare_baseline: true,
            max_inflight_requests: 16,
            store_load_pause_secs: 0.5,
            reset_prefix_cache: false,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LmEvalParams {
    pub command: String,
    pub task: String,
    pub limit: u32,
    pub num_concurrent: u32,
    pub max_retries: u32,
    pub seed: u64,
    /// The Hugging Face hub data set the task reads (gsm8k: `openai/gsm8k`).
    /// Where the hub is declared offline (`HF_HUB_OFFLINE=1` or
    /// `HF_DATASETS_OFFLINE=1`), it must be in the local Hugging Face cache.
    pub dataset: Option<String>,
    /// What a missing `lm_eval` or data set does: `fail` the test (k3's
    /// step fails), or `skip` it, saying why.
    pub when_unavailable: WhenUnavailable,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WhenUnavailable {
    #[default]
    Fail,
    Skip,
}

impl Default for LmEvalParams {
    fn default() -> Self {
        Self {
            command: "lm_eval".into(),
            task: "gsm8k".into(),
            limit: 300,
            num_concurrent: 50,
            max_retries: 3,
            seed: 0,
            dataset: None,
            when_unavailable: WhenUnavailable::Fail,
        }
    }
}

/// Which OpenAI endpoint a streamed request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Api {
    /// `POST /v1/chat/completions` with one user message.
    Chat,
    /// `POST /v1/completions` with a prompt.
    Completions,
}

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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RepeatMode {
    Tile,
    Interleave,
    Random,
}

/// Why a test's parameters are refused: the key under `tests.NAME` (none for
/// the table as a whole) and what is wrong.
#[derive(Debug, PartialEq)]
pub(crate) struct Invalid {
    pub key: Option<&'static str>,
    pub message: &'static str,
}

fn invalid(key: Option<&'static str>, message: &'static str) -> Result<(), Invalid> {
    Err(Invalid { key, message })
}

/// The first of these counts that is zero, named.
fn at_least_one(counts: &[(&'static str, u64)]) -> Result<(), Invalid> {
    match counts.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => invalid(Some(key), "must be at least 1"),
        None => Ok(()),
    }
}

fn seconds_ok(v: f64) -> bool {
    v.is_finite() && v >= 0.0
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
        Ok(())
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

impl ThroughputParams {
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

impl DeterminismParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("max_inflight_requests", self.max_inflight_requests as u64),
            ("max_tokens", u64::from(self.max_tokens)),
        ])?;
        if !seconds_ok(self.store_load_pause_secs) {
            return invalid(
                Some("store_load_pause_secs"),
                "must be zero or more seconds",
            );
        }
        Ok(())
    }
}

impl LmEvalParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("limit", u64::from(self.limit)),
            ("num_concurrent", u64::from(self.num_concurrent)),
        ])?;
        Ok(())
    }
}

/// Parameters of the fault-tolerance workload (k3's
/// `workloads/vllm/fault-tolerance.sh`): three benchmark runs against the
/// LMCache engine (warm-up, one during which the LMCache server is stopped,
/// one after), each of which must complete every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FaultToleranceParams {
    /// The service stopped mid-run (default: the suite's only service).
    pub service: Option<String>,
    pub num_prompts: usize,
    pub input_len: usize,
    pub output_len: u32,
    pub seed: u64,
    /// The stop comes this fraction of the warm-up run's duration into the
    /// second run, and no sooner than `min_stop_after_secs` (k3: 0.4, 3 s).
    pub stop_after_fraction: f64,
    pub min_stop_after_secs: f64,
    /// `native`, or `vllm-bench` to run `vllm bench serve` as k3 does.
    pub driver: Driver,
    pub vllm_command: String,
    pub endpoint: Api,
}

impl Default for FaultToleranceParams {
    fn default() -> Self {
        Self {
            service: None,
            num_prompts: 50,
            input_len: 10_000,
            output_len: 1,
            seed: 42,
            stop_after_fraction: 0.4,
            min_stop_after_secs: 3.0,
            driver: Driver::Native,
            vllm_command: "vllm".to_string(),
            endpoint: Api::Chat,
        }
    }
}

impl FaultToleranceParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("num_prompts", self.num_prompts as u64),
            ("input_len", self.input_len as u64),
            ("output_len", u64::from(self.output_len)),
        ])?;
        for (key, v) in [
            ("stop_after_fraction", self.stop_after_fraction),
            ("min_stop_after_secs", self.min_stop_after_secs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return invalid(Some(key), "must be zero or more");
            }
        }
        Ok(())
    }

    /// The benchmark each of the three runs is.
    pub(crate) fn throughput(&self) -> ThroughputParams {
        ThroughputParams {
            num_prompts: self.num_prompts,
            input_len: self.input_len,
            output_len: self.output_len,
            seed: self.seed,
            driver: self.driver,
            vllm_command: self.vllm_command.clone(),
            endpoint: self.endpoint,
            ..ThroughputParams::default()
        }
    }
}

impl RequestRateParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        for (key, v) in [("qps", self.qps), ("duration_secs", self.duration_secs)] {
            if !(v.is_finite() && v > 0.0) {
                return invalid(Some(key), "must be a positive number");
            }
        }
        at_least_one(&[
            ("context_len", self.context_len as u64),
            ("output_len", u64::from(self.output_len)),
            ("num_contexts", self.num_contexts as u64),
        ])?;
        if self.query_len < 2 {
            return invalid(Some("query_len"), "must be at least 2");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_ratio() {
        assert_eq!(parse_hit_miss("2:2"), Some((2, 2)));
        assert_eq!(parse_hit_miss("0:0"), None);
        assert_eq!(parse_hit_miss("x"), None);
    }

    #[test]
    fn each_kind_names_the_key_it_refuses() {
        let p = LongDocQaParams {
            hit_miss_ratio: Some("0:0".into()),
            ..LongDocQaParams::default()
        };
        assert_eq!(p.validate().unwrap_err().key, Some("hit_miss_ratio"));
        let p = DeterminismParams {
            store_load_pause_secs: -1.0,
            ..DeterminismParams::default()
        };
        assert_eq!(p.validate().unwrap_err().key, Some("store_load_pause_secs"));
        let p = ThroughputParams {
            request_rate: Some(0.0),
            ..ThroughputParams::default()
        };
        assert_eq!(p.validate().unwrap_err().key, Some("request_rate"));
        assert!(MmluParams::default().validate().is_ok());
    }
}
