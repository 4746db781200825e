//! The GPU presets run end to end against stand-ins for `vllm` and Dynamo's
//! `python -m` entry points: scripts on PATH that record the command line
//! they were given and serve the simulated engine on the port they were
//! told. What is checked is what the presets launch, with the reference's
//! flags, and that the whole pipeline runs through them.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

fn script(dir: &Path, name: &str, body: &str) {
    executable(
        &dir.join(name),
        &format!(
            "#!/bin/sh
{body}
"
        ),
    );
}

fn shared_archive() -> String {
    let p = mmlu_data();
    p.canonicalize()
        .expect("shared MMLU archive")
        .display()
        .to_string()
}

fn results_json(dir: &Path) -> serde_json::Value {
    results(dir)
}

fn ci_preset(
    preset: &str,
    fake_bin: &Path,
    results: &Path,
    argv_log: &Path,
    extra: &[String],
) -> std::process::Output {
    ci_preset_with(preset, fake_bin, results, argv_log, extra, &[])
}

fn ci_preset_env(
    preset: &str,
    fake_bin: &Path,
    results: &Path,
    argv_log: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    ci_preset_with(preset, fake_bin, results, argv_log, &[], env)
}

fn ci_preset_with(
    preset: &str,
    fake_bin: &Path,
    results: &Path,
    argv_log: &Path,
    extra: &[String],
    env: &[(&str, &str)],
) -> std::process::Output {
    let (port, other) = (free_port(), free_port());
    let path = format!(
        "{}:{}",
        fake_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = bin();
    cmd.args(["ci", "--preset", preset, "--results-dir"])
        .arg(results)
        .env("PATH", path)
        .env("FAKE_ARGV_LOG", argv_log)
        .env("LMCACHE_E2E_BIN", env!("CARGO_BIN_EXE_lmcache-e2e"))
        .envs(env.iter().copied());
    let mut sets = vec![
        format!("tests.mmlu.data=\"{}\"", shared_archive()),
        "tests.mmlu.number_of_subjects=2".into(),
        "tests.mmlu.max_questions_per_subject=4".into(),
        "tests.mmlu.store_load_pause_secs=0".into(),
        "run.readiness_timeout_secs=30".into(),
        format!("engines.baseline.port={port}"),
        // Its own port: engines placed side by side need two.
        format!("engines.lmcache.port={other}"),
    ];
    sets.extend(extra.iter().cloned());
    for s in sets {
        cmd.args(["--set", &s]);
    }
    run(&mut cmd, LIMIT)
}

/// A `vllm` that logs its command line (and whether it saw a GitHub token)
/// and serves the sim with a prefix cache.
fn fake_vllm(dir: &Path) -> std::path::PathBuf {
    let fake = dir.join("bin");
    std::fs::create_dir(&fake).unwrap();
    script(
        &fake,
        "vllm",
        r#"echo "$*" >> "$FAKE_ARGV_LOG"
echo "${GITHUB_TOKEN:-no token}" >> "$FAKE_ARGV_LOG.token"
model="$2"; port=""
while [ $# -gt 0 ]; do [ "$1" = "--port" ] && port="$2"; shift; done
exec "$LMCACHE_E2E_BIN" sim serve --port "$port" --served-model-name "$model" --cache-tokens 100000"#,
    );
    fake
}

/// The correctness suite's four `vllm serve` lines: each model, baseline
/// then LMCache with the in-process connector, with the reference's flags.
fn launched_as_the_reference(lines: &[&str]) {
    for (i, model) in [
        (0, "meta-llama/Llama-3.1-8B-Instruct"),
        (2, "deepseek-ai/DeepSeek-V2-Lite"),
    ] {
        for line in &lines[i..i + 2] {
            assert!(
                line.starts_with(&format!("serve {model} --host 127.0.0.1 --port ")),
                "{line}"
            );
        }
        assert!(
            !lines[i].contains("--kv-transfer-config"),
            "no connector on the baseline"
        );
        assert!(
            lines[i + 1].ends_with(
                r#"--kv-transfer-config {"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}"#
            ),
            "{}",
            lines[i + 1]
        );
    }
    for line in lines {
        for flag in [
            "--max-model-len 8000",
            "--tensor-parallel-size 2",
            "--no-enable-prefix-caching",
            "--enforce-eager",
            "--trust-remote-code",
            "--seed 42",
            "--gpu-memory-utilization 0.9",
        ] {
            assert!(line.contains(flag), "{flag} missing in {line}");
        }
    }
}

#[test]
fn correctness_launches_vllm_as_the_reference_does_for_both_models() {
    let dir = tempdir();
    let fake = fake_vllm(dir.path());
    let log = dir.path().join("argv.log");
    let results = dir.path().join("r");
    let out = ci_preset("correctness", &fake, &results, &log, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let argv = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = argv.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "each model in turn, baseline then LMCache: {argv}"
    );
    launched_as_the_reference(&lines);
    let r = results_json(&results);
    let names: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["mmlu@Llama-3.1-8B-Instruct", "mmlu@DeepSeek-V2-Lite"]
    );
    // A handful of questions cannot bound a 1-point drop: passed or, with
    // the accuracy interval straddling it, inconclusive; never failed.
    assert!(
        r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "passed" || t["status"] == "inconclusive"),
        "{r}"
    );
    for tail in ["Llama-3.1-8B-Instruct", "DeepSeek-V2-Lite"] {
        assert!(results
            .join(format!("{tail}/mmlu/{tail}-baseline.jsonl"))
            .exists());
        assert!(results
            .join(format!("{tail}/mmlu/{tail}-lmcache.jsonl"))
            .exists());
        assert!(results.join(format!("logs/lmcache-{tail}.log")).exists());
    }
    for g in recorded_groups(&results) {
        assert!(!group_alive(g), "process group {g} outlived the run");
    }
}

#[test]
fn correctness_runs_the_model_named_and_keeps_the_token_from_engines() {
    let dir = tempdir();
    let fake = fake_vllm(dir.path());
    // MODEL runs just one of them.
    let log2 = dir.path().join("argv2.log");
    let out = ci_preset_env(
        "correctness",
        &fake,
        &dir.path().join("r2"),
        &log2,
        &[
            ("MODEL", "deepseek-ai/DeepSeek-V2-Lite"),
            ("GITHUB_TOKEN", "ghs_commentTokenEnginesMustNotSee"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    // Engines run the PR's code: the comment token is not theirs.
    let seen = std::fs::read_to_string(dir.path().join("argv2.log.token")).unwrap();
    assert_eq!(seen, "no token\nno token\n");
    let argv = std::fs::read_to_string(&log2).unwrap();
    assert_eq!(argv.lines().count(), 2, "{argv}");
    assert!(argv
        .lines()
        .all(|l| l.starts_with("serve deepseek-ai/DeepSeek-V2-Lite ")));
}

/// The dynamo preset against stand-ins of Dynamo `version`: `python -m
/// dynamo.frontend --http-port P …` serves (the sim), the worker logs how
/// it was started and idles; its `--help` lists the planes 1.4 has.
fn dynamo_as(version: &str, dir: &Path) -> (std::process::Output, String, std::path::PathBuf) {
    let fake = dir.join("bin");
    std::fs::create_dir(&fake).unwrap();
    // Only `python3`: GPU images often lack `python`.
    script(
        &fake,
        "python3",
        &format!(
            r#"[ "$1" = "-c" ] && {{ echo "{version}"; exit 0; }}
if [ "$2" = "dynamo.frontend" ]; then
  echo "frontend ${{DYN_FILE_KV:-no store}} $*" >> "$FAKE_ARGV_LOG.frontend"
  exec "$LMCACHE_E2E_BIN" sim serve --port "$4" --served-model-name Qwen/Qwen3-0.6B
fi
[ "$3" = "--help" ] && {{ echo "usage: --model --connector --discovery-backend --request-plane --event-plane"; exit 0; }}
echo "$*" >> "$FAKE_ARGV_LOG"; exec sleep 600"#
        ),
    );
    let log = dir.join("argv.log");
    let results = dir.join("r");
    let out = ci_preset("dynamo", &fake, &results, &log, &[]);
    let argv = std::fs::read_to_string(&log).unwrap_or_default();
    (out, argv, results)
}

#[test]
fn dynamo_runs_frontend_and_worker_and_stops_both() {
    // Dynamo 1.4 (vLLM 0.26): vLLM's own connector flag, discovery by file.
    let dir = tempdir();
    let (out, argv, results) = dynamo_as("1.4.2", dir.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let planes = "--discovery-backend file --request-plane tcp --event-plane zmq";
    assert_eq!(
        argv,
        format!(
            "-m dynamo.vllm --model Qwen/Qwen3-0.6B {planes}\n\
             -m dynamo.vllm --model Qwen/Qwen3-0.6B {planes} --kv-transfer-config {{\"kv_connector\":\"LMCacheConnectorV1\",\"kv_role\":\"kv_both\"}}\n"
        )
    );
    let frontend = std::fs::read_to_string(dir.path().join("argv.log.frontend")).unwrap();
    assert!(frontend.lines().all(|l| l.ends_with(planes)), "{frontend}");
    // Each deployment discovers its worker in a folder of its own: the
    // baseline's stopped worker is not listed to the LMCache frontend.
    let stores: Vec<&str> = frontend
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(stores.len(), 2, "{frontend}");
    assert!(
        stores.iter().all(|s| s.contains("dynamo-kv-")),
        "{frontend}"
    );
    assert_ne!(stores[0], stores[1], "{frontend}");
    assert!(results
        .join("mmlu/dynamo-baseline-Qwen3-0.6B.jsonl")
        .exists());
    assert!(results
        .join("mmlu/dynamo-lmcache-Qwen3-0.6B.jsonl")
        .exists());
    let q = std::fs::read_to_string(results.join("mmlu/baseline_questions.jsonl")).unwrap();
    assert!(q.lines().count() == 8);
    // Dynamo flags a difference either way, and asks each question once.
    let r = results_json(&results);
    let checks: Vec<&str> = r["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"accuracy_gain") && checks.contains(&"max_subject_change"),
        "{checks:?}"
    );
    assert!(!stderr.contains("each prompt twice"), "{stderr}");

    // Dynamo before 1.4 keeps its own flag (and etcd and NATS).
    let dir = tempdir();
    let (out, argv, _) = dynamo_as("1.3.0", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(argv, "-m dynamo.vllm --model Qwen/Qwen3-0.6B\n-m dynamo.vllm --model Qwen/Qwen3-0.6B --connector lmcache\n");
}

/// `vllm` as the gpu-1 preset drives it: `serve` becomes the sim, with a
/// GPU prefix cache of a fixed size (as `--kv-cache-memory-bytes` gives,
/// scaled down) and, with `--kv-transfer-config`, LMCache's CPU store
/// behind it. Anything but `serve` (`bench serve`) fails: the preset's
/// throughput is sent natively.
const FAKE_GPU_VLLM: &str = r#"echo "$*" >> "$FAKE_ARGV_LOG"
[ "$1" = serve ] || { echo "vllm $1: not in this fake" >&2; exit 2; }
model="$2"; port=""; external=""
while [ $# -gt 0 ]; do
  [ "$1" = "--port" ] && port="$2"
  [ "$1" = "--kv-transfer-config" ] && external="--external-cache-tokens 1000000"
  shift
done
exec "$LMCACHE_E2E_BIN" sim serve --port "$port" --served-model-name "$model" \
  --cache-tokens 2000 --prefill-us-per-token 50 --cached-prefill-us-per-token 2 $external"#;

/// The gpu-1 preset's two `vllm serve` lines: dummy weights, 16 GiB of KV
/// cache each, a quarter of the GPU, baseline then LMCache; nothing else.
fn served_as_gpu_1_sizes_them(log: &Path) {
    let argv = std::fs::read_to_string(log).unwrap();
    let serves: Vec<&str> = argv.lines().filter(|l| l.starts_with("serve ")).collect();
    assert_eq!(serves.len(), 2, "baseline, then LMCache: {argv}");
    for line in &serves {
        for flag in [
            "--load-format dummy",
            "--kv-cache-memory-bytes 17179869184",
            "--gpu-memory-utilization 0.25",
            "--max-model-len 16384",
        ] {
            assert!(line.contains(flag), "{flag} in {line}");
        }
    }
    assert!(!serves[0].contains("--kv-transfer-config"));
    assert!(serves[1].contains(r#"{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}"#));
    assert_eq!(argv.lines().count(), 2, "only the two serves: {argv}");
}

#[test]
fn gpu_1_runs_its_whole_suite_through_vllm_serve() {
    let dir = tempdir();
    let fake = dir.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    script(&fake, "vllm", FAKE_GPU_VLLM);
    let log = dir.path().join("argv.log");
    let results = dir.path().join("r");
    // The preset as shipped, its sizes shrunk: documents that still
    // overflow the (fake) GPU's cache, a few questions, short prompts.
    let sets: Vec<String> = [
        "run.model=\"/models/llama-3.1-8b-dummy\"",
        "tests.long_doc_qa.document_length=600",
        "tests.long_doc_qa.num_documents=6",
        "tests.long_doc_qa.output_len=4",
        "tests.long_doc_qa.prewarmup_prompts=1",
        // In order, so the fake GPU cache's LRU evicts each document before
        // its query (four in flight once let 16.9 % of a trial hit).
        "tests.long_doc_qa.max_inflight_requests=1",
        "tests.throughput.num_prompts=4",
        "tests.throughput.input_len=300",
        "tests.determinism.max_tokens=4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = ci_preset("gpu-1", &fake, &results, &log, &sets);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    served_as_gpu_1_sizes_them(&log);
    let r = results_json(&results);
    let test = |name: &str| {
        r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    };
    let check = |t: &serde_json::Value, name: &str| {
        t["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {t}"))["verdict"]
            .clone()
    };
    let ldqa = test("long_doc_qa");
    assert_eq!(
        check(&ldqa, "baseline_overflows_gpu_cache"),
        "pass",
        "{ldqa}"
    );
    assert_eq!(check(&ldqa, "lmcache_cache_hits"), "pass");
    for name in ["mmlu", "determinism"] {
        let t = test(name);
        assert_eq!(check(&t, "load_pass_through_lmcache"), "pass", "{t}");
    }
    // Native throughput: prompts of exactly input_len by the engine's
    // /tokenize, every one completed.
    let tp = test("throughput");
    for name in ["baseline_input_token_error", "lmcache_incomplete_requests"] {
        assert_eq!(check(&tp, name), "pass", "{tp}");
    }
    assert_eq!(
        tp["metrics"]["baseline"]["input_token_error_pct"]["value"], 0.0,
        "{tp}"
    );
    // No lm_eval here: skipped, saying why, and the run still passes.
    let lm = test("lm_eval");
    assert_eq!(lm["status"], "not_run", "{lm}");
    assert!(
        lm["error"]
            .as_str()
            .unwrap()
            .starts_with("skipped: `lm_eval` is not on PATH"),
        "{lm}"
    );
    for g in recorded_groups(&results) {
        assert!(!group_alive(g), "process group {g} outlived the run");
    }
}

/// The plan shows each engine's command line as it will run: the ports the
/// suite fixes filled in, `{health_port}` too.
#[test]
fn the_plan_fills_in_the_health_port_as_the_engine_gets_it() {
    let out = run(
        bin().args(["ci", "--preset", "k3-sglang", "--dry-run"]),
        LIMIT,
    );
    let plan = text(&out).0;
    assert!(plan.contains("--http-port 8080"), "{plan}");
    assert!(!plan.contains("{health_port}"), "{plan}");
}
