//! Workloads: one module per kind behind the [`Workload`] trait. They reach
//! engines only through `client` and a base URL, so they run the same
//! against servers this tool did not start.

pub(crate) mod determinism;
pub(crate) mod fault_tolerance;
pub(crate) mod lm_eval;
pub(crate) mod long_doc_qa;
pub(crate) mod mmlu;
mod progress;
pub(crate) mod request_rate;
pub(crate) mod throughput;
pub(crate) mod vllm_bench;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{ClientError, OpenAiClient};
use crate::config::TestParams;
use crate::results::{Chart, DetailTable, Metric, Paired, Role};

pub(crate) use progress::{Progress, Snapshot};

/// What kind of failure stopped a workload, so the run exits with the code
/// that tells the user what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorClass {
    /// A file or value the user gave is wrong (exit 2).
    BadInput,
    /// The job's environment: a missing program, an unwritable directory (exit 3).
    Setup,
    /// An engine did not answer as an OpenAI server should (exit 4).
    Engine,
    /// The test ran but could not produce its measurement (exit 1).
    Failed,
}

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
    #[error("failed to run against {url}: {source}")]
    Client { url: String, source: ClientError },
    #[error(
        "failed to reset the prefix cache of {url} between the store and load passes: {source}"
    )]
    ResetPrefixCache { url: String, source: ClientError },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("test `{test}` needs {what}, but the suite has none; add one under [engines]")]
    NeedsEngine { test: String, what: String },
    /// What the test needs is not here, and the suite says to skip it then.
    #[error("skipped: {reason}")]
    Unavailable { reason: String },
}

impl WorkloadError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            WorkloadError::Mmlu(e) => e.class(),
            WorkloadError::Determinism(_) | WorkloadError::NeedsEngine { .. } => {
                ErrorClass::BadInput
            }
            WorkloadError::VllmBench(e) => e.class(),
            WorkloadError::LmEval(e) => e.class(),
            WorkloadError::Client { .. } | WorkloadError::ResetPrefixCache { .. } => {
                ErrorClass::Engine
            }
            WorkloadError::Write { .. } | WorkloadError::Unavailable { .. } => ErrorClass::Setup,
        }
    }

    /// The test was skipped, not broken: what it needs is not here.
    pub(crate) fn skipped(&self) -> bool {
        matches!(self, WorkloadError::Unavailable { .. })
    }

    /// Empties the engine's GPU prefix cache before a load-pass request.
    pub(crate) async fn reset_before_load(client: &OpenAiClient) -> Result<(), Self> {
        const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
        client.reset_prefix_cache(PATIENCE).await.map_err(|source| {
            WorkloadError::ResetPrefixCache {
                url: client.base().to_string(),
                source,
            }
        })
    }

    fn client(client: &OpenAiClient) -> impl FnOnce(ClientError) -> Self + '_ {
        move |source| WorkloadError::Client {
            url: client.base().to_string(),
            source,
        }
    }
}

/// An engine a workload may be sent to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub name: String,
    pub role: Role,
    pub url: String,
}

/// What a workload may ask of the run beyond HTTP to its engines, which
/// the orchestrator implements: stop one of the run's services (e.g. the
/// LMCache server) mid-run as a fault (it is started again once the trial
/// is over), and read the GPU memory in use.
pub(crate) trait Harness: Send + Sync {
    fn service_names(&self) -> Vec<String>;
    fn stop_service<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// MiB in use over the machine's GPUs; `None` without `nvidia-smi`.
    fn gpu_memory_used_mib(&self) -> BoxFuture<'_, Option<f64>>;
}

/// Everything a workload needs to know about where it runs.
pub(crate) struct Ctx<'a> {
    /// Which paired trial this is (from 1), of how many: a trial's inputs
    /// are fresh, the same for both engines.
    pub trial: u32,
    pub trials: u32,
    /// The name results record the test under (`mmlu`, or `mmlu@Model`).
    pub test: &'a str,
    pub model: &'a str,
    pub timeout: Duration,
    pub suite_dir: &'a Path,
    /// Where the test writes its files (the results directory, or the
    /// model's subdirectory of it).
    pub out_dir: &'a Path,
    /// Every engine of the run that takes workloads.
    pub engines: &'a [Target],
    /// Requests done so far, read by whoever shows progress.
    pub progress: &'a Arc<Progress>,
    /// A line worth telling the person watching.
    pub say: &'a (dyn Fn(String) + Send + Sync),
    pub harness: &'a dyn Harness,
}

impl Ctx<'_> {
    /// The engine of `role` and a client for it.
    pub(crate) fn engine(&self, role: Role) -> Result<(&Target, OpenAiClient), WorkloadError> {
        let target = self
            .engines
            .iter()
            .find(|t| t.role == role)
            .ok_or_else(|| WorkloadError::NeedsEngine {
                test: self.test.to_string(),
                what: format!("an engine with role `{role}`"),
            })?;
        let client = OpenAiClient::new(&target.url, self.timeout).map_err(|source| {
            WorkloadError::Client {
                url: target.url.clone(),
                source,
            }
        })?;
        Ok((target, client))
    }
}

/// What a test produced so far; recorded after every engine, so an
/// interrupted run keeps what was measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Output {
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    /// Files written, relative to the test's output directory.
    pub files: Vec<String>,
    pub notes: Vec<String>,
    pub tables: Vec<DetailTable>,
    pub charts: Vec<Chart>,
    /// Paired samples for relative checks' intervals (per metric, per trial).
    pub paired: Paired,
}

/// One kind of test. The orchestrator plans it once, runs it against each
/// engine in turn (baseline first), then finishes it: what comparing the
/// engines adds. Each kind keeps its own state between the calls.
pub(crate) trait Workload: Send {
    /// Prepares what every engine gets (data, prompts), once, before the
    /// first engine; `first` is that engine (e.g. its tokenizer).
    fn plan<'a>(
        &'a mut self,
        _ctx: &'a Ctx<'a>,
        _first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async { Ok(()) })
    }

    /// Runs against the engine of `role`; `phase` lists every role up now.
    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>>;

    /// After every engine ran.
    fn finish(&mut self, _ctx: &Ctx<'_>, _out: &mut Output) -> Result<(), WorkloadError> {
        Ok(())
    }
}

/// The label a trial's files carry: the role for the first trial, then
/// `lmcache_trial2`, ... so every trial keeps its own files.
pub(crate) fn trial_label(role: Role, trial: u32) -> String {
    match trial {
        0 | 1 => role.as_str().to_string(),
        t => format!("{role}_trial{t}"),
    }
}

/// The registry: a new kind is its module and one line here. `attempt`
/// counts from 1; a workload whose engines keep state between attempts
/// starts each from fresh inputs.
pub(crate) fn for_test(params: &TestParams, attempt: u32) -> Box<dyn Workload> {
    match params {
        TestParams::LongDocQa(p) => Box::new(long_doc_qa::LongDocQa::new(p.clone(), attempt)),
        TestParams::Mmlu(p) => Box::new(mmlu::Mmlu::new(p.clone())),
        TestParams::Throughput(p) => Box::new(throughput::Throughput::new(p.clone(), attempt)),
        TestParams::Determinism(p) => Box::new(determinism::Determinism::new(p.clone())),
        TestParams::LmEval(p) => Box::new(lm_eval::LmEval::new(p.clone())),
        TestParams::RequestRate(p) => Box::new(request_rate::RequestRate::new(p.clone())),
        TestParams::FaultTolerance(p) => Box::new(fault_tolerance::FaultTolerance::new(p.clone())),
    }
}

/// Runs `f` on every job with at most `limit` at once, each on the runtime's
/// threads; results come back in job order. A job's clock should start inside
/// `f`, after it got its slot, as the reference's semaphore does.
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
