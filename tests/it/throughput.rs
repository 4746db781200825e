//! The native throughput bench, its gate and retries, and the determinism
//! check, against simulated engines.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn only(test: &str, dir: &Path, sets: &[&str]) -> std::process::Output {
    let mut cmd = ci_sim(dir, sets);
    cmd.args(["--only", test]);
    run(&mut cmd, LIMIT)
}

fn bench_json(dir: &Path, role: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("vllm_bench/{role}.json"))).unwrap(),
    )
    .unwrap()
}

fn check<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn figures_follow_the_latency_model_under_vllm_bench_names() {
    let dir = tempdir();
    let out = only(
        "throughput",
        dir.path(),
        &[
            "tests.throughput.num_prompts=10",
            "tests.throughput.input_len=500",
            "tests.throughput.output_len=8",
            "engines.baseline.sim.prefill_us_per_token=100",
            "engines.lmcache.sim.prefill_us_per_token=100",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let b = bench_json(dir.path(), "baseline");
    for field in [
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "mean_itl_ms",
        "median_itl_ms",
        "p99_itl_ms",
        "mean_e2el_ms",
        "median_e2el_ms",
        "p99_e2el_ms",
    ] {
        assert!(b[field].is_number(), "{field} in {b}");
    }
    assert_eq!(b["completed"], 10);
    assert_eq!(b["failed"], 0);
    assert_eq!(
        b["total_input_tokens"], 5000,
        "prompts calibrated to exactly 500 tokens"
    );
    assert_eq!(
        b["total_output_tokens"], 80,
        "ignore_eos: every request gives output_len tokens"
    );
    assert_eq!(b["backend"], "openai-chat");
    assert_eq!(b["input_lens"].as_array().unwrap().len(), 10);
    // The sim prefills one prompt at a time at 100 µs a token (50 ms each)
    // and decodes at 4 ms a token: all ten arrive together, so the last
    // waits for nine prefills, and the run lasts at least ten of them.
    let f = |k: &str| b[k].as_f64().unwrap();
    assert!(f("duration") >= 0.5, "{}", f("duration"));
    assert!(
        f("mean_ttft_ms") >= 250.0 && f("p99_ttft_ms") >= 490.0,
        "{b}"
    );
    assert!(
        f("median_tpot_ms") >= 3.9 && f("median_tpot_ms") < 20.0,
        "{}",
        f("median_tpot_ms")
    );
    assert!(f("mean_itl_ms") >= 3.9, "{}", f("mean_itl_ms"));
    let expect = (f("total_input_tokens") + f("total_output_tokens")) / f("duration");
    assert!((f("total_token_throughput") - expect).abs() < 1e-6 * expect);
}

#[test]
fn a_slower_lmcache_fails_the_throughput_gate() {
    let dir = tempdir();
    let out = only(
        "throughput",
        dir.path(),
        &[
            "tests.throughput.num_prompts=10",
            "tests.throughput.max_attempts=1",
            "engines.lmcache.sim.prefill_us_per_token=150",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    let r = results(dir.path());
    let c = check(&r, "total_token_throughput");
    assert_eq!(c["verdict"], "fail");
    assert!(c["change_pct"].as_f64().unwrap() < -5.0);
    assert!(
        r["tests"][0]["attempts"].as_array().unwrap().is_empty(),
        "one attempt only"
    );
}

#[test]
fn errors_show_as_failed_and_fail_completeness() {
    let dir = tempdir();
    let out = only(
        "throughput",
        dir.path(),
        &[
            "tests.throughput.num_prompts=10",
            "tests.throughput.max_attempts=1",
            "engines.lmcache.sim.error_rate=0.5",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    let l = bench_json(dir.path(), "lmcache");
    assert!(l["failed"].as_u64().unwrap() > 0, "{l}");
    assert!(l["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("HTTP 500")));
    let r = results(dir.path());
    assert_eq!(check(&r, "lmcache_incomplete_requests")["verdict"], "fail");
    assert_eq!(check(&r, "baseline_incomplete_requests")["verdict"], "pass");
}

/// A retry of a test run in trials adds trials and judges them all: the
/// slow first attempt still counts, so the luckier second one cannot pass
/// the test on its own.
#[test]
fn a_retry_pools_its_trials_with_the_failed_attempt() {
    let dir = tempdir();
    // The LMCache engine is slow for its first 20 requests: the whole first
    // attempt, none of the second.
    let out = only(
        "throughput",
        dir.path(),
        &[
            "tests.throughput.num_prompts=20",
            "tests.throughput.trials=1",
            "engines.lmcache.sim.slow_first_requests=20",
            "engines.lmcache.sim.slow_extra_ms=40",
            // Judged on the two attempts alone (the preset would add trials).
            "tests.throughput.checks.total_token_throughput.on_inconclusive=\"warn\"",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "inconclusive warns: {stderr}");
    assert!(
        stderr.contains("a retryable check failed on attempt 1 of 3"),
        "{stderr}"
    );
    let r = results(dir.path());
    let t = &r["tests"][0];
    assert_eq!(t["status"], "inconclusive", "{t}");
    let c = check(&r, "total_token_throughput");
    assert_eq!(c["verdict"], "inconclusive", "{c}");
    assert_eq!(c["n"], 2, "both attempts' trials: {c}");
    assert!(c["interval"]["low"].as_f64().unwrap() < -5.0, "{c}");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status"], "failed");
    assert!(stdout.contains("inconclusive"), "{stdout}");
    let files = t["files"].to_string();
    assert!(
        files.contains("lmcache_trial2"),
        "the retry's trial keeps its files: {files}"
    );
    let notes = t["notes"].to_string();
    assert!(
        notes.contains("\"attempt 1 of 3: total_token_throughput failed ("),
        "{notes}"
    );
}

/// The determinism test's outputs, one object a prompt.
fn outputs_of(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("determinism/outputs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// vLLM 0.26 with real weights continues some prompts otherwise once their
/// prefix was reused, from its own GPU cache as from LMCache's (the H200
/// run in docs/runs/2026-12-06-h200-real-weights/; the sim's
/// `reuse_changes_rate` does the same). Compared like with like (each
/// LMCache pass against the baseline's same pass), a correct LMCache
/// passes; against a fresh prefill the same stack would be a false alarm;
/// corrupt restored KV still fails, on the prefix-reused comparison.
#[test]
fn a_reused_prefix_is_compared_with_a_reused_prefix() {
    // The load pass through LMCache: each prompt after the GPU cache was
    // emptied.
    let real = [
        "engines.baseline.sim.reuse_changes_rate=1.0",
        "engines.lmcache.sim.reuse_changes_rate=1.0",
        "tests.determinism.reset_prefix_cache=true",
    ];
    let dir = tempdir();
    let out = only("determinism", dir.path(), &real);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let outputs = outputs_of(dir.path());
    assert!(
        outputs.iter().any(|o| o["store"] != o["load"]),
        "reuse changes some continuations: {outputs:?}"
    );
    assert!(outputs.iter().all(|o| o["baseline_load"] == o["load"]));

    let dir = tempdir();
    let fresh = [
        real[0],
        real[1],
        real[2],
        "tests.determinism.baseline_reuses_prefix=false",
    ];
    let out = only("determinism", dir.path(), &fresh);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);

    let dir = tempdir();
    let faulty = [
        real[0],
        real[1],
        real[2],
        "engines.lmcache.sim.kv_fault=\"corrupt-kv\"",
    ];
    let out = only("determinism", dir.path(), &faulty);
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(baseline vs LMCache, prefix reused) from token "),
        "{stderr}"
    );
}

#[test]
fn determinism_passes_on_identical_engines_and_names_ids_on_corruption() {
    let dir = tempdir();
    let out = only("determinism", dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let outputs: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("determinism/outputs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(outputs.len(), 9);
    assert!(outputs.iter().all(|o| o["store"] == o["load"]
        && o["baseline"] == o["load"]
        && o["baseline_load"] == o["load"]
        && o["load"].is_string()));

    let dir = tempdir();
    let out = only(
        "determinism",
        dir.path(),
        &["engines.lmcache.sim.corrupt_on_hit=true"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Only prompts long enough to hit a cache can be corrupted by it: a
    // prompt under one 16-token block is always computed, as in vLLM. The
    // load pass (one prompt at a time, each after a reset) hits on every
    // long prompt, so each differs from the baseline; whether the store
    // pass also hit depends on which of the concurrent long prompts, which
    // share their passage, the engine took first.
    for id in ["long-0", "long-1", "long-2"] {
        assert!(
            stderr.contains(&format!(
                "differs: `{id}` (baseline vs LMCache, prefix reused) from token "
            )),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("differs: `short-0`"), "{stderr}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("differs: \\`long-0\\`"),
        "the summary names them: {summary}"
    );
    assert!(
        stdout.contains("determinism: differs: `long-0`"),
        "the terminal table is followed by the failed test's findings: {stdout}"
    );
    let r = results(dir.path());
    assert!(
        r["tests"][0]["metrics"]["lmcache"]["mismatched_outputs"]["value"]
            .as_f64()
            .unwrap()
            >= 3.0
    );
}

#[test]
fn determinism_reads_a_prompt_file_and_reports_bad_lines() {
    let dir = tempdir();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "{\"id\": \"a\", \"prompt\": \"one two three\"}\n{\"id\": \"b\", \"prompt\": \"four five\"}\n").unwrap();
    let set = format!("tests.determinism.prompts=\"{}\"", prompts.display());
    let out = only(
        "determinism",
        &dir.path().join("r"),
        &[&set, "tests.determinism.compare_baseline=false"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let r = results(&dir.path().join("r"));
    assert_eq!(
        r["tests"][0]["metrics"]["lmcache"]["compared_prompts"]["value"],
        2.0
    );
    assert!(
        r["tests"][0]["metrics"].get("baseline").is_none(),
        "baseline not asked"
    );

    std::fs::write(&prompts, "{\"id\": \"a\", \"prompt\": \"x\"}\nnot json\n").unwrap();
    let out = only("determinism", &dir.path().join("r2"), &[&set]);
    let (_, stderr) = text(&out);
    // A bad input file is the user's to fix: exit 2, naming file and line.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prompts.jsonl line 2"), "{stderr}");
}

#[test]
fn request_rate_feeds_every_engine_the_same_workload_at_once() {
    let dir = tempdir();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[engines.vllm]\nrole = \"baseline\"\nkind = \"sim\"\n[engines.vllm-lmcache]\nrole = \"lmcache\"\nkind = \"sim\"\n\
         [engines.vllm-lmcache.sim]\ncache_tokens = 100000\n\
         [tests.qps10]\nkind = \"request_rate\"\nqps = 10\nduration_secs = 1\ncontext_len = 1000\nquery_len = 10\noutput_len = 4\nnum_contexts = 2\n\
         [tests.qps10.checks.faster_with_lmcache]\nmetric = \"mean_ttft\"\nmax_change_pct = -20\n",
    )
    .unwrap();
    // nvidia-smi answering with the real output of a busy H100.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/nvidia-smi/busy-query-gpu.csv");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    executable(
        &bin_dir.join("nvidia-smi"),
        &format!(
            "#!/bin/sh
[ \"$1 $2\" = \"--query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu --format=csv\" ] || exit 9
cat '{}'
",
            fixture.display()
        ),
    );
    let out = run(
        ci_suite(&suite, dir.path().join("r")).env("PATH", path_with(&bin_dir)),
        Duration::from_secs(60),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("to vllm, vllm-lmcache at once"), "{stderr}");
    let csv = std::fs::read_to_string(dir.path().join("r/request_rate/qps10.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 20, "10 requests to each engine: {csv}");
    let stamps = |engine: &str| -> Vec<&str> {
        rows.iter()
            .filter(|r| r[2] == engine)
            .map(|r| r[1])
            .collect()
    };
    assert_eq!(stamps("vllm"), stamps("vllm-lmcache"), "the same schedule");
    assert!(rows
        .iter()
        .all(|r| r[0] == "qps10" && r[6] == "1000" && r[7] == "10" && !r[4].is_empty()));
    // GPU memory in use during the experiment, as nvidia-smi reported it.
    assert!(rows.iter().all(|r| r[8] == "29843"), "{csv}");
    let svg = std::fs::read_to_string(dir.path().join("r/request_rate/qps10_ttft.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    let r = results(&dir.path().join("r"));
    let m = &r["tests"][0]["metrics"];
    assert!(
        m["lmcache"]["mean_ttft"]["value"].as_f64().unwrap()
            < m["baseline"]["mean_ttft"]["value"].as_f64().unwrap()
    );
}

#[test]
fn a_results_directory_of_another_run_is_refused_unless_overwritten() {
    let dir = tempdir();
    assert_eq!(only("determinism", dir.path(), &[]).status.code(), Some(0));
    let first = results(dir.path())["run_id"].clone();
    // A stale folder the next run would not write: it must not survive.
    std::fs::create_dir_all(dir.path().join("long_doc_qa")).unwrap();
    let mut r = results(dir.path());
    r["tests"][0]["files"] = serde_json::json!(["long_doc_qa/old.csv"]);
    std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();

    let out = only("determinism", dir.path(), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("holds another run's results") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(results(dir.path())["run_id"], first, "nothing was touched");

    let mut cmd = ci_sim(dir.path(), &[]);
    cmd.args(["--only", "determinism", "--overwrite"]);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_ne!(results(dir.path())["run_id"], first);
    assert!(
        !dir.path().join("long_doc_qa").exists(),
        "the stale folder went"
    );
}
