//! Proof that a cache was used: each engine's Prometheus `/metrics` read
//! before and after a test runs against it, and the growth of its cache
//! counters (vLLM's prefix cache and KV-connector counters, LMCache's own)
//! recorded as metrics the gate can bound, with the share of queried
//! tokens each cache served. The texts read are kept beside the test's
//! outputs. A server without `/metrics` simply has none: "not available",
//! never a failure.

use std::time::Duration;

use indexmap::IndexMap;

use crate::client::{prometheus, OpenAiClient};
use crate::results::Metric;

/// Counters worth recording: cache lookups and hits, prompt tokens (by
/// source too), and every LMCache counter.
fn of_interest(name: &str) -> bool {
    let base = name.split('{').next().unwrap_or(name);
    base.ends_with("_total")
        && (base.contains("prefix_cache")
            || base.starts_with("vllm:prompt_tokens")
            || base.starts_with("lmcache"))
}

/// One reading of an engine's `/metrics`.
pub(crate) struct Reading {
    pub text: String,
    pub counters: IndexMap<String, f64>,
}

/// One reading of an engine's counters; `None` when it serves none.
pub(crate) async fn read(base_url: &str) -> Option<Reading> {
    let client = OpenAiClient::new(base_url, Duration::from_secs(10)).ok()?;
    let url = client.endpoint().at("/metrics");
    let text = client.scrape(&url).await.ok()??;
    let counters = prometheus::parse(&text)
        .into_iter()
        .filter(|(k, _)| of_interest(k))
        .collect();
    Some(Reading { text, counters })
}

/// Keeps a reading as `DIR/<role>-<when>.prom`; a file that cannot be
/// written costs the evidence file only, never the test.
pub(crate) fn keep(dir: &std::path::Path, role: &str, when: &str, r: &Reading) {
    let _ = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(format!("{role}-{when}.prom")), &r.text));
}

/// Share of the queried tokens each cache served, in %, from the growth
/// of vLLM's counters: its GPU prefix cache (`prefix_cache_hit_pct`) and
/// its KV connector, LMCache (`external_prefix_cache_hit_pct`, of what it
/// was asked for: the tokens the GPU had not).
fn hit_shares(grown: &IndexMap<String, Metric>) -> IndexMap<String, Metric> {
    let get = |k: &str| grown.get(k).map(|m| m.value);
    [
        (
            "prefix_cache_hit_pct",
            "vllm:prefix_cache_hits_total",
            "vllm:prefix_cache_queries_total",
        ),
        (
            "external_prefix_cache_hit_pct",
            "vllm:external_prefix_cache_hits_total",
            "vllm:external_prefix_cache_queries_total",
        ),
    ]
    .into_iter()
    .filter_map(|(name, hits, queries)| {
        let (h, q) = (get(hits)?, get(queries)?);
        (q > 0.0).then(|| (name.to_string(), Metric::new(100.0 * h / q, "%")))
    })
    .collect()
}

/// How much each counter grew between two readings, as metrics named like
/// the counters (a counter that went backwards restarted: its new value is
/// the growth).
pub(crate) fn growth(
    before: &IndexMap<String, f64>,
    after: &IndexMap<String, f64>,
) -> IndexMap<String, Metric> {
    let mut grown: IndexMap<String, Metric> = after
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
        .collect();
    let shares = hit_shares(&grown);
    grown.extend(shares);
    grown
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
        assert!(of_interest("lmcache_mp_event_bus_dropped_events_total"));
        assert!(of_interest(
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#
        ));
        assert!(!of_interest("vllm:num_requests_running"));
    }
}
