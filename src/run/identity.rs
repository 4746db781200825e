//! What a server says it is, once ready and again after each test: its
//! version, the models it serves and when its process started (vLLM's and
//! SGLang's `/metrics` carry `process_start_time_seconds`), so a server
//! restarted or replaced under the run is not measured in its place.

use std::time::Duration;

use crate::client::{prometheus, OpenAiClient};
use crate::results::EngineRecord;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    pub version: Option<String>,
    pub served: Vec<String>,
    /// Unix seconds, where the server says.
    pub started: Option<f64>,
    /// Tokens its GPU KV cache holds, where it says (vLLM).
    pub kv_cache_tokens: Option<u64>,
}

impl Identity {
    /// Asks the server; names are cut and capped: the answer is the
    /// server's.
    pub(crate) async fn of(c: &OpenAiClient) -> Self {
        let (models, version, (started, kv_cache_tokens)) = tokio::join!(
            c.models(Duration::from_secs(5)),
            c.server_version(),
            from_metrics(c)
        );
        let served = models
            .unwrap_or_default()
            .into_iter()
            .take(4)
            .map(|m| m.chars().take(200).collect())
            .collect();
        Self {
            version,
            served,
            started,
            kv_cache_tokens,
        }
    }

    /// As the run recorded it once the engine was ready.
    pub(crate) fn recorded(rec: &EngineRecord) -> Self {
        Self {
            version: rec.version.clone(),
            served: rec.served_models.clone(),
            started: rec.process_started_unix,
            kv_cache_tokens: rec.kv_cache_tokens,
        }
    }

    /// Nothing answered at all.
    pub(crate) fn is_silent(&self) -> bool {
        self.version.is_none() && self.served.is_empty()
    }

    /// Whether `now` is another server than `self`: a start time counts
    /// only where both know one (a scrape may miss).
    pub(crate) fn changed_to(&self, now: &Identity) -> bool {
        let restarted =
            matches!((self.started, now.started), (Some(a), Some(b)) if (a - b).abs() > 0.5);
        self.version != now.version || self.served != now.served || restarted
    }

    pub(crate) fn describe(&self) -> String {
        if self.is_silent() {
            return "nothing that answers".into();
        }
        let served = if self.served.is_empty() {
            "no model".to_string()
        } else {
            self.served.join(", ")
        };
        let started = self
            .started
            .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
            .map(|t| {
                format!(
                    ", its process started {}",
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .unwrap_or_default();
        format!(
            "version {} serving {served}{started}",
            self.version.as_deref().unwrap_or("unknown")
        )
    }
}

/// `process_start_time_seconds` and the GPU KV capacity from the server's
/// `/metrics`, when it has them.
async fn from_metrics(c: &OpenAiClient) -> (Option<f64>, Option<u64>) {
    let Some(text) = c
        .scrape(&format!("{}/metrics", c.base()))
        .await
        .ok()
        .flatten()
    else {
        return (None, None);
    };
    let started = prometheus::parse(&text)
        .get("process_start_time_seconds")
        .copied()
        .filter(|s| s.is_finite() && *s > 0.0);
    (started, prometheus::kv_cache_tokens(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(version: &str, started: Option<f64>) -> Identity {
        Identity {
            version: Some(version.into()),
            served: vec!["m".into()],
            started,
            kv_cache_tokens: None,
        }
    }

    #[test]
    fn a_restart_is_a_change_even_at_the_same_version() {
        let was = id("0.26.0", Some(1_796_178_176.31));
        assert!(!was.changed_to(&id("0.26.0", Some(1_796_178_176.31))));
        assert!(
            !was.changed_to(&id("0.26.0", None)),
            "a missed scrape is not a restart"
        );
        assert!(was.changed_to(&id("0.26.0", Some(1_796_179_000.0))));
        assert!(was.changed_to(&id("0.27.0", Some(1_796_178_176.31))));
        assert!(id("0.26.0", Some(1_796_178_176.31))
            .describe()
            .ends_with("its process started 2026-12-02 02:22:56 UTC"));
    }
}
