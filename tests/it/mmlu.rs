//! MMLU through `ci` against simulated engines, and `compare` on the jsonl
//! files today's scripts write.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn shared_archive() -> String {
    let p = mmlu_data();
    assert!(
        p.exists(),
        "the shared MMLU archive is expected at {}",
        p.display()
    );
    p.canonicalize().unwrap().display().to_string()
}

fn mmlu(dir: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = ci_sim(dir, sets);
    cmd.args(["--only", "mmlu"]);
    run(&mut cmd, LIMIT)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn corrupt_kv_on_cache_hits_fails_and_names_the_changed_questions() {
    let dir = tempdir();
    let out = mmlu(dir.path(), &["engines.lmcache.sim.corrupt_on_hit=true"]);
    let (_, stderr) = text(&out);
    let stdout = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("changed answer: elementary_addition question"),
        "{stderr}"
    );
    let r = results(dir.path());
    let t = &r["tests"][0];
    let changed = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "changed_answers")
        .unwrap();
    assert_eq!(changed["verdict"], "fail");
    assert!(changed["lmcache"].as_f64().unwrap() > 0.0);
    // The paired evidence: discordant counts, McNemar's exact p, and the
    // accuracy drop judged on its interval.
    let m = &t["metrics"]["lmcache"];
    let flips = m["right_to_wrong"]["value"].as_f64().unwrap()
        + m["wrong_to_right"]["value"].as_f64().unwrap();
    assert!(
        flips > 0.0 && flips <= changed["lmcache"].as_f64().unwrap(),
        "{m}"
    );
    let p = m["mcnemar_p"]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{m}");
    let drop = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "accuracy_drop")
        .unwrap();
    let (low, high) = (
        drop["interval"]["low"].as_f64().unwrap(),
        drop["interval"]["high"].as_f64().unwrap(),
    );
    assert!(
        low <= drop["value"].as_f64().unwrap() && drop["value"].as_f64().unwrap() <= high,
        "{drop}"
    );
    assert_eq!(
        drop["n"],
        m["paired_questions"]["value"].as_f64().unwrap() as u64
    );
    assert_eq!(drop["p"].as_f64().unwrap(), p);
    assert!(t["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("changed answers:"));
    // The summary lists them in a folded table, one row per question.
    let table = stdout
        .split("<summary>Changed answers")
        .nth(1)
        .expect("a changed-answers table in the summary");
    assert!(table.contains("| elementary\\_addition | "), "{stdout}");
    let listed_in_table = table
        .split("</details>")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| "))
        .count()
        - 1; // the header
    let listed = lines(&dir.path().join("mmlu/changed_answers.jsonl"));
    assert_eq!(listed.len() as f64, changed["lmcache"].as_f64().unwrap());
    assert_eq!(listed_in_table, listed.len());
}

#[test]
fn the_shared_archive_runs_with_the_lmcache_prompts_and_legacy_files() {
    let dir = tempdir();
    let data = format!("tests.mmlu.data=\"{}\"", shared_archive());
    let out = mmlu(
        dir.path(),
        &[
            &data,
            "tests.mmlu.number_of_subjects=3",
            "tests.mmlu.max_questions_per_subject=8",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("24 questions from 3 subjects")
            && stderr.contains("few-shot examples per subject: 5"),
        "{stderr}"
    );
    // The reference's jsonl: one subject per line, then the unweighted total.
    let legacy = lines(&dir.path().join("mmlu/sim-lmcache.jsonl"));
    assert_eq!(legacy.len(), 4);
    assert!(legacy[0]["abstract_algebra"]["num_questions"] == 8);
    assert_eq!(legacy[3]["total"]["num_questions"], 24);
    let questions = lines(&dir.path().join("mmlu/lmcache_questions.jsonl"));
    assert_eq!(questions.len(), 24);
    let q = &questions[0];
    assert_eq!(q["subject"], "abstract_algebra");
    assert!(q["store_raw"].is_string(), "stored once, then loaded: {q}");
    assert_eq!(q["attempts"], 2);
    let summary = std::fs::read_to_string(dir.path().join("mmlu/correctness-summary.txt")).unwrap();
    assert!(
        summary.contains("TOTAL (question-weighted)") && summary.contains("LMCache performs"),
        "{summary}"
    );
    // The archive was extracted into the results directory, and left alone.
    assert!(dir
        .path()
        .join("mmlu_data/data/test/abstract_algebra_test.csv")
        .exists());
}

#[test]
fn the_dynamo_variant_writes_dynamo_names() {
    let dir = tempdir();
    let out = mmlu(
        dir.path(),
        &[
            "tests.mmlu.variant=\"dynamo\"",
            "run.model=\"Qwen/Qwen3-0.6B\"",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(dir
        .path()
        .join("mmlu/dynamo-baseline-Qwen3-0.6B.jsonl")
        .exists());
    assert!(dir
        .path()
        .join("mmlu/dynamo-lmcache-Qwen3-0.6B.jsonl")
        .exists());
}

#[test]
fn failed_requests_are_retried_counted_and_never_scored() {
    let dir = tempdir();
    let out = mmlu(
        dir.path(),
        &[
            "engines.lmcache.sim.error_rate=1.0",
            "tests.mmlu.max_retries=1",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = results(dir.path());
    let m = &r["tests"][0]["metrics"]["lmcache"];
    assert_eq!(m["failed_requests"]["value"], 200.0);
    assert_eq!(
        m["accuracy"]["value"], 0.0,
        "a failed question is wrong, not 'A'"
    );
    let q = &lines(&dir.path().join("mmlu/lmcache_questions.jsonl"))[0];
    assert!(
        q["prediction"].is_null() && q["error"].as_str().unwrap().contains("HTTP 500"),
        "{q}"
    );
    assert_eq!(q["attempts"], 2, "one retry");
}

fn write_jsonl(path: &Path, rows: &[(&str, f64, u64)]) {
    let mut s = String::new();
    for (subject, acc, n) in rows {
        s.push_str(&format!(
            "{{\"{subject}\": {{\"accuracy\": {acc}, \"num_questions\": {n}}}}}\n"
        ));
    }
    s.push_str("{\"total\": {\"accuracy\": 0.0, \"num_questions\": 0}}\n");
    std::fs::write(path, s).unwrap();
}

#[test]
fn compare_reads_both_naming_schemes_and_gates() {
    let dir = tempdir();
    let d = dir.path();
    write_jsonl(
        &d.join("Llama-3.1-8B-Instruct-baseline.jsonl"),
        &[("abstract_algebra", 0.5, 100), ("anatomy", 0.7, 135)],
    );
    write_jsonl(
        &d.join("Llama-3.1-8B-Instruct-lmcache.jsonl"),
        &[("abstract_algebra", 0.5, 100), ("anatomy", 0.7, 135)],
    );
    write_jsonl(
        &d.join("dynamo-baseline-Qwen3-0.6B.jsonl"),
        &[("abstract_algebra", 0.4, 100)],
    );
    write_jsonl(
        &d.join("dynamo-lmcache-Qwen3-0.6B.jsonl"),
        &[("abstract_algebra", 0.4, 100)],
    );
    let files = [
        "Llama-3.1-8B-Instruct-baseline.jsonl",
        "Llama-3.1-8B-Instruct-lmcache.jsonl",
        "dynamo-baseline-Qwen3-0.6B.jsonl",
        "dynamo-lmcache-Qwen3-0.6B.jsonl",
    ];
    let out = run(
        bin().arg("compare").args(files.iter().map(|f| d.join(f))),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("== Llama-3.1-8B-Instruct") && stdout.contains("== Qwen3-0.6B"),
        "{stdout}"
    );

    // A 6-point drop on one subject: the per-subject gate fails.
    write_jsonl(
        &d.join("dynamo-lmcache-Qwen3-0.6B.jsonl"),
        &[("abstract_algebra", 0.34, 100)],
    );
    let out = run(
        bin().arg("compare").args(files.iter().map(|f| d.join(f))),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("max_subject_drop: 0.0600 <= 0.0500: FAIL"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Qwen3-0.6B") && !stderr.contains("Llama"),
        "{stderr}"
    );

    // A missing subject counts as 0 on that side.
    write_jsonl(
        &d.join("Llama-3.1-8B-Instruct-lmcache.jsonl"),
        &[("abstract_algebra", 0.5, 100)],
    );
    let out = run(
        bin()
            .arg("compare")
            .arg(d.join(files[0]))
            .arg(d.join(files[1])),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.contains("anatomy"));
}

#[test]
fn compare_refuses_a_lone_file_and_a_broken_one_naming_them() {
    let dir = tempdir();
    let d = dir.path();
    write_jsonl(
        &d.join("Llama-3.1-8B-Instruct-baseline.jsonl"),
        &[("abstract_algebra", 0.5, 100)],
    );
    let out = run(
        bin()
            .arg("compare")
            .arg(d.join("Llama-3.1-8B-Instruct-baseline.jsonl")),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("no lmcache file for model `Llama-3.1-8B-Instruct`"));
    std::fs::write(d.join("x-baseline.jsonl"), "{not json\n").unwrap();
    std::fs::write(d.join("x-lmcache.jsonl"), "").unwrap();
    let out = run(
        bin()
            .arg("compare")
            .arg(d.join("x-baseline.jsonl"))
            .arg(d.join("x-lmcache.jsonl")),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("x-baseline.jsonl line 1"));
}

/// The most requests the baseline sim had in flight at once.
fn max_in_flight(dir: &Path) -> u64 {
    let log = std::fs::read_to_string(dir.join("logs/baseline.log")).unwrap();
    log.lines()
        .filter_map(|l| {
            l.split_once("sim: request ")?
                .1
                .split(", ")
                .nth(1)?
                .strip_suffix(" in flight")?
                .parse()
                .ok()
        })
        .max()
        .expect("the sim logged its requests")
}

#[test]
fn sequential_sends_one_request_at_a_time() {
    let sets = [
        "tests.mmlu.number_of_subjects=1",
        "engines.baseline.sim.log_requests=true",
        "engines.baseline.sim.decode_ms_per_token=5",
    ];
    let dir = tempdir();
    let mut cmd = ci_sim(dir.path(), &sets);
    cmd.args(["--only", "mmlu", "--sequential"]);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(max_in_flight(dir.path()), 1);

    let dir = tempdir();
    let mut cmd = ci_sim(dir.path(), &sets);
    cmd.args(["--only", "mmlu"]);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(
        max_in_flight(dir.path()) > 1,
        "without --sequential requests overlap"
    );
}

/// The H200's finding: with vLLM's prefix cache on, the LMCache engine's
/// second ask of a question is the GPU's hit, and LMCache serves nearly
/// none of it (there 39,644 of 1.84 M prompt tokens). With
/// `reset_prefix_cache` the GPU's cache is emptied before each load-pass
/// question, and the scored answers' KV is LMCache's.
#[test]
fn the_load_pass_reads_lmcaches_kv_only_once_the_gpu_cache_is_emptied() {
    let data = format!("tests.mmlu.data=\"{}\"", shared_archive());
    let common = [
        data.as_str(),
        "tests.mmlu.number_of_subjects=2",
        "tests.mmlu.max_questions_per_subject=6",
        // The GPU holds every prompt: as vLLM's cache did MMLU's on the H200.
        "engines.lmcache.sim.cache_tokens=1000000",
    ];
    let share = |sets: &[&str]| {
        let dir = tempdir();
        let mut all = common.to_vec();
        all.extend(sets);
        let out = mmlu(dir.path(), &all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        let r = results(dir.path());
        r["tests"][0]["metrics"]["lmcache"].clone()
    };
    let m = share(&[]);
    let prompt = m["vllm:prompt_tokens_total"]["value"].as_f64().unwrap();
    let external = m["vllm:prompt_tokens_by_source_total{source=\"external_kv_transfer\"}"]
        ["value"]
        .as_f64()
        .unwrap();
    assert!(
        external < 0.05 * prompt,
        "the GPU served the loads: {external} of {prompt}"
    );
    assert!(m.get("load_pass_external_pct").is_none(), "{m}");

    // LMCache serves each prompt's full 256-token chunks, the GPU computes
    // the rest: on the H200, 11,776 of 15,362 load-pass tokens (77 %).
    let m = share(&["tests.mmlu.reset_prefix_cache=true"]);
    let pct = m["load_pass_external_pct"]["value"].as_f64().unwrap();
    assert!(
        (50.0..100.0).contains(&pct),
        "LMCache served the load pass: {pct} % ({m})"
    );
}
