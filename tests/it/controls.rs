//! Correctness that can fail: control runs (A/A must pass, injected KV
//! faults must fail the checks they target), the warnings for checks that
//! cannot see a fault, differences named to the token, and speed figures
//! tainted by a failed correctness test, all with the real binary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{bin, ci_suite, executable, mmlu_data, path_with, results, run, tempdir, text};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(240);

/// Two sims: a baseline and an LMCache engine with a connector store, then
/// `rest` (tests and controls).
fn sim_suite(dir: &Path, rest: &str) -> PathBuf {
    let suite = format!(
        r#"[run]
name = "controls-test"
readiness_timeout_secs = 30
grace_period_secs = 5
request_timeout_secs = 60

[engines.baseline]
role = "baseline"
kind = "sim"
sim = {{ load_delay_ms = 50, prefill_us_per_token = 25, decode_ms_per_token = 1, cache_tokens = 4096 }}

[engines.lmcache]
role = "lmcache"
kind = "sim"
sim = {{ load_delay_ms = 50, prefill_us_per_token = 25, decode_ms_per_token = 1, cache_tokens = 4096, external_cache_tokens = 200000 }}

{rest}"#
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, suite).unwrap();
    path
}

const DETERMINISM: &str = r#"
[tests.determinism]
kind = "determinism"
max_tokens = 64
reset_prefix_cache = true
store_load_pause_secs = 0

[tests.determinism.checks.identical_outputs]
metric = "mismatched_outputs"
max = 0
"#;

fn control<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["controls"]
        .as_array()
        .expect("controls recorded")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no control {name}: {r}"))
}

fn test_of<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

#[test]
fn the_sim_controls_preset_proves_each_check_can_fail() {
    let dir = tempdir();
    let out = run(
        bin()
            .args(["ci", "--preset", "sim-controls", "--quiet", "--results-dir"])
            .arg(dir.path()),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let r = results(dir.path());
    for (name, expected) in [
        ("a_a", "pass"),
        ("corrupt_kv", "fail"),
        ("drop_first_chunk", "fail"),
        ("slow_retrieve", "fail"),
    ] {
        let c = control(&r, name);
        assert_eq!(c["expected"], expected, "{c}");
        assert_eq!(c["got"], expected, "{c}");
        assert_eq!(c["held"], true, "{c}");
        assert!(dir
            .path()
            .join("controls")
            .join(name)
            .join("results.json")
            .is_file());
    }
    let corrupt = control(&r, "corrupt_kv")["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        corrupt.contains("determinism.identical_outputs = "),
        "{corrupt}"
    );
    assert!(
        corrupt.contains("the `corrupt-kv` fault fired"),
        "{corrupt}"
    );
    let dropped = control(&r, "drop_first_chunk")["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        dropped.contains("long_doc_qa.query_ttft_vs_baseline"),
        "{dropped}"
    );
    // The table where people read it: the job summary and the terminal.
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("| Control | Expected | Got | Evidence |"),
        "{summary}"
    );
    assert!(
        summary.contains("| ✅ corrupt\\_kv | FAIL | FAIL |"),
        "{summary}"
    );
    assert!(stdout.contains("controls: 4 of 4 held"), "{stdout}");
    // Each difference is named: prompt, passes, first differing token, texts.
    let faulty = results(&dir.path().join("controls/corrupt_kv"));
    let notes = test_of(&faulty, "determinism")["notes"].to_string();
    assert!(notes.contains("differs: `long-"), "{notes}");
    assert!(
        notes.contains("(baseline vs LMCache, prefix reused) from token "),
        "{notes}"
    );
    let listed = std::fs::read_to_string(
        dir.path()
            .join("controls/corrupt_kv/determinism/mismatches.jsonl"),
    )
    .unwrap();
    let first: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert!(first["first_token"].as_u64().is_some(), "{first}");
    assert!(
        first["texts"][0].as_str().unwrap() != first["texts"][1].as_str().unwrap(),
        "{first}"
    );
}

#[test]
fn a_positive_control_on_dummy_weights_misses_and_fails_the_run() {
    let dir = tempdir();
    let suite = sim_suite(
        dir.path(),
        &format!(
            "{DETERMINISM}
[controls.corrupt_kv]
expect = \"fail\"
fault = \"corrupt-kv\"
fails = [\"determinism.identical_outputs\"]
"
        ),
    );
    let res = dir.path().join("r");
    let out = run(
        ci_suite(&suite, &res).args([
            "--set",
            "engines.baseline.sim.dummy_weights=true",
            "--set",
            "engines.lmcache.sim.dummy_weights=true",
        ]),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let r = results(&res);
    let c = control(&r, "corrupt_kv");
    assert_eq!(c["got"], "pass", "{c}");
    assert_eq!(c["held"], false, "{c}");
    let evidence = c["evidence"].as_str().unwrap();
    assert!(evidence.contains("cannot fail"), "{evidence}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("control `corrupt_kv` expected FAIL, got PASS"),
        "{r}"
    );
    // The suite's own run passed its checks, yet says it could not have failed.
    let det = test_of(&r, "determinism");
    assert_eq!(det["status"], "warning", "{det}");
    assert!(
        det["caveats"][0]
            .as_str()
            .unwrap()
            .starts_with("cannot fail: `baseline` and `lmcache` run dummy weights"),
        "{det}"
    );
    assert!(stdout.contains("MISSED"), "{stdout}");
}

#[test]
fn a_failed_correctness_test_says_the_speed_was_measured_on_wrong_outputs() {
    let dir = tempdir();
    let suite = sim_suite(
        dir.path(),
        &format!(
            "{DETERMINISM}
[tests.long_doc_qa]
kind = \"long_doc_qa\"
document_length = 1000
num_documents = 2
output_len = 4
prewarmup_prompts = 1
max_inflight_requests = 1

[tests.long_doc_qa.checks.faster]
metric = \"query_ttft_per_prompt\"
max_change_pct = -30
"
        ),
    );
    let res = dir.path().join("r");
    let out = run(
        ci_suite(&suite, &res).args(["--set", "engines.lmcache.fault=corrupt-kv"]),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let r = results(&res);
    assert_eq!(test_of(&r, "determinism")["status"], "failed");
    let speed = test_of(&r, "long_doc_qa");
    assert!(
        speed["caveats"][0]
            .as_str()
            .unwrap()
            .starts_with("measured on wrong outputs: `determinism` failed in this run"),
        "{speed}"
    );
    let summary = std::fs::read_to_string(res.join("summary.md")).unwrap();
    assert!(
        summary.contains("⚠️ measured on wrong outputs"),
        "{summary}"
    );
}

#[test]
fn long_real_prompts_come_from_mmlu_and_reach_the_engine() {
    let dir = tempdir();
    let suite = sim_suite(
        dir.path(),
        &DETERMINISM.replace(
            "store_load_pause_secs = 0\n",
            &format!(
                "store_load_pause_secs = 0\nlong_prompts = 3\nlong_prompt_words = 2500\ndata = {:?}\n",
                mmlu_data().display().to_string()
            ),
        ),
    );
    let res = dir.path().join("r");
    let out = run(&mut ci_suite(&suite, &res), LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let outputs = std::fs::read_to_string(res.join("determinism/outputs.jsonl")).unwrap();
    let long: Vec<Value> = outputs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            v["id"]
                .as_str()
                .unwrap()
                .starts_with("long-abstract_algebra")
        })
        .collect();
    assert_eq!(long.len(), 1, "{outputs}");
    assert_eq!(
        long[0]["load"].as_str().unwrap().split_whitespace().count(),
        64
    );
    // A sim is told the prompt length by its tokenizer: thousands of tokens.
    let r = results(&res);
    let m = test_of(&r, "determinism")["metrics"]["lmcache"]["compared_prompts"]["value"].as_f64();
    assert_eq!(m, Some(12.0), "{r}");
}

#[test]
fn a_suite_of_vllm_engines_that_are_not_batch_invariant_is_warned_in_the_plan() {
    let dir = tempdir();
    executable(&dir.path().join("vllm"), "#!/bin/sh\nexit 0\n");
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            r#"[engines.baseline]
role = "baseline"
kind = "process"
command = "vllm"
args = ["serve", "m", "--load-format", "dummy"]

[engines.lmcache]
role = "lmcache"
kind = "process"
command = "vllm"
args = ["serve", "m"]
env = {{ VLLM_BATCH_INVARIANT = "1" }}
{DETERMINISM}"#
        ),
    )
    .unwrap();
    let out = run(
        bin()
            .args(["ci", "--dry-run", "--suite"])
            .arg(&suite)
            .env("PATH", path_with(dir.path())),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("warning: cannot fail: `baseline` runs dummy weights"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: may differ without a fault: `baseline` is not batch invariant"),
        "{stdout}"
    );
}

#[test]
fn a_control_naming_what_the_suite_lacks_is_refused_before_any_engine_starts() {
    let dir = tempdir();
    let suite = sim_suite(
        dir.path(),
        &format!(
            "{DETERMINISM}
[controls.bad]
expect = \"pass\"
tests = [\"determinsm\"]
fails = [\"determinism.nope\"]
"
        ),
    );
    let out = run(&mut ci_suite(&suite, dir.path().join("r")), LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("controls.bad.tests"), "{stderr}");
    assert!(stderr.contains("no test `determinsm`"), "{stderr}");
    assert!(stderr.contains("has no check `nope`"), "{stderr}");
    assert!(!dir.path().join("r").join("logs").exists());
}
