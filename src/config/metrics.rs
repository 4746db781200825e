//! Which metrics a check may bound and how each is judged: a kind's own
//! (each kind declares them), the engine counters the tool knows (declared
//! too), and any other engine counter, so a check on a metric its test
//! never produces is refused when the suite loads (with the nearest known
//! name) instead of failing after the engines ran.

use super::kind::TestKind;
pub(crate) use super::metric_spec::{Judged, MetricSpec, ENGINE_COUNTERS};
#[cfg(test)]
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

/// The spec of `name` for a test of `kind`: the kind's own, else a known
/// engine counter's, else (any other counter) an unnamed spec with no
/// unit, no better side and no method, judged on the mean.
pub(crate) fn spec(kind: &dyn TestKind, name: &str) -> MetricSpec {
    let named = |s: &&MetricSpec| s.name == name;
    kind.metrics()
        .iter()
        .find(named)
        .or_else(|| ENGINE_COUNTERS.iter().find(named))
        .copied()
        .unwrap_or(MetricSpec::new("", ""))
}

/// Whether a test of `kind` can have a metric of this name.
pub(crate) fn knows(kind: &dyn TestKind, name: &str) -> bool {
    kind.metrics().iter().any(|s| s.name == name) || is_engine_metric(name)
}

/// The names of a kind's own metrics.
pub(crate) fn names(kind: &dyn TestKind) -> Vec<&'static str> {
    kind.metrics().iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a declared counter of hits is judged in every trial and has a
    /// better side: `local_cache_hit` (vLLM's own GPU cache, as an H100's
    /// counters split it) has "hit" in its name and neither.
    #[test]
    fn engagement_is_declared_not_guessed_from_a_name() {
        let kind = &crate::config::kind::toy::Toy;
        for yes in [
            "vllm:external_prefix_cache_hits_total",
            "vllm:prefix_cache_hits_total",
            "prefix_cache_hit_pct",
            "external_prefix_cache_hit_pct",
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#,
        ] {
            let s = spec(kind, yes);
            assert_eq!(
                (s.judged, s.better),
                (Judged::EveryTrial, Some(Better::Bigger)),
                "{yes}"
            );
        }
        for no in [
            "vllm:whitespace_total",
            "vllm:hit_miss_ratio",
            r#"vllm:prompt_tokens_by_source_total{source="local_cache_hit"}"#,
            "vllm:prefix_cache_queries_total",
        ] {
            let s = spec(kind, no);
            assert_eq!((s.judged, s.better), (Judged::Mean, None), "{no}");
        }
        assert_eq!(spec(kind, "wrong_answers").better, Some(Better::Smaller));
    }

    /// Each declared counter is one a real engine serves (vLLM 0.26 with
    /// LMCache 0.5.2 on an H100), or a share the tool computes: a misspelt
    /// or invented name would silently be judged on its mean.
    #[test]
    fn every_declared_counter_is_one_the_h100_served_or_a_computed_share() {
        let prom = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/lm_eval-h100-reset/lmcache-after.prom"),
        )
        .unwrap();
        let served = crate::client::prometheus::parse(&prom);
        for s in ENGINE_COUNTERS {
            assert!(
                served.contains_key(s.name) || CACHE_SHARES.contains(&s.name),
                "`{}` is neither served nor computed",
                s.name
            );
        }
        for share in CACHE_SHARES {
            assert!(ENGINE_COUNTERS.iter().any(|s| s.name == *share), "{share}");
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
        assert!(!knows(kind, "whitespace_tokens"));
        assert!(knows(kind, "vllm:external_prefix_cache_hits_total"));
        assert!(knows(
            kind,
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#
        ));
        assert!(knows(kind, "prefix_cache_hit_pct"));
        assert!(!knows(kind, "query_ttft_per_prompt"));
    }
}
