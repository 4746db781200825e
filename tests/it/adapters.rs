//! The adapters for external tools, against stand-ins on PATH written here
//! that take the real command lines, talk to the engine, and write the real
//! output formats, failure modes included.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(90);

/// `vllm bench serve` as far as the adapter can tell: the reference's flags,
/// requests to the server, a result file with vLLM's field names.
const FAKE_VLLM: &str = r#"#!/usr/bin/env python3
import argparse, json, os, sys, time, urllib.request
assert sys.argv[1:3] == ["bench", "serve"], sys.argv
p = argparse.ArgumentParser()
for flag in ["--seed", "--host", "--port", "--base-url", "--model", "--dataset-name", "--random-input-len",
             "--random-output-len", "--num-prompts", "--backend", "--endpoint", "--result-dir", "--result-filename",
             "--request-rate", "--max-concurrency"]:
    p.add_argument(flag)
p.add_argument("--ignore-eos", action="store_true")
p.add_argument("--save-result", action="store_true")
a = p.parse_args(sys.argv[3:])
mode = os.environ.get("FAKE_VLLM_MODE", "ok")
print("INFO Starting initial single prompt test run...", flush=True)
if mode == "crash":
    print("RuntimeError: Server returned 503: engine is sleeping", file=sys.stderr)
    sys.exit(1)
n, inp, out = int(a.num_prompts), int(a.random_input_len), int(a.random_output_len)
url = f"http://{a.host}:{a.port}{a.endpoint}"
start, ok = time.time(), 0
for i in range(n if mode != "partial" else n - 2):
    body = {"model": a.model, "messages": [{"role": "user", "content": " ".join([str(i)] + ["hi"] * (inp - 1))}],
            "max_tokens": out, "ignore_eos": a.ignore_eos}
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    json.load(urllib.request.urlopen(req))
    ok += 1
dur = time.time() - start
res = {"date": "20261122-000000", "backend": a.backend, "model_id": a.model, "num_prompts": n, "duration": dur,
       "completed": ok, "failed": n - ok, "total_input_tokens": ok * inp, "total_output_tokens": ok * out,
       "request_throughput": ok / dur, "output_throughput": ok * out / dur, "total_token_throughput": ok * (inp + out) / dur,
       "mean_ttft_ms": 10.0, "median_ttft_ms": 9.0, "p99_ttft_ms": 20.0, "mean_tpot_ms": 0.0, "median_tpot_ms": 0.0,
       "p99_tpot_ms": 0.0, "mean_itl_ms": 0.0, "median_itl_ms": 0.0, "p99_itl_ms": 0.0, "mean_e2el_ms": 12.0,
       "median_e2el_ms": 11.0, "p99_e2el_ms": 25.0}
path = os.path.join(a.result_dir, a.result_filename)
with open(path, "w") as f:
    f.write("{not json" if mode == "garbage" else json.dumps(res))
with open(os.environ["FAKE_ARGV_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
"#;

fn fake_bin(dir: &Path, name: &str, body: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(&bin.join(name), body);
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn vllm_bench(dir: &Path, mode: &str, extra: &[&str]) -> std::process::Output {
    let path = fake_bin(dir, "vllm", FAKE_VLLM);
    let mut sets = vec![
        "tests.throughput.driver=\"vllm-bench\"",
        "tests.throughput.num_prompts=4",
        "tests.throughput.input_len=100",
        "tests.throughput.max_attempts=1",
        "tests.throughput.trials=1",
        // Four prompts timed once by a script on a busy machine: what this
        // tests is the adapter, not the gate's noise.
        "tests.throughput.checks.total_token_throughput.min_change_pct=-90",
    ];
    sets.extend(extra);
    let mut cmd = ci_sim(&dir.join("r"), &sets);
    cmd.args(["--only", "throughput"])
        .env("PATH", path)
        .env("FAKE_VLLM_MODE", mode)
        .env("FAKE_ARGV_LOG", dir.join("argv.log"));
    run(&mut cmd, LIMIT)
}

#[test]
fn vllm_bench_runs_the_reference_command_and_reads_its_result() {
    let dir = tempdir();
    let out = vllm_bench(dir.path(), "ok", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let argv = std::fs::read_to_string(dir.path().join("argv.log")).unwrap();
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(lines.len(), 2, "baseline, then LMCache");
    assert!(
        lines[0].contains("--result-filename baseline.json")
            && lines[1].contains("--result-filename lmcache.json")
    );
    for flag in [
        "--seed 0",
        "--dataset-name random",
        "--random-input-len 100",
        "--random-output-len 8",
        "--num-prompts 4",
        "--ignore-eos",
        "--backend openai-chat",
        "--endpoint /v1/chat/completions",
        "--save-result",
        "--model lmcache-e2e/sim",
    ] {
        assert!(lines[0].contains(flag), "{flag} in {}", lines[0]);
    }
    let r = results(&dir.path().join("r"));
    let m = &r["tests"][0]["metrics"]["lmcache"];
    assert_eq!(m["completed"]["value"], 4.0);
    assert_eq!(m["total_input_tokens"]["value"], 400.0);
    assert_eq!(r["tests"][0]["status"], "passed", "{r}");
}

#[test]
fn vllm_bench_failure_modes_are_clear() {
    let dir = tempdir();
    let out = vllm_bench(dir.path(), "crash", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`vllm bench serve` exited with exit status: 1")
            && stderr.contains("engine is sleeping"),
        "{stderr}"
    );

    let dir = tempdir();
    let out = vllm_bench(dir.path(), "garbage", &[]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("wrote no readable result") && stderr.contains("baseline.json"),
        "{stderr}"
    );

    let dir = tempdir();
    let out = vllm_bench(dir.path(), "partial", &[]);
    assert_eq!(out.status.code(), Some(1));
    let r = results(&dir.path().join("r"));
    let c = r["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "baseline_incomplete_requests")
        .unwrap();
    assert_eq!(c["verdict"], "fail");

    let dir = tempdir();
    let out = vllm_bench(
        dir.path(),
        "ok",
        &["tests.throughput.vllm_command=\"vllm-not-installed\""],
    );
    // Refused before any engine starts (exit 2), naming the key.
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "`tests.throughput.vllm_command` in --set: `vllm-not-installed` is not on PATH"
        ) && stderr.contains("driver = \"native\""),
        "{stderr}"
    );
}

/// `lm_eval --model local-completions` as far as the adapter can tell: the
/// reference's flags, one completion per document at temperature 0, and
/// `<output_path>/<model>/samples_<task>_<date>.jsonl` plus a results file.
const FAKE_LM_EVAL: &str = r#"#!/usr/bin/env python3
import argparse, datetime, json, os, sys, urllib.request
p = argparse.ArgumentParser()
for flag in ["--model", "--tasks", "--model_args", "--limit", "--seed", "--output_path", "--gen_kwargs"]:
    p.add_argument(flag)
p.add_argument("-s", "--log_samples", action="store_true")
a = p.parse_args()
assert a.model == "local-completions" and a.log_samples, sys.argv
assert json.loads(a.gen_kwargs) == {"temperature": 0.0}, a.gen_kwargs
margs = dict(kv.split("=", 1) for kv in a.model_args.split(","))
assert margs["tokenized_requests"] == "False"
mode = os.environ.get("FAKE_LM_EVAL_MODE", "ok")
if mode == "crash":
    print("Traceback (most recent call last):\nValueError: Task gsm8k not found", file=sys.stderr)
    sys.exit(1)
out = os.path.join(a.output_path, margs["model"].replace("/", "__"))
os.makedirs(out, exist_ok=True)
stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
if mode != "nosamples":
    with open(os.path.join(out, f"samples_{a.tasks}_{stamp}.jsonl"), "w") as f:
        for i in range(int(a.limit)):
            q = f"Question {i}: Natalia sold clips to {i} of her friends. How many clips did she sell? Answer:"
            body = {"model": margs["model"], "prompt": q, "max_tokens": 16, "temperature": 0.0, "seed": int(a.seed)}
            req = urllib.request.Request(margs["base_url"], json.dumps(body).encode(), {"Content-Type": "application/json"})
            text = json.load(urllib.request.urlopen(req))["choices"][0]["text"]
            f.write(json.dumps({"doc_id": i, "doc": {"question": q}, "target": str(i), "arguments": {"gen_args_0": {"arg_0": q}},
                                "resps": [[text]], "filtered_resps": [text], "exact_match": 0.0}) + "\n")
with open(os.path.join(out, f"results_{stamp}.json"), "w") as f:
    json.dump({"results": {a.tasks: {"exact_match,strict-match": 0.0}}}, f)
"#;

fn lm_eval(dir: &Path, mode: &str, sets: &[&str]) -> std::process::Output {
    let path = fake_bin(dir, "lm_eval", FAKE_LM_EVAL);
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        "[engines.baseline]\nrole = \"baseline\"\nkind = \"sim\"\n[engines.lmcache]\nrole = \"lmcache\"\nkind = \"sim\"\n\
         [engines.lmcache.sim]\ncache_tokens = 100000\n[tests.lm_eval]\nkind = \"lm_eval\"\nlimit = 12\nnum_concurrent = 4\n\
         [tests.lm_eval.checks.identical_samples]\nmetric = \"differing_sample_lines\"\nmax = 0\n",
    )
    .unwrap();
    let mut cmd = ci_suite(&suite, dir.join("r"));
    cmd.env("PATH", path).env("FAKE_LM_EVAL_MODE", mode);
    for s in sets {
        cmd.args(["--set", s]);
    }
    run(&mut cmd, LIMIT)
}

#[test]
fn lm_eval_runs_twice_and_identical_samples_pass() {
    let dir = tempdir();
    let out = lm_eval(dir.path(), "ok", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let r = results(&dir.path().join("r"));
    let m = &r["tests"][0]["metrics"]["lmcache"];
    assert_eq!(m["samples"]["value"], 12.0);
    assert_eq!(m["differing_sample_lines"]["value"], 0.0);
    for run in ["first_run", "second_run"] {
        let d = dir
            .path()
            .join("r/lm_eval")
            .join(run)
            .join("lmcache-e2e__sim");
        assert!(std::fs::read_dir(&d).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .starts_with("samples_gsm8k_")));
    }
}

#[test]
fn lm_eval_differences_fail_with_the_diff_and_failures_are_clear() {
    let dir = tempdir();
    let out = lm_eval(
        dir.path(),
        "ok",
        &["engines.lmcache.sim.corrupt_on_hit=true"],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("differing sample lines"), "{stderr}");
    let diff = std::fs::read_to_string(dir.path().join("r/lm_eval/diff.txt")).unwrap();
    assert!(
        diff.lines().any(|l| l.starts_with("< {\"doc_id\"")),
        "first run's lines: {diff}"
    );
    assert!(
        diff.lines().any(|l| l.starts_with("> {\"doc_id\"")),
        "second run's lines: {diff}"
    );
    assert!(diff.lines().count() <= 50);

    let dir = tempdir();
    let out = lm_eval(dir.path(), "crash", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`lm_eval` (first_run) exited") && stderr.contains("Task gsm8k not found"),
        "{stderr}"
    );

    let dir = tempdir();
    let out = lm_eval(dir.path(), "nosamples", &[]);
    assert!(
        text(&out).1.contains("wrote no samples_gsm8k_*.jsonl"),
        "{}",
        text(&out).1
    );

    let dir = tempdir();
    let out = lm_eval(
        dir.path(),
        "ok",
        &["tests.lm_eval.command=\"lm_eval_missing\""],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "refused before any engine starts"
    );
    assert!(
        text(&out)
            .1
            .contains("`tests.lm_eval.command` in --set: `lm_eval_missing` is not on PATH")
            && text(&out).1.contains("lm-eval[api]")
    );
}

/// `ci` with the real lm_eval against two sims (LMCache's corrupting the
/// KV it restores where `corrupt`), from a task the tool writes out of `data`.
fn real_lm_eval_on_sims(dir: &Path, data: &Path, corrupt: bool) -> std::process::Output {
    let sim = format!("external_cache_tokens = 1000000, corrupt_on_hit = {corrupt}");
    real_lm_eval_suite(dir, data, &sim, "")
}

/// `ci` with the real lm_eval (six rows of `data`, one at a time) against
/// a baseline sim and an LMCache sim with `sim`'s options, gated on
/// identical samples; `more` is appended to the test's table.
fn real_lm_eval_suite(dir: &Path, data: &Path, sim: &str, more: &str) -> std::process::Output {
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[run]\nname = \"lm-eval-sims\"\n\
             [engines.baseline]\nrole = \"baseline\"\nkind = \"sim\"\n\
             [engines.lmcache]\nrole = \"lmcache\"\nkind = \"sim\"\nsim = {{ {sim} }}\n\
             [tests.lm_eval]\nkind = \"lm_eval\"\ncommand = {:?}\ndata = {:?}\nlimit = 6\n\
             num_concurrent = 1\ntokenizer_backend = \"none\"\n{more}\n\
             [tests.lm_eval.checks.identical_samples]\nmetric = \"differing_sample_lines\"\nmax = 0\n",
            real_lm_eval().display().to_string(),
            data.display().to_string(),
        ),
    )
    .unwrap();
    run(&mut ci_suite(&suite, dir.join("r")), LIMIT)
}

/// The real lm_eval twice against a sim whose GPU prefix cache holds the
/// whole task, LMCache's store behind it, gated on LMCache serving a token.
fn real_lm_eval_engaged(dir: &Path, reset: bool) -> std::process::Output {
    let sim = "cache_tokens = 1000000, external_cache_tokens = 1000000";
    let check = "[tests.lm_eval.checks.lmcache_served]\n\
                 metric = \"vllm:external_prefix_cache_hits_total\"\nmin = 1\n";
    real_lm_eval_suite(
        dir,
        &mmlu_data(),
        sim,
        &format!("reset_prefix_cache = {reset}\n{check}"),
    )
}

// Two identical lm_eval runs prove nothing when the engine's own GPU prefix
// cache served the second (as on the H100: 0 tokens from LMCache): the
// engagement check turns that red, and `reset_prefix_cache` empties the
// GPU's cache between the runs so the second reads LMCache's store.
#[test]
fn lm_eval_needs_the_gpu_cache_emptied_between_runs_to_reach_lmcache() {
    let served = |reset: bool| {
        let dir = tempdir();
        let out = real_lm_eval_engaged(dir.path(), reset);
        let r = results(&dir.path().join("r"));
        let t = r["tests"][0].clone();
        let hits = t["metrics"]["lmcache"]["vllm:external_prefix_cache_hits_total"]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{t}"));
        (out.status.code(), hits, t)
    };
    let (code, hits, t) = served(false);
    assert_eq!(hits, 0.0, "the GPU's cache served the second run: {t}");
    assert_eq!(code, Some(1), "{t}");
    let (code, hits, t) = served(true);
    assert!(hits > 0.0, "{t}");
    assert_eq!(code, Some(0), "{t}");
}

// The real lm_eval turns red too: against an engine whose restored KV is
// corrupt (the sim's `corrupt_on_hit`), the task the tool writes from the
// MMLU data answers otherwise on the second run, which reads what the
// first stored.
#[test]
fn the_real_lm_eval_fails_against_an_engine_that_corrupts_restored_kv() {
    let dir = tempdir();
    let out = real_lm_eval_on_sims(dir.path(), &mmlu_data(), true);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = results(&dir.path().join("r"));
    let t = &r["tests"][0];
    assert!(
        t["metrics"]["lmcache"]["differing_sample_lines"]["value"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{t}"
    );
    assert_eq!(t["checks"][0]["verdict"], "fail", "{t}");
}

// The GSM8K task the tool writes is one the real lm_eval reads and scores
// with its own filters: both runs score, and a sound engine agrees.
#[test]
fn the_real_lm_eval_reads_and_scores_a_gsm8k_task_written_from_rows() {
    let dir = tempdir();
    let rows = dir.path().join("gsm8k.jsonl");
    std::fs::write(
        &rows,
        "{\"question\": \"Tom has 3 apples and buys 4 more. How many apples does he have?\", \"answer\": \"3 + 4 = 7\\n#### 7\"}\n\
         {\"question\": \"A box holds 12 eggs. How many eggs are in 2 boxes?\", \"answer\": \"12 * 2 = 24\\n#### 24\"}\n",
    )
    .unwrap();
    let out = real_lm_eval_on_sims(dir.path(), &rows, false);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = results(&dir.path().join("r"));
    let m = &r["tests"][0]["metrics"]["lmcache"];
    // A line per row and filter: lm_eval's strict-match and flexible-extract.
    assert_eq!(m["samples"]["value"], 4.0, "{m}");
    assert_eq!(m["differing_sample_lines"]["value"], 0.0, "{m}");
    for score in ["first_run_score", "second_run_score"] {
        let v = m[score]["value"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&v), "{score}: {m}");
    }
    assert!(dir
        .path()
        .join("r/lm_eval/tasks/gsm8k_local.yaml")
        .is_file());
}
