//! What the kinds share: running jobs with bounded concurrency, reading
//! vLLM's KV-connector share around a load pass, resolving the model, and
//! writing a test's files.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::WorkloadError;
use crate::client::OpenAiClient;
use crate::results::Metric;

/// vLLM's prompt-token counters, read around a load pass: how many of its
/// prompt tokens the KV connector (LMCache) served. Where the engine
/// serves no such counters there is nothing to say.
pub(crate) struct LoadShare {
    external: f64,
    prompt: f64,
}

const EXTERNAL_TOKENS: &str =
    r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#;
const PROMPT_TOKENS: &str = "vllm:prompt_tokens_total";

impl LoadShare {
    pub(crate) async fn read(client: &OpenAiClient) -> Option<Self> {
        let text = client
            .scrape(&client.endpoint().at("/metrics"))
            .await
            .ok()??;
        let m = crate::client::prometheus::parse(&text);
        Some(Self {
            external: *m.get(EXTERNAL_TOKENS)?,
            prompt: *m.get(PROMPT_TOKENS)?,
        })
    }

    /// `load_pass_external_pct`: the share (in %) of the prompt tokens
    /// between two readings that came through the KV connector.
    pub(crate) fn metric(before: &Self, after: &Self) -> Option<(String, Metric)> {
        let prompt = after.prompt - before.prompt;
        (prompt > 0.0).then(|| {
            let pct = 100.0 * (after.external - before.external).max(0.0) / prompt;
            ("load_pass_external_pct".to_string(), Metric::new(pct, "%"))
        })
    }
}

/// Runs `f` on every job with at most `limit` at once, each on the runtime's
/// threads; results come back in job order. A job's clock should start inside
/// `f`, after it got its slot, as the reference's semaphore does.
pub(crate) async fn bounded<T, R, F, Fut>(jobs: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    let n = jobs.len();
    for (i, job) in jobs.into_iter().enumerate() {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let fut = f(job);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            (i, r)
        });
    }
    let mut done: Vec<Option<R>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => done[i] = Some(r),
            // A panicking job is a bug: surface it rather than lose a row.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    done.into_iter().flatten().collect()
}

/// The model to send: the configured one, or for `auto` the first the
/// server lists.
pub(crate) async fn resolve_model(
    client: &OpenAiClient,
    model: &str,
) -> Result<String, WorkloadError> {
    client
        .resolve_model(model)
        .await
        .map_err(WorkloadError::client(client))
}

/// Writes `results_dir/<sub>/<name>` atomically; returns its path relative
/// to the results directory, as results.json lists files.
pub(crate) fn write_output(
    results_dir: &Path,
    sub: &str,
    name: &str,
    bytes: &[u8],
) -> Result<String, WorkloadError> {
    let path = results_dir.join(sub).join(name);
    let dir = path.parent().unwrap_or(results_dir);
    std::fs::create_dir_all(dir).map_err(|source| WorkloadError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    crate::results::write_atomic(&path, bytes).map_err(|e| WorkloadError::Write {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!("{sub}/{name}"))
}
