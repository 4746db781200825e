//! The `lm_eval` adapter: the reference's command run twice against the
//! LMCache engine (the second run reads the KV the first stored), then the
//! sorted lines of the two `samples_<task>_*.jsonl` compared.

mod task;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use futures_util::future::BoxFuture;
use indexmap::IndexMap;

use super::api::{own, Ctx, ErrorClass, Output, Workload, WorkloadError, WorkloadKind};
use crate::child::NoSecrets;
use crate::client::{BadUrl, Endpoint};
use crate::config::metrics::MetricSpec;
use crate::config::{
    at_least_one, ConfigError, Invalid, KindParams, TestKind, TestParams, Typing, Wants,
};
use crate::results::{Metric, Role};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};
use task::LocalTask;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LmEvalParams {
    pub command: String,
    pub task: String,
    pub limit: u32,
    pub num_concurrent: u32,
    pub max_retries: u32,
    pub seed: u64,
    /// The Hugging Face hub data set the task reads (gsm8k: `openai/gsm8k`).
    /// Where the hub is declared offline (`HF_HUB_OFFLINE=1` or
    /// `HF_DATASETS_OFFLINE=1`), it must be in the local Hugging Face cache.
    pub dataset: Option<String>,
    /// A local copy of the data instead of the hub: a GSM8K `.jsonl` (one
    /// object per line with `question` and `answer`, the rows of
    /// openai/gsm8k's test split) or MMLU's `data.tar.xz` (its extracted
    /// folder, or `builtin`). The tool writes the task for it (`gsm8k_local`
    /// with lm_eval's gsm8k prompt and scoring, or `mmlu_local` with the
    /// correctness suite's prompts) under `lm_eval/tasks/` and runs lm_eval
    /// offline; `task` and `dataset` are then not used. Relative to the
    /// suite's folder.
    pub data: Option<String>,
    /// lm_eval's `tokenizer_backend` model argument: `none` for a server
    /// without vLLM's tokenizer routes (generation tasks need none);
    /// lm_eval chooses when absent (vLLM's own, else Hugging Face's).
    pub tokenizer_backend: Option<String>,
    /// What a missing `lm_eval` or data set does: `fail` the test (k3's
    /// step fails), or `skip` it, saying why.
    pub when_unavailable: WhenUnavailable,
    /// Between the runs, empty the engine's GPU prefix cache (vLLM's `POST
    /// /reset_prefix_cache`, served with `VLLM_SERVER_DEV_MODE=1`), as k3's
    /// `VERIFY_LMCACHE_RETRIEVAL` clears the engine-local cache: else the
    /// second run's prefixes come from vLLM's own cache and LMCache is not
    /// asked (an H100 run: 91 % of prompt tokens from vLLM's cache, 0 from
    /// LMCache's), so two identical runs say nothing about it.
    pub reset_prefix_cache: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WhenUnavailable {
    #[default]
    Fail,
    Skip,
}

impl Default for LmEvalParams {
    fn default() -> Self {
        Self {
            command: "lm_eval".into(),
            task: "gsm8k".into(),
            limit: 300,
            num_concurrent: 50,
            max_retries: 3,
            seed: 0,
            dataset: None,
            data: None,
            tokenizer_backend: None,
            when_unavailable: WhenUnavailable::Fail,
            reset_prefix_cache: false,
        }
    }
}

impl LmEvalParams {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("limit", u64::from(self.limit)),
            ("num_concurrent", u64::from(self.num_concurrent)),
        ])?;
        Ok(())
    }
}

impl KindParams for LmEvalParams {
    fn validate(&self) -> Result<(), Invalid> {
        LmEvalParams::validate(self)
    }

    /// A suite that skips lm_eval where it is missing needs nothing.
    fn wants(&self) -> Vec<Wants> {
        (self.when_unavailable == WhenUnavailable::Fail)
            .then(|| Wants::Program {
                key: "command",
                name: self.command.clone(),
                fix: "pip install 'lm-eval[api]', or set when_unavailable = \"skip\"",
            })
            .into_iter()
            .collect()
    }

    fn tokens_per_trial(&self) -> f64 {
        (self.limit as usize * 1000) as f64
    }
}

/// The kind `lm_eval`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "lm_eval"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<LmEvalParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<LmEvalParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("differing_sample_lines", "lines").smaller(),
            M::new("samples", "lines"),
            M::new("first_run_score", "").bigger(),
            M::new("second_run_score", "").bigger(),
            M::new("score_drift", "").smaller(),
            M::new("min_score", "").bigger(),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[("score_drift", "metric = \"score_drift\"\nmax = 0.01")]
    }

    fn roles(&self) -> &'static [Role] {
        &[Role::Lmcache]
    }

    fn judges_outputs(&self) -> bool {
        true
    }
}

impl WorkloadKind for Kind {
    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(LmEval::new(own::<LmEvalParams>(params).clone()))
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LmEvalError {
    #[error("failed to find `{command}` on PATH ({source}); install it in the job's environment (pip install 'lm-eval[api]')")]
    NotFound {
        command: String,
        source: which::Error,
    },
    #[error("failed to run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`lm_eval` ({run}) exited with {status}; last lines of {log}:\n{tail}")]
    Failed {
        run: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("`lm_eval` ({run}) wrote no samples_{task}_*.jsonl under {dir}; last lines of {log}:\n{tail}")]
    NoSamples {
        run: String,
        task: String,
        dir: PathBuf,
        log: PathBuf,
        tail: String,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Url(#[from] BadUrl),
}

impl From<LmEvalError> for WorkloadError {
    fn from(e: LmEvalError) -> Self {
        WorkloadError::Kind(e.class(), Box::new(e))
    }
}

impl LmEvalError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            LmEvalError::NotFound { .. } | LmEvalError::Spawn { .. } => ErrorClass::Setup,
            LmEvalError::Failed { .. }
            | LmEvalError::NoSamples { .. }
            | LmEvalError::Read { .. } => ErrorClass::Failed,
            LmEvalError::Url(_) => ErrorClass::BadInput,
        }
    }
}

/// The reference's command line, for the hub's task or a local one.
pub(crate) fn args(
    p: &LmEvalParams,
    local: Option<&LocalTask>,
    model: &str,
    server: &Endpoint,
    out: &Path,
) -> Vec<String> {
    let mut model_args = format!(
        "model={model},base_url={},num_concurrent={},max_retries={},tokenized_requests=False",
        server.at("/v1/completions"),
        p.num_concurrent,
        p.max_retries
    );
    if let Some(backend) = &p.tokenizer_backend {
        model_args.push_str(&format!(",tokenizer_backend={backend}"));
    }
    let mut args: Vec<String> = vec![
        "--model".into(),
        "local-completions".into(),
        "--tasks".into(),
        local.map_or(&p.task, |t| &t.name).clone(),
    ];
    if let Some(t) = local {
        args.extend(["--include_path".into(), t.include.display().to_string()]);
    }
    args.extend([
        "--model_args".into(),
        model_args,
        "--limit".into(),
        p.limit.to_string(),
        "--seed".into(),
        p.seed.to_string(),
        "-s".into(),
        "--output_path".into(),
        out.display().to_string(),
        "--gen_kwargs".into(),
        r#"{"temperature": 0.0}"#.into(),
    ]);
    args
}

/// `samples_<task>_*.jsonl` anywhere under `dir` (lm_eval nests it under
/// the model's name), newest name last.
fn find_samples(dir: &Path, task: &str) -> Vec<PathBuf> {
    find_files(dir, &format!("samples_{task}_"), ".jsonl")
}

/// Files named `prefix…suffix` anywhere under `dir`, sorted by name (lm_eval
/// stamps them with the time, so the newest is last).
fn find_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs lm_eval once into `results_dir/lm_eval/<run>`; returns its samples
/// file. A local task runs with the hub declared offline: its rows are here.
pub(crate) async fn run_once(
    p: &LmEvalParams,
    local: Option<&LocalTask>,
    model: &str,
    url: &str,
    results_dir: &Path,
    run: &str,
) -> Result<PathBuf, LmEvalError> {
    let server = Endpoint::parse(url)?;
    let program = which::which(&p.command).map_err(|source| LmEvalError::NotFound {
        command: p.command.clone(),
        source,
    })?;
    let spawn = |source| LmEvalError::Spawn {
        command: p.command.clone(),
        source,
    };
    let out = results_dir.join("lm_eval").join(run);
    std::fs::create_dir_all(&out).map_err(spawn)?;
    let log = results_dir.join("lm_eval").join(format!("{run}.log"));
    let file = std::fs::File::create(&log).map_err(spawn)?;
    let mut command = tokio::process::Command::new(program);
    if local.is_some() {
        command
            .env("HF_DATASETS_OFFLINE", "1")
            .env("HF_HUB_OFFLINE", "1");
    }
    let task = local.map_or(&p.task, |t| &t.name);
    let status = command
        .no_secrets()
        .args(args(p, local, model, &server, &out))
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(spawn)?)
        .stderr(file)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(spawn)?;
    let tail = || crate::results::tail_lines(&log, 20).join("\n");
    if !status.success() {
        return Err(LmEvalError::Failed {
            run: run.into(),
            status: status.to_string(),
            tail: tail(),
            log,
        });
    }
    find_samples(&out, task)
        .pop()
        .ok_or_else(|| LmEvalError::NoSamples {
            run: run.into(),
            task: task.clone(),
            dir: out.clone(),
            tail: tail(),
            log: log.clone(),
        })
}

/// The task's score in the newest `results_*.json` under `dir`, as k3's
/// score mode reads it: `exact_match,strict-match`, else the first
/// `exact_match,*` that is not a stderr. `None` when there is no such file
/// or key (the check then has no value and says so).
pub(crate) fn score(dir: &Path, task: &str) -> Option<f64> {
    let file = find_files(dir, "results_", ".json").pop()?;
    let text = std::fs::read_to_string(file).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let scores = doc.get("results")?.get(task)?.as_object()?;
    scores
        .get("exact_match,strict-match")
        .or_else(|| {
            scores
                .iter()
                .find(|(k, _)| k.starts_with("exact_match,") && !k.contains("stderr"))
                .map(|(_, v)| v)
        })
        .and_then(serde_json::Value::as_f64)
}

/// Lines of the two files that the other lacks, after sorting both, as
/// `diff` prints them (`< ` first run, `> ` second run).
pub(crate) fn sorted_diff(a: &Path, b: &Path) -> Result<Vec<String>, LmEvalError> {
    let read = |p: &Path| -> Result<Vec<String>, LmEvalError> {
        let text = std::fs::read_to_string(p).map_err(|source| LmEvalError::Read {
            path: p.to_path_buf(),
            source,
        })?;
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        Ok(lines)
    };
    let (x, y) = (read(a)?, read(b)?);
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < x.len() || j < y.len() {
        match (x.get(i), y.get(j)) {
            (Some(l), Some(r)) if l == r => {
                i += 1;
                j += 1;
            }
            (Some(l), Some(r)) if l < r => {
                out.push(format!("< {l}"));
                i += 1;
            }
            (Some(_), Some(r)) | (None, Some(r)) => {
                out.push(format!("> {r}"));
                j += 1;
            }
            (Some(l), None) => {
                out.push(format!("< {l}"));
                i += 1;
            }
            (None, None) => break,
        }
    }
    Ok(out)
}

/// What the process environment says, for the availability check.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether the Hugging Face hub is declared out of reach, as
/// `huggingface_hub` and `datasets` read their offline switches.
fn hub_offline(env: Env<'_>) -> Option<String> {
    ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"]
        .into_iter()
        .find_map(|k| {
            let v = env(k)?;
            matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
                .then(|| format!("{k}={v}"))
        })
}

/// Where a copy of hub data set `owner/name` would be: the hub cache
/// (`datasets--owner--name`) and the `datasets` library's own
/// (`owner___name`), as their environment variables place them.
fn cached_copies(dataset: &str, env: Env<'_>) -> Vec<PathBuf> {
    let home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("huggingface")
    });
    let hub = env("HF_HUB_CACHE").map_or_else(|| home.join("hub"), PathBuf::from);
    let datasets = env("HF_DATASETS_CACHE").map_or_else(|| home.join("datasets"), PathBuf::from);
    vec![
        hub.join(format!("datasets--{}", dataset.replace('/', "--"))),
        datasets.join(dataset.replace('/', "___")),
    ]
}

/// Why lm_eval cannot run here, if it cannot: the program missing, a local
/// data file missing, or the task's data set neither cached nor reachable
/// (the hub declared offline). A hub that is merely unreachable is not known in advance.
pub(crate) fn unavailable(p: &LmEvalParams, suite_dir: &Path, env: Env<'_>) -> Option<String> {
    if which::which(&p.command).is_err() {
        return Some(format!(
            "`{}` is not on PATH: install it in the job's environment (pip install 'lm-eval[api]')",
            p.command
        ));
    }
    if let Some(data) = &p.data {
        let path = suite_dir.join(data);
        return (data != "builtin" && !path.exists()).then(|| {
            format!(
                "its data {} is not there: give a GSM8K .jsonl or MMLU's data.tar.xz (tests.<name>.data)",
                path.display()
            )
        });
    }
    let dataset = p.dataset.as_deref()?;
    let offline = hub_offline(env)?;
    let copies = cached_copies(dataset, env);
    if copies.iter().any(|c| c.is_dir()) {
        return None;
    }
    Some(format!(
        "task {} reads {dataset} from the Hugging Face hub, which is offline here ({offline}), and no copy is cached at {}: on a machine with network run `python -c \"import datasets; datasets.load_dataset('{dataset}', 'main')\"`, then copy its Hugging Face cache (HF_HOME) to the runner",
        p.task,
        copies
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    ))
}

/// The lm_eval test, against the LMCache engine only: the first run
/// stores, the second loads, and their samples must be identical.
pub(crate) struct LmEval {
    params: LmEvalParams,
    /// The task written from `data`, once planned.
    local: Option<LocalTask>,
}

impl LmEval {
    pub(crate) fn new(params: LmEvalParams) -> Self {
        Self {
            params,
            local: None,
        }
    }
}

impl Workload for LmEval {
    /// A suite that says `when_unavailable = "skip"` does not run lm_eval
    /// where it cannot: the test is skipped, saying why.
    fn plan<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        _first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            if self.params.when_unavailable == WhenUnavailable::Skip {
                let why = unavailable(&self.params, ctx.suite_dir, &|k| std::env::var(k).ok());
                if let Some(reason) = why {
                    return Err(WorkloadError::Unavailable { reason });
                }
            }
            if let Some(data) = &self.params.data {
                let out = ctx.out_dir.join("lm_eval");
                let limit = self.params.limit as usize;
                self.local = Some(task::write(data, ctx.suite_dir, &out, limit).await?);
            }
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        _phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            if role != Role::Lmcache {
                return Ok(());
            }
            let p = &self.params;
            let local = self.local.as_ref();
            let task = local.map_or(&p.task, |t| &t.name);
            let (target, client) = ctx.engine(role)?;
            let model = super::shared::resolve_model(&client, ctx.model).await?;
            let mut samples = Vec::new();
            ctx.progress.start("lm_eval runs", 2);
            for run in ["first_run", "second_run"] {
                if run == "second_run" && p.reset_prefix_cache {
                    WorkloadError::reset_before_load(&client).await?;
                }
                (ctx.say)(format!("lm_eval {task} ({run}) against `{}`", target.name));
                let file = run_once(p, local, &model, &target.url, ctx.out_dir, run).await?;
                ctx.progress.finished(true);
                out.files.push(relative(ctx.out_dir, &file));
                samples.push(file);
            }
            let diff = sorted_diff(&samples[0], &samples[1])?;
            let dirs = ["first_run", "second_run"].map(|r| ctx.out_dir.join("lm_eval").join(r));
            let scores = dirs.map(|d| score(&d, task));
            let lines = |p: &Path| {
                std::fs::read_to_string(p)
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
            };
            let mut m = IndexMap::new();
            m.insert(
                "differing_sample_lines".to_string(),
                Metric::new(diff.len() as f64, "lines"),
            );
            m.insert(
                "samples".to_string(),
                Metric::new(lines(&samples[0]) as f64, "lines"),
            );
            // k3's score mode: both runs' scores, their drift, the lower.
            if let [Some(first), Some(second)] = scores {
                for (name, v) in [
                    ("first_run_score", first),
                    ("second_run_score", second),
                    ("score_drift", (first - second).abs()),
                    ("min_score", first.min(second)),
                ] {
                    m.insert(name.to_string(), Metric::new(v, ""));
                }
            }
            out.metrics.insert(role, m);
            if !diff.is_empty() {
                let shown: Vec<String> = diff
                    .iter()
                    .take(50)
                    .map(|l| l.chars().take(400).collect())
                    .collect();
                for l in shown.iter().take(5) {
                    out.notes.push(format!(
                        "differs: {}",
                        l.chars().take(200).collect::<String>()
                    ));
                }
                out.notes.push(format!(
                    "{} differing sample lines; the first 50 are in lm_eval/diff.txt",
                    diff.len()
                ));
                let written = super::shared::write_output(
                    ctx.out_dir,
                    "lm_eval",
                    "diff.txt",
                    (shown.join("\n") + "\n").as_bytes(),
                )?;
                out.files.push(written);
            }
            Ok(())
        })
    }
}

fn relative(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_missing_program_or_data_set_and_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        let hf = home.path().display().to_string();
        let p = |command: &str| LmEvalParams {
            command: command.into(),
            dataset: Some("openai/gsm8k".into()),
            ..LmEvalParams::default()
        };
        let env = |offline: bool| {
            let hf = hf.clone();
            move |k: &str| match k {
                "HF_HOME" => Some(hf.clone()),
                "HF_DATASETS_OFFLINE" if offline => Some("1".into()),
                _ => None,
            }
        };
        let why = unavailable(&p("lm-eval-not-installed"), Path::new("."), &env(false)).unwrap();
        assert!(
            why.contains("`lm-eval-not-installed` is not on PATH") && why.contains("pip install"),
            "{why}"
        );
        // Online, the hub may serve it: lm_eval is let try.
        assert_eq!(unavailable(&p("sh"), Path::new("."), &env(false)), None);
        // Offline and not cached: skipped, saying where it looked and how to provide it.
        let why = unavailable(&p("sh"), Path::new("."), &env(true)).unwrap();
        assert!(
            why.contains("offline here (HF_DATASETS_OFFLINE=1)"),
            "{why}"
        );
        assert!(
            why.contains(&format!("{hf}/hub/datasets--openai--gsm8k")),
            "{why}"
        );
        assert!(
            why.contains(&format!("{hf}/datasets/openai___gsm8k")),
            "{why}"
        );
        assert!(
            why.contains("load_dataset('openai/gsm8k', 'main')"),
            "{why}"
        );
        // A cached copy (either layout) is enough.
        std::fs::create_dir_all(home.path().join("datasets/openai___gsm8k")).unwrap();
        assert_eq!(unavailable(&p("sh"), Path::new("."), &env(true)), None);
        // A task that names no data set only needs the program.
        let no_data = LmEvalParams {
            command: "sh".into(),
            ..LmEvalParams::default()
        };
        assert_eq!(unavailable(&no_data, Path::new("."), &env(true)), None);
    }

    mod fuzz_results {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::proptest;

        proptest! {
            #[test]
            fn fuzz_lm_eval_results(bytes in mutated(include_bytes!("../../../tests/fixtures/fuzz/lm_eval_results.json"))) {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("results_2026-01-01T00-00-00.json"), &bytes).unwrap();
                if let Some(s) = timed("an lm_eval results file", || score(dir.path(), "gsm8k")) {
                    assert!(s.is_finite());
                }
            }
        }
    }

    #[test]
    fn the_reference_command_line() {
        let server = Endpoint::parse("http://127.0.0.1:8000/v1").unwrap();
        let out = Path::new("/r/lm_eval/first_run");
        let a = args(
            &LmEvalParams::default(),
            None,
            "Qwen/Qwen3-14B",
            &server,
            out,
        )
        .join(" ");
        assert_eq!(
            a,
            "--model local-completions --tasks gsm8k --model_args model=Qwen/Qwen3-14B,base_url=http://127.0.0.1:8000/v1/completions,num_concurrent=50,max_retries=3,tokenized_requests=False \
             --limit 300 --seed 0 -s --output_path /r/lm_eval/first_run --gen_kwargs {\"temperature\": 0.0}"
        );
        // A task written from local data, against a server without /tokenize.
        let local = LocalTask {
            name: "mmlu_local".into(),
            include: "/r/lm_eval/tasks".into(),
        };
        let p = LmEvalParams {
            tokenizer_backend: Some("none".into()),
            ..LmEvalParams::default()
        };
        let a = args(&p, Some(&local), "smollm2", &server, out).join(" ");
        assert!(
            a.starts_with("--model local-completions --tasks mmlu_local --include_path /r/lm_eval/tasks --model_args model=smollm2,"),
            "{a}"
        );
        assert!(
            a.contains(",tokenized_requests=False,tokenizer_backend=none --limit"),
            "{a}"
        );
    }

    #[test]
    fn score_reads_strict_match_else_the_first_exact_match() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("Qwen__Qwen3-14B");
        std::fs::create_dir_all(&nested).unwrap();
        let write = |name: &str, body: &str| std::fs::write(nested.join(name), body).unwrap();
        write(
            "results_2026-01-01T00-00-00.json",
            r#"{"results": {"gsm8k": {"exact_match,strict-match": 0.5}}}"#,
        );
        write(
            "results_2026-01-02T00-00-00.json",
            r#"{"results": {"gsm8k": {"exact_match_stderr,flexible-extract": 0.01, "exact_match,strict-match": 0.84, "exact_match,flexible-extract": 0.86}}}"#,
        );
        assert_eq!(score(dir.path(), "gsm8k"), Some(0.84), "the newest file");
        write(
            "results_2026-01-03T00-00-00.json",
            r#"{"results": {"gsm8k": {"exact_match_stderr,flexible-extract": 0.01, "exact_match,flexible-extract": 0.86}}}"#,
        );
        assert_eq!(score(dir.path(), "gsm8k"), Some(0.86));
        write("results_2026-01-04T00-00-00.json", "not json");
        assert_eq!(score(dir.path(), "gsm8k"), None);
        assert_eq!(score(dir.path(), "mmlu"), None);
    }

    /// What lm_eval 0.4.13 wrote on an H100 for the task the tool writes
    /// from MMLU (`exact_match,first-letter`), and three of its 300 sample
    /// lines per run: doc 0 answered alike, docs 36 and 265 otherwise
    /// (C then D, C then A: wrong both times, so the scores agree).
    #[test]
    fn the_h100_runs_score_alike_and_differ_in_two_answers() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm_eval-h100");
        let runs = ["first_run", "second_run"].map(|r| fixture.join(r));
        assert_eq!(score(&runs[0], "mmlu_local"), Some(0.28));
        assert_eq!(score(&runs[1], "mmlu_local"), Some(0.28));
        let samples = runs.map(|r| r.join("samples_mmlu_local_differing.jsonl"));
        let diff = sorted_diff(&samples[0], &samples[1]).unwrap();
        assert_eq!(diff.len(), 4, "{diff:?}");
        let docs: Vec<&str> = diff.iter().map(|l| &l[2..20]).collect();
        assert!(
            docs.iter()
                .all(|d| d.contains("\"doc_id\": 36") || d.contains("\"doc_id\": 265")),
            "{docs:?}"
        );
    }

    /// What the H100 said once the GPU's prefix cache was emptied between
    /// the runs (docs/runs/2026-12-06-h100-reruns/): vLLM's counters, with
    /// their `engine="0"` labels, say LMCache served 6,912 prompt tokens
    /// (the number `gpu-1-real`'s `lmcache_served` check bounds), and the
    /// two runs scored alike.
    #[test]
    fn the_h100_rerun_with_the_cache_emptied_reached_lmcache() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm_eval-h100-reset");
        assert_eq!(score(&fixture.join("first_run"), "mmlu_local"), Some(0.28));
        assert_eq!(score(&fixture.join("second_run"), "mmlu_local"), Some(0.28));
        let prom = std::fs::read_to_string(fixture.join("lmcache-after.prom")).unwrap();
        let counters = crate::client::prometheus::parse(&prom);
        assert_eq!(counters["vllm:external_prefix_cache_hits_total"], 6912.0);
        assert_eq!(
            counters[r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#],
            6912.0
        );
        assert_eq!(counters["vllm:prefix_cache_hits_total"], 320_384.0);
    }

    #[test]
    fn sorted_diff_ignores_order_and_shows_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "2\n1\n3\n").unwrap();
        std::fs::write(&b, "3\n1\n2\n").unwrap();
        assert!(sorted_diff(&a, &b).unwrap().is_empty());
        std::fs::write(&b, "1\n2\n4\n").unwrap();
        assert_eq!(sorted_diff(&a, &b).unwrap(), vec!["< 3", "> 4"]);
    }
}
