//! A suite's mistakes caught before any engine starts: every problem at
//! once with its key, where its value came from and a suggestion; what the
//! suite needs on this machine; `ci --dry-run`'s plan, which starts nothing.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn shared_archive() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mmlu/data.tar.xz")
        .display()
        .to_string()
}

/// Stand-ins for every program a preset runs, which record being run: a
/// dry run must run none of them.
fn stand_ins(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["vllm", "lmcache", "lm_eval", "docker"] {
        executable(
            &bin.join(name),
            &format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\n",
                dir.join("ran").display()
            ),
        );
    }
    path_with(&bin)
}

#[test]
fn a_misspelled_metric_and_a_missing_file_are_refused_together_before_any_engine() {
    let dir = tempdir();
    let results_dir = dir.path().join("r");
    let out = run(
        bin()
            .args(["ci", "--preset", "sim", "--results-dir"])
            .arg(&results_dir)
            .args([
                "--set",
                "tests.long_doc_qa.checks.query_ttft.metric=\"query_ttft_per_promt\"",
            ])
            .args(["--set", "tests.mmlu.data=\"no-such-data.tar.xz\""]),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the suite has 2 problems"), "{stderr}");
    assert!(
        stderr.contains("`tests.long_doc_qa.checks.query_ttft.metric` in --set: long_doc_qa tests record no metric `query_ttft_per_promt`; did you mean `query_ttft_per_prompt`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`tests.mmlu.data` in --set: no-such-data.tar.xz does not exist"),
        "{stderr}"
    );
    assert!(!results_dir.exists(), "nothing started, nothing written");
}

#[test]
fn a_suite_without_an_lmcache_engine_is_refused_at_load() {
    let dir = tempdir();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[engines.b]\nrole = \"baseline\"\nkind = \"sim\"\n[tests.long_doc_qa]\nkind = \"long_doc_qa\"\n",
    )
    .unwrap();
    let out = run(&mut ci_suite(&suite, dir.path().join("r")), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`tests.long_doc_qa` in ")
            && stderr.contains("a long_doc_qa test runs against the lmcache engine, but no engine has role = \"lmcache\""),
        "{stderr}"
    );
    assert!(!dir.path().join("r").exists());
}

#[test]
fn messages_name_the_key_once_in_words_with_a_suggestion_and_blame_the_layer() {
    let msg = |args: &[&str]| {
        let out = run(bin().args(["config", "show"]).args(args), LIMIT);
        assert_eq!(out.status.code(), Some(2));
        text(&out).1
    };
    let e = msg(&["--set", "tests.long_doc_qa.num_document=3"]);
    assert!(
        e.contains("`tests.long_doc_qa.num_document` in --set: unknown key `num_document`; did you mean `num_documents`?"),
        "{e}"
    );
    let e = msg(&["--set", "tests.long_doc_qa.num_documents=\"lots\""]);
    assert!(
        e.contains("expected a whole number, 0 or more")
            && !e.contains("usize")
            && !e.contains("\nin `"),
        "{e}"
    );
    let e = msg(&["--preset", "simm"]);
    assert!(
        e.contains("unknown preset `simm`; did you mean `sim`?") && e.len() < 300,
        "{e}"
    );
    // A bad value given by --set is --set's, not the preset's.
    let e = msg(&["--set", "tests.long_doc_qa.num_documents=0"]);
    assert!(
        e.contains("`tests.long_doc_qa.num_documents` in --set: must be at least 1"),
        "{e}"
    );
    let dir = tempdir();
    let overlay = dir.path().join("thresholds.toml");
    std::fs::write(
        &overlay,
        "[tests.long_doc_qa.checks.query_tfft]\nmax = 0.3\n",
    )
    .unwrap();
    let e = msg(&["--overlay", overlay.to_str().unwrap()]);
    assert!(
        e.contains("has no check `query_tfft` to change; did you mean `query_ttft`?")
            && e.contains("thresholds.toml"),
        "{e}"
    );
}

#[test]
fn environment_overrides_are_said_and_a_suite_can_refuse_them() {
    let out = run(
        bin().args(["config", "show"]).env("NUM_DOCUMENTS", "2"),
        LIMIT,
    );
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains(
            "# the environment overrides tests.long_doc_qa.num_documents (NUM_DOCUMENTS)"
        ),
        "{stdout}"
    );
    let out = run(
        bin()
            .args(["config", "show", "--set", "run.env_overrides=false"])
            .env("NUM_DOCUMENTS", "2"),
        LIMIT,
    );
    let (stdout, _) = text(&out);
    assert!(!stdout.contains("# the environment overrides"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("tests.long_doc_qa.num_documents = 4")),
        "{stdout}"
    );
}

#[test]
fn dry_run_plans_every_preset_and_starts_nothing() {
    let dir = tempdir();
    let path = stand_ins(dir.path());
    let data = format!("tests.mmlu.data=\"{}\"", shared_archive());
    for preset in [
        "sim",
        "gpu-1",
        "mp",
        "k3",
        "k3-sglang",
        "correctness",
        "dynamo",
    ] {
        let results_dir = dir.path().join(format!("r-{preset}"));
        let mut cmd = bin();
        cmd.args(["ci", "--preset", preset, "--dry-run", "--results-dir"])
            .arg(&results_dir)
            .env("PATH", &path);
        if preset != "sim" && preset != "mp" && !preset.starts_with("k3") {
            cmd.args(["--set", &data]);
        }
        let out = run(&mut cmd, LIMIT);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{preset}: {stderr}");
        assert!(
            stdout.starts_with(&format!("plan of suite `{preset}`")),
            "{stdout}"
        );
        assert!(
            stdout.contains("engine ") && stdout.contains("  $ "),
            "{preset}: {stdout}"
        );
        assert!(stdout.contains("check "), "{preset}: {stdout}");
        assert!(stdout
            .trim_end()
            .ends_with("nothing was started (--dry-run)"));
        assert!(!results_dir.exists(), "{preset}: a dry run writes nothing");
    }
    assert!(!dir.path().join("ran").exists(), "a dry run ran a program");
}

#[test]
fn the_plan_shows_command_lines_and_hides_secrets() {
    let dir = tempdir();
    let path = stand_ins(dir.path());
    let out = run(
        bin()
            .args([
                "ci",
                "--preset",
                "gpu-1",
                "--dry-run",
                "--only",
                "long_doc_qa",
            ])
            .args(["--set", "engines.lmcache.env.HF_TOKEN=\"hf_notARealToken\""])
            .args(["--set", "run.model=\"/models/llama\""])
            .env("PATH", &path),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("  $ vllm serve /models/llama --host 127.0.0.1 --port '<a free port>' --load-format dummy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every started engine: NVLink multicast off (NCCL_NVLS_ENABLE=0 "),
        "{stdout}"
    );
    assert!(
        stdout.contains("HF_TOKEN='***'") && !stdout.contains("hf_notARealToken"),
        "{stdout}"
    );
    assert!(
        stdout.contains("check query_ttft_vs_baseline: query_ttft_per_prompt <= -60 % change vs baseline (error); per-prompt pairs within each trial (10 % trimmed mean of log ratios), trials pooled by random effects"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("test mmlu"),
        "--only is honoured: {stdout}"
    );
}

/// A slow start says so within 10 s, with the engine's last log line, on
/// the defaults.
#[test]
fn a_slow_start_is_said_within_ten_seconds() {
    let dir = tempdir();
    let mut cmd = ci_sim(
        dir.path(),
        &[
            "engines.baseline.sim.load_delay_ms=10500",
            "tests.determinism.max_tokens=4",
        ],
    );
    cmd.args(["--only", "determinism"]);
    let out = run(&mut cmd, LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.lines().any(|l| l
            .starts_with("lmcache-e2e: engine `baseline` still starting (10 s): ")
            && l.contains("sim: loading model")),
        "{stderr}"
    );
}
