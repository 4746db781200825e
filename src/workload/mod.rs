//! Workloads: they reach engines only through `client` and a base URL, so
//! they run the same against servers this tool did not start.

pub(crate) mod determinism;
pub(crate) mod lm_eval;
pub(crate) mod long_doc_qa;
pub(crate) mod mmlu;
pub(crate) mod request_rate;
pub(crate) mod throughput;
pub(crate) mod vllm_bench;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkloadError {
    #[error(transparent)]
    Mmlu(#[from] mmlu::MmluError),
    #[error(transparent)]
    Determinism(#[from] determinism::DeterminismError),
    #[error(transparent)]
    VllmBench(#[from] vllm_bench::VllmBenchError),
    #[error(transparent)]
    LmEval(#[from] lm_eval::LmEvalError),
    #[error("failed to prepare the workload against {url}: {source}")]
    Client { url: String, source: ClientError },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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
    client: &crate::client::OpenAiClient,
    model: &str,
) -> Result<String, WorkloadError> {
    client
        .resolve_model(model)
        .await
        .map_err(|source| WorkloadError::Client {
            url: client.base().to_string(),
            source,
        })
}

/// Writes `results_dir/<sub>/<name>` atomically; returns its path relative
/// to the results directory, as results.json lists files.
pub(crate) fn write_output(
    results_dir: &std::path::Path,
    sub: &str,
    name: &str,
    bytes: &[u8],
) -> Result<String, WorkloadError> {
    let dir = results_dir.join(sub);
    std::fs::create_dir_all(&dir).map_err(|source| WorkloadError::Write {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(name);
    crate::report::results::write_atomic(&path, bytes).map_err(|e| WorkloadError::Write {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!("{sub}/{name}"))
}
