//! How users get and call the tool: the GitHub Action, the Buildkite plugin,
//! the install script, the examples and the release workflow, checked with
//! the linters CI uses and run for real against the sim preset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{
    bin, executable, group_alive, path_with, recorded_groups, results, run, tempdir, test_status,
    text, wait_until,
};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LIMIT: Duration = Duration::from_secs(90);
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

/// A linter from Debian or PyPI: scripts/test.sh installs the PyPI ones in
/// target/lint-venv.
fn tool(name: &str) -> Command {
    let venv = root().join("target/lint-venv/bin").join(name);
    let found = if venv.exists() {
        venv
    } else {
        which::which(name).unwrap_or_else(|_| {
            panic!("{name} is not installed: run scripts/test.sh, which installs it")
        })
    };
    let mut cmd = Command::new(found);
    cmd.current_dir(root());
    cmd
}

fn ok(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(rel)).unwrap()).unwrap()
}

const WORKFLOWS: &[&str] = &[
    "examples/github/e2e.yml",
    "examples/github/e2e-comment.yml",
    "examples/github/e2e-sharded.yml",
    ".github/workflows/release.yml",
];

#[test]
fn action_workflows_and_pipeline_match_their_published_schemas() {
    let schema = |name: &str, files: &[&str]| {
        let out = tool("check-jsonschema")
            .args(["--builtin-schema", name])
            .args(files)
            .output()
            .unwrap();
        ok(out, &format!("check-jsonschema {name}"));
    };
    schema("vendor.github-actions", &["action.yml"]);
    schema("vendor.github-workflows", WORKFLOWS);
    schema(
        "vendor.buildkite",
        &[
            "buildkite/examples/pipeline.yml",
            "buildkite/examples/pipeline-sharded.yml",
        ],
    );
}

/// The committed schema is the one the shipped binary prints (its kinds'
/// table and suite types): adding a kind or editing a suite type without
/// regenerating it fails here. (The unit tests' build has a test-only
/// engine kind, so this asks the binary.)
#[test]
fn the_committed_schema_is_current() {
    let out = run(bin().args(["config", "schema"]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/suite.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(
        printed == committed,
        "schemas/suite.schema.json is stale: run `lmcache-e2e config schema > schemas/suite.schema.json`"
    );
}

/// The suite schema an editor uses (taplo, Even Better TOML) takes every
/// preset and suite file shipped, and refuses what the loader refuses.
#[test]
fn the_suite_schema_takes_every_shipped_suite_and_refuses_a_wrong_one() {
    let schema = root().join("schemas/suite.schema.json");
    let mut suites: Vec<PathBuf> = std::fs::read_dir(root().join("presets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    suites.push(root().join("scripts/gpu/k3-one-gpu.toml"));
    suites.push(root().join("scripts/gpu/reset-check.toml"));
    let out = tool("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .args(&suites)
        .output()
        .unwrap();
    ok(out, "check-jsonschema on the presets");
    let work = tempdir();
    let bad = work.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[engines.b]\nrole = \"baseline\"\nkind = \"sim\"\n[tests.l]\nkind = \"long_doc_qa\"\nnum_documents = \"lots\"\nnum_document = 3\n",
    )
    .unwrap();
    let out = tool("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema)
        .arg(&bad)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("'num_document' was unexpected")
            && said.contains("'lots' is not of type 'integer'"),
        "{said}"
    );
}

#[test]
fn exports_validate_against_bencher_and_github_action_benchmark_schemas() {
    let work = tempdir();
    let dir = previous_run(work.path());
    for (format, schema) in [
        ("bencher", "bmf.json"),
        ("benchmark-smaller", "github-action-benchmark.json"),
        ("benchmark-bigger", "github-action-benchmark.json"),
    ] {
        let file = work.path().join(format!("{format}.json"));
        let out = run(
            bin()
                .args(["export", "--format", format, "--results-dir"])
                .arg(&dir)
                .arg("--output")
                .arg(&file),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        let out = tool("check-jsonschema")
            .arg("--schemafile")
            .arg(root().join("tests/fixtures/schemas").join(schema))
            .arg(&file)
            .output()
            .unwrap();
        ok(out, &format!("{format} against {schema}"));
    }
}

#[test]
fn zizmor_finds_nothing_in_the_action_and_workflows() {
    let out = tool("zizmor")
        .args(["--offline", "--config", "zizmor.yml", "action.yml"])
        .args(WORKFLOWS)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("No findings to report"), "{all}");
}

#[test]
fn shellcheck_is_clean_on_every_script_and_hook() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["scripts", "scripts/action", "hooks", ".ci"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            let p = e.path();
            let head = std::fs::read_to_string(&p).unwrap_or_default();
            if p.is_file()
                && head.starts_with("#!")
                && (head.contains("sh\n") || head.contains("bash"))
            {
                files.push(p);
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    ok(
        tool("shellcheck").args(&files).output().unwrap(),
        "shellcheck",
    );
}

/// Long options of `lmcache-e2e ci`, and the environment variables it reads
/// for them, from its own `--help`.
fn ci_help() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let out = run(bin().args(["ci", "--help"]), LIMIT);
    let help = text(&out).0;
    let mut flags = BTreeSet::new();
    let mut envs = BTreeMap::new();
    // Each option with its (wrapped) description on one line.
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let opt = t.strip_prefix("--").or_else(|| {
            t.split_once(", --")
                .filter(|(s, _)| s.len() == 2)
                .map(|(_, r)| r)
        });
        match opt {
            Some(rest) => {
                let flag = format!("--{}", rest.split([' ', '=', ',']).next().unwrap());
                entries.push((flag, t.to_string()));
            }
            None => {
                if let Some(last) = entries.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(t);
                }
            }
        }
    }
    for (flag, desc) in entries {
        if let Some((_, rest)) = desc.split_once("[env: ") {
            let var = rest.trim_start().split('=').next().unwrap().to_string();
            envs.insert(var, flag.clone());
        }
        flags.insert(flag);
    }
    flags.remove("--help");
    (flags, envs)
}

/// A `lmcache-e2e` that records its arguments and environment, then runs the
/// real binary.
fn recording_shim(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("shim");
    std::fs::create_dir_all(&bin_dir).unwrap();
    executable(
        &bin_dir.join("lmcache-e2e"),
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}/argv'\nenv > '{log}/env'\nexec '{real}' \"$@\"\n",
            log = dir.display(),
            real = env!("CARGO_BIN_EXE_lmcache-e2e"),
        ),
    );
    bin_dir
}

fn recorded(dir: &Path) -> (Vec<String>, BTreeMap<String, String>) {
    let argv = std::fs::read_to_string(dir.join("argv")).unwrap();
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    (
        argv.lines().map(String::from).collect(),
        env.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Proves each value reaches the binary: as the argument of a flag `ci`
/// has, or in an environment variable `ci` reads. Returns the flags reached.
fn reached(
    values: &BTreeMap<&str, String>,
    argv: &[String],
    env: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let (flags, envs) = ci_help();
    let mut hit = BTreeSet::new();
    for a in argv.iter().filter(|a| a.starts_with("--")) {
        assert!(
            flags.contains(a.as_str()),
            "`{a}` is not an option of `lmcache-e2e ci`"
        );
        hit.insert(a.clone());
    }
    for (var, flag) in &envs {
        if env.contains_key(var) {
            hit.insert(flag.clone());
        }
    }
    for (input, value) in values {
        let in_argv = argv
            .windows(2)
            .any(|w| w[0].starts_with("--") && &w[1] == value);
        let in_env = env.iter().any(|(k, v)| {
            v == value && (envs.contains_key(k) || READ_DIRECTLY.contains(&k.as_str()))
        });
        assert!(
            in_argv || in_env,
            "`{input}` = {value:?} reaches neither a flag nor a variable the binary reads"
        );
    }
    hit
}

/// Variables the binary reads that are not options: the reference's names
/// and the GitHub token (documented in --help and the README).
const READ_DIRECTLY: &[&str] = &[
    "MODEL",
    "BUILD_ID",
    "GITHUB_TOKEN",
    "RESULTS_DIR",
    "LMCACHE_E2E_ARTIFACT_NAME",
];

/// What a user needs from `ci`, less what a surface covers by itself.
fn assert_all_reachable(reached: &BTreeSet<String>, not_needed: &[(&str, &str)], surface: &str) {
    let (flags, _) = ci_help();
    for flag in flags {
        if not_needed.iter().any(|(f, _)| *f == flag) {
            continue;
        }
        assert!(
            reached.contains(&flag),
            "{surface} has no way to pass `{flag}`"
        );
    }
}

fn thresholds(dir: &Path) -> PathBuf {
    let p = dir.join("thresholds.toml");
    std::fs::write(
        &p,
        "[tests.determinism.checks.identical_outputs]\nmax = 1\n",
    )
    .unwrap();
    p
}

fn templates(dir: &Path) -> PathBuf {
    let t = dir.join("templates");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        t.join("summary.md.tera"),
        "Custom summary: {{ suite }} {{ verdict }}\n",
    )
    .unwrap();
    t
}

fn identical_outputs_threshold(results_dir: &Path) -> f64 {
    results(results_dir)["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "identical_outputs")
        .unwrap()["threshold"]
        .as_f64()
        .unwrap()
}

/// action.yml's inputs, each to the variable its run step sets (checked:
/// every input reaches a step, and the run step's script interpolates none).
fn action_inputs() -> BTreeMap<String, String> {
    let action = yaml("action.yml");
    let inputs: Vec<String> = action["inputs"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["name"].as_str().is_some_and(|n| n.contains(id)))
            .unwrap()
    };
    let run_step = step("Run the suite");
    let env_of_input: BTreeMap<String, String> = run_step["env"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            let input = v
                .as_str()?
                .strip_prefix("${{ inputs.")?
                .strip_suffix(" }}")?;
            Some((input.to_string(), k.as_str()?.to_string()))
        })
        .collect();
    // Inputs that are not for the binary, and where they go instead.
    let elsewhere = [("version", "Install lmcache-e2e")];
    for input in &inputs {
        if let Some((_, s)) = elsewhere.iter().find(|(i, _)| i == input) {
            let text = serde_yaml::to_string(step(s)).unwrap();
            assert!(
                text.contains(&format!("inputs.{input}")),
                "`{input}` is not used by step `{s}`"
            );
            continue;
        }
        assert!(
            env_of_input.contains_key(input),
            "input `{input}` reaches no step"
        );
    }
    // Every `${{ }}` in the run step's script would be an injection.
    assert!(!run_step["run"].as_str().unwrap().contains("${{"));

    env_of_input
}

/// scripts/action/run.sh, the binary behind a recording shim, with these
/// variables and none of GitHub's or Buildkite's own.
fn run_action(shim: &Path, env: &[(String, String)]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/action/run.sh")).env(
        "PATH",
        format!("{}:{}", shim.display(), std::env::var("PATH").unwrap()),
    );
    for v in [
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_EVENT_PATH",
        "GITHUB_REF",
        "BUILDKITE",
        "GITHUB_OUTPUT",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, LIMIT)
}

/// What the binary did with every input at once, run in `work`.
fn did_what_the_inputs_say(work: &Path, stderr: &str) {
    let results_dir = work.join("results");
    let junit = work.join("out/junit.xml");
    // What the binary did with them.
    assert_eq!(
        identical_outputs_threshold(&results_dir),
        1.0,
        "thresholds applied"
    );
    assert_eq!(
        results(&results_dir)["meta"]["models"][0],
        "lmcache-e2e/sim"
    );
    assert!(
        stderr.contains("warning: no PR comment: "),
        "comment attempted: {stderr}"
    );
    assert!(junit.is_file());
    assert!(std::fs::read_to_string(results_dir.join("summary.md"))
        .unwrap()
        .starts_with("Custom summary: sim passed"));
    let outputs = std::fs::read_to_string(work.join("github_output")).unwrap();
    assert!(
        outputs.starts_with(&format!("results-dir={}\n", results_dir.display())),
        "{outputs}"
    );
    assert!(outputs.contains("verdict<<"), "{outputs}");
    assert!(
        outputs.contains("upload=true\nartifact-name=e2e-results-of-this-job\n"),
        "{outputs}"
    );
    for output in ["junit", "summary"] {
        assert!(outputs.contains(&format!("{output}<<")), "{outputs}");
    }
    // The old input names are not used here: no deprecation warnings.
    assert!(!stderr.contains("deprecated"), "{stderr}");
    assert_eq!(results(&results_dir)["shard"]["count"], 1);
    let history = std::fs::read_to_string(work.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "appended: {history}");
}

/// Every input at once, each given a value: each value reaches the binary,
/// which does what it says. The flags reached.
fn every_input_at_once(env_of_input: &BTreeMap<String, String>) -> BTreeSet<String> {
    let work = tempdir();
    let shim = recording_shim(work.path());
    let results_dir = work.path().join("results");
    let junit = work.path().join("out/junit.xml");
    let mut values: BTreeMap<&str, String> = BTreeMap::from([
        (
            "suite",
            root().join("presets/sim.toml").display().to_string(),
        ),
        ("preset", "sim".into()),
        ("model", "lmcache-e2e/sim".into()),
        ("only", "determinism".into()),
        ("overlay", thresholds(work.path()).display().to_string()),
        ("set", "run.grace_period_secs=2".into()),
        ("sequential", "true".into()),
        ("no-controls", "true".into()),
        ("overwrite", "true".into()),
        ("upload-results", "true".into()),
        ("artifact-name", "e2e-results-of-this-job".into()),
        ("results-dir", results_dir.display().to_string()),
        ("pr-comment", "true".into()),
        ("comment-id", "e2e-test".into()),
        ("github-token", "ghs_notARealToken".into()),
        ("strict-report", "false".into()),
        ("junit", junit.display().to_string()),
        ("templates", templates(work.path()).display().to_string()),
        ("shard", "1/1".into()),
        (
            "durations-from",
            previous_run(work.path()).display().to_string(),
        ),
        (
            "history",
            work.path().join("history.jsonl").display().to_string(),
        ),
        ("history-append", "always".into()),
    ]);
    let env: Vec<(String, String)> = values
        .iter()
        .map(|(input, value)| (env_of_input[*input].clone(), value.clone()))
        .chain([(
            "GITHUB_OUTPUT".to_string(),
            work.path().join("github_output").display().to_string(),
        )])
        .collect();
    let out = run_action(&shim, &env);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (argv, env) = recorded(work.path());
    // The suite file wins over the preset, as documented; the preset is
    // checked on its own below.
    values.remove("preset");
    // Switches: their flags, not their values, reach the binary; the
    // upload is the action's own step, told by an output.
    for (input, flag) in [
        ("sequential", "--sequential"),
        ("no-controls", "--no-controls"),
        ("overwrite", "--overwrite"),
    ] {
        values.remove(input);
        assert!(argv.iter().any(|a| a == flag), "{argv:?}");
    }
    values.remove("upload-results");
    let hit = reached(&values, &argv, &env);
    did_what_the_inputs_say(work.path(), &stderr);
    hit
}

/// Every input of action.yml: where it goes, then real runs of the action's
/// run step with the env mapping the action declares: every input at once,
/// the preset alone, a dry run.
#[test]
fn every_action_input_reaches_the_binary_and_every_option_is_reachable() {
    let env_of_input = action_inputs();
    let mut hit = every_input_at_once(&env_of_input);

    // The preset input on its own.
    let work2 = tempdir();
    let shim2 = recording_shim(work2.path());
    let r = work2.path().join("r").display().to_string();
    let env = [
        ("LMCACHE_E2E_PRESET", "sim"),
        ("LMCACHE_E2E_ONLY", "determinism"),
        ("LMCACHE_E2E_RESULTS_DIR", r.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let out = run_action(&shim2, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let (argv, env) = recorded(work2.path());
    hit.extend(reached(
        &BTreeMap::from([("preset", "sim".to_string())]),
        &argv,
        &env,
    ));

    // dry-run: the plan, nothing started, no results.
    let work3 = tempdir();
    let shim3 = recording_shim(work3.path());
    let r = work3.path().join("r").display().to_string();
    let env = [
        ("LMCACHE_E2E_PRESET", "sim"),
        ("LMCACHE_E2E_DRY_RUN", "true"),
        ("LMCACHE_E2E_RESULTS_DIR", r.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let out = run_action(&shim3, &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("nothing was started (--dry-run)"),
        "{stdout}"
    );
    assert!(!work3.path().join("r").exists(), "a dry run writes nothing");
    let (argv, env) = recorded(work3.path());
    assert!(argv.iter().any(|a| a == "--dry-run"), "{argv:?}");
    hit.extend(reached(&BTreeMap::new(), &argv, &env));

    assert_all_reachable(
        &hit,
        &[
            ("--github-summary", "automatic on GitHub Actions"),
            ("--buildkite-annotate", "Buildkite only"),
            (
                "--buildkite-upload",
                "Buildkite only; the action uploads an artifact",
            ),
            ("--pr", "from the event"),
            ("--repo", "from the event"),
            (
                "--default-branch",
                "from the event's repository.default_branch",
            ),
            ("--quiet", "console verbosity is for a person at a terminal"),
            (
                "--verbose",
                "console verbosity is for a person at a terminal",
            ),
        ],
        "action.yml",
    );
}

/// An earlier run's results directory, to balance shards on.
fn previous_run(dir: &Path) -> PathBuf {
    let prev = dir.join("previous");
    std::fs::create_dir_all(&prev).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/results/sim-failed.json"),
        prev.join("results.json"),
    )
    .unwrap();
    prev
}

#[test]
fn the_actions_merge_input_merges_the_shards_it_names() {
    let work = tempdir();
    for k in 1..=2 {
        let out = run(
            bin()
                .args(["ci", "--preset", "sim", "--only", "determinism"])
                .args(["--shard", &format!("{k}/2"), "--results-dir"])
                .arg(work.path().join(format!("shards/shard-{k}"))),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    }
    let shim = recording_shim(work.path());
    let merged = work.path().join("merged");
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/action/run.sh"))
        .env("PATH", path_with(&shim))
        .env(
            "LMCACHE_E2E_MERGE",
            format!("{}/shards/shard-*\n", work.path().display()),
        )
        .env("LMCACHE_E2E_RESULTS_DIR", &merged)
        .env("LMCACHE_E2E_PR_COMMENT", "")
        .env_remove("GITHUB_OUTPUT");
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let (argv, _) = recorded(work.path());
    assert_eq!(argv[0], "merge");
    assert_eq!(
        argv.iter().filter(|a| a.contains("shard-")).count(),
        2,
        "{argv:?}"
    );
    assert_eq!(results(&merged)["merged_from"].as_array().unwrap().len(), 2);
}

/// A copy of what a source build reads (and the scripts), as GitHub
/// checks an action out: no `.git`, no `target/`.
fn action_copy(dir: &Path) -> PathBuf {
    let to = dir.join("action");
    std::fs::create_dir_all(&to).unwrap();
    for part in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "templates",
        "presets",
        "scripts",
    ] {
        let out = Command::new("cp")
            .arg("-R")
            .arg(root().join(part))
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    to
}

/// A `cargo` that "builds" by copying this test's binary into
/// `$CARGO_TARGET_DIR/release`, counting its calls in `dir/cargo-calls`.
fn fake_cargo(dir: &Path) -> PathBuf {
    let bin = dir.join("cargo-bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(
        &bin.join("cargo"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{calls}'\nmkdir -p \"$CARGO_TARGET_DIR/release\"\ncp '{real}' \"$CARGO_TARGET_DIR/release/lmcache-e2e\"\n",
            calls = dir.join("cargo-calls").display(),
            real = env!("CARGO_BIN_EXE_lmcache-e2e"),
        ),
    );
    bin
}

fn cargo_calls(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("cargo-calls"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn the_actions_install_reuses_its_cached_binary_while_the_checksum_holds() {
    let work = tempdir();
    let action = action_copy(work.path());
    let cargo = fake_cargo(work.path());
    let cache = work.path().join("cache");
    let install = |args: &[&str]| {
        let mut cmd = Command::new("bash");
        cmd.arg(action.join("scripts/action/install.sh"))
            .args(args)
            .env("PATH", path_with(&cargo))
            .env("GITHUB_ACTION_PATH", &action)
            .env("GITHUB_PATH", work.path().join("github_path"))
            .env("GITHUB_OUTPUT", work.path().join("github_output"))
            .env("RUNNER_TEMP", work.path().join("runner"))
            .env("CARGO_TARGET_DIR", work.path().join("target"))
            .env("LMCACHE_E2E_CACHE_DIR", &cache)
            .env("LMCACHE_E2E_VERSION", "source");
        let out = run(&mut cmd, LIMIT);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        (stdout, stderr)
    };
    install(&["key"]);
    let outputs = std::fs::read_to_string(work.path().join("github_output")).unwrap();
    let key = outputs
        .lines()
        .find_map(|l| l.strip_prefix("key=lmcache-e2e-"))
        .unwrap()
        .to_string();
    assert!(key.starts_with("source-"), "{outputs}");
    assert!(outputs.contains(&format!("dir={}", cache.display())));

    let (cold, _) = install(&[]);
    assert!(cold.contains("from source, built with cargo"), "{cold}");
    assert_eq!(cargo_calls(work.path()), 1);
    assert!(cache.join(&key).join("lmcache-e2e.sha256").is_file());
    let (warm, _) = install(&[]);
    assert!(warm.contains("from the cache"), "{warm}");
    assert_eq!(cargo_calls(work.path()), 1, "a cache hit builds nothing");
    assert!(work
        .path()
        .join("runner/lmcache-e2e-bin/lmcache-e2e")
        .is_file());

    // A cached binary that is no longer what was stored is rebuilt.
    let cached = cache.join(&key).join("lmcache-e2e");
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&cached, bytes).unwrap();
    let (rebuilt, stderr) = install(&[]);
    assert!(
        stderr.contains("does not match its recorded sha256"),
        "{stderr}"
    );
    assert!(rebuilt.contains("from source"), "{rebuilt}");
    assert_eq!(cargo_calls(work.path()), 2);

    // Another source tree is another key.
    std::fs::write(action.join("templates/body.md.tera"), "changed").unwrap();
    std::fs::remove_file(work.path().join("github_output")).unwrap();
    install(&["key"]);
    let outputs = std::fs::read_to_string(work.path().join("github_output")).unwrap();
    assert!(!outputs.contains(&key), "{outputs}");
}

#[test]
fn the_plugins_second_run_reuses_the_binary_on_the_agent() {
    let work = tempdir();
    let checkout = work.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let agent = fake_agent(work.path());
    let cargo = fake_cargo(work.path());
    let cache = work.path().join("cache");
    let hook = || {
        let mut cmd = Command::new(root().join("hooks/command"));
        cmd.env("PATH", format!("{}:{}", cargo.display(), path_with(&agent)))
            .env("CARGO_TARGET_DIR", work.path().join("target"))
            .env("LMCACHE_E2E_CACHE_DIR", &cache)
            .current_dir(&checkout);
        buildkite_env(
            &mut cmd,
            &checkout,
            &[
                ("PRESET", "sim"),
                ("ONLY", "determinism"),
                ("VERSION", "source"),
                ("UPLOAD_RESULTS", "false"),
            ],
        );
        let out = run(&mut cmd, LIMIT);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        stdout
    };
    let first = hook();
    assert!(first.contains("from source, built with cargo"), "{first}");
    let second = hook();
    assert!(second.contains("from the agent's cache"), "{second}");
    assert_eq!(cargo_calls(work.path()), 1, "the second run builds nothing");
}

/// A `buildkite-agent` that records each call.
fn fake_agent(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("agent-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(dir.join("agent-calls")).unwrap();
    executable(
        &bin_dir.join("buildkite-agent"),
        &format!(
            "#!/bin/sh\nn=$(ls '{log}' | wc -l)\nprintf '%s\\n' \"$@\" > '{log}'/call-$n\ncat > /dev/null\n",
            log = dir.join("agent-calls").display()
        ),
    );
    bin_dir
}

fn agent_calls(dir: &Path) -> Vec<Vec<String>> {
    let mut calls: Vec<(usize, Vec<String>)> = std::fs::read_dir(dir.join("agent-calls"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name
                .trim_start_matches("call-")
                .parse()
                .unwrap_or_else(|_| panic!("unexpected file {name}"));
            (
                n,
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect(),
            )
        })
        .collect();
    calls.sort();
    calls.into_iter().map(|(_, c)| c).collect()
}

/// The variables a Buildkite agent sets for a job, the plugin's properties
/// among them.
fn buildkite_env(cmd: &mut Command, checkout: &Path, props: &[(&str, &str)]) {
    for (k, v) in [
        ("BUILDKITE", "true"),
        ("CI", "true"),
        ("BUILDKITE_AGENT_NAME", "gpu-2xl4-1"),
        (
            "BUILDKITE_BUILD_CHECKOUT_PATH",
            &checkout.display().to_string(),
        ),
        ("BUILDKITE_BUILD_ID", "0190c6f2-7c8b-4a38-9d6a-3b2f4bd5e8a1"),
        ("BUILDKITE_BUILD_NUMBER", "4812"),
        (
            "BUILDKITE_BUILD_URL",
            "https://buildkite.com/lmcache/e2e/builds/4812",
        ),
        ("BUILDKITE_JOB_ID", "0190c6f2-8d1e-4f6b-a2c4-5e7f9a1b3c5d"),
        ("BUILDKITE_BRANCH", "dev"),
        (
            "BUILDKITE_COMMIT",
            "4f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
        ),
        ("BUILDKITE_PULL_REQUEST", "false"),
        ("BUILDKITE_REPO", "git@github.com:LMCache/LMCache.git"),
        ("BUILDKITE_PIPELINE_SLUG", "e2e"),
        ("BUILDKITE_ORGANIZATION_SLUG", "lmcache"),
        ("BUILDKITE_LABEL", ":test_tube: sim"),
    ] {
        cmd.env(k, v);
    }
    for (k, v) in props {
        cmd.env(format!("BUILDKITE_PLUGIN_LMCACHE_E2E_{k}"), v);
    }
}

/// The plugin's command hook in `cwd` as a Buildkite step with these
/// properties: the binary behind a recording shim in `work`, a fake agent.
fn hook_command(work: &Path, cwd: &Path, props: &[(&str, &str)]) -> Command {
    let shim = recording_shim(work);
    let agent = fake_agent(work);
    let mut cmd = Command::new(root().join("hooks/command"));
    let path = format!(
        "{}:{}:{}",
        shim.display(),
        agent.display(),
        std::env::var("PATH").unwrap()
    );
    cmd.env("PATH", &path).current_dir(cwd);
    buildkite_env(&mut cmd, cwd, props);
    cmd
}

/// Every property at once, each given a value (checked: every property is
/// exercised); each value reaches the binary. The flags reached.
fn every_property_at_once(props: &[String]) -> BTreeSet<String> {
    let work = tempdir();
    let checkout = work.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let junit = work.path().join("reports/junit.xml");
    let values: Vec<(&str, String)> = vec![
        (
            "SUITE",
            root().join("presets/sim.toml").display().to_string(),
        ),
        ("MODEL", "lmcache-e2e/sim".into()),
        ("ONLY", "determinism".into()),
        ("OVERLAY", thresholds(work.path()).display().to_string()),
        ("OVERWRITE", "true".into()),
        ("SET_0", "run.grace_period_secs=2".into()),
        ("SET_1", "tests.determinism.max_tokens=8".into()),
        ("SEQUENTIAL", "true".into()),
        ("NO_CONTROLS", "true".into()),
        ("COMMENT_ID", "bk-sim".into()),
        ("PR_COMMENT", "true".into()),
        ("UPLOAD_RESULTS", "true".into()),
        ("JUNIT", junit.display().to_string()),
        ("STRICT_REPORT", "false".into()),
        ("TEMPLATES", templates(work.path()).display().to_string()),
        ("VERSION", "path".into()),
        (
            "HISTORY",
            work.path().join("history.jsonl").display().to_string(),
        ),
        ("HISTORY_APPEND", "never".into()),
        (
            "DURATIONS_FROM",
            previous_run(work.path()).display().to_string(),
        ),
        (
            "ENGINE_CACHE",
            work.path().join("engine-cache").display().to_string(),
        ),
    ];
    // Every property has a value here, but `preset`, `results-dir` (checked
    // below) and `set` (as SET_0, SET_1).
    for p in props {
        let var = p.to_uppercase().replace('-', "_");
        let covered = values
            .iter()
            .any(|(k, _)| *k == var || k.starts_with(&format!("{var}_")))
            || ["PRESET", "RESULTS_DIR", "MERGE", "DRY_RUN"].contains(&var.as_str())
            // The old names, tested in their own test.
            || ["TESTS", "THRESHOLDS"].contains(&var.as_str());
        assert!(covered, "property `{p}` is not exercised");
    }
    let props_env: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cmd = hook_command(work.path(), &checkout, &props_env);
    let out = run(&mut cmd, LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (argv, env) = recorded(work.path());
    let named: BTreeMap<&str, String> = values
        .iter()
        .filter(|(k, _)| {
            ![
                "VERSION",
                "PR_COMMENT",
                "UPLOAD_RESULTS",
                "STRICT_REPORT",
                "SEQUENTIAL",
                "NO_CONTROLS",
                "OVERWRITE",
                "ENGINE_CACHE",
            ]
            .contains(k)
        })
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let hit = reached(&named, &argv, &env);
    did_what_the_properties_say(work.path(), &checkout, &argv, &env);
    hit
}

/// What the binary and the agent did with every property at once.
fn did_what_the_properties_say(
    work: &Path,
    checkout: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
) {
    let results_dir = checkout.join("lmcache-e2e-results");
    let junit = work.join("reports/junit.xml");
    // The engine cache is a suite key, given as one.
    let cache = work.join("engine-cache");
    assert!(
        argv.iter()
            .any(|a| *a == format!("run.engine_cache={}", cache.display())),
        "{argv:?}"
    );
    assert!(cache.join("vllm").is_dir(), "the cache directory is made");
    for flag in [
        "--pr-comment",
        "--buildkite-upload",
        "--sequential",
        "--no-controls",
        "--overwrite",
    ] {
        assert!(
            argv.iter().any(|a| a == flag),
            "{flag} missing from {argv:?}"
        );
    }
    assert_eq!(env.get("BUILD_ID").map(String::as_str), Some("4812"));
    // What the run did with them.
    assert_eq!(identical_outputs_threshold(&results_dir), 1.0);
    assert!(junit.is_file());
    let r = results(&results_dir);
    assert_eq!(r["build_id"], "4812");
    assert_eq!(
        r["meta"]["build_url"],
        "https://buildkite.com/lmcache/e2e/builds/4812#0190c6f2-8d1e-4f6b-a2c4-5e7f9a1b3c5d"
    );
    assert_eq!(r["meta"]["repository"], "LMCache/LMCache");
    let calls = agent_calls(work);
    assert_eq!(
        calls[0],
        [
            "annotate",
            "--context",
            "lmcache-e2e-bk-sim",
            "--style",
            "success"
        ]
    );
    assert_eq!(calls[1], ["artifact", "upload", "lmcache-e2e-results/**/*"]);
}

#[test]
fn every_plugin_property_reaches_the_binary_and_the_hooks_run_on_the_sim() {
    let plugin = yaml("plugin.yml");
    let props: Vec<String> = plugin["configuration"]["properties"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        plugin["configuration"]["additionalProperties"],
        serde_yaml::Value::Bool(false)
    );

    let mut hit = every_property_at_once(&props);

    // preset and results-dir, with upload off and strict reports (the
    // annotation is the only report, and it works).
    let work2 = tempdir();
    let custom = work2.path().join("custom-results");
    let custom_s = custom.display().to_string();
    let mut cmd = hook_command(
        work2.path(),
        work2.path(),
        &[
            ("PRESET", "sim"),
            ("ONLY", "determinism"),
            ("RESULTS_DIR", &custom_s),
            ("UPLOAD_RESULTS", "false"),
            ("STRICT_REPORT", "true"),
        ],
    );
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(custom.join("results.json").is_file());

    // dry-run: the plan in the step's log, no engine, no results.
    let work3 = tempdir();
    let mut dry = hook_command(
        work3.path(),
        work3.path(),
        &[("PRESET", "sim"), ("DRY_RUN", "true")],
    );
    let out = run(&mut dry, LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("nothing was started (--dry-run)"),
        "{stdout}"
    );
    let (dry_argv, dry_env) = recorded(work3.path());
    assert!(dry_argv.iter().any(|a| a == "--dry-run"), "{dry_argv:?}");
    assert!(!work3
        .path()
        .join("lmcache-e2e-results/results.json")
        .exists());
    hit.extend(reached(&BTreeMap::new(), &dry_argv, &dry_env));

    let (argv, env) = recorded(work2.path());
    hit.extend(reached(
        &BTreeMap::from([("PRESET", "sim".to_string()), ("RESULTS_DIR", custom_s)]),
        &argv,
        &env,
    ));
    assert_eq!(
        agent_calls(work2.path()).len(),
        1,
        "annotation only, no upload"
    );

    assert_all_reachable(
        &hit,
        &[
            ("--github-summary", "GitHub only"),
            ("--buildkite-annotate", "automatic on Buildkite"),
            ("--pr", "from BUILDKITE_PULL_REQUEST"),
            ("--default-branch", "from BUILDKITE_PIPELINE_DEFAULT_BRANCH"),
            (
                "--shard",
                "from BUILDKITE_PARALLEL_JOB (the step's parallelism)",
            ),
            ("--repo", "from BUILDKITE_REPO"),
            ("--quiet", "console verbosity is for a person at a terminal"),
            (
                "--verbose",
                "console verbosity is for a person at a terminal",
            ),
        ],
        "the Buildkite plugin",
    );
}

#[test]
fn the_plugin_runs_a_parallel_steps_shards_and_merges_them() {
    let work = tempdir();
    let checkout = work.path().join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let agent = fake_agent(work.path());
    let shim = recording_shim(work.path());
    let path = format!("{}:{}", shim.display(), path_with(&agent));
    let hook = |props: &[(&str, &str)], parallel: Option<&str>| {
        let mut cmd = Command::new(root().join("hooks/command"));
        cmd.env("PATH", &path).current_dir(&checkout);
        buildkite_env(&mut cmd, &checkout, props);
        if let Some(job) = parallel {
            cmd.env("BUILDKITE_PARALLEL_JOB", job)
                .env("BUILDKITE_PARALLEL_JOB_COUNT", "2");
        }
        let out = run(&mut cmd, LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    };
    let shard = [("PRESET", "sim"), ("ONLY", "determinism")];
    hook(&shard, Some("0"));
    hook(&shard, Some("1"));
    for k in [1, 2] {
        let r = results(&checkout.join(format!("lmcache-e2e-results-shard-{k}")));
        assert_eq!(r["shard"]["index"], k);
    }
    let history = work.path().join("history.jsonl");
    let history_s = history.display().to_string();
    hook(
        &[
            ("MERGE", "true"),
            ("HISTORY", &history_s),
            ("HISTORY_APPEND", "always"),
        ],
        None,
    );
    let merged = results(&checkout.join("lmcache-e2e-results"));
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 2);
    assert_eq!(merged["tests"][0]["name"], "determinism");
    assert_eq!(
        std::fs::read_to_string(&history).unwrap().lines().count(),
        1
    );
    let calls = agent_calls(work.path());
    let uploads: Vec<&Vec<String>> = calls
        .iter()
        .filter(|c| c[0] == "artifact" && c[1] == "upload")
        .collect();
    assert_eq!(uploads[0][2], "lmcache-e2e-results-shard-1/**/*");
    assert_eq!(uploads[1][2], "lmcache-e2e-results-shard-2/**/*");
    assert!(
        calls
            .iter()
            .any(|c| c[..3] == ["artifact", "download", "lmcache-e2e-results-shard-*/**/*"]),
        "{calls:?}"
    );
    // The shards annotate under their own contexts; the merge under the
    // suite's, once for the whole.
    let contexts: Vec<&str> = calls
        .iter()
        .filter(|c| c[0] == "annotate")
        .map(|c| c[2].as_str())
        .collect();
    assert_eq!(
        contexts,
        [
            "lmcache-e2e-sim-shard-1",
            "lmcache-e2e-sim-shard-2",
            "lmcache-e2e-sim"
        ]
    );
}

/// The plugin's command hook on the sim, SIGKILLed mid-test as an agent
/// that lost the job would: its engines are left running. The checkout and
/// the engines' process groups.
fn killed_job(
    work: &Path,
    path: &str,
    env: &[(&str, &Path)],
    props: &[(&str, &str)],
) -> (PathBuf, Vec<i32>) {
    let checkout = work.join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let mut cmd = Command::new(root().join("hooks/command"));
    cmd.env("PATH", path)
        .envs(env.iter().copied())
        .current_dir(&checkout)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut all = vec![
        ("PRESET", "sim"),
        ("ONLY", "long_doc_qa"),
        ("SET_0", "tests.long_doc_qa.num_documents=60"),
        ("SET_1", "tests.long_doc_qa.prewarmup_prompts=0"),
    ];
    all.extend_from_slice(props);
    buildkite_env(&mut cmd, &checkout, &all);
    let mut child = cmd.spawn().unwrap();
    let dir = checkout.join("lmcache-e2e-results");
    wait_until(Duration::from_secs(30), "the test to start", || {
        test_status(&dir, "long_doc_qa").as_deref() == Some("running")
    });
    // The agent lost the job's process (the hook execs lmcache-e2e):
    // SIGKILL leaves the engines behind.
    child.kill().unwrap();
    child.wait().unwrap();
    let groups = recorded_groups(&dir);
    assert!(!groups.is_empty() && groups.iter().all(|g| group_alive(*g)));
    (checkout, groups)
}

/// Runs pre-exit as the agent would after the killed job; every engine
/// must be gone after it.
fn pre_exit_stops_them(
    checkout: &Path,
    path: &str,
    env: &[(&str, &Path)],
    props: &[(&str, &str)],
    groups: &[i32],
) {
    let mut hook = Command::new(root().join("hooks/pre-exit"));
    hook.env("PATH", path)
        .envs(env.iter().copied())
        .current_dir(checkout);
    buildkite_env(&mut hook, checkout, props);
    let out = run(&mut hook, LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("not installed"), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
    for g in groups {
        assert!(!group_alive(*g), "process group {g} survived pre-exit");
    }
}

#[test]
fn pre_exit_stops_the_engines_of_a_job_whose_runner_was_killed() {
    let work = tempdir();
    let agent = fake_agent(work.path());
    let real = Path::new(env!("CARGO_BIN_EXE_lmcache-e2e"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}:{}",
        real.display(),
        agent.display(),
        std::env::var("PATH").unwrap()
    );
    let (checkout, groups) = killed_job(work.path(), &path, &[], &[]);
    pre_exit_stops_them(&checkout, &path, &[], &[("PRESET", "sim")], &groups);
    // A job that never ran leaves nothing to do, and pre-exit still passes.
    let empty = tempdir();
    let mut hook = Command::new(root().join("hooks/pre-exit"));
    hook.env("PATH", &path).current_dir(empty.path());
    buildkite_env(&mut hook, empty.path(), &[]);
    assert_eq!(run(&mut hook, LIMIT).status.code(), Some(0));
}

#[test]
fn pre_exit_finds_a_cached_release_binary_of_a_killed_job() {
    let work = tempdir();
    let agent = fake_agent(work.path());
    // The agent's cache holds release v0.1.0 (as an earlier job stored it);
    // lmcache-e2e is nowhere on PATH.
    let cache = work.path().join("cache");
    let store = format!(
        ". scripts/binary-cache.sh && store_binary {} \"$(release_key v0.1.0)\" {}",
        cache.display(),
        env!("CARGO_BIN_EXE_lmcache-e2e")
    );
    let stored = Command::new("bash")
        .args(["-c", &store])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(stored.success());
    let path = format!("{}:{}", agent.display(), std::env::var("PATH").unwrap());
    let env = [("LMCACHE_E2E_CACHE_DIR", cache.as_path())];
    let version = [("VERSION", "v0.1.0")];
    let (checkout, groups) = killed_job(work.path(), &path, &env, &version);
    pre_exit_stops_them(&checkout, &path, &env, &version, &groups);
}

/// A release asset as the release workflow builds it.
fn release_asset(dir: &Path, version: &str, target: &str) -> Vec<u8> {
    let name = format!("lmcache-e2e-{version}-{target}");
    let inner = dir.join(&name);
    std::fs::create_dir_all(&inner).unwrap();
    executable(
        &inner.join("lmcache-e2e"),
        &format!("#!/bin/sh\necho 'lmcache-e2e {version}'\n"),
    );
    let tarball = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-czf")
        .arg(&tarball)
        .arg(&name)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(tarball).unwrap()
}

fn host_target() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-unknown-linux-gnu",
        "aarch64" => "aarch64-unknown-linux-gnu",
        other => panic!("no release target for {other}"),
    }
}

fn install(server: &str, work: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(root().join("scripts/install.sh"))
        .arg("v9.9.9")
        .env("LMCACHE_E2E_BASE_URL", server)
        .env("INSTALL_DIR", work.join("bin"))
        .env("LMCACHE_E2E_CHECKSUMS", work.join("checksums.txt"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, LIMIT)
}

/// A release server with v9.9.9's asset for this host and its `.sha256`;
/// the asset's file name and sha256.
async fn release_server(work: &Path) -> (MockServer, String, String) {
    let target = host_target();
    let asset = release_asset(work, "v9.9.9", target);
    let sha = format!("{:x}", Sha256::digest(&asset));
    let file = format!("lmcache-e2e-v9.9.9-{target}.tar.gz");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v9.9.9/{file}")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(asset.clone()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v9.9.9/{file}.sha256")))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("{sha}  {file}\n")))
        .mount(&server)
        .await;
    (server, file, sha)
}

/// Runs install.sh against `server` in `work` with these variables, off the
/// test's runtime.
async fn install_off_runtime(
    server: &MockServer,
    work: &Path,
    env: Vec<(&'static str, String)>,
) -> Output {
    let (uri, w) = (server.uri(), work.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        install(&uri, &w, &env)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sh_verifies_the_release_asset_it_downloads() {
    let work = tempdir();
    let (server, file, sha) = release_server(work.path()).await;
    let installed = work.path().join("bin/lmcache-e2e");
    // Pinned and matching: installed, and it runs.
    std::fs::write(
        work.path().join("checksums.txt"),
        format!("# pinned\n{sha}  {file}\n"),
    )
    .unwrap();
    let out = install_off_runtime(&server, work.path(), vec![]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let ran = Command::new(&installed).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "lmcache-e2e v9.9.9\n");
    std::fs::remove_file(&installed).unwrap();

    // Pinned but different: refused, nothing installed.
    std::fs::write(
        work.path().join("checksums.txt"),
        format!("{}  {file}\n", "0".repeat(64)),
    )
    .unwrap();
    let out = install_off_runtime(&server, work.path(), vec![]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("checksum mismatch for {file}")),
        "{stderr}"
    );
    assert!(!installed.exists());

    // Not pinned: refused, unless asked to trust the release's own
    // .sha256 (then with a warning).
    std::fs::write(work.path().join("checksums.txt"), "").unwrap();
    let out = install_off_runtime(&server, work.path(), vec![]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no pinned sha256"), "{stderr}");
    assert!(!installed.exists());
    let out = install_off_runtime(
        &server,
        work.path(),
        vec![("LMCACHE_E2E_ALLOW_UNPINNED", "1".into())],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no pinned sha256"), "{stderr}");
    assert!(installed.is_file());
    std::fs::remove_file(&installed).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sh_says_what_is_not_released() {
    let work = tempdir();
    let (server, _, _) = release_server(work.path()).await;
    let installed = work.path().join("bin/lmcache-e2e");
    // A version that was never released.
    let out = install_off_runtime(
        &server,
        work.path(),
        vec![
            ("LMCACHE_E2E_VERSION", "v0.0.1".into()),
            ("LMCACHE_E2E_ALLOW_UNPINNED", "1".into()),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "the argument wins over the variable"
    );
    std::fs::remove_file(&installed).unwrap();
    let uri = server.uri();
    let w = work.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("sh");
        cmd.arg(root().join("scripts/install.sh"))
            .env("LMCACHE_E2E_VERSION", "v0.0.1")
            .env("LMCACHE_E2E_BASE_URL", &uri)
            .env("INSTALL_DIR", w.join("bin"));
        run(&mut cmd, LIMIT)
    })
    .await
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    assert!(stderr.contains("is v0.0.1 released for"), "{stderr}");
    assert!(!installed.exists());

    // A platform without releases.
    let fake = work.path().join("fake-uname");
    std::fs::create_dir_all(&fake).unwrap();
    executable(
        &fake.join("uname"),
        "#!/bin/sh\ncase \"$1\" in -s) echo Darwin ;; -m) echo arm64 ;; esac\n",
    );
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let out = install_off_runtime(&server, work.path(), vec![("PATH", path)]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unsupported platform Darwin/arm64"),
        "{stderr}"
    );
}

/// Runs git in `dir` as a throwaway identity; its trimmed stdout.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out).1);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The paths of the plugin a vendored copy needs, as the plugin's README
/// says to copy them.
const PLUGIN_PARTS: &[&str] = &["plugin.yml", "hooks", "scripts", "dist"];

fn copy_into(parts: &[&str], to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for part in parts {
        let out = Command::new("cp")
            .arg("-R")
            .arg(root().join(part))
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// Runs a plugin's command hook from `plugin` (wherever the agent put it)
/// on the sim, in a fresh checkout.
fn plugin_run(plugin: &Path, work: &Path, extra_path: &[&Path], props: &[(&str, &str)]) -> Output {
    let checkout = work.join("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    let agent = fake_agent(work);
    let mut dirs: Vec<String> = extra_path.iter().map(|p| p.display().to_string()).collect();
    dirs.push(path_with(&agent));
    let mut cmd = Command::new(plugin.join("hooks/command"));
    cmd.env("PATH", dirs.join(":"))
        .env("CARGO_TARGET_DIR", work.join("target"))
        .env("LMCACHE_E2E_CACHE_DIR", work.join("cache"))
        .current_dir(&checkout);
    let mut all = vec![
        ("PRESET", "sim"),
        ("ONLY", "determinism"),
        ("UPLOAD_RESULTS", "false"),
    ];
    all.extend_from_slice(props);
    buildkite_env(&mut cmd, &checkout, &all);
    run(&mut cmd, LIMIT)
}

/// As the plugin's README offers: its files copied into the pipeline's
/// repository (`.buildkite/plugins/lmcache-e2e`), and as the agent fetches
/// `https://github.com/LMCache/e2e-action.git#v9.9.9`: a clone of the
/// repository at that tag, run from its root.
#[test]
fn the_plugin_runs_vendored_and_from_a_tag_of_its_repository() {
    let real_bin = Path::new(env!("CARGO_BIN_EXE_lmcache-e2e"))
        .parent()
        .unwrap()
        .to_path_buf();

    // Vendored, the binary on the agent's PATH.
    let work = tempdir();
    let vendored = work.path().join("repo/.buildkite/plugins/lmcache-e2e");
    copy_into(PLUGIN_PARTS, &vendored);
    let out = plugin_run(&vendored, work.path(), &[&real_bin], &[("VERSION", "path")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("from the agent's PATH"), "{stdout}");
    let r = results(&work.path().join("checkout/lmcache-e2e-results"));
    assert_eq!(r["status"], "passed");
    // A vendored copy has no source to build: said, not a cargo error.
    let work = tempdir();
    copy_into(PLUGIN_PARTS, &work.path().join("p"));
    let out = plugin_run(
        &work.path().join("p"),
        work.path(),
        &[],
        &[("VERSION", "source")],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("has no Cargo.toml (a vendored copy)"),
        "{stderr}"
    );

    // From a tag: the repository's tracked files (as they are in this
    // working tree) committed and tagged, cloned as the agent clones.
    let work = tempdir();
    let origin = work.path().join("origin");
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(listed.status.success());
    for rel in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).unwrap());
        let (from, to) = (root().join(rel), origin.join(rel));
        if !from.is_file() {
            continue;
        }
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let git = |dir: &Path, args: &[&str]| {
        git_in(dir, args);
    };
    git(&origin, &["init", "-q"]);
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-q", "-m", "v9.9.9"]);
    git(&origin, &["tag", "v9.9.9"]);
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    git(
        &plugins,
        &[
            "clone",
            "-q",
            "--branch",
            "v9.9.9",
            &format!("file://{}", origin.display()),
            "lmcache-e2e",
        ],
    );
    let cloned = plugins.join("lmcache-e2e");
    let cargo = fake_cargo(work.path());
    let out = plugin_run(&cloned, work.path(), &[&cargo], &[("VERSION", "source")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("from source, built with cargo"), "{stdout}");
    assert_eq!(cargo_calls(work.path()), 1);
    assert_eq!(
        results(&work.path().join("checkout/lmcache-e2e-results"))["status"],
        "passed"
    );
}

/// The old names of inputs and properties still work, with a warning that
/// names the new one.
#[test]
fn old_input_and_property_names_warn_and_still_work() {
    let work = tempdir();
    let shim = recording_shim(work.path());
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/action/run.sh"))
        .env("PATH", path_with(&shim))
        .env("LMCACHE_E2E_PRESET", "sim")
        .env("LMCACHE_E2E_TESTS", "determinism")
        .env("LMCACHE_E2E_COMMENT", "false")
        .env("LMCACHE_E2E_RESULTS_DIR", work.path().join("r"))
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_ACTIONS");
    let out = run(&mut cmd, LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("::warning title=lmcache-e2e::the input `tests` is deprecated; use `only`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the input `comment` is deprecated; use `pr-comment`"),
        "{stdout}"
    );
    let (argv, env) = recorded(work.path());
    assert!(
        argv.windows(2).any(|w| w == ["--only", "determinism"]),
        "{argv:?}"
    );
    assert_eq!(
        env.get("LMCACHE_E2E_PR_COMMENT").map(String::as_str),
        Some("false")
    );

    let work = tempdir();
    let shim = recording_shim(work.path());
    let out = plugin_run(
        &root(),
        work.path(),
        &[&shim],
        &[("VERSION", "path"), ("TESTS", "mmlu"), ("ONLY", "")],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("the plugin property `tests` is deprecated; use `only`"),
        "{stderr}"
    );
    let (argv, _) = recorded(work.path());
    assert!(argv.windows(2).any(|w| w == ["--only", "mmlu"]), "{argv:?}");
}

/// A repository holding release.sh and the pinned checksums, as a release
/// starts from.
fn release_repo(work: &Path) -> PathBuf {
    let repo = work.join("repo");
    std::fs::create_dir_all(repo.join("scripts")).unwrap();
    std::fs::create_dir_all(repo.join("dist")).unwrap();
    for file in ["scripts/release.sh", "dist/checksums.txt"] {
        std::fs::copy(root().join(file), repo.join(file)).unwrap();
    }
    repo
}

/// A release pins the sha256 of the binaries it publishes in the commit it
/// tags, and moves the major tag there.
#[test]
fn a_release_pins_its_binaries_in_its_own_tag_and_moves_the_major_tag() {
    let work = tempdir();
    let repo = release_repo(work.path());
    let git = |args: &[&str]| git_in(&repo, args);
    let release = |version: &str| -> Vec<(String, String)> {
        let cargo = format!(
            "[package]\nname = \"lmcache-e2e\"\nversion = \"{}\"\n",
            &version[1..]
        );
        std::fs::write(repo.join("Cargo.toml"), cargo).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", &format!("bump to {version}")]);
        let assets = work.path().join(format!("assets-{version}"));
        let mut pinned = Vec::new();
        for target in ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] {
            let bytes = release_asset(&assets, version, target);
            let name = format!("lmcache-e2e-{version}-{target}.tar.gz");
            pinned.push((format!("{:x}", Sha256::digest(&bytes)), name));
        }
        for step in [
            vec!["pin", version, assets.to_str().unwrap()],
            vec!["tag", version],
        ] {
            let out = Command::new("bash")
                .arg(repo.join("scripts/release.sh"))
                .args(&step)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .unwrap();
            assert!(out.status.success(), "{step:?}: {}", text(&out).1);
        }
        pinned
    };
    git(&["init", "-q"]);
    let first = release("v9.9.9");
    let at_tag = git(&["show", "v9.9.9:dist/checksums.txt"]);
    for (sha, name) in &first {
        assert!(at_tag.contains(&format!("{sha}  {name}")), "{at_tag}");
    }
    assert_eq!(
        git(&["rev-parse", "v9^{commit}"]),
        git(&["rev-parse", "v9.9.9^{commit}"])
    );
    let second = release("v9.10.0");
    assert_eq!(
        git(&["rev-parse", "v9^{commit}"]),
        git(&["rev-parse", "v9.10.0^{commit}"])
    );
    let now = git(&["show", "v9:dist/checksums.txt"]);
    for (sha, name) in first.iter().chain(&second) {
        assert!(
            now.contains(&format!("{sha}  {name}")),
            "every release stays pinned: {now}"
        );
    }
    // A version Cargo.toml does not say is refused.
    let out = Command::new("bash")
        .arg(repo.join("scripts/release.sh"))
        .args(["tag", "v9.11.0"])
        .output()
        .unwrap();
    assert!(
        text(&out)
            .1
            .contains("Cargo.toml says v9.10.0, not v9.11.0"),
        "{}",
        text(&out).1
    );
}

/// One name for the project everywhere, the preset lists generated from
/// presets/ (LMCACHE_E2E_BLESS=1 rewrites them), and the licence.
#[test]
fn names_preset_lists_and_licence_agree_with_the_repository() {
    let mut presets: Vec<String> = std::fs::read_dir(root().join("presets"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".toml").map(String::from)
        })
        .collect();
    presets.sort();
    let sentence = format!("presets: {}", presets.join(", "));
    for file in ["action.yml", "plugin.yml"] {
        let path = root().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("Built-in suite (presets: "))
            .unwrap_or_else(|| panic!("{file} lists no presets"));
        let listed = line
            .split("(presets: ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let listed = format!("presets: {listed}");
        if listed != sentence && std::env::var("LMCACHE_E2E_BLESS").as_deref() == Ok("1") {
            std::fs::write(&path, text.replace(&listed, &sentence)).unwrap();
            continue;
        }
        assert_eq!(listed, sentence, "{file} (LMCACHE_E2E_BLESS=1 rewrites it)");
    }
    let home = "LMCache/e2e-action";
    let uses = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(uses.contains(&format!("uses: {home}@v1")), "README's uses:");
    let install = std::fs::read_to_string(root().join("scripts/install.sh")).unwrap();
    assert!(install.contains(&format!("https://github.com/{home}/releases/download")));
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(cargo.contains(&format!("repository = \"https://github.com/{home}\"")));
    for rel in WORKFLOWS {
        let text = std::fs::read_to_string(root().join(rel)).unwrap();
        for l in text.lines().filter(|l| l.contains("/e2e-action")) {
            assert!(l.contains(home), "{rel}: {l}");
        }
    }
    let licence = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0, January 2004"));
}
