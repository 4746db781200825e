//! What a workload kind is given and must provide: the [`Workload`] trait,
//! the context of a run ([`Ctx`]), what it produced ([`Output`]), and its
//! errors with whose fault they are.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use indexmap::IndexMap;

use super::progress::Progress;
use crate::client::{ClientError, Liveness, OpenAiClient};
use crate::config::{TestKind, TestParams};
pub(crate) use crate::results::ErrorClass;
use crate::results::{Chart, DetailTable, Metric, Paired, Role, TestRecord};

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkloadError {
    /// A kind's own error (MMLU data, a driver that failed), with whose
    /// fault it is: the kind's module says, so this file names no kind.
    #[error("{1}")]
    Kind(ErrorClass, Box<dyn std::error::Error + Send + Sync>),
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
            WorkloadError::Kind(class, _) => *class,
            WorkloadError::NeedsEngine { .. } => ErrorClass::BadInput,
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

    pub(super) fn client(client: &OpenAiClient) -> impl FnOnce(ClientError) -> Self + '_ {
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
    /// Whether the engine still answers, as every client of it found.
    pub live: Arc<Liveness>,
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
        let client = OpenAiClient::new(&target.url, self.timeout)
            .map_err(|source| WorkloadError::Client {
                url: target.url.clone(),
                source,
            })?
            .watched_by(target.live.clone());
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

    /// Runs against the engines of `roles` at once (`run.pairing =
    /// "together"`); a kind that cannot runs them one after the other.
    fn run_together<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        roles: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            for role in roles {
                self.run(ctx, *role, roles, out).await?;
            }
            Ok(())
        })
    }

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

/// A kind of test, as the run sees it: what the suite loader knows of it
/// ([`TestKind`]), how to start its workload, and, for a kind that splits
/// over shards, its parts and how their results merge.
pub(crate) trait WorkloadKind: TestKind {
    /// A fresh workload for one attempt (counting from 1) of a test.
    fn start(&self, params: &TestParams, attempt: u32) -> Box<dyn Workload>;

    /// The parts the test splits into over shards, in the order it runs
    /// them, each with its cost in the unit of `tokens_per_trial`; empty
    /// when it runs whole.
    fn parts(
        &self,
        _params: &TestParams,
        _results_dir: &Path,
        _suite_dir: &Path,
    ) -> Result<Vec<(String, f64)>, WorkloadError> {
        Ok(Vec::new())
    }

    /// Makes the test's input files ready (an archive checked and
    /// unpacked) before any engine starts, so a bad one costs no engine
    /// start; the test's own plan then finds them ready.
    fn prepare(
        &self,
        _params: &TestParams,
        _results_dir: &Path,
        _suite_dir: &Path,
    ) -> Result<(), WorkloadError> {
        Ok(())
    }

    /// The parameters that run only `parts` of the test.
    fn only(&self, params: &TestParams, _parts: &[String]) -> TestParams {
        params.clone()
    }

    /// One record of a test split over shards, from every shard's part of
    /// it; `None` for a kind that never splits.
    fn merge(
        &self,
        _parts: &[ShardPart<'_>],
        _order: &[String],
    ) -> Option<Result<Merged, PartError>> {
        None
    }
}

/// One shard's part of a split test: its record and directory, and how
/// to read one of its files (by the name the record lists) safely.
pub(crate) struct ShardPart<'a> {
    pub dir: &'a Path,
    pub record: &'a TestRecord,
    pub read: &'a dyn Fn(&str) -> Result<Vec<u8>, PartError>,
}

/// A shard's part that cannot be merged: the file, and why.
#[derive(Debug)]
pub(crate) struct PartError {
    pub path: PathBuf,
    pub why: String,
}

/// What a split test's parts give together, before the gate: each role's
/// own metrics, LMCache's comparison with the baseline, what the union is
/// (`450 questions of 57 subjects`), notes, tables, and the files to write
/// (path relative to the results directory → contents).
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    pub compared: IndexMap<String, Metric>,
    pub summary: String,
    pub notes: Vec<String>,
    pub tables: Vec<DetailTable>,
    pub files: Vec<(String, String)>,
}

/// A kind's own parameters out of a test's: the loader typed them with the
/// same kind, so another type here is a bug in the registry.
pub(crate) fn own<P: 'static>(params: &TestParams) -> &P {
    params
        .get::<P>()
        .expect("a test's parameters are typed by its own kind")
}
