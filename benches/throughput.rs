//! The native throughput bench's own ceiling: requests and output tokens per
//! second against zero-latency sims, and the driver's CPU time per request
//! (user + system of the `lmcache-e2e ci` process alone).
//! `cargo bench --bench throughput`; the figures go in the issue notes.

mod common;

use std::process::{Command, Stdio};

use common::{zero_latency_sim as sim, BIN};

use nix::sys::resource::{getrusage, UsageWho};

fn cpu_of_children() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn main() {
    let (b, l) = (sim(), sim());
    for (prompts, input, output, conc) in [
        (2000, 100, 16, 64),
        (2000, 100, 128, 64),
        (500, 2000, 16, 64),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("s.toml");
        std::fs::write(
            &suite,
            format!(
                "[engines.b]\nrole = \"baseline\"\nkind = \"external\"\nurl = \"{}\"\n[engines.l]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"{}\"\n\
                 [tests.t]\nkind = \"throughput\"\nnum_prompts = {prompts}\ninput_len = {input}\noutput_len = {output}\nmax_concurrency = {conc}\nmax_attempts = 1\n",
                b.url, l.url
            ),
        )
        .unwrap();
        let before = cpu_of_children();
        let status = Command::new(BIN)
            .args(["ci", "--suite"])
            .arg(&suite)
            .arg("--results-dir")
            .arg(dir.path().join("r"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.code().is_some());
        let cpu = cpu_of_children() - before;
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("r/vllm_bench/lmcache.json")).unwrap(),
        )
        .unwrap();
        let f = |k: &str| doc[k].as_f64().unwrap();
        println!(
            "{prompts} prompts x {input} in / {output} out, {conc} in flight: {:.0} req/s, {:.0} output tok/s, driver CPU {:.0} µs/request (both engines, calibration included)",
            f("request_throughput"),
            f("output_throughput"),
            cpu / (2.0 * prompts as f64) * 1e6
        );
    }
}
