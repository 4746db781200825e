//! MMLU figures: extraction of the shared archive against `tar -xJf`, and
//! requests per second of the MMLU workload against zero-latency sims.
//! `cargo bench --bench mmlu`; the figures go in the issue notes.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{zero_latency_sim as sim, BIN};

fn archive() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mmlu/data.tar.xz")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Vec<f64> {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn main() {
    let ours = time(|| {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new(BIN)
            .args(["setup", "data", "--archive"])
            .arg(archive())
            .arg("--into")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    let tar = time(|| {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("tar")
            .arg("-xJf")
            .arg(archive())
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    println!(
        "extract shared MMLU (14,042 questions, 57 subjects), median of 7: lmcache-e2e setup data {:.1} ms (sha256, checks, rename included), tar -xJf {:.1} ms",
        median(ours),
        median(tar)
    );

    let (b, l) = (sim(), sim());
    for inflight in [16, 64] {
        let dir = tempfile::tempdir().unwrap();
        let suite = dir.path().join("s.toml");
        std::fs::write(
            &suite,
            format!(
                "[engines.b]\nrole = \"baseline\"\nkind = \"external\"\nurl = \"{}\"\n[engines.l]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"{}\"\n\
                 [tests.mmlu]\nkind = \"mmlu\"\ndata = \"{}\"\nnumber_of_subjects = 57\nstore_load_pause_secs = 0\nmax_inflight_requests = {inflight}\n",
                b.url,
                l.url,
                archive().display()
            ),
        )
        .unwrap();
        let ok = Command::new(BIN)
            .args(["ci", "--suite"])
            .arg(&suite)
            .arg("--results-dir")
            .arg(dir.path().join("r"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.code().is_some());
        let r: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("r/results.json")).unwrap(),
        )
        .unwrap();
        let t = &r["tests"][0];
        let q = t["metrics"]["baseline"]["questions"]["value"]
            .as_f64()
            .unwrap();
        let secs = t["duration_secs"].as_f64().unwrap();
        // Baseline once, LMCache twice (store, then load).
        println!("MMLU, all 57 subjects, {inflight} in flight: {:.0} requests in {secs:.1} s = {:.0} requests/s", q * 3.0, q * 3.0 / secs);
    }
}
