//! How soon the binary answers: from spawning it to its first line of
//! output, for `--version` and for `ci --preset sim` (the README's first
//! command; its first line is printed before any engine starts). Runs the
//! bench-profile binary (`cargo bench --bench startup`); the figures go in
//! the issue notes. The target is well under 100 ms.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

const RUNS: usize = 50;

/// Spawn to first line (stdout or stderr, whichever comes first), then the
/// run is stopped with SIGINT as a person would.
fn first_line(args: &[&str]) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmcache-e2e");
    let mut line = String::new();
    let mut err = BufReader::new(child.stderr.take().expect("stderr piped"));
    err.read_line(&mut line).expect("read the first line");
    let took = started.elapsed();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    // Drain so the child never blocks on a full pipe while stopping.
    let _ = std::io::copy(&mut err, &mut std::io::sink());
    let _ = child.wait();
    took
}

fn report(name: &str, mut xs: Vec<Duration>) {
    xs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {RUNS} runs",
        ms(xs[xs.len() / 2]),
        ms(xs[xs.len() * 95 / 100]),
        ms(xs[xs.len() - 1])
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // `--version` prints to stdout: time it on stdout instead.
    let version: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            let out = Command::new(BIN).arg("--version").output().unwrap();
            assert!(out.status.success());
            started.elapsed()
        })
        .collect();
    report("lmcache-e2e --version (to exit)", version);
    let ci: Vec<Duration> = (0..RUNS)
        .map(|i| {
            let results = dir.path().join(format!("r{i}"));
            first_line(&[
                "ci",
                "--preset",
                "sim",
                "--results-dir",
                results.to_str().unwrap(),
            ])
        })
        .collect();
    report("lmcache-e2e ci --preset sim (to its first line)", ci);
}
