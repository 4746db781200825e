//! How fast the long-doc-QA driver goes, and how exactly it measures:
//! requests per second against a sim with zero latency, and the TTFT error
//! against a sim whose TTFT is fixed. Runs the real binary end to end
//! (`cargo bench --bench driver`); the figures go in the issue notes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{sim, BIN};

/// CPU seconds (user + system) of every child waited for so far: around one
/// `ci` run, its own cost, since the sims it talks to are never waited for
/// until the end.
fn children_cpu_secs() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn run_suite(dir: &Path, url: &str, test: &str) -> serde_json::Value {
    let suite = dir.join("bench.toml");
    std::fs::write(
        &suite,
        format!(
            "[engines.b]\nrole = \"baseline\"\nkind = \"external\"\nurl = \"{url}\"\n\
             [engines.l]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"{url}\"\n\
             [tests.t]\nkind = \"long_doc_qa\"\nprewarmup_prompts = 0\n{test}"
        ),
    )
    .unwrap();
    let status = Command::new(BIN)
        .args(["ci", "--suite"])
        .arg(&suite)
        .arg("--results-dir")
        .arg(dir.join("r"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(dir.join("r/results.json")).unwrap()).unwrap()
}

fn ttfts(csv: &str) -> Vec<f64> {
    csv.lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3)?.parse::<f64>().ok())
        .filter(|t| *t >= 0.0)
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn main() {
    // Throughput: zero-latency sim, short prompts, one output token.
    let s = sim(&[
        "--prefill-us-per-token",
        "0",
        "--cached-prefill-us-per-token",
        "0",
        "--decode-ms-per-token",
        "0",
    ]);
    for inflight in [1, 16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let cpu_before = children_cpu_secs();
        let r = run_suite(
            dir.path(),
            &s.url,
            &format!("num_documents = 1000\ndocument_length = 100\noutput_len = 1\nrepeat_count = 1\nmax_inflight_requests = {inflight}\n"),
        );
        let m = &r["tests"][0]["metrics"]["lmcache"];
        let n = m["requests"]["value"].as_f64().unwrap();
        let secs = m["warmup_round_time"]["value"].as_f64().unwrap()
            + m["query_round_time"]["value"].as_f64().unwrap();
        // Both engines get every request: the runner's CPU covers 2n of them.
        let cpu = children_cpu_secs() - cpu_before;
        println!(
            "zero-latency sim, {inflight:>2} in flight: {n} requests in {secs:.2} s = {:.0} requests/s; runner CPU {:.1} us per request",
            n / secs,
            cpu / (2.0 * n) * 1e6
        );
    }
    drop(s);

    // Accuracy: every request's TTFT is 50 ms (no queueing: one in flight).
    let s = sim(&[
        "--prefill-us-per-token",
        "0",
        "--cached-prefill-us-per-token",
        "0",
        "--base-latency-ms",
        "50",
        "--decode-ms-per-token",
        "1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    run_suite(dir.path(), &s.url, "num_documents = 100\ndocument_length = 1000\noutput_len = 8\nrepeat_count = 1\nmax_inflight_requests = 1\n");
    let mut v: Vec<f64> = ttfts(
        &std::fs::read_to_string(dir.path().join("r/long_doc_qa/lmcache_requests.csv")).unwrap(),
    )
    .into_iter()
    .map(|t| (t - 0.050) * 1000.0)
    .collect();
    println!(
        "fixed 50 ms TTFT, {} requests: measured minus true = p50 {:+.2} ms, p99 {:+.2} ms, max {:+.2} ms",
        v.len(),
        pct(&mut v, 50.0),
        pct(&mut v, 99.0),
        pct(&mut v, 100.0)
    );
}
