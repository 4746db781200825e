//! Shards, merge, history and exports through the real binary on sims:
//! three shards run at once and merged are the unsharded run; a merge
//! refuses what is not one whole run; the history shows a step in the
//! default branch; the exports have their formats' shapes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(240);

fn spawn(mut cmd: Command) -> std::process::Child {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn lmcache-e2e")
}

fn merge(dirs: &[&Path], into: &Path, extra: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.arg("merge")
        .args(dirs)
        .arg("--into")
        .arg(into)
        .args(extra);
    run(&mut cmd, LIMIT)
}

fn test_of<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name}"))
}

/// `(subject, index, prediction)` of every answer in a questions file.
fn answers(path: &Path) -> Vec<(String, u64, Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["subject"].as_str().unwrap().to_string(),
                v["index"].as_u64().unwrap(),
                v["prediction"].clone(),
            )
        })
        .collect()
}

/// Each shard knows the whole plan; every unit is in exactly one shard's
/// part, MMLU's subjects split between several.
fn every_unit_in_one_shard(plan: &Value) {
    let placed: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap().iter())
        .flat_map(|u| {
            let subjects = u["subjects"].as_array().cloned().unwrap_or_default();
            if subjects.is_empty() {
                vec![u["record"].as_str().unwrap().to_string()]
            } else {
                subjects
                    .iter()
                    .map(|s| format!("mmlu/{}", s.as_str().unwrap()))
                    .collect()
            }
        })
        .collect();
    let mut unique = placed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), placed.len(), "{placed:?}");
    assert_eq!(placed.iter().filter(|p| p.starts_with("mmlu/")).count(), 4);
    let mmlu_shards = plan
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.as_array().unwrap().iter().any(|u| u["record"] == "mmlu"))
        .count();
    assert!(mmlu_shards > 1, "MMLU split over several shards: {plan}");
}

/// MMLU merged: counts, every answer and the checks exactly as the
/// unsharded run's.
fn mmlu_merged_as_unsharded(merged: &Value, full: &Value, into: &Path, full_dir: &Path) {
    let (m, f) = (test_of(merged, "mmlu"), test_of(full, "mmlu"));
    for role in ["baseline", "lmcache"] {
        for metric in ["accuracy", "questions", "failed_requests"] {
            assert_eq!(
                m["metrics"][role][metric], f["metrics"][role][metric],
                "{role} {metric}"
            );
        }
        let file = format!("mmlu/{role}_questions.jsonl");
        assert_eq!(
            answers(&into.join(&file)),
            answers(&full_dir.join(&file)),
            "{file}"
        );
    }
    for metric in [
        "paired_questions",
        "right_to_wrong",
        "wrong_to_right",
        "changed_answers",
    ] {
        assert_eq!(
            m["metrics"]["lmcache"][metric], f["metrics"]["lmcache"][metric],
            "{metric}"
        );
    }
    let check = |t: &Value| {
        t["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].clone(),
                    c["value"].clone(),
                    c["interval"].clone(),
                    c["verdict"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(check(m), check(f), "MMLU's checks judged on all questions");
    assert_eq!(m["status"], f["status"]);
}

/// A whole test is its shard's record, its files copied beside.
fn whole_test_copied_from_its_shard(merged: &Value, into: &Path, work: &Path) {
    let whole = test_of(merged, "long_doc_qa");
    let home = (1..=3)
        .map(|k| (k, results(&work.join(format!("s{k}")))))
        .find(|(_, r)| {
            r["tests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == "long_doc_qa")
        })
        .unwrap();
    assert_eq!(whole["metrics"], test_of(&home.1, "long_doc_qa")["metrics"]);
    for f in whole["files"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        assert!(f.starts_with(&format!("shard-{}/", home.0)), "{f}");
        assert!(into.join(f).is_file(), "{f} copied");
    }
}

#[test]
fn three_concurrent_shards_merge_into_the_unsharded_run() {
    let work = tempdir();
    let dir = |n: &str| work.path().join(n);
    // All four at once: the shards' own engines side by side.
    let mut children = vec![("full".to_string(), spawn(ci_sim(&dir("full"), QUICK)))];
    for k in 1..=3 {
        let mut cmd = ci_sim(&dir(&format!("s{k}")), QUICK);
        cmd.args(["--shard", &format!("{k}/3")]);
        children.push((format!("s{k}"), spawn(cmd)));
    }
    for (name, child) in children {
        let out = wait_output(child, LIMIT);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{name}: {}",
            text(&out).1
        );
    }
    let full = results(&dir("full"));
    every_unit_in_one_shard(&results(&dir("s1"))["shard"]["plan"]);
    let into = dir("merged");
    let out = merge(&[&dir("s3"), &dir("s1"), &dir("s2")], &into, &[]);
    let (_, stderr) = text(&out);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "{stderr}");
    let merged = results(&into);
    let names = |r: &Value| -> Vec<Value> {
        r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect()
    };
    assert_eq!(
        names(&merged),
        names(&full),
        "the unsharded run's tests, in its order"
    );

    mmlu_merged_as_unsharded(&merged, &full, &into, &dir("full"));
    whole_test_copied_from_its_shard(&merged, &into, work.path());
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 3);
    let summary = std::fs::read_to_string(into.join("summary.md")).unwrap();
    assert!(summary.contains("Merged from 3 shards"), "{summary}");
    assert!(into.join("junit.xml").is_file());

    // A shard's answers that are no answers refuse the merge, naming the
    // file and line, rather than being scored as something.
    let with_mmlu = (1..=3)
        .map(|k| dir(&format!("s{k}")))
        .find(|d| d.join("mmlu/lmcache_questions.jsonl").is_file())
        .unwrap();
    let answers_file = with_mmlu.join("mmlu/lmcache_questions.jsonl");
    let mut lines = std::fs::read_to_string(&answers_file).unwrap();
    lines.push_str("{\"subject\": 7}\n");
    std::fs::write(&answers_file, lines).unwrap();
    let out = merge(&[&dir("s1"), &dir("s2"), &dir("s3")], &dir("again"), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lmcache_questions.jsonl") && stderr.contains("line "),
        "{stderr}"
    );
}

/// Two shards of the determinism test alone (shard 2 has nothing to run),
/// the second chosen by Buildkite's parallelism variables.
fn two_shards(work: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (work.join("a"), work.join("b"));
    let mut one = ci_sim(&a, &[]);
    one.args(["--only", "determinism", "--shard", "1/2"]);
    let mut two = ci_sim(&b, &[]);
    two.args(["--only", "determinism"])
        .env("BUILDKITE_PARALLEL_JOB", "1")
        .env("BUILDKITE_PARALLEL_JOB_COUNT", "2");
    for mut cmd in [one, two] {
        let out = run(&mut cmd, LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    }
    (a, b)
}

#[test]
fn merge_refuses_a_missing_shard_a_duplicate_and_a_mixed_commit() {
    let work = tempdir();
    let (a, b) = two_shards(work.path());
    assert_eq!(
        results(&b)["shard"]["index"],
        2,
        "BUILDKITE_PARALLEL_JOB counts from 0"
    );
    assert!(results(&b)["tests"].as_array().unwrap().is_empty());
    assert!(
        results(&b)["engines"].as_array().unwrap().is_empty(),
        "no engines for no work"
    );

    let refused = |dirs: &[&Path], into: &str, says: &str| {
        let file = work.path().join(into).join("results.json");
        let before = std::fs::read(&file).ok();
        let out = merge(dirs, &work.path().join(into), &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "expected {says:?} in: {stderr}");
        assert_eq!(std::fs::read(&file).ok(), before, "nothing written");
    };
    refused(&[&a], "m1", "shard 2 of 2 is missing");
    refused(&[&a, &a, &b], "m2", "shard 1 is given twice");

    let c = work.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let mut other: Value = results(&b);
    other["meta"]["commit"] = "0123456789abcdef0123456789abcdef01234567".into();
    std::fs::write(c.join("results.json"), other.to_string()).unwrap();
    refused(&[&a, &c], "m3", "differ in commit");

    let mut suite: Value = results(&b);
    suite["meta"]["suite_hash"] = "f00d".into();
    std::fs::write(c.join("results.json"), suite.to_string()).unwrap();
    refused(&[&a, &c], "m4", "differ in suite");

    let unsharded = work.path().join("u");
    std::fs::create_dir(&unsharded).unwrap();
    let mut plain = results(&a);
    plain.as_object_mut().unwrap().remove("shard");
    std::fs::write(unsharded.join("results.json"), plain.to_string()).unwrap();
    refused(&[&a, &unsharded], "m5", "is no shard");

    // An artifact's file that is a link out of its directory is refused,
    // not copied.
    let linked = work.path().join("linked");
    copy_dir(&a, &linked);
    let r = results(&linked);
    let file = r["tests"][0]["files"][0].as_str().unwrap().to_string();
    std::fs::remove_file(linked.join(&file)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", linked.join(&file)).unwrap();
    refused(&[&linked, &b], "m6", "leads out of the shard's directory");

    let out = merge(&[&a, &b], &work.path().join("ok"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(
        results(&work.path().join("ok"))["tests"][0]["name"],
        "determinism"
    );
    // Merging into what already holds a run would mix two runs' files.
    refused(&[&a, &b], "ok", "not empty");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Thirty runs of the default branch after `entry`, its check's value 15 %
/// higher from the sixteenth on, then a line from another machine and one
/// that is no JSON; the check's key.
fn write_a_step_history(store: &Path, entry: &Value) -> String {
    let key = entry["checks"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let mut lines = String::new();
    for i in 0..30 {
        let mut e = entry.clone();
        let level = if i < 15 { 100.0 } else { 115.0 };
        e["checks"][&key]["value"] = (level + f64::from(i % 3)).into();
        e["commit"] = format!("{i:040x}").into();
        lines.push_str(&format!("{e}\n"));
    }
    let mut foreign = entry.clone();
    foreign["fingerprint"]["gpus"] = serde_json::json!(["(80 GiB)"]);
    lines.push_str(&format!("{foreign}\nnot json\n"));
    std::fs::write(store, lines).unwrap();

    key
}

#[test]
fn history_shows_a_step_in_the_default_branch_and_appends_only_its_runs() {
    let work = tempdir();
    let store = work.path().join("history/main.jsonl");
    let ci = |dir: &str, append: &str| {
        let mut cmd = ci_sim(&work.path().join(dir), &[]);
        cmd.args(["--only", "determinism", "--history"])
            .arg(&store)
            .args(["--history-append", append]);
        let out = run(&mut cmd, LIMIT);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        out
    };
    let out = ci("first", "always");
    assert!(
        text(&out).1.contains("nothing to compare"),
        "{}",
        text(&out).1
    );
    let line = std::fs::read_to_string(&store).unwrap();
    assert_eq!(line.lines().count(), 1);
    let entry: Value = serde_json::from_str(line.trim()).unwrap();
    assert!(
        entry["fingerprint"]["engines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("sim-")),
        "engine versions: {entry}"
    );

    let key = write_a_step_history(&store, &entry);

    // A run that is no default-branch run is compared, not appended.
    let out = ci("pr", "auto");
    let (_, stderr) = text(&out);
    assert!(stderr.contains("skipped 1 line"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&store).unwrap().lines().count(), 32);
    let r = results(&work.path().join("pr"));
    let h = &r["history"];
    assert_eq!(h["runs"], 30, "the foreign fingerprint is left out: {h}");
    let m = h["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == key.as_str())
        .unwrap();
    let at = m["change_points"][0]["at"].as_u64().unwrap();
    assert!(at.abs_diff(15) <= 1, "change point at {at}: {m}");
    let summary = std::fs::read_to_string(work.path().join("pr/summary.md")).unwrap();
    assert!(
        summary.contains("Against the default branch (last 30 runs"),
        "{summary}"
    );

    // A shard of several is part of a run: never appended, even if asked.
    let mut cmd = ci_sim(&work.path().join("shard"), &[]);
    cmd.args(["--only", "determinism", "--shard", "1/2", "--history"])
        .arg(&store)
        .args(["--history-append", "always"]);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(
        text(&out).1.contains("a shard is not appended"),
        "{}",
        text(&out).1
    );
    assert_eq!(std::fs::read_to_string(&store).unwrap().lines().count(), 32);

    // A history that cannot be read fails the step, naming it, after the
    // reports went out.
    let mut cmd = ci_sim(&work.path().join("unreadable"), &[]);
    cmd.args(["--only", "determinism", "--history"])
        .arg(work.path());
    let out = run(&mut cmd, LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&work.path().display().to_string()),
        "{stderr}"
    );
    assert!(work.path().join("unreadable/summary.md").is_file());
    assert!(work.path().join("unreadable/junit.xml").is_file());
}

#[test]
fn exports_have_the_shapes_bencher_and_github_action_benchmark_read() {
    let work = tempdir();
    let dir = work.path().join("r");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results/sim-failed.json"),
        dir.join("results.json"),
    )
    .unwrap();
    let export = |format: &str| -> Value {
        let out = run(
            bin()
                .args(["export", "--format", format, "--results-dir"])
                .arg(&dir),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // BMF: {benchmark: {measure: {value, lower_value?, upper_value?}}}.
    let bmf = export("bencher");
    let benches = bmf.as_object().unwrap();
    assert!(!benches.is_empty());
    for measures in benches.values() {
        for m in measures.as_object().unwrap().values() {
            let m = m.as_object().unwrap();
            assert!(m["value"].is_number());
            assert!(m
                .keys()
                .all(|k| ["value", "lower_value", "upper_value"].contains(&k.as_str())));
        }
    }
    // github-action-benchmark: [{name, unit, value, range?, extra?}], each
    // name in one direction only.
    let (smaller, bigger) = (export("benchmark-smaller"), export("benchmark-bigger"));
    for list in [&smaller, &bigger] {
        let list = list.as_array().unwrap();
        assert!(!list.is_empty());
        for e in list {
            assert!(
                e["name"].is_string() && e["unit"].is_string() && e["value"].is_number(),
                "{e}"
            );
        }
    }
    let out = run(
        bin()
            .args(["export", "--format", "bencher", "--results-dir"])
            .arg(work.path()),
        LIMIT,
    );
    // No results.json where one was given: the input is wrong (2).
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
}

#[test]
fn bad_shard_flags_are_bad_usage_naming_the_flag() {
    let work = tempdir();
    for (args, says) in [
        (vec!["--shard", "4/3"], "--shard: `4/3` is no shard"),
        (
            vec!["--shard", "1/2", "--durations-from", "/nonexistent"],
            "--durations-from: failed to read /nonexistent/results.json",
        ),
    ] {
        let mut cmd = ci_sim(&work.path().join("r"), &[]);
        cmd.args(&args);
        let out = run(&mut cmd, LIMIT);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "expected {says:?} in: {stderr}");
    }
}
