//! What each test kind measures, so a check on a metric its test never
//! produces is refused when the suite loads (with the nearest known name)
//! instead of failing after the engines ran.

use super::TestKind;

/// The vLLM `bench serve` style figures every throughput run reports.
const THROUGHPUT: &[&str] = &[
    "completed",
    "failed",
    "total_input_tokens",
    "total_output_tokens",
    "duration",
    "request_throughput",
    "output_throughput",
    "total_token_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
    "incomplete_requests",
    "input_token_mismatch",
    "input_token_error_pct",
    "achieved_prompt_tokens",
];

/// Shares of the queried prompt tokens the GPU's prefix cache and the KV
/// connector served, from the engines' counters (any kind).
pub(crate) const CACHE_SHARES: &[&str] = &["prefix_cache_hit_pct", "external_prefix_cache_hit_pct"];

/// The metrics a test of `kind` records, engine counters aside.
pub(crate) fn measured(kind: TestKind) -> &'static [&'static str] {
    match kind {
        TestKind::LongDocQa => &[
            "query_ttft_per_prompt",
            "query_round_time_per_prompt",
            "warmup_round_time_per_prompt",
            "warmup_ttft_mean",
            "query_ttft_p50",
            "query_ttft_p99",
            "warmup_round_time",
            "query_round_time",
            "ttft_gain",
            "latency_gain",
            "failed_requests",
            "requests",
        ],
        TestKind::Mmlu => &[
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
        ],
        TestKind::Throughput => THROUGHPUT,
        TestKind::Determinism => &[
            "mismatched_outputs",
            "missing_outputs",
            "compared_prompts",
            "failed_requests",
            "load_pass_external_pct",
        ],
        TestKind::LmEval => &[
            "differing_sample_lines",
            "samples",
            "first_run_score",
            "second_run_score",
            "score_drift",
            "min_score",
        ],
        TestKind::RequestRate => &[
            "mean_ttft",
            "p50_ttft",
            "p99_ttft",
            "mean_throughput",
            "failed_requests",
            "requests",
        ],
        TestKind::FaultTolerance => &[
            "stopped_mid_run",
            "ft_warmup_incomplete",
            "ft_midflight_incomplete",
            "ft_without_lmcache_incomplete",
        ],
    }
}

/// A counter read off an engine's `/metrics` (vLLM's `vllm:…`, LMCache's
/// `lmcache…`, a labelled part such as `…{source="…"}`), or a share of
/// them: open-ended, since engines add counters between versions.
pub(crate) fn is_engine_metric(name: &str) -> bool {
    let base = name.split('{').next().unwrap_or(name);
    ((base.starts_with("vllm:") || base.starts_with("lmcache"))
        && !base.contains(char::is_whitespace))
        || CACHE_SHARES.contains(&name)
}

/// Metrics that prove a cache was engaged (hits and hit shares): a bound on
/// one must hold in every trial, so one trial without a single hit fails
/// even when the others bring the mean up.
pub(crate) fn proves_engagement(name: &str) -> bool {
    name.contains("hit") || name == "load_pass_external_pct"
}

/// Whether a test of `kind` can have a metric of this name.
pub(crate) fn knows(kind: TestKind, name: &str) -> bool {
    measured(kind).contains(&name) || is_engine_metric(name)
}

/// The known name nearest `name`, if one is near enough to be a typo.
pub(crate) fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_nearest_name_and_nonsense_none() {
        let ldqa = measured(TestKind::LongDocQa).iter().copied();
        assert_eq!(
            suggest("query_ttft_per_promt", ldqa.clone()),
            Some("query_ttft_per_prompt")
        );
        assert_eq!(suggest("throughput", ldqa), None);
        assert!(knows(
            TestKind::Mmlu,
            "vllm:external_prefix_cache_hits_total"
        ));
        assert!(knows(
            TestKind::Determinism,
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#
        ));
        assert!(knows(TestKind::Throughput, "prefix_cache_hit_pct"));
        assert!(!knows(TestKind::Throughput, "query_ttft_per_prompt"));
    }
}
