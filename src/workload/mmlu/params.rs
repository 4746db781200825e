//! The MMLU test's parameters, checked at load, and what a question costs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::prompt::Variant;
use crate::config::{at_least_one, invalid, seconds_ok, Invalid, KindParams, Wants};

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

/// Tokens one MMLU question costs over both engines (few-shot examples of
/// ~100 tokens each, LMCache asked twice).
pub(crate) fn question_tokens(p: &MmluParams) -> f64 {
    let passes = if p.store_then_load { 3.0 } else { 2.0 };
    passes * 100.0 * (p.num_fewshot + 1) as f64 / 2.0
}
