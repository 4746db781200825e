//! Proof that a cache was used: each engine's Prometheus `/metrics` read
//! before and after a test runs against it, and the growth of its cache
//! counters (vLLM's prefix cache and KV-connector counters, LMCache's own)
//! recorded as metrics the gate can bound. A server without `/metrics`
//! simply has none: "not available", never a failure.

use std::time::Duration;

use indexmap::IndexMap;

use crate::client::OpenAiClient;
use crate::results::Metric;

/// Counters worth recording: cache lookups and hits, prompt tokens, and
/// every LMCache counter.
fn of_interest(name: &str) -> bool {
    name.ends_with("_total")
        && (name.contains("prefix_cache")
            || name.starts_with("vllm:prompt_tokens")
            || name.starts_with("lmcache"))
}

/// One reading of an engine's counters; `None` when it serves none.
pub(crate) async fn read(base_url: &str) -> Option<IndexMap<String, f64>> {
    let client = OpenAiClient::new(base_url, Duration::from_secs(10)).ok()?;
    let url = client.endpoint().at("/metrics");
    let all = client.scrape(&url).await.ok()??;
    Some(all.into_iter().filter(|(k, _)| of_interest(k)).collect())
}

/// How much each counter grew between two readings, as metrics named like
/// the counters (a counter that went backwards restarted: its new value is
/// the growth).
pub(crate) fn growth(
    before: &IndexMap<String, f64>,
    after: &IndexMap<String, f64>,
) -> IndexMap<String, Metric> {
    after
        .iter()
        .map(|(name, now)| {
            let then = before.get(name).copied().unwrap_or(0.0);
            let grew = if now >= &then { now - then } else { *now };
            let unit = if name.contains("tokens") || name.contains("prefix_cache") {
                "tokens"
            } else {
                ""
            };
            (name.clone(), Metric::new(grew, unit))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_per_counter_and_survives_a_restart() {
        let before = IndexMap::from([
            ("vllm:external_prefix_cache_hits_total".to_string(), 100.0),
            ("lmcache_mp_l1_read_chunks_total".to_string(), 50.0),
        ]);
        let after = IndexMap::from([
            ("vllm:external_prefix_cache_hits_total".to_string(), 4196.0),
            ("lmcache_mp_l1_read_chunks_total".to_string(), 7.0),
            ("vllm:prefix_cache_queries_total".to_string(), 9000.0),
        ]);
        let g = growth(&before, &after);
        assert_eq!(g["vllm:external_prefix_cache_hits_total"].value, 4096.0);
        assert_eq!(g["vllm:external_prefix_cache_hits_total"].unit, "tokens");
        assert_eq!(g["lmcache_mp_l1_read_chunks_total"].value, 7.0, "restarted");
        assert_eq!(g["vllm:prefix_cache_queries_total"].value, 9000.0);
        assert!(of_interest("lmcache:num_hit_tokens_total"));
        assert!(!of_interest("vllm:num_requests_running"));
    }
}
