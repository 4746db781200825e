//! Command line: clap derive definitions of every subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::sim::SimOptions;

const EXIT_CODES: &str = "\
Exit codes:
  0    passed
  1    a gate failed (a hard check failed, a request failed where the
       test does not allow it, a test could not produce its measurement,
       or a control did not reach the verdict it names)
  2    bad usage or configuration, a test's own input file included (a
       prompts file, MMLU data)
  3    setup failed (results directory, files, a program a test needs;
       with --strict-report, a report that could not be delivered)
  4    an engine failed to start, died, or did not answer as an OpenAI
       server should
  101  internal error (a bug: please report it)
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM; 129 by SIGHUP";

/// The codes of a command that only reads, writes or asks the machine.
const EXIT_CODES_TOOL: &str = "\
Exit codes:
  0    done
  2    bad usage, or an input file (results.json, config.json) that is
       missing, too large or not what it should be
  3    the machine lacks what it needs (nvidia-smi, no GPU ready in time,
       a file that cannot be written)
  101  internal error (a bug: please report it)";

/// `cleanup`'s codes.
const EXIT_CODES_CLEANUP: &str = "\
Exit codes:
  0    stopped what was left, or nothing was
  2    bad usage, or a results directory without a run's state.json
  3    the Docker CLI is needed and missing
  4    an engine could not be stopped, or the state file is unreadable
  101  internal error (a bug: please report it)";

const EXIT_CODES_REPORT: &str = "\
Exit codes (whatever verdict the run had):
  0    the reports were rendered, and delivered where asked
  2    bad usage, or a results directory without a readable results.json
       (missing, too large or not a run's)
  3    a report could not be written, or with --strict-report delivered
  101  internal error (a bug: please report it)";

const EXIT_CODES_MERGE: &str = "\
Exit codes:
  0    the merged run passed
  1    the merged run failed a gate
  2    bad usage, or a shard that is missing, duplicated, too large or of
       another commit, suite or engines
  3    the merged results or a report could not be written
  101  internal error (a bug: please report it)";

const EXIT_CODES_COMPARE: &str = "\
Exit codes:
  0    no model's MMLU accuracy changed beyond the thresholds
  1    a model's did
  2    bad usage, or a jsonl file that is missing, misnamed or malformed
  101  internal error (a bug: please report it)";

const EXIT_CODES_SETUP: &str = "\
Exit codes:
  0    the environment is ready (`setup check`: nothing required is missing)
  2    bad usage or configuration
  3    setup failed (a venv, a checkout, an install, the MMLU data), or
       something required is missing
  101  internal error (a bug: please report it)";

const EXIT_CODES_READ: &str = "\
Exit codes:
  0    done
  2    bad usage, or a suite with problems (all of them are listed)
  101  internal error (a bug: please report it)";

#[derive(Debug, Parser)]
#[command(
    name = "lmcache-e2e",
    version,
    about = "End-to-end CI for LMCache: launch engines with and without LMCache, run the suites, gate on thresholds, report",
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a whole suite: launch engines, wait until ready, run the tests
    /// against baseline then LMCache, gate, write the results directory.
    #[command(after_help = EXIT_CODES)]
    Ci(CiArgs),
    /// Prepare the job's environment from the suite's [setup]: a venv,
    /// repositories at their ref, editable installs, extra packages. A
    /// second run with nothing changed installs nothing.
    #[command(after_help = EXIT_CODES_SETUP, args_conflicts_with_subcommands = true)]
    Setup(SetupArgs),
    /// List the tests of a suite (the names `--only` matches), their checks,
    /// or the presets.
    #[command(after_help = EXIT_CODES_READ)]
    List(ListArgs),
    /// Inspect the effective suite configuration.
    #[command(subcommand, after_help = EXIT_CODES_READ)]
    Config(ConfigCommand),
    /// Compare MMLU jsonl files written by today's scripts (`<model>-baseline.jsonl`
    /// and `<model>-lmcache.jsonl`, or `dynamo-{baseline,lmcache}-<model>.jsonl`),
    /// pairing them by model, and gate on the accuracy drop.
    #[command(after_help = EXIT_CODES_COMPARE)]
    Compare(CompareArgs),
    /// Choose GPUs as the multiprocessing suite does: wait until enough have
    /// the free memory and low utilisation asked for, print the indices of
    /// those with the most free memory (comma-separated, for
    /// CUDA_VISIBLE_DEVICES or `docker run --gpus device=...`).
    #[command(after_help = EXIT_CODES_TOOL)]
    Gpus(GpusArgs),
    /// Recommend tensor parallelism, the LMCache CPU cache size and the long
    /// document QA workload for a model on this machine (GPUs from
    /// nvidia-smi, RAM from /proc/meminfo, the model's config.json).
    #[command(after_help = EXIT_CODES_TOOL)]
    Recommend(RecommendArgs),
    /// Render and deliver the reports again from a results directory alone
    /// (e.g. in a trusted `workflow_run` job that comments on a fork's PR):
    /// summary.md and junit.xml, and on request the GitHub job summary, the
    /// sticky PR comment, the Buildkite annotation and artifact upload.
    #[command(after_help = EXIT_CODES_REPORT)]
    Report(ReportArgs),
    /// Stop the engines a run left behind (e.g. after `kill -9`), from its
    /// state file, and mark that run as interrupted; or the containers of
    /// a run id, or of runners that are gone (`--stale`).
    #[command(after_help = EXIT_CODES_CLEANUP)]
    Cleanup(CleanupArgs),
    /// The simulated OpenAI-compatible engine.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Measure the gates' false-alarm and detection rates on the sim's
    /// noise model (jitter, stalls, drift, bursts a trial shares, requests
    /// in flight, a true slowdown, answer flips; or a profile measured from
    /// an A/A run with `--measure`):
    /// today's point estimate, retried until a pass, the interval gate on
    /// trials, and with more trials when inconclusive.
    #[command(after_help = EXIT_CODES_READ)]
    Calibrate(CalibrateArgs),
    /// Combine a sharded suite's results directories into one, every check
    /// recomputed on the union (MMLU over all questions), then report it as
    /// one run. Refuses (exit 2) a missing or duplicated shard and shards of
    /// different commits, suites or engines.
    #[command(after_help = EXIT_CODES_MERGE)]
    Merge(MergeArgs),
    /// Write a results directory's numbers in Bencher's or
    /// github-action-benchmark's format.
    #[command(after_help = EXIT_CODES_TOOL)]
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SuiteArgs {
    /// Built-in suite (`sim` is the default when no --suite is given).
    #[arg(long, conflicts_with = "suite")]
    pub preset: Option<String>,
    /// Suite TOML file.
    #[arg(long, value_name = "FILE")]
    pub suite: Option<PathBuf>,
    /// TOML merged over the suite, e.g. a thresholds file with
    /// `[tests.long_doc_qa.checks.query_ttft] max = 0.3` (repeatable; after
    /// environment variables, before --set).
    #[arg(
        long = "overlay",
        value_name = "FILE",
        env = "LMCACHE_E2E_OVERLAY",
        value_delimiter = ':'
    )]
    pub overlays: Vec<PathBuf>,
    /// Override any suite key, e.g. `--set tests.long_doc_qa.num_documents=4`
    /// (repeatable; applied after the file and environment variables).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Each test's checks (metric, bound, engine, severity) and the metrics
    /// its kind can gate on.
    #[arg(long, conflicts_with = "presets")]
    pub checks: bool,
    /// The built-in suites and what each runs.
    #[arg(long)]
    pub presets: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CiArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Run only the tests whose names contain one of these patterns
    /// (comma-separated, or the flag repeated).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Check the suite and what it needs here, print the plan (engines with
    /// their command lines and environment, secrets masked; tests with their
    /// checks, bounds and methods) and exit, starting nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Results directory (overrides RESULTS_DIR and run.results_dir).
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
    /// Clear what an earlier run left in the results directory (its
    /// results.json, state.json, logs and outputs; other files stay)
    /// instead of refusing it: without it, a directory holding an earlier
    /// run is exit 2. A directory of other files is written into.
    #[arg(long, env = "LMCACHE_E2E_OVERWRITE")]
    pub overwrite: bool,
    /// Skip the suite's `[controls]` (each runs the suite again after it,
    /// with a fault injected or an engine swapped, and must reach the
    /// verdict it names).
    #[arg(long)]
    pub no_controls: bool,
    /// Send MMLU requests one at a time, as the original scripts did
    /// (default: `max_inflight_requests` at once).
    #[arg(long)]
    pub sequential: bool,
    /// Only warnings, errors and the final verdict table.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also every check as it is judged.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub shard: ShardFlags,
    #[command(flatten)]
    pub history: HistoryFlags,
    #[command(flatten)]
    pub report: ReportFlags,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Shards")]
pub(crate) struct ShardFlags {
    /// Run only shard K of N: the suite's tests (of every model, and an
    /// MMLU test subject by subject) split deterministically, balanced on
    /// their cost; `merge` combines the shards' results directories
    /// [default: from BUILDKITE_PARALLEL_JOB and BUILDKITE_PARALLEL_JOB_COUNT].
    #[arg(long, value_name = "K/N", env = "LMCACHE_E2E_SHARD")]
    pub shard: Option<String>,
    /// Balance the shards on how long each test took in this earlier run's
    /// results directory (a merged one works) instead of estimated tokens.
    #[arg(long, value_name = "DIR", env = "LMCACHE_E2E_DURATIONS_FROM")]
    pub durations_from: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "History")]
pub(crate) struct HistoryFlags {
    /// A JSON-lines store of the default branch's runs: this run is shown
    /// against its recent runs with the same fingerprint (and change points
    /// in them), and appended when it ran on the default branch.
    #[arg(long, value_name = "FILE", env = "LMCACHE_E2E_HISTORY")]
    pub history: Option<PathBuf>,
    /// When to append to --history: `auto` (a run of the default branch
    /// that is no pull request), `always` or `never`.
    #[arg(
        long,
        value_name = "WHEN",
        default_value = "auto",
        env = "LMCACHE_E2E_HISTORY_APPEND"
    )]
    pub history_append: HistoryAppend,
    /// The default branch, for `--history-append auto` [default:
    /// BUILDKITE_PIPELINE_DEFAULT_BRANCH, the GitHub event's repository, or
    /// main].
    #[arg(long, value_name = "BRANCH")]
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum HistoryAppend {
    #[default]
    Auto,
    Always,
    Never,
}

/// `lmcache-e2e merge`: one results directory from a sharded suite's.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The shards' results directories, each with its results.json.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The merged results directory (created; must be empty or new).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// Refuse a results.json larger than this (they are other jobs'
    /// artifacts).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_results_mib: u64,
    #[command(flatten)]
    pub history: HistoryFlags,
    #[command(flatten)]
    pub report: ReportFlags,
}

/// `lmcache-e2e export`: a results directory's numbers for other dashboards.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Results directory holding results.json.
    #[arg(long, value_name = "DIR", env = "RESULTS_DIR")]
    pub results_dir: PathBuf,
    /// `bencher` (Bencher Metric Format, for `bencher run --file`),
    /// `benchmark-smaller` or `benchmark-bigger` (github-action-benchmark's
    /// `customSmallerIsBetter` / `customBiggerIsBetter`).
    #[arg(long, value_name = "FORMAT")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Refuse a results.json larger than this.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_results_mib: u64,
}

/// Where reports go. `ci` also writes the GitHub job summary on GitHub
/// Actions and annotates the build on Buildkite without being asked.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Reports")]
pub(crate) struct ReportFlags {
    /// Append the report to $GITHUB_STEP_SUMMARY (automatic for `ci` on
    /// GitHub Actions) and write the step outputs.
    #[arg(long)]
    pub github_summary: bool,
    /// Create or update this suite's sticky PR comment. Needs GITHUB_TOKEN
    /// with `pull-requests: write`; honours GITHUB_API_URL.
    #[arg(long, env = "LMCACHE_E2E_PR_COMMENT")]
    pub pr_comment: bool,
    /// Keeps one comment (and one Buildkite annotation) per id, so several
    /// suites can report on one PR [default: the suite's name].
    #[arg(long, value_name = "ID", env = "LMCACHE_E2E_COMMENT_ID")]
    pub comment_id: Option<String>,
    /// The pull request to comment on [default: recorded in results.json
    /// from the CI's variables, or the GitHub event].
    #[arg(long, value_name = "N")]
    pub pr: Option<u64>,
    /// The repository, OWNER/NAME [default: results.json, then
    /// GITHUB_REPOSITORY].
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// Annotate the Buildkite build with `buildkite-agent annotate`
    /// (automatic for `ci` on Buildkite).
    #[arg(long)]
    pub buildkite_annotate: bool,
    /// Upload the results directory with `buildkite-agent artifact upload`.
    #[arg(long, env = "LMCACHE_E2E_BUILDKITE_UPLOAD")]
    pub buildkite_upload: bool,
    /// Also write the JUnit XML here (RESULTS_DIR/junit.xml is always
    /// written).
    #[arg(long, value_name = "FILE", env = "LMCACHE_E2E_JUNIT")]
    pub junit: Option<PathBuf>,
    /// A directory of tera templates replacing the embedded ones by name:
    /// summary.md.tera, pr_comment.md.tera, buildkite.md.tera, body.md.tera.
    #[arg(long, value_name = "DIR", env = "LMCACHE_E2E_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Fail (exit 3) when a report cannot be delivered (no token, a fork's
    /// read-only token, GitHub or buildkite-agent errors) instead of warning.
    #[arg(long, env = "LMCACHE_E2E_STRICT_REPORT")]
    pub strict_report: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print every effective value and where it came from (file, preset,
    /// environment variable, --set or default).
    Show(SuiteArgs),
    /// Print the suite format as a JSON Schema (draft 7), for editors and
    /// linters (`schemas/suite.schema.json` is this output).
    Schema,
}

#[derive(Debug, Args)]
pub(crate) struct CalibrateArgs {
    /// Seeded runs per cell.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Paired trials the interval gate runs.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// The most trials `on_inconclusive = "more-trials"` grows to.
    #[arg(long, default_value_t = 7)]
    pub max_trials: usize,
    /// Query prompts per verdict (long document QA: documents × repeats),
    /// split over the trials so the interval gate costs what one of
    /// today's attempts does.
    #[arg(long, default_value_t = 60)]
    pub prompts: usize,
    /// Throughput prompts per trial.
    #[arg(long, default_value_t = 20)]
    pub throughput_prompts: usize,
    /// MMLU questions per verdict.
    #[arg(long, default_value_t = 1000)]
    pub questions: usize,
    /// The check's bound on LMCache's change, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub bound_pct: f64,
    /// The true slowdown to detect, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub slowdown_pct: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Only the latency rows whose noise names this (e.g. `bursts`, `in
    /// flight`); MMLU and change points are left out. Each row keeps the
    /// seed it has in the whole table.
    #[arg(long)]
    pub noise: Option<String>,
    /// Measure a noise profile from an A/A run's results directory (two
    /// identical engines in paired trials, e.g. a suite's `lmcache_as_
    /// baseline` control): print it as JSON and stop.
    #[arg(long, value_name = "DIR", conflicts_with = "profile")]
    pub measure: Option<PathBuf>,
    /// The metric `--measure` reads (its paired per-prompt samples).
    #[arg(long, default_value = "query_ttft_per_prompt")]
    pub metric: String,
    /// Replay a measured noise profile (`--measure`'s JSON): long document
    /// QA rows with its jitter and trial shift, after the table.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Result files, baseline and LMCache for each model.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Largest allowed drop of the question-weighted total accuracy.
    #[arg(long, default_value_t = 0.01)]
    pub max_accuracy_drop: f64,
    /// Largest allowed drop of any one subject's accuracy.
    #[arg(long, default_value_t = 0.05)]
    pub max_subject_drop: f64,
}

#[derive(Debug, Args)]
pub(crate) struct GpusArgs {
    #[arg(long, default_value_t = 2)]
    pub count: usize,
    #[arg(long, default_value_t = 70_000)]
    pub min_free_mib: u64,
    #[arg(long, default_value_t = 20)]
    pub max_util_pct: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub timeout_secs: f64,
    #[arg(long, default_value_t = 10.0)]
    pub poll_secs: f64,
}

#[derive(Debug, Args)]
pub(crate) struct RecommendArgs {
    #[arg(long, default_value = "meta-llama/Meta-Llama-3.1-8B-Instruct")]
    pub model: String,
    /// The model's config.json (default: from the HF cache).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// GPUs to plan for (default: nvidia-smi's count).
    #[arg(long)]
    pub gpus: Option<usize>,
    /// Memory per GPU in MiB (default: nvidia-smi's).
    #[arg(long)]
    pub gpu_mib: Option<u64>,
    /// Host RAM available, in GB (default: MemAvailable).
    #[arg(long)]
    pub host_ram_gb: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Results directory holding results.json.
    #[arg(long, value_name = "DIR", env = "RESULTS_DIR")]
    pub results_dir: PathBuf,
    /// Write the summary here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Refuse a results.json larger than this (it may be another job's
    /// artifact).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub max_results_mib: u64,
    #[command(flatten)]
    pub report: ReportFlags,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["results_dir", "run_id", "stale"])))]
pub(crate) struct CleanupArgs {
    /// Results directory holding the run's state.json: its processes and
    /// containers, then any container with the run's label.
    #[arg(long, value_name = "DIR", env = "RESULTS_DIR")]
    pub results_dir: Option<PathBuf>,
    /// Containers labelled `lmcache-e2e.run=ID` (works without the state file).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Containers of any run whose `lmcache-e2e` process is gone.
    #[arg(long)]
    pub stale: bool,
    /// The container CLI for --run-id and --stale.
    #[arg(long, default_value = "docker")]
    pub cli: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 5.0)]
    pub grace_period_secs: f64,
}

#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    #[command(subcommand)]
    pub step: Option<SetupCommand>,
    /// Only check the prerequisites: print one table of what the suite
    /// needs, what is present and how to fix what is missing.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub suite: SuiteArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SetupCommand {
    /// Extract MMLU data (Hendrycks layout) safely and idempotently: the
    /// archive is never modified, a second run with the same archive does
    /// nothing, hostile entries are refused.
    Data(SetupDataArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SetupDataArgs {
    /// `data.tar.xz`, or an already extracted directory (used as it is).
    #[arg(long, value_name = "FILE")]
    pub archive: PathBuf,
    /// Directory to extract into; the data lands in DIR/data.
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Serve the simulated engine until killed.
    Serve(SimServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SimServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    #[command(flatten)]
    pub options: SimOptions,
}
