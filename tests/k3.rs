//! The `k3` preset (LMCache's `.buildkite/k3_tests/multiprocess/` as it runs
//! today) against stand-ins on PATH: `lmcache server` (records its command
//! line and environment, serves `/healthcheck` on its HTTP port), `vllm
//! serve` (records, then serves the sim) and `vllm bench serve` (talks to
//! the engine, writes vLLM's result file with figures the test chooses).
//! What is checked: the exact processes k3 starts, and k3's vllm bench
//! rules passing and failing as its script decides.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

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

struct K3 {
    dir: tempfile::TempDir,
    ports: [u16; 3],
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
            ports: [free_port(), free_port(), free_port()],
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
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let [http, lmcache, baseline] = self.ports;
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
        .env("VLLM_PORT", lmcache.to_string())
        .envs(env.iter().copied());
        for set in [
            format!("engines.lmcache-server.health_port={http}"),
            format!("engines.vllm-lmcache.port={lmcache}"),
            format!("engines.vllm-baseline.port={baseline}"),
            "run.readiness_timeout_secs=30".into(),
            "tests.vllm_bench.num_prompts=4".into(),
            "tests.vllm_bench.input_len=50".into(),
        ] {
            cmd.args(["--set", &set]);
        }
        run(&mut cmd, LIMIT)
    }
}

fn verdicts(results: &Path) -> Vec<(String, String)> {
    let r = common::results(results);
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
    let [http, lmcache, baseline] = k3.ports;
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
        ["baseline_input_tokens", "lmcache_input_tokens"]
    );
    // 0.5 % off is what k3 tolerates.
    let out = k3.vllm_bench("tokens_ok", &[("FAKE_TOKEN_ERROR_PCT", "0.5")]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}
