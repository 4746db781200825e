//! The typed schema of a suite TOML: its run, setup, engines and tests with
//! their checks. A test's own parameters are typed by its kind.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::engine::EngineConfig;
use super::error::ConfigError;
use crate::results::{CheckKind, OnInconclusive, Op, Role, Severity};
use crate::sim::KvFault;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Suite {
    #[serde(default)]
    pub run: RunConfig,
    pub engines: IndexMap<String, EngineConfig>,
    #[serde(default)]
    pub tests: IndexMap<String, TestConfig>,
    /// What `lmcache-e2e setup` prepares.
    #[serde(default)]
    pub setup: SetupConfig,
    /// Control runs: the suite again with something changed (a fault, an
    /// engine swapped), each with the verdict it must reach; a control
    /// that reaches another proves the suite cannot see what it checks.
    #[serde(default)]
    pub controls: IndexMap<String, ControlConfig>,
}

/// What a control run must conclude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Expect {
    /// A negative control: nothing is wrong, so the tests must pass.
    Pass,
    /// A positive control: something is wrong, so a check must fail.
    Fail,
}

impl Expect {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
        }
    }
}

/// One control run: the suite with `set` applied (as `--set` would), the
/// LMCache engines replaced by the baseline's configuration
/// (`lmcache_as_baseline`, an A/A run) and/or a `fault` injected into them;
/// `tests` names which of the suite's tests it runs (all when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlConfig {
    pub expect: Expect,
    /// One line on what the control shows, for the report.
    #[serde(default)]
    pub about: String,
    #[serde(default)]
    pub tests: Vec<String>,
    /// `KEY=VALUE` overrides, applied after the suite's own `--set`s.
    #[serde(default)]
    pub set: Vec<String>,
    /// Launch each LMCache engine as the baseline engine is launched (its
    /// name, role and port kept): two plain engines, which must agree.
    #[serde(default)]
    pub lmcache_as_baseline: bool,
    /// The fault injected into every LMCache engine, and every service
    /// of kind `process` (LMCache's MP server restores KV itself).
    pub fault: Option<KvFault>,
    /// For `expect = "fail"`: the checks, by `test.check`, of which one
    /// must fail (any failing check counts when empty), so a control fails
    /// for the reason it was written for.
    #[serde(default)]
    pub fails: Vec<String>,
}

/// The job's Python environment: a venv, repositories checked out at a ref
/// and installed editable, extra packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SetupConfig {
    /// `VENV_DIR`; relative paths are relative to the working directory.
    pub venv: PathBuf,
    /// The interpreter to create the venv with.
    pub python: String,
    /// `auto` (uv when on PATH, else pip), `uv` or `pip`.
    pub installer: Installer,
    /// Where repositories are cloned.
    pub repos_dir: PathBuf,
    pub repos: IndexMap<String, RepoConfig>,
    /// Extra packages, e.g. `pandas`, `lm-eval[api]`.
    pub packages: Vec<String>,
    /// Passed to every install, e.g. `VLLM_USE_PRECOMPILED = "1"`.
    pub env: IndexMap<String, String>,
    /// Extra arguments to every install (e.g. `--no-build-isolation`).
    pub install_args: Vec<String>,
    /// MMLU data to extract as a setup step (`data.tar.xz` or a `data/` dir).
    pub mmlu_archive: Option<PathBuf>,
    /// Where it is extracted (the data lands in `<dir>/data`).
    pub mmlu_into: PathBuf,
}

impl Default for SetupConfig {
    fn default() -> Self {
        Self {
            venv: PathBuf::from(".venv"),
            python: "python3".into(),
            installer: Installer::Auto,
            repos_dir: PathBuf::from("repositories"),
            repos: IndexMap::new(),
            packages: Vec::new(),
            env: IndexMap::new(),
            install_args: Vec::new(),
            mmlu_archive: None,
            mmlu_into: PathBuf::from("mmlu"),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Installer {
    #[default]
    Auto,
    Uv,
    Pip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepoConfig {
    pub url: String,
    /// Branch, tag or commit; or `checkout:PATH` for a checkout that is
    /// already there (the PR this job runs in).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Install it editable into the venv.
    #[serde(default = "yes")]
    pub editable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RunConfig {
    /// Suite name shown in reports.
    pub name: String,
    /// `BUILD_ID`; default `local_<timestamp>`.
    pub build_id: Option<String>,
    /// `RESULTS_DIR`; default `/tmp/lmcache_ci_results_<build id>`.
    pub results_dir: Option<PathBuf>,
    /// `MODEL`; `auto` takes the first id of the server's `/v1/models`.
    pub model: String,
    /// Run the whole suite once per model, in turn (engines restarted with
    /// each); overrides `model`. Names, logs and outputs carry the model.
    pub models: Vec<String>,
    /// `MAX_WAIT_SECONDS`: how long an engine may take to become ready.
    pub readiness_timeout_secs: f64,
    /// Time between SIGTERM and SIGKILL when stopping engines.
    pub grace_period_secs: f64,
    /// While an engine starts, say every this many seconds how long it has
    /// taken and its log's last line (0: never).
    pub starting_report_secs: f64,
    /// After engines stop, wait up to this long for the GPU memory they
    /// held to be free again (where `nvidia-smi` answers) before the next
    /// engine starts.
    pub gpu_release_timeout_secs: f64,
    /// Longest a single request may take before it counts as failed.
    pub request_timeout_secs: f64,
    /// GPU choice for containers whose `gpus` is `auto:N`.
    pub gpus: GpuChoice,
    /// `concurrent`: all engines up at once. `sequential`: baseline, then
    /// LMCache, each started, used by every test and stopped before the
    /// next (Dynamo's deployments share port 8000). `auto`: by the GPUs
    /// `nvidia-smi` sees when the run starts: one engine per GPU (each
    /// given `CUDA_VISIBLE_DEVICES`) when there are enough; on one GPU the
    /// baseline first and LMCache's engine beside it when the memory the
    /// baseline took is free again, else one after the other.
    pub schedule: Schedule,
    /// Whether the reference's environment variables (`MODEL`,
    /// `NUM_DOCUMENTS`, `MAX_WAIT_SECONDS`, …) override the suite; each one
    /// that does is named in the run's first lines and in `config show`.
    pub env_overrides: bool,
    /// The hard checks with intervals share one false-alarm budget (5 %):
    /// Holm's step-down adjustment over their p-values. `false` judges
    /// each check on its own.
    pub holm: bool,
    /// How a trial's two engines are measured: `alternate` (one after the
    /// other, the order alternating by trial) or `together` (both at once,
    /// so what slows the host in a trial slows both; concurrent engines
    /// only, for kinds that can: long document QA).
    pub pairing: Pairing,
    /// The exit code of a run whose worst outcome is a check that asked
    /// for more trials (`on_inconclusive = "more-trials"`) and still could
    /// not tell after every trial it was allowed: 1 (the default; could
    /// not tell is not a pass) or 0. A check that only warns leaves 0, one
    /// that says "fail" fails; the headline says "could not tell" either
    /// way.
    pub inconclusive_exit: i32,
    /// A directory kept between CI runs where the engines keep what their
    /// start compiles (vLLM's torch.compile cache, Triton, Inductor,
    /// FlashInfer and CUDA kernels): each started engine is given
    /// `VLLM_CACHE_ROOT`, `VLLM_CONFIG_ROOT` and `VLLM_XLA_CACHE_PATH` (vLLM
    /// keys its compile cache by both), `TRITON_CACHE_DIR`, `TORCHINDUCTOR_CACHE_DIR`,
    /// `FLASHINFER_WORKSPACE_BASE` and `CUDA_CACHE_PATH` under it, unless
    /// the suite or the job's environment sets them. Each tool keys its
    /// entries by version, model and arguments, so one directory serves
    /// every engine; the results say per engine whether its start was cold
    /// or warm.
    pub engine_cache: Option<PathBuf>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Pairing {
    #[default]
    Alternate,
    Together,
}

/// How many GPUs to wait for, and how idle they must be (the reference:
/// two, 70000 MiB free, at most 20 % busy, polled every 10 s for an hour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GpuChoice {
    pub count: usize,
    pub min_free_mib: u64,
    pub max_util_pct: u32,
    pub timeout_secs: f64,
    pub poll_secs: f64,
    /// A chosen GPU with more memory than this gets its engine's
    /// `large_gpu_args` (the reference halves vLLM's memory share there).
    pub large_gpu_mib: u64,
}

impl Default for GpuChoice {
    fn default() -> Self {
        Self {
            count: 2,
            min_free_mib: 70_000,
            max_util_pct: 20,
            timeout_secs: 3600.0,
            poll_secs: 10.0,
            large_gpu_mib: 90_000,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Schedule {
    #[default]
    Concurrent,
    Sequential,
    /// Decided when the run starts from the GPUs present: one engine per
    /// GPU when there are enough, else side by side on one GPU when the
    /// first engine's measured memory fits again, else one after the other.
    Auto,
}

impl Schedule {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Schedule::Concurrent => "concurrent",
            Schedule::Sequential => "sequential",
            Schedule::Auto => "auto",
        }
    }
}

impl RunConfig {
    /// A model's name without its organisation or directory
    /// (`meta-llama/Llama-3.1-8B` → `Llama-3.1-8B`): what labels a model's
    /// tests and files when a suite runs several.
    pub(crate) fn model_tail(model: &str) -> &str {
        model.rsplit('/').next().unwrap_or(model)
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "suite".to_string(),
            build_id: None,
            results_dir: None,
            model: "auto".to_string(),
            models: Vec::new(),
            readiness_timeout_secs: 300.0,
            grace_period_secs: 5.0,
            starting_report_secs: 10.0,
            gpu_release_timeout_secs: 120.0,
            request_timeout_secs: 600.0,
            schedule: Schedule::Concurrent,
            gpus: GpuChoice::default(),
            env_overrides: true,
            holm: true,
            pairing: Pairing::Alternate,
            inconclusive_exit: 1,
            engine_cache: None,
        }
    }
}

/// A test: its kind, its parameters (checked against the kind's own schema
/// when the suite is loaded) and the checks that gate on its metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TestConfig {
    /// One of the kinds the suite is loaded with (`workload`'s registry).
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub checks: IndexMap<String, CheckConfig>,
    /// Runs of the test while only `retryable` checks fail (default: the
    /// kind's; throughput's gate is known to be noisy).
    pub max_attempts: Option<u32>,
    /// Paired trials per engine (baseline and LMCache alternate which goes
    /// first), each from fresh inputs; relative checks get an interval from
    /// two on. Long document QA and throughput only.
    pub trials: Option<u32>,
    /// The most trials a check with `on_inconclusive = "more-trials"` may
    /// grow the test to (default: three times `trials`).
    pub max_trials: Option<u32>,
    /// Let requests fail (or not complete) without failing the test. By
    /// default every engine's `failed_requests` (`incomplete_requests`)
    /// that no check bounds must be 0.
    #[serde(default)]
    pub allow_failed_requests: bool,
    /// Measure without checks: the test is then a warning, never a plain
    /// pass. Without it a test with no checks is refused at load.
    #[serde(default)]
    pub record_only: bool,
    #[serde(flatten)]
    pub params: toml::Table,
}

impl TestConfig {
    /// Runs while only retryable checks fail: the suite's, else `default`.
    pub(crate) fn attempts(&self, default: u32) -> u32 {
        self.max_attempts.unwrap_or(default).max(1)
    }

    pub(crate) fn trials(&self) -> u32 {
        self.trials.unwrap_or(1).max(1)
    }

    pub(crate) fn max_trials(&self) -> u32 {
        self.max_trials
            .unwrap_or(3 * self.trials())
            .max(self.trials())
    }
}

fn yes() -> bool {
    true
}

/// One threshold on one metric. Exactly one bound is set: `max`/`min` on the
/// engine's own value, or `max_change_pct`/`min_change_pct` on
/// `(lmcache - baseline) / baseline * 100`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckConfig {
    pub metric: String,
    /// Whose value an absolute bound applies to.
    #[serde(default = "lmcache_role")]
    pub engine: Role,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub max_change_pct: Option<f64>,
    pub min_change_pct: Option<f64>,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A failure reruns the test (up to its `max_attempts`); a pass after a
    /// failure is reported as flaky.
    #[serde(default)]
    pub retryable: bool,
    /// When the metric has an interval that straddles the bound: `warn`
    /// (report it as inconclusive), `fail`, or `more-trials` /
    /// `more-trials-then-fail` (run paired trials one at a time up to the
    /// test's `max_trials`, then warn or fail).
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

impl CheckConfig {
    /// The check's kind, comparison and bound: the first of `max`, `min`,
    /// `max_change_pct`, `min_change_pct` it sets (validation allows one).
    pub(crate) fn bound(&self) -> Option<(CheckKind, Op, f64)> {
        match (self.max, self.min, self.max_change_pct, self.min_change_pct) {
            (Some(t), ..) => Some((CheckKind::Absolute, Op::AtMost, t)),
            (_, Some(t), ..) => Some((CheckKind::Absolute, Op::AtLeast, t)),
            (_, _, Some(t), _) => Some((CheckKind::Relative, Op::AtMost, t)),
            (_, _, _, Some(t)) => Some((CheckKind::Relative, Op::AtLeast, t)),
            _ => None,
        }
    }

    /// `query_ttft_per_prompt <= -60 % change vs baseline (error)`.
    pub(crate) fn describe(&self) -> String {
        let (op, v, relative) = match self.bound() {
            Some((kind, op, v)) => (op.as_str(), v, kind == CheckKind::Relative),
            None => ("?", f64::NAN, false),
        };
        let what = if relative {
            format!("{} {op} {v} % change vs baseline", self.metric)
        } else {
            format!("{} of {} {op} {v}", self.metric, self.engine)
        };
        let mut notes = vec![format!("{:?}", self.severity).to_lowercase()];
        if !self.enabled {
            notes.push("disabled".into());
        }
        if self.retryable {
            notes.push("retryable".into());
        }
        if self.on_inconclusive != OnInconclusive::default() {
            // Named as the suite writes it (`more-trials`).
            let named = serde_json::to_value(self.on_inconclusive)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            notes.push(format!("when inconclusive: {named}"));
        }
        format!("{what} ({})", notes.join(", "))
    }

    /// A check on `metric` of the LMCache engine, failing the run, with no
    /// bound yet: the caller sets one.
    pub(crate) fn on(metric: &str) -> Self {
        Self {
            metric: metric.to_string(),
            engine: Role::Lmcache,
            max: None,
            min: None,
            max_change_pct: None,
            min_change_pct: None,
            severity: Severity::Error,
            enabled: true,
            retryable: false,
            on_inconclusive: OnInconclusive::Warn,
        }
    }
}

fn lmcache_role() -> Role {
    Role::Lmcache
}

impl Suite {
    /// SHA-256 of the suite as resolved, without what differs between jobs
    /// of one build (results directory, build id): equal hashes ran the
    /// same tests, checks and engines.
    pub(crate) fn hash(&self) -> String {
        use sha2::Digest as _;
        let mut same = self.clone();
        same.run.results_dir = None;
        same.run.build_id = None;
        let json = serde_json::to_vec(&same).expect("suite serializes");
        format!("{:x}", sha2::Sha256::digest(json))
    }

    pub(crate) fn engine_with_role(&self, role: Role) -> Option<(&String, &EngineConfig)> {
        self.engines.iter().find(|(_, e)| e.role == role)
    }

    /// The enabled tests whose names contain one of `patterns` (all when
    /// there are none); a pattern that matches no test is a mistake.
    pub(crate) fn selected_tests(
        &self,
        patterns: &[String],
    ) -> Result<Vec<(&String, &TestConfig)>, ConfigError> {
        let enabled = || self.tests.iter().filter(|(_, t)| t.enabled);
        if let Some(p) = patterns
            .iter()
            .find(|p| !enabled().any(|(name, _)| name.contains(p.as_str())))
        {
            return Err(ConfigError::NoTestMatches(p.to_string()));
        }
        Ok(enabled()
            .filter(|(name, _)| {
                patterns.is_empty() || patterns.iter().any(|p| name.contains(p.as_str()))
            })
            .collect())
    }
}
