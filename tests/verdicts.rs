//! Verdicts with evidence on noisy engines: paired trials, a bootstrap
//! interval on the relative change, and the three verdicts, against sims
//! with seeded jitter and a true slowdown.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Two equally fast sims with independent 10 % jitter; LMCache slowed by
/// `slowdown_pct`. The check: LMCache at most 5 % slower on query TTFT.
fn noisy(dir: &Path, slowdown_pct: u32) -> std::process::Output {
    let engine = |role: &str, seed: u32, slowdown: u32| {
        format!(
            "[engines.{role}]\nrole = \"{role}\"\nkind = \"sim\"\n[engines.{role}.sim]\n\
             prefill_us_per_token = 100\ncached_prefill_us_per_token = 2\ndecode_ms_per_token = 2\n\
             base_latency_ms = 50\ncache_tokens = 200000\njitter = 0.1\nseed = {seed}\nslowdown_pct = {slowdown}\n"
        )
    };
    let suite = dir.join("noise.toml");
    std::fs::write(
        &suite,
        format!(
            "[run]\nname = \"noise\"\n{}{}\
             [tests.long_doc_qa]\nkind = \"long_doc_qa\"\ndocument_length = 500\nnum_documents = 8\n\
             output_len = 4\nrepeat_count = 2\nmax_inflight_requests = 1\nprewarmup_prompts = 0\ntrials = 6\n\
             [tests.long_doc_qa.checks.no_slower]\nmetric = \"query_ttft_per_prompt\"\nmax_change_pct = 5\n",
            engine("baseline", 1, 0),
            engine("lmcache", 2, slowdown_pct)
        ),
    )
    .unwrap();
    run(
        bin()
            .args(["ci", "--suite"])
            .arg(&suite)
            .arg("--results-dir")
            .arg(dir.join("r")),
        LIMIT,
    )
}

fn the_check(dir: &Path) -> serde_json::Value {
    results(&dir.join("r"))["tests"][0]["checks"][0].clone()
}

// A true 10 % slowdown against a 5 % bound fails when this runs alone, but
// under the whole suite's load the client's own overhead dilutes it to
// ~8 % and the verdict is (honestly) inconclusive; the test uses 20 %.
// Detection rates per effect size are the calibration's job, not a test's.
#[test]
fn a_true_slowdown_fails_on_its_interval() {
    let dir = tempdir();
    let out = noisy(dir.path(), 20);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let c = the_check(dir.path());
    assert_eq!(c["verdict"], "fail", "{c}");
    let low = c["interval"]["low"].as_f64().unwrap();
    assert!(low > 5.0, "the whole interval is beyond +5 %: {c}");
    assert_eq!(c["n"], 96, "16 query prompts × 6 trials: {c}");
    assert!(
        stdout.contains("95 % CI"),
        "the interval is shown: {stdout}"
    );
    let summary = std::fs::read_to_string(dir.path().join("r/summary.md")).unwrap();
    assert!(
        summary.contains("95 % CI") && summary.contains("n = 96"),
        "{summary}"
    );
}

#[test]
fn ten_percent_jitter_without_a_slowdown_passes() {
    let dir = tempdir();
    let out = noisy(dir.path(), 0);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let c = the_check(dir.path());
    assert_eq!(c["verdict"], "pass", "{c}");
    assert!(c["interval"]["high"].as_f64().unwrap() <= 5.0, "{c}");
    let junit = std::fs::read_to_string(dir.path().join("r/junit.xml")).unwrap();
    assert!(junit.contains("name=\"no_slower\""), "{junit}");
}

#[test]
fn one_trial_says_it_has_no_interval() {
    let dir = tempdir();
    let out = run(&mut ldqa(dir.path(), &[]), LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("no interval: 1 trial"), "{summary}");
}

#[test]
fn calibration_prints_every_cell_reproducibly() {
    let go = || {
        let out = run(
            bin().args(["calibrate", "--runs", "4", "--prompts", "8"]),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        text(&out).0
    };
    let first = go();
    let rows: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('%'))
        .collect();
    assert_eq!(
        rows.len(),
        12,
        "3 jitters × stalls or not × 2 truths:\n{first}"
    );
    assert!(
        first.contains("false alarms") && first.contains("detected"),
        "{first}"
    );
    assert_eq!(first, go(), "seeded: the same table twice");
}

#[test]
fn calibration_shows_the_interval_gate_catching_a_clear_regression_without_false_alarms() {
    let out = run(bin().args(["calibrate", "--runs", "4"]), LIMIT);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // | 5 % | none | <truth> | point | retried | interval |
    let interval = |truth: &str| -> f64 {
        let row = stdout
            .lines()
            .find(|l| l.starts_with("| 5 % | none |") && l.contains(truth))
            .unwrap_or_else(|| panic!("{truth} in\n{stdout}"));
        let cell = row.trim_end_matches(" |").rsplit(" | ").next().unwrap();
        cell.trim_end_matches(" %").parse().unwrap()
    };
    assert_eq!(
        interval("no change"),
        0.0,
        "no false alarm at 5 % jitter:\n{stdout}"
    );
    assert_eq!(
        interval("TTFT +10 %"),
        100.0,
        "a 10 % slowdown is caught:\n{stdout}"
    );
}
