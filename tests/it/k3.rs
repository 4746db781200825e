//! The `k3` preset (LMCache's `.buildkite/k3_tests/multiprocess/` as it runs
//! today) against stand-ins on PATH: `lmcache server` (records its command
//! line and environment, serves `/healthcheck` on its HTTP port), `vllm
//! serve` (records, then serves the sim) and `vllm bench serve` (talks to
//! the engine, writes vLLM's result file with figures the test chooses).
//! What is checked: the exact processes k3 starts, and k3's vllm bench
//! rules passing and failing as its script decides.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Records `argv` and the environment k3 sets, one line per process.
const RECORD: &str = r#"
def record(kind):
    env = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                   if k in ("CUDA_VISIBLE_DEVICES", "VLLM_TARGET_DEVICE", "VLLM_ENABLE_V1_MULTIPROCESSING",
                            "VLLM_SERVER_DEV_MODE", "VLLM_BATCH_INVARIANT", "PYTHONHASHSEED", "VLLM_PORT"))
    with open(os.environ["FAKE_ARGV_LOG"], "a") as f:
        f.write(f"{kind}: {env} | {' '.join(sys.argv[1:])}\n")
"#;

fn lmcache_stand_in() -> String {
    format!(
        r#"#!/usr/bin/env python3
import http.server, os, sys
{RECORD}
assert sys.argv[1] == "server", sys.argv
record("lmcache")
port = int(sys.argv[sys.argv.index("--http-port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path in ("/healthcheck", "/metrics")
        self.send_response(200 if ok else 404)
        self.end_headers()
        if self.path == "/metrics":
            self.wfile.write(b"lmcache_mp_l1_read_chunks_total 0\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#
    )
}

/// `vllm serve` becomes the sim; `vllm bench serve` sends its prompts and
/// reports the LMCache engine's throughput as `FAKE_LMCACHE_SPEED` times
/// the baseline's, and its input tokens off by `FAKE_TOKEN_ERROR_PCT`.
fn vllm_stand_in() -> String {
    format!(
        r#"#!/usr/bin/env python3
import argparse, json, os, sys, urllib.request
{RECORD}
if sys.argv[1] == "serve":
    record("vllm serve")
    model, port = sys.argv[2], sys.argv[sys.argv.index("--port") + 1]
    b = os.environ["LMCACHE_E2E_BIN"]
    os.execv(b, [b, "sim", "serve", "--port", port, "--served-model-name", model, "--cache-tokens", "100000"])
assert sys.argv[1:3] == ["bench", "serve"], sys.argv
record("vllm bench")
p = argparse.ArgumentParser()
for flag in ["--seed", "--host", "--port", "--model", "--dataset-name", "--random-input-len", "--random-output-len",
             "--num-prompts", "--backend", "--endpoint", "--result-dir", "--result-filename"]:
    p.add_argument(flag)
p.add_argument("--ignore-eos", action="store_true")
p.add_argument("--save-result", action="store_true")
a = p.parse_args(sys.argv[3:])
n, inp = int(a.num_prompts), int(a.random_input_len)
for i in range(n):
    body = {{"model": a.model, "messages": [{{"role": "user", "content": " ".join([str(i)] + ["hi"] * (inp - 1))}}],
            "max_tokens": 1}}
    req = urllib.request.Request(f"http://{{a.host}}:{{a.port}}{{a.endpoint}}", json.dumps(body).encode(),
                                 {{"Content-Type": "application/json"}})
    json.load(urllib.request.urlopen(req))
lmcache = a.result_filename.startswith("lmcache")
speed = float(os.environ.get("FAKE_LMCACHE_SPEED", "1")) if lmcache else 1.0
tokens = round(n * inp * (1 + float(os.environ.get("FAKE_TOKEN_ERROR_PCT", "0")) / 100))
res = {{"completed": n, "failed": 0, "duration": 10.0, "total_input_tokens": tokens, "total_output_tokens": n,
       "request_throughput": n / 10.0, "output_throughput": n / 10.0, "total_token_throughput": 1000.0 * speed,
       "mean_ttft_ms": 10.0, "median_ttft_ms": 9.0, "p99_ttft_ms": 20.0}}
with open(os.path.join(a.result_dir, a.result_filename), "w") as f:
    json.dump(res, f)
"#
    )
}

/// Engine ports are left to the tool (0: a free one, picked just before
/// each starts); only the server's HTTP port must be known up front.
struct K3 {
    dir: tempfile::TempDir,
    http: u16,
}

impl K3 {
    fn new() -> Self {
        let dir = tempdir();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        executable(&bin.join("lmcache"), &lmcache_stand_in());
        executable(&bin.join("vllm"), &vllm_stand_in());
        Self {
            dir,
            http: free_port(),
        }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("argv.log")
    }

    fn results(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `ci --preset k3 --only vllm_bench`, small enough for the sim.
    fn vllm_bench(&self, name: &str, env: &[(&str, &str)]) -> std::process::Output {
        let path = path_with(&self.dir.path().join("bin"));
        let mut cmd = bin();
        cmd.args([
            "ci",
            "--preset",
            "k3",
            "--only",
            "vllm_bench",
            "--results-dir",
        ])
        .arg(self.results(name))
        .env("PATH", path)
        .env("FAKE_ARGV_LOG", self.log())
        .env("LMCACHE_E2E_BIN", env!("CARGO_BIN_EXE_lmcache-e2e"))
        // k3 never passes VLLM_PORT on; nor must we.
        .env("VLLM_PORT", "8000")
        .envs(env.iter().copied());
        for set in [
            format!("engines.lmcache-server.health_port={}", self.http),
            "engines.vllm-lmcache.port=0".into(),
            "engines.vllm-baseline.port=0".into(),
            "run.readiness_timeout_secs=30".into(),
            "tests.vllm_bench.num_prompts=4".into(),
            "tests.vllm_bench.input_len=50".into(),
        ] {
            cmd.args(["--set", &set]);
        }
        run(&mut cmd, LIMIT)
    }
}

/// The port the run gave an engine.
fn port_of(results: &Path, engine: &str) -> u16 {
    let r = crate::common::results(results);
    let url = crate::common::engine_record(&r, engine)["url"]
        .as_str()
        .unwrap_or_else(|| panic!("engine {engine}'s url in {r}"))
        .to_string();
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn verdicts(results: &Path) -> Vec<(String, String)> {
    let r = crate::common::results(results);
    r["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn failed(results: &Path) -> Vec<String> {
    verdicts(results)
        .into_iter()
        .filter(|(_, v)| v == "fail")
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn k3_starts_the_reference_processes_and_its_bench_passes() {
    let k3 = K3::new();
    let out = k3.vllm_bench("ok", &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let argv = std::fs::read_to_string(k3.log()).unwrap();
    let line = |kind: &str, needle: &str| -> String {
        argv.lines()
            .find(|l| l.starts_with(kind) && l.contains(needle))
            .unwrap_or_else(|| panic!("no `{kind}` line with {needle} in\n{argv}"))
            .to_string()
    };
    let http = k3.http;
    let lmcache = port_of(&k3.results("ok"), "vllm-lmcache");
    let baseline = port_of(&k3.results("ok"), "vllm-baseline");
    assert_eq!(
        line("lmcache:", "server"),
        format!(
            "lmcache: CUDA_VISIBLE_DEVICES=0 VLLM_TARGET_DEVICE=cuda | server --transport zmq --l1-size-gb 80 \
             --eviction-policy LRU --max-workers 4 --port 6555 --supported-transfer-mode lmcache_driven --http-port {http}"
        )
    );
    let env = "PYTHONHASHSEED=0 VLLM_BATCH_INVARIANT=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_SERVER_DEV_MODE=1 VLLM_TARGET_DEVICE=cuda";
    assert_eq!(
        line("vllm serve:", "LMCacheMPConnector"),
        format!(
            "vllm serve: CUDA_VISIBLE_DEVICES=0 {env} | serve Qwen/Qwen3-14B --kv-transfer-config \
             {{\"kv_connector\":\"LMCacheMPConnector\",\"kv_role\":\"kv_both\",\"kv_load_failure_policy\":\"recompute\",\
             \"kv_connector_extra_config\":{{\"lmcache.mp.host\":\"tcp://localhost\",\"lmcache.mp.port\":6555,\"lmcache.mp.mq_timeout\":10}}}} \
             --attention-backend FLASH_ATTN --port {lmcache} --no-async-scheduling --max-model-len auto"
        )
    );
    assert_eq!(
        line("vllm serve:", &format!("--port {baseline}")),
        format!(
            "vllm serve: CUDA_VISIBLE_DEVICES=1 {env} | serve Qwen/Qwen3-14B --attention-backend FLASH_ATTN \
             --port {baseline} --no-async-scheduling --max-model-len auto"
        )
    );
    // Baseline first, then LMCache, each with the reference's flags.
    let benches: Vec<&str> = argv
        .lines()
        .filter(|l| l.starts_with("vllm bench"))
        .collect();
    assert_eq!(benches.len(), 2, "{argv}");
    assert!(
        benches[0].contains(&format!("--port {baseline}"))
            && benches[0].contains("--result-filename baseline.json")
    );
    assert!(
        benches[1].contains(&format!("--port {lmcache}"))
            && benches[1].contains("--result-filename lmcache.json")
    );
    for b in &benches {
        assert!(
            b.contains("--dataset-name random --random-input-len 50 --random-output-len 1 --num-prompts 4 --ignore-eos --backend openai-chat --endpoint /v1/chat/completions"),
            "{b}"
        );
    }
    // Three warm-up requests per server before its benchmark.
    assert_eq!(
        stderr.matches("3 warm-up requests (0 failed)").count(),
        2,
        "{stderr}"
    );
    let results = k3.results("ok");
    assert!(failed(&results).is_empty(), "{:?}", verdicts(&results));
    assert_eq!(verdicts(&results).len(), 6);
}

#[test]
fn k3_bench_rules_fail_as_its_script_does() {
    let k3 = K3::new();
    // LMCache 6 % slower than the baseline: below k3's −5 %.
    let out = k3.vllm_bench("slow", &[("FAKE_LMCACHE_SPEED", "0.94")]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(failed(&k3.results("slow")), ["total_token_throughput"]);
    // 4 % slower is within it.
    let out = k3.vllm_bench("within", &[("FAKE_LMCACHE_SPEED", "0.96")]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    // More than 10 % faster on prompts that share nothing: a measurement
    // asymmetry, and k3 fails it.
    let out = k3.vllm_bench("too_good", &[("FAKE_LMCACHE_SPEED", "1.12")]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(failed(&k3.results("too_good")), ["too_good_to_be_true"]);
    // Input tokens 2 % off on both engines: outside ±1 %.
    let out = k3.vllm_bench("tokens", &[("FAKE_TOKEN_ERROR_PCT", "2")]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(
        failed(&k3.results("tokens")),
        ["baseline_input_token_error", "lmcache_input_token_error"]
    );
    // 0.5 % off is what k3 tolerates.
    let out = k3.vllm_bench("tokens_ok", &[("FAKE_TOKEN_ERROR_PCT", "0.5")]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

/// `python3 -m sglang.launch_server` becomes the sim (recording its command
/// line, environment and LMCache config); any other `python3` is the real
/// one.
const SGLANG_STAND_IN: &str = r#"#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "sglang.launch_server" ]; then
  echo "sglang: CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES PYTHONHASHSEED=$PYTHONHASHSEED | $*" >> "$FAKE_ARGV_LOG"
  port=""; model=""; cfg=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="$2" ;;
      --model-path) model="$2" ;;
      --lmcache-config-file) cfg="$2" ;;
    esac
    shift
  done
  [ -n "$cfg" ] && cat "$cfg" >> "$FAKE_ARGV_LOG.cfg"
  exec "$LMCACHE_E2E_BIN" sim serve --port "$port" --served-model-name "$model" --cache-tokens 100000
fi
exec "$REAL_PYTHON3" "$@"
"#;

/// `lm_eval` as far as score mode can tell: a results file per run with
/// the score `FAKE_SCORES` gives it (first,second), and samples.
const LM_EVAL_STAND_IN: &str = r#"#!/usr/bin/env python3
import argparse, datetime, json, os
p = argparse.ArgumentParser()
for flag in ["--model", "--tasks", "--model_args", "--limit", "--seed", "--output_path", "--gen_kwargs"]:
    p.add_argument(flag)
p.add_argument("-s", action="store_true")
a = p.parse_args()
first, second = os.environ["FAKE_SCORES"].split(",")
score = float(first if a.output_path.endswith("first_run") else second)
out = os.path.join(a.output_path, "model")
os.makedirs(out, exist_ok=True)
stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
with open(os.path.join(out, f"samples_{a.tasks}_{stamp}.jsonl"), "w") as f:
    f.write(json.dumps({"doc_id": 0, "filtered_resps": ["42"]}) + "\n")
with open(os.path.join(out, f"results_{stamp}.json"), "w") as f:
    json.dump({"results": {a.tasks: {"exact_match_stderr,strict-match": 0.01, "exact_match,strict-match": score}}}, f)
"#;

fn sglang_lm_eval(k3: &K3, name: &str, scores: &str) -> std::process::Output {
    let bin_dir = k3.dir.path().join("bin");
    executable(&bin_dir.join("python3"), SGLANG_STAND_IN);
    executable(&bin_dir.join("lm_eval"), LM_EVAL_STAND_IN);
    let real = which::which("python3").expect("python3");
    let mut cmd = bin();
    cmd.args([
        "ci",
        "--preset",
        "k3-sglang",
        "--only",
        "lm_eval",
        "--results-dir",
    ])
    .arg(k3.results(name))
    .env("PATH", path_with(&bin_dir))
    .env("REAL_PYTHON3", real)
    .env("FAKE_ARGV_LOG", k3.log())
    .env("FAKE_SCORES", scores)
    .env("LMCACHE_E2E_BIN", env!("CARGO_BIN_EXE_lmcache-e2e"));
    for set in [
        format!("engines.lmcache-server.health_port={}", k3.http),
        "engines.sglang-lmcache.port=0".into(),
        "engines.sglang-baseline.port=0".into(),
        "run.readiness_timeout_secs=30".into(),
        "tests.lm_eval.limit=4".into(),
    ] {
        cmd.args(["--set", &set]);
    }
    run(&mut cmd, LIMIT)
}

#[test]
fn k3_sglang_runs_sglang_with_its_lmcache_config_and_gates_lm_eval_scores() {
    let k3 = K3::new();
    let out = sglang_lm_eval(&k3, "ok", "0.85,0.855");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let argv = std::fs::read_to_string(k3.log()).unwrap();
    let lmcache = port_of(&k3.results("ok"), "sglang-lmcache");
    let baseline = port_of(&k3.results("ok"), "sglang-baseline");
    let config = k3
        .results("ok")
        .join("engines/sglang-lmcache/lmcache-sglang.yaml");
    let sglang: Vec<&str> = argv.lines().filter(|l| l.starts_with("sglang:")).collect();
    assert!(
        sglang.contains(&format!(
            "sglang: CUDA_VISIBLE_DEVICES=0 PYTHONHASHSEED=0 | -m sglang.launch_server --model-path Qwen/Qwen3-14B \
             --host 127.0.0.1 --port {lmcache} --enable-lmcache --lmcache-config-file {} \
             --enable-deterministic-inference --attention-backend triton",
            config.display()
        ).as_str()),
        "{argv}"
    );
    assert!(
        sglang.contains(&format!(
            "sglang: CUDA_VISIBLE_DEVICES=1 PYTHONHASHSEED=0 | -m sglang.launch_server --model-path Qwen/Qwen3-14B \
             --host 127.0.0.1 --port {baseline} --enable-deterministic-inference --attention-backend triton"
        ).as_str()),
        "{argv}"
    );
    let cfg = std::fs::read_to_string(format!("{}.cfg", k3.log().display())).unwrap();
    assert!(
        cfg.contains("mp_host: tcp://127.0.0.1")
            && cfg.contains("mp_port: 6555")
            && cfg.contains("lmcache.mp.mq_timeout: 60"),
        "{cfg}"
    );
    assert!(failed(&k3.results("ok")).is_empty());
    // SGLang's score tolerance is 0.01: a 0.02 drift fails.
    let out = sglang_lm_eval(&k3, "drift", "0.85,0.87");
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(failed(&k3.results("drift")), ["score_drift"]);
    // Under the 0.80 floor fails, however stable.
    let out = sglang_lm_eval(&k3, "low", "0.75,0.75");
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(failed(&k3.results("low")), ["min_score"]);
}
