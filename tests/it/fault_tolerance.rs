//! Fault tolerance as k3 runs it: the supervisor stops the LMCache server
//! partway into a benchmark and the LMCache engine must still complete
//! every request. The server is a stand-in that only accepts connections;
//! the LMCache engine is a sim whose KV cache lives there
//! (`kv_server`), answering without it (`recompute`) or failing (`fail`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn suite(dir: &Path, policy: &str) -> PathBuf {
    let port = free_port();
    let server = dir.join("server.py");
    std::fs::write(
        &server,
        "import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen(64)\nwhile True:\n    s.accept()[0].close()\n",
    )
    .unwrap();
    let sim = |role: &str, extra: &str| {
        format!(
            "[engines.{role}]\nrole = \"{role}\"\nkind = \"sim\"\n[engines.{role}.sim]\n\
             prefill_us_per_token = 200\ncached_prefill_us_per_token = 2\ncache_tokens = 1000000\n{extra}"
        )
    };
    let path = dir.join("ft.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\nname = \"ft\"\n\
             [engines.lmcache-server]\nrole = \"service\"\nkind = \"process\"\ncommand = \"python3\"\n\
             args = [{server:?}, \"{{port}}\"]\nport = {port}\nreadiness = \"tcp\"\n\
             {}{}\
             [tests.fault_tolerance]\nkind = \"fault_tolerance\"\nnum_prompts = 40\ninput_len = 200\n\
             output_len = 1\nmin_stop_after_secs = 0.3\n\
             [tests.fault_tolerance.checks.stopped]\nmetric = \"stopped_mid_run\"\nmin = 1\n\
             [tests.fault_tolerance.checks.warmup]\nmetric = \"ft_warmup_incomplete\"\nmax = 0\n\
             [tests.fault_tolerance.checks.midflight]\nmetric = \"ft_midflight_incomplete\"\nmax = 0\n\
             [tests.fault_tolerance.checks.without_lmcache]\nmetric = \"ft_without_lmcache_incomplete\"\nmax = 0\n\
             [tests.after]\nkind = \"determinism\"\nmax_tokens = 4\nstore_load_pause_secs = 0\n\
             [tests.after.checks.identical]\nmetric = \"mismatched_outputs\"\nmax = 0\n",
            sim("baseline", ""),
            sim(
                "lmcache",
                &format!(
                    "kv_server = \"127.0.0.1:{port}\"\nkv_load_failure_policy = \"{policy}\"\n"
                )
            ),
            server = server.display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn ci(dir: &Path, policy: &str) -> (std::process::Output, Value) {
    let out = run(&mut ci_suite(suite(dir, policy), dir.join("r")), LIMIT);
    let r = results(&dir.join("r"));
    (out, r)
}

fn metric(r: &Value, name: &str) -> f64 {
    r["tests"][0]["metrics"]["lmcache"][name]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} in {}", r["tests"][0]["metrics"]))
}

#[test]
fn an_engine_that_recomputes_completes_every_request_when_the_server_dies() {
    let dir = tempdir();
    let (out, r) = ci(dir.path(), "recompute");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(metric(&r, "stopped_mid_run"), 1.0);
    for run in ["ft_warmup", "ft_midflight", "ft_without_lmcache"] {
        assert_eq!(metric(&r, &format!("{run}_incomplete")), 0.0, "{run}");
        assert!(dir.path().join(format!("r/vllm_bench/{run}.json")).exists());
    }
    // The sim saw its KV server go, and recomputed.
    let log = std::fs::read_to_string(dir.path().join("r/logs/lmcache.log")).unwrap();
    assert!(log.contains("unreachable (Recompute)"), "{log}");
    // The server was started again for the tests after this one.
    assert!(
        stderr.contains("starting `lmcache-server` again"),
        "{stderr}"
    );
    assert_eq!(r["tests"][1]["status"], "passed", "{}", r["tests"][1]);
}

#[test]
fn an_engine_that_fails_without_its_server_fails_the_midflight_run() {
    let dir = tempdir();
    let (out, r) = ci(dir.path(), "fail");
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(metric(&r, "stopped_mid_run"), 1.0);
    assert_eq!(metric(&r, "ft_warmup_incomplete"), 0.0);
    assert!(metric(&r, "ft_midflight_incomplete") > 0.0);
    assert!(metric(&r, "ft_without_lmcache_incomplete") > 0.0);
    let failed: Vec<&str> = r["tests"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["midflight", "without_lmcache"]);
}

#[test]
fn a_fault_tolerance_test_needs_a_service_to_stop() {
    let dir = tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[engines.lmcache]\nrole = \"lmcache\"\nkind = \"sim\"\n\
         [tests.ft]\nkind = \"fault_tolerance\"\nservice = \"lmcache-server\"\n",
    )
    .unwrap();
    let out = run(bin().args(["ci", "--suite"]).arg(&path), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tests.ft.service") && stderr.contains("role = \"service\""),
        "{stderr}"
    );
}
