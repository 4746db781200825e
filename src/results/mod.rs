//! The results model: everything a run produced, as written to
//! `RESULTS_DIR/results.json`. Reports are rendered from this alone, so a
//! later job can re-render them from disk.

mod class;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod history;

pub(crate) use class::ErrorClass;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA_VERSION: u32 = 1;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// Something the engines need (e.g. the LMCache server): started first,
    /// kept up through every phase, never sent a workload.
    Service,
    Baseline,
    Lmcache,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Service => "service",
            Role::Baseline => "baseline",
            Role::Lmcache => "lmcache",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    /// A failure fails the run (exit 1).
    #[default]
    Error,
    /// A failure is reported as a warning only.
    Warning,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResultsError {
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path}: {source} (is it a results.json written by lmcache-e2e?)")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "failed to read {path}: it is over {max_mib} MiB (--max-results-mib raises the limit)"
    )]
    TooLarge { path: PathBuf, max_mib: u64 },
    #[error("failed to accept {path}: `{field}` is {value:?}, {why}")]
    Hostile {
        path: PathBuf,
        field: String,
        value: String,
        why: &'static str,
    },
    #[error(
        "failed to use {path} as the results directory: it holds {what}; pass --overwrite to \
         clear it first, or give another --results-dir"
    )]
    Occupied { path: PathBuf, what: String },
}

impl ResultsError {
    /// The file given is at fault, or the machine.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            ResultsError::Parse { .. }
            | ResultsError::TooLarge { .. }
            | ResultsError::Hostile { .. }
            | ResultsError::Occupied { .. } => ErrorClass::BadInput,
            // A results directory given that holds no results.json is the
            // user's input gone wrong; one that cannot be read, the machine's.
            ResultsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::BadInput
            }
            ResultsError::Write { .. } | ResultsError::Read { .. } => ErrorClass::Setup,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Running,
    Passed,
    /// Nothing failed, but a check's evidence could not tell pass from
    /// fail after every trial it was allowed: never a pass.
    Inconclusive,
    Failed,
    Interrupted,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TestStatus {
    NotRun,
    Running,
    Passed,
    /// Passed, with soft checks failing.
    Warning,
    /// Passed on a later attempt after a retryable check failed.
    Flaky,
    /// Nothing failed, but a check's interval straddles its threshold: the
    /// run cannot tell, and says so.
    Inconclusive,
    Failed,
    /// The workload could not run to the end.
    Error,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Metric {
    pub value: f64,
    pub unit: String,
    /// How sure the value is: a two-sided interval around it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// What the value rests on (questions, prompts × trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// The p-value of the test behind it, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// Each trial's value, in order, when `value` pools several trials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<f64>,
    /// Which way is better, as the test's kind (or the engine counter's
    /// table) declares it; none for a count that is neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub better: Option<Better>,
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    Smaller,
    Bigger,
}

impl Metric {
    pub(crate) fn new(value: f64, unit: &str) -> Self {
        Self {
            value,
            unit: unit.to_string(),
            interval: None,
            n: None,
            p: None,
            trials: Vec::new(),
            better: None,
        }
    }

    /// The same value with its evidence.
    pub(crate) fn with_evidence(
        mut self,
        interval: Option<Interval>,
        n: Option<u64>,
        p: Option<f64>,
    ) -> Self {
        self.interval = interval;
        self.n = n;
        self.p = p;
        self
    }
}

/// Baseline and LMCache values of one metric paired for the statistics:
/// per trial, one pair per prompt (or a single pair for a per-run value).
pub(crate) type Paired = IndexMap<String, Vec<Vec<(f64, f64)>>>;

/// A two-sided interval at `level` (0.95 for 95 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interval {
    pub low: f64,
    pub high: f64,
    pub level: f64,
}

/// What a check does when its interval straddles the threshold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OnInconclusive {
    /// Report it, and do not fail the run.
    #[default]
    Warn,
    /// Fail the run: only a clear pass passes.
    Fail,
    /// Run more paired trials (one at a time, up to the test's
    /// `max_trials`), then report it as inconclusive.
    MoreTrials,
    /// Run more paired trials, then fail the run if still inconclusive.
    MoreTrialsThenFail,
}

impl OnInconclusive {
    pub(crate) fn wants_more_trials(self) -> bool {
        matches!(self, Self::MoreTrials | Self::MoreTrialsThenFail)
    }

    /// Whether an inconclusive verdict, once final, fails the run.
    pub(crate) fn fails(self) -> bool {
        matches!(self, Self::Fail | Self::MoreTrialsThenFail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckKind {
    /// A bound on one engine's value.
    Absolute,
    /// A bound on the percent change of LMCache against baseline.
    Relative,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Pass,
    Fail,
    Warning,
    /// Passed on the last attempt, failed on an earlier one.
    Flaky,
    /// The interval straddles the threshold: neither a pass nor a fail.
    Inconclusive,
}

/// How the gate weighs a check's evidence, in the words results.json and
/// the plan (`--dry-run`) both use: a kind names its own from these, the
/// gate records the one it applied.
pub(crate) mod method {
    pub(crate) const RANDOM_EFFECTS: &str =
        "per-prompt pairs within each trial (10 % trimmed mean of log ratios), trials pooled by random effects (DerSimonian–Laird τ², Hartung–Knapp t interval), so noise a trial shares counts";
    pub(crate) const T_TRIALS: &str = "Student t over per-trial changes";
    pub(crate) const MCNEMAR: &str =
        "McNemar exact test, Agresti–Min interval of the paired difference";

    /// A method a kind declares for a metric (results record its words).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Method {
        /// Per-prompt pairs within trials, trials pooled by random effects.
        RandomEffects,
        /// McNemar's exact test on paired answers.
        McNemar,
    }

    impl Method {
        pub(crate) fn as_str(self) -> &'static str {
            match self {
                Method::RandomEffects => RANDOM_EFFECTS,
                Method::McNemar => MCNEMAR,
            }
        }

        /// Whether it weighs a change between the engines (a relative
        /// check) rather than one engine's value (an absolute one).
        pub(crate) fn relative(self) -> bool {
            !matches!(self, Method::McNemar)
        }
    }
}

/// Which side of its threshold a check wants its value; written as `<=`
/// and `>=` in results.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op {
    /// At most the threshold.
    #[serde(rename = "<=")]
    AtMost,
    /// At least the threshold.
    #[serde(rename = ">=")]
    AtLeast,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::AtMost => "<=",
            Op::AtLeast => ">=",
        }
    }

    /// `≤` and `≥`, for reports read at a glance.
    pub(crate) fn sign(self) -> &'static str {
        match self {
            Op::AtMost => "≤",
            Op::AtLeast => "≥",
        }
    }

    /// Whether `v` lies on the side the check wants (NaN never does).
    pub(crate) fn holds(self, v: f64, threshold: f64) -> bool {
        match self {
            Op::AtMost => v <= threshold,
            Op::AtLeast => v >= threshold,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckOutcome {
    pub name: String,
    pub metric: String,
    pub kind: CheckKind,
    /// The engine an absolute bound applies to.
    pub engine: Role,
    pub op: Op,
    pub threshold: f64,
    /// Unit of `value` and `threshold`: the metric's, or `%` for relative.
    pub unit: String,
    pub severity: Severity,
    pub baseline: Option<f64>,
    pub lmcache: Option<f64>,
    pub change_pct: Option<f64>,
    /// The value compared with the threshold; absent when it could not be
    /// computed, which fails the check.
    pub value: Option<f64>,
    pub verdict: Verdict,
    pub message: Option<String>,
    /// The interval of `value`, when the metric has one; the verdict then
    /// rests on the whole interval, not the point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// The published method behind `interval` (and `p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The p-value that the check holds, adjusted by Holm over the run's
    /// hard checks with intervals; a failure must be below α after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<f64>,
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
    /// The bound proves the cache was engaged, so it must hold in every
    /// trial (decided by the gate; reports show these as the cache hits).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub every_trial: bool,
    /// For a bound that must hold in every trial: the 1-based trial whose
    /// value was judged (the worst), of `n` trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_trial: Option<u32>,
}

#[cfg(test)]
impl CheckOutcome {
    /// A check of LMCache's `metric` (at most `threshold`) with only its
    /// verdict said: every figure unset, for report samples and tests to
    /// fill in what they show (`CheckOutcome { value: .., ..bare(..) }`).
    pub(crate) fn bare(name: &str, metric: &str, threshold: f64, verdict: Verdict) -> Self {
        CheckOutcome {
            name: name.into(),
            metric: metric.into(),
            kind: CheckKind::Relative,
            engine: Role::Lmcache,
            op: Op::AtMost,
            threshold,
            unit: "%".into(),
            severity: Severity::Error,
            baseline: None,
            lmcache: None,
            change_pct: None,
            value: None,
            verdict,
            message: None,
            interval: None,
            n: None,
            p: None,
            method: None,
            p_adjusted: None,
            on_inconclusive: OnInconclusive::Warn,
            every_trial: false,
            worst_trial: None,
        }
    }
}

/// How the run's hard checks share one false-alarm budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Family {
    /// `holm`, or `none` when switched off.
    pub method: String,
    /// The chance of any false failure among them, at most.
    pub alpha: f64,
    /// Hard checks with an interval, sharing the budget.
    pub checks: usize,
    /// Failures that stood alone but not after the adjustment.
    pub softened: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TestRecord {
    pub name: String,
    pub kind: String,
    pub status: TestStatus,
    /// Metrics per engine role, in the order the roles ran.
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    pub checks: Vec<CheckOutcome>,
    /// Files the test wrote, relative to the results directory.
    pub files: Vec<String>,
    pub error: Option<String>,
    pub duration_secs: Option<f64>,
    /// When it first ran against an engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Findings worth reading at a glance, e.g. the questions whose answer
    /// changed between baseline and LMCache.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Why the verdict means less than it says: a correctness test on
    /// engines that cannot show a fault (dummy weights) or that differ
    /// without one (not batch invariant), a speed figure measured on an
    /// engine whose outputs were wrong. Shown first, as warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    /// Every run of a retried test, the last one included; empty when the
    /// test ran once.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// Detail tables (e.g. MMLU per subject), folded away in reports and the
    /// first thing dropped when a report must shrink.
    #[serde(default)]
    pub tables: Vec<DetailTable>,
    /// Baseline-vs-LMCache series drawn as charts where the report can.
    #[serde(default)]
    pub charts: Vec<Chart>,
    /// The paired samples behind relative checks' intervals, per metric.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub paired: Paired,
}

impl TestRecord {
    /// A test of `kind` recorded as `name`, with nothing measured yet.
    pub(crate) fn new(name: &str, kind: &str, status: TestStatus) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            status,
            metrics: IndexMap::new(),
            checks: Vec::new(),
            files: Vec::new(),
            error: None,
            duration_secs: None,
            started_at: None,
            notes: Vec::new(),
            caveats: Vec::new(),
            attempts: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            paired: Paired::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DetailTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Rows the producer left out (kept in the file it names in `title`).
    #[serde(default)]
    pub omitted_rows: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Chart {
    pub title: String,
    /// One label per point on the x axis.
    pub x: Vec<String>,
    /// What the y axis measures, e.g. `TTFT`.
    #[serde(default)]
    pub y_label: String,
    pub y_unit: String,
    /// One value per x label for each engine role.
    pub series: IndexMap<Role, Vec<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptRecord {
    pub attempt: u32,
    pub status: TestStatus,
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    pub checks: Vec<CheckOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EngineRecord {
    pub name: String,
    pub role: Role,
    pub kind: String,
    pub url: String,
    pub pid: Option<u32>,
    /// Relative to the results directory.
    pub log: Option<String>,
    pub ready_secs: Option<f64>,
    /// Last log lines, kept when the run failed or was interrupted.
    pub log_tail: Vec<String>,
    /// What the server says it is (`GET /version`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The models it serves (`GET /v1/models` once ready), the first few:
    /// what `model = "auto"` turned out to be.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served_models: Vec<String>,
    /// When its process started (unix seconds), where its `/metrics` says
    /// (`process_start_time_seconds`): a restart under the run changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_started_unix: Option<f64>,
    /// GPU memory in use around its life, where `nvidia-smi` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<GpuMemory>,
    /// The GPU the run gave it (`CUDA_VISIBLE_DEVICES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Tokens its GPU KV cache holds, as it reports them once ready
    /// (vLLM's `vllm:cache_config_info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_tokens: Option<u64>,
    /// Whether its start found its compiled artifacts cached, as its log
    /// says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartCache>,
    /// The WARNING and ERROR lines of its log, counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_findings: Option<LogFindings>,
}

/// What an engine's start found in the compile cache, from its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StartCache {
    /// `cold` (compiled everything), `warm` (loaded the graphs an earlier
    /// start compiled), `partly warm` (compiled its graphs with kernels an
    /// earlier start left in the engine cache), `eager` or `unknown`.
    pub state: String,
    /// Seconds its log says compiling or loading the compiled graphs took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_secs: Option<f64>,
    /// Seconds its log says the engine's initialisation took (profile, KV
    /// cache, warm-up, compiling included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_secs: Option<f64>,
    /// The cache directory it was given (`VLLM_CACHE_ROOT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

/// `warm start (torch.compile 9.8 s, init 40.1 s)`, as reports say it.
pub(crate) fn start_said(s: &StartCache) -> String {
    let mut parts = Vec::new();
    if let Some(c) = s.compile_secs {
        parts.push(format!("torch.compile {c:.1} s"));
    }
    if let Some(i) = s.init_secs {
        parts.push(format!("init {i:.1} s"));
    }
    let head = match s.state.as_str() {
        "eager" => "eager (nothing compiled)".to_string(),
        "unknown" => "start (compile cache not said)".to_string(),
        state => format!("{state} start"),
    };
    match parts.is_empty() {
        true => head,
        false => format!("{head} ({})", parts.join(", ")),
    }
}

/// GPU memory in use (MiB, summed over the GPUs `nvidia-smi` sees) before
/// an engine started, once it was ready, and after it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GpuMemory {
    pub before_start_mib: Option<f64>,
    pub at_ready_mib: Option<f64>,
    pub after_stop_mib: Option<f64>,
    /// How long after the stop that reading came.
    pub after_stop_secs: Option<f64>,
    /// Whether it came back to where it was before the engine started.
    pub released: Option<bool>,
}

/// An engine log's warnings and errors: how many, and the most frequent
/// kinds (numbers masked) with one line of each as it was written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogFindings {
    pub warnings: u64,
    pub errors: u64,
    pub top: Vec<LogKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogKind {
    /// `WARNING` or `ERROR`.
    pub level: String,
    pub count: u64,
    /// The first line of this kind, as the engine wrote it.
    pub example: String,
}

/// Where and what ran: shown in reports, and the pull request a later
/// `report --pr-comment` job comments on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunMeta {
    /// `owner/name` on GitHub.
    pub repository: Option<String>,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub pr_number: Option<u64>,
    pub build_url: Option<String>,
    pub models: Vec<String>,
    pub gpus: Vec<String>,
    /// Where the engines ran and why (`run.schedule = "auto"` decides it
    /// from the GPUs present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// How the engines ran after all: `concurrent` or `sequential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The CI's own name for the job's build: GitHub's run and attempt
    /// (`run 99, attempt 2`), Buildkite's build number (`build 7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_build: Option<String>,
    /// The artifact the results directory is uploaded as, so reports link
    /// to it instead of a path on a runner nobody can reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Where that artifact is listed (the run's or job's page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// SHA-256 of the suite as resolved (results directory and build id
    /// left out): runs with the same hash ran the same tests, checks and
    /// engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunResults {
    pub schema_version: u32,
    pub tool_version: String,
    pub suite: String,
    pub source: String,
    pub build_id: String,
    pub run_id: String,
    pub results_dir: PathBuf,
    pub status: RunStatus,
    /// Why the run ended as it did, when not simply by passing or a gate.
    pub message: Option<String>,
    /// The signal that interrupted the run.
    pub signal: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub engines: Vec<EngineRecord>,
    pub tests: Vec<TestRecord>,
    #[serde(default)]
    pub meta: RunMeta,
    /// How the hard checks' false-alarm budget was shared, once judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// Which part of a sharded suite this run is, with the whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardMark>,
    /// The shards a merged run was combined from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
    /// Where this run falls in the default branch's recent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryView>,
    /// The suite's control runs and what each concluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<ControlRecord>,
}

/// One control run: the verdict it had to reach and the one it reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ControlRecord {
    pub name: String,
    #[serde(default)]
    pub about: String,
    /// `pass` or `fail`.
    pub expected: String,
    /// `pass`, `fail`, or `error` (the control could not run to its end).
    pub got: String,
    /// Whether it reached the verdict it had to.
    pub held: bool,
    /// What decided it: the checks that failed, or how many held, and
    /// whether an injected fault fired.
    pub evidence: String,
    /// Its own results directory, relative to this run's.
    pub results_dir: String,
}

/// One shard of a suite: its place, and every shard's work as planned (the
/// same in every shard, so a merge can tell what is missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShardMark {
    /// 1-based.
    pub index: u32,
    pub count: u32,
    /// Every unit of the whole suite in the order an unsharded run has
    /// them, a split test with all its subjects.
    pub units: Vec<PlannedUnit>,
    /// The work units of shard `i + 1` at `plan[i]`.
    pub plan: Vec<Vec<PlannedUnit>>,
}

/// A test (record name) a shard runs, whole or for some MMLU subjects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlannedUnit {
    pub record: String,
    /// The MMLU subjects of this shard's part; empty when the test is whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// The cost the split was balanced on (estimated tokens, or seconds
    /// from a previous run).
    pub cost: f64,
}

/// A shard a merged run includes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MergedShard {
    pub index: u32,
    /// The shard's results directory, as given to `merge`.
    pub dir: String,
    pub status: RunStatus,
    pub duration_secs: Option<f64>,
    pub build_url: Option<String>,
}

/// Per check, this run against the default branch's recent runs with the
/// same fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryView {
    /// Runs of the default branch it was compared with.
    pub runs: usize,
    pub fingerprint: String,
    pub method: String,
    pub metrics: Vec<MetricHistory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricHistory {
    /// `test: check`.
    pub key: String,
    pub unit: String,
    /// The default branch's values, oldest first.
    pub series: Vec<f64>,
    /// This run's value, when it has one.
    pub current: Option<f64>,
    /// Percentile rank of `current` among `series` (0–100).
    pub percentile: Option<f64>,
    /// Change points found in the default branch's series.
    pub change_points: Vec<ChangePoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChangePoint {
    /// Index in `series` of the first value after the change.
    pub at: usize,
    /// The commit of that run, when known.
    pub commit: Option<String>,
    /// Mean after against mean before, in percent.
    pub change_pct: Option<f64>,
    pub p: f64,
}

impl RunResults {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("results.json")
    }

    /// Writes atomically (temp file and rename), so a reader or a crash never
    /// sees half a file.
    pub(crate) fn write(&self) -> Result<(), ResultsError> {
        let path = Self::path(&self.results_dir);
        let json = serde_json::to_string_pretty(self).expect("results serialize");
        write_atomic(&path, json.as_bytes())
    }

    /// Reads a results.json that came from elsewhere (another job's
    /// artifact): at most `max_mib`, and every path in it relative and
    /// inside the results directory, as this tool writes them.
    pub(crate) fn read_untrusted(dir: &Path, max_mib: u64) -> Result<Self, ResultsError> {
        let path = Self::path(dir);
        let bytes = read_capped(&path, max_mib)?;
        let results: Self =
            serde_json::from_slice(&bytes).map_err(|source| ResultsError::Parse {
                path: path.clone(),
                source,
            })?;
        results
            .confined()
            .map_err(|(field, value, why)| ResultsError::Hostile {
                path,
                field,
                value,
                why,
            })?;
        Ok(results)
    }

    /// Every path results.json records is relative to the results
    /// directory and stays inside it; the first that does not, if any.
    fn confined(&self) -> Result<(), (String, String, &'static str)> {
        let logs = self
            .engines
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((format!("engines[{i}].log"), e.log.as_deref()?)));
        let files = self.tests.iter().enumerate().flat_map(|(i, t)| {
            t.files
                .iter()
                .enumerate()
                .map(move |(j, f)| (format!("tests[{i}].files[{j}]"), f.as_str()))
        });
        for (field, value) in logs.chain(files) {
            if let Some(why) = outside(value) {
                return Err((field, value.to_string(), why));
            }
        }
        Ok(())
    }

    pub(crate) fn test_mut(&mut self, name: &str) -> Option<&mut TestRecord> {
        self.tests.iter_mut().find(|t| t.name == name)
    }
}

/// The bytes of a file that came from elsewhere, refused once it is over
/// `max_mib` (never read whole to find out).
/// Makes `dir` this run's alone, so no earlier run's test folders sit
/// beside the new results.json (and get uploaded with it): a directory
/// another run wrote (it has results.json or state.json) is refused unless
/// `overwrite`, which empties it first. Anything else (missing, empty, or a
/// folder that also holds the suite file) is taken as it is, and nothing
/// that is not a run's is ever deleted.
pub(crate) fn claim_dir(dir: &Path, overwrite: bool) -> Result<(), ResultsError> {
    let read = |source| ResultsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<_, _>>().map_err(read)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(read(e)),
    };
    let mut names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let another_run = names
        .iter()
        .any(|n| n == "results.json" || n == "state.json");
    if !another_run {
        return Ok(());
    }
    if !overwrite {
        return Err(ResultsError::Occupied {
            path: dir.to_path_buf(),
            what: describe_entries(dir, &names, true),
        });
    }
    let theirs = files_of_the_run(dir);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if !theirs.contains(&name) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|source| ResultsError::Write { path, source })?;
    }
    Ok(())
}

/// What a run writes at the top of its results directory: its fixed files
/// and folders, and the first part of every path its results.json lists
/// (its tests' folders). A suite file kept beside them is not among them.
fn files_of_the_run(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = [
        "results.json",
        "state.json",
        "summary.md",
        "junit.xml",
        "logs",
        "metrics",
        // MMLU's archive, extracted where a suite does not say.
        "mmlu_data",
    ]
    .map(String::from)
    .to_vec();
    let old = read_capped(&dir.join("results.json"), 64)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let tests = old
        .as_ref()
        .and_then(|v| v["tests"].as_array().cloned())
        .unwrap_or_default();
    for t in &tests {
        let listed = t["files"].as_array().cloned().unwrap_or_default();
        let firsts = listed
            .iter()
            .filter_map(|f| f.as_str()?.split('/').next().map(String::from));
        names.extend(firsts);
        if let Some(n) = t["name"].as_str() {
            names.push(n.to_string());
        }
    }
    // Only plain names at the top: nothing that could climb out.
    names.retain(|n| !n.is_empty() && n != "." && n != ".." && !n.contains('/'));
    names
}

/// What an occupied directory holds, in words: the earlier run when there
/// is one, and its first few entries.
fn describe_entries(dir: &Path, names: &[String], ours: bool) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    let list = format!(
        "{}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    let earlier = ours
        .then(|| read_capped(&dir.join("results.json"), 64).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| {
            format!(
                "another run's results (build {}, started {}): ",
                v["build_id"].as_str().unwrap_or("?"),
                v["started_at"].as_str().unwrap_or("?")
            )
        });
    format!("{}{list}", earlier.unwrap_or_default())
}

pub(crate) fn read_capped(path: &Path, max_mib: u64) -> Result<Vec<u8>, ResultsError> {
    let read_err = |source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let max = max_mib.saturating_mul(1 << 20);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max {
        return Err(ResultsError::TooLarge {
            path: path.to_path_buf(),
            max_mib,
        });
    }
    Ok(bytes)
}

/// Why `rel` is no path inside the results directory, if it is not.
fn outside(rel: &str) -> Option<&'static str> {
    use std::path::Component;
    let p = Path::new(rel);
    if rel.is_empty() || rel.contains('\0') {
        return Some("not a path");
    }
    // `C:...` and `\\server\...` are absolute elsewhere, whatever this OS says.
    if p.is_absolute() || rel.starts_with('\\') || rel.as_bytes().get(1) == Some(&b':') {
        return Some("an absolute path; results.json records paths relative to its directory");
    }
    if p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Some("a path out of the results directory (`..`)");
    }
    None
}

/// Writes `bytes` to `path` whole or not at all, readable by all as a
/// plain write would leave it (artifacts are read by other users).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A file of its own beside the target (two writers never share one),
    // on disk before it takes the target's name: a crash leaves the old
    // file or the new one, never half of either.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".lmcache-e2e-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(err)?;
    {
        use std::io::Write as _;
        tmp.write_all(bytes).map_err(err)?;
    }
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The last `n` lines of a log, reading at most its last 256 KiB.
pub(crate) fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| strip_ansi(l))
        .collect()
}

/// A log line without its terminal colours and other escapes: LMCache
/// colours its log lines even into a file (`ESC[33;20m… LMCache
/// WARNING:ESC[0m`), and a report would show the codes once the ESC itself
/// is dropped; an operating-system command (a hyperlink's target, a
/// window title) goes whole, payload included.
pub(crate) fn strip_ansi(line: &str) -> String {
    // Carriage returns stay: they separate a progress bar's states, and
    // the last state is what a starting engine is doing now.
    line.split('\r')
        .map(strip_ansi_escapes::strip_str)
        .collect::<Vec<_>>()
        .join("\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checks_comparison_reads_and_writes_as_results_json_always_had_it() {
        assert_eq!(serde_json::to_string(&Op::AtMost).unwrap(), "\"<=\"");
        assert_eq!(serde_json::from_str::<Op>("\">=\"").unwrap(), Op::AtLeast);
        assert!(serde_json::from_str::<Op>("\"==\"").is_err());
        assert!(Op::AtMost.holds(-60.0, -60.0) && !Op::AtMost.holds(-59.9, -60.0));
        assert!(!Op::AtLeast.holds(f64::NAN, 0.0) && !Op::AtMost.holds(f64::NAN, 0.0));
        assert_eq!(
            (Op::AtMost.sign(), Op::AtLeast.to_string()),
            ("≤", ">=".into())
        );
    }

    #[test]
    fn writers_of_one_file_never_leave_half_of_it_or_their_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        let writers: Vec<_> = (0..4u8)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&path, &vec![b'a' + w; 64 * 1024]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let body = std::fs::read(&path).unwrap();
        assert_eq!(body.len(), 64 * 1024);
        assert!(
            body.iter().all(|b| *b == body[0]),
            "one writer's whole file"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn another_runs_directory_is_refused_or_cleared_of_its_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Empty, or only a suite beside it: taken as it is.
        claim_dir(&d.join("new"), false).unwrap();
        std::fs::write(d.join("suite.toml"), "[run]\n").unwrap();
        claim_dir(d, false).unwrap();
        std::fs::create_dir_all(d.join("mmlu")).unwrap();
        std::fs::create_dir_all(d.join("logs")).unwrap();
        std::fs::create_dir_all(d.join("stale_test")).unwrap();
        std::fs::write(
            d.join("results.json"),
            r#"{"build_id": "7", "started_at": "2026-12-01T10:00:00Z",
                "tests": [{"name": "stale_test", "files": ["mmlu/answers.jsonl"]}]}"#,
        )
        .unwrap();
        let err = claim_dir(d, false).unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadInput);
        let msg = err.to_string();
        assert!(
            msg.contains("another run's results (build 7, started 2026-12-01T10:00:00Z)")
                && msg.contains("pass --overwrite"),
            "{msg}"
        );
        claim_dir(d, true).unwrap();
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            left,
            vec!["suite.toml"],
            "the run's files go, the suite stays"
        );
    }

    mod fuzz_results {
        use super::super::fuzz::{mutated, timed};
        use super::*;
        use proptest::prelude::proptest;

        proptest! {
            // An artifact of anyone's making: parsed, checked, or refused
            // with the file named; never a panic or a hang.
            #[test]
            fn fuzz_results_json(bytes in mutated(include_bytes!("../../tests/fixtures/results/sim-failed.json"))) {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("results.json"), &bytes).unwrap();
                if let Err(e) = timed("results.json", || RunResults::read_untrusted(dir.path(), 1)) {
                    assert!(e.to_string().contains("results.json"), "{e}");
                }
            }
        }
    }

    #[test]
    fn only_relative_paths_inside_the_directory_pass() {
        for ok in [
            "summary.md",
            "long_doc_qa/lmcache_result.json",
            "logs/a..b.log",
            "./x",
        ] {
            assert_eq!(outside(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "C:\\x",
            "\\\\host\\share",
            "a\0b",
        ] {
            assert!(outside(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let t = tail_lines(&p, 3);
        assert_eq!(t, vec!["line 97", "line 98", "line 99"]);
        assert_eq!(
            strip_ansi("(EngineCore pid=1892) \u{1b}[33;20m[2026-12-02 06:38:34,230] LMCache WARNING:\u{1b}[0m Failed \u{1b}[3m(x.py:1)\u{1b}[0m"),
            "(EngineCore pid=1892) [2026-12-02 06:38:34,230] LMCache WARNING: Failed (x.py:1)"
        );
        assert_eq!(
            strip_ansi("cut \u{1b}[33"),
            "cut ",
            "an unfinished escape is dropped"
        );
        // A hyperlink (OSC 8) leaves its text, not its target.
        assert_eq!(
            strip_ansi("see \u{1b}]8;;https://example.com/x\u{1b}\\the log\u{1b}]8;;\u{1b}\\ now"),
            "see the log now"
        );
        assert!(tail_lines(&dir.path().join("missing"), 3).is_empty());
    }
}
