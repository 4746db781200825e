//! Which metrics a check may bound: a kind's own (each kind lists them),
//! any engine counter, and the rules the gate applies by name, so a check
//! on a metric its test never produces is refused when the suite loads
//! (with the nearest known name) instead of failing after the engines ran.

use super::kind::TestKind;
use crate::results::Better;

/// Shares of the queried prompt tokens the GPU's prefix cache and the KV
/// connector served, from the engines' counters (any kind).
pub(crate) const CACHE_SHARES: &[&str] = &["prefix_cache_hit_pct", "external_prefix_cache_hit_pct"];

/// A counter read off an engine's `/metrics` (vLLM's `vllm:…`, LMCache's
/// `lmcache…`, a labelled part such as `…{source="…"}`), or a share of
/// them: open-ended, since engines add counters between versions.
pub(crate) fn is_engine_metric(name: &str) -> bool {
    let base = name.split('{').next().unwrap_or(name);
    ((base.starts_with("vllm:") || base.starts_with("lmcache"))
        && !base.contains(char::is_whitespace))
        || CACHE_SHARES.contains(&name)
}

/// Kinds' metrics that prove LMCache served a pass: the share of its
/// prompt tokens the connector gave back (MMLU's and determinism's load pass).
pub(crate) const ENGAGEMENT: &[&str] = &["load_pass_external_pct"];

/// Metrics that prove a cache was engaged: [`ENGAGEMENT`], and engine
/// counters and shares of hits (a `hit` or `hits` word in the name, as
/// `vllm:external_prefix_cache_hits_total` or `prefix_cache_hit_pct`). A
/// bound on one must hold in every trial, so one trial without a single
/// hit fails even when the others bring the mean up.
pub(crate) fn proves_engagement(name: &str) -> bool {
    let hits = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "hit" || w == "hits");
    ENGAGEMENT.contains(&name) || (is_engine_metric(name) && hits)
}

/// Whether a test of `kind` can have a metric of this name.
pub(crate) fn knows(kind: &dyn TestKind, name: &str) -> bool {
    kind.metrics().contains(&name) || is_engine_metric(name)
}

/// Which way is better for a metric of a test of `kind`: as the kind
/// declares it, else, for an engine counter, bigger where it counts cache
/// hits (what [`proves_engagement`] reads) and none for any other (queries,
/// tokens by source: neither way is better).
pub(crate) fn direction(kind: &dyn TestKind, name: &str) -> Option<Better> {
    kind.directions()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .or_else(|| (is_engine_metric(name) && proves_engagement(name)).then_some(Better::Bigger))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engagement_is_declared_or_an_engine_counter_of_hits() {
        for yes in [
            "vllm:external_prefix_cache_hits_total",
            "vllm:prefix_cache_hits_total",
            "lmcache:num_hit_tokens_total",
            "prefix_cache_hit_pct",
            "external_prefix_cache_hit_pct",
            "load_pass_external_pct",
        ] {
            assert!(proves_engagement(yes), "{yes}");
        }
        for no in [
            "whitespace_tokens",
            "vllm:whitespace_total",
            "hit_miss_ratio",
            "query_ttft_per_prompt",
            "vllm:prefix_cache_queries_total",
        ] {
            assert!(!proves_engagement(no), "{no}");
        }
    }

    #[test]
    fn a_typo_gets_the_nearest_name_and_nonsense_none() {
        use crate::config::near::suggest;
        let known = ["query_ttft_per_prompt", "query_round_time_per_prompt"];
        assert_eq!(
            suggest("query_ttft_per_promt", known),
            Some("query_ttft_per_prompt")
        );
        assert_eq!(suggest("throughput", known), None);
    }

    #[test]
    fn a_kind_knows_its_own_metrics_and_every_engine_counter() {
        let kind = &crate::config::kind::toy::Toy;
        assert!(knows(kind, "answers"));
        assert!(knows(kind, "vllm:external_prefix_cache_hits_total"));
        assert!(knows(
            kind,
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#
        ));
        assert!(knows(kind, "prefix_cache_hit_pct"));
        assert!(!knows(kind, "query_ttft_per_prompt"));
    }
}
