//! Signals stop every engine: SIGTERM and SIGINT mid-run, a second signal,
//! and `cleanup` after the runner itself was killed.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A run long enough to be interrupted while the workload is going.
const LONG: &[&str] = &[
    "tests.long_doc_qa.num_documents=60",
    "tests.long_doc_qa.prewarmup_prompts=0",
];

fn interrupt_mid_run(signal: Signal, expected: i32) {
    let dir = tempdir();
    let child = ci_sim(dir.path(), LONG)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    wait_until(Duration::from_secs(30), "the test to start", || {
        test_status(dir.path(), "long_doc_qa").as_deref() == Some("running")
    });
    std::thread::sleep(Duration::from_millis(300));
    let groups = recorded_groups(dir.path());
    assert_eq!(groups.len(), 2);
    assert!(groups.iter().all(|g| group_alive(*g)));

    let sent = Instant::now();
    kill(pid, signal).unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    let took = sent.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(expected),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(7),
        "stop took {took:?}, over GitHub's cancel window"
    );
    for g in groups {
        assert!(!group_alive(g), "process group {g} outlived the run");
    }
    let r = results(dir.path());
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["signal"], format!("{signal:?}").as_str());
    assert_eq!(r["tests"][0]["status"], "interrupted");
    // What was measured before the signal is kept.
    assert!(
        r["tests"][0]["metrics"]["baseline"].is_object()
            || dir.path().join("logs/baseline.log").exists()
    );
    assert!(
        r["engines"][0]["log_tail"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "log tails kept"
    );
    for role in ["baseline", "lmcache"] {
        let log = std::fs::read_to_string(dir.path().join(format!("logs/{role}.log"))).unwrap();
        assert!(log.contains("sim: serving"), "{log}");
    }
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("interrupted"), "{summary}");
    // The reports go out after an interruption too.
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(junit.contains("type=\"interrupted\""), "{junit}");
}

#[test]
fn sigterm_mid_run_stops_everything_and_exits_143() {
    interrupt_mid_run(Signal::SIGTERM, 143);
}

#[test]
fn sigint_mid_run_stops_everything_and_exits_130() {
    interrupt_mid_run(Signal::SIGINT, 130);
}

/// A suite whose baseline is a process engine that ignores the signals
/// `trap` names, like a wedged vLLM, with `grace` seconds before SIGKILL.
fn stubborn_suite(dir: &std::path::Path, trap: &str, grace: u32) -> std::path::PathBuf {
    let suite = dir.join("suite.toml");
    let script = dir.join("stubborn.sh");
    executable(
        &script,
        &format!(
            "#!/bin/sh\ntrap '' {trap}\n{} sim serve --port \"$1\" &\nwhile true; do sleep 1; done\n",
            env!("CARGO_BIN_EXE_lmcache-e2e")
        ),
    );
    std::fs::write(
        &suite,
        format!(
            r#"
[run]
grace_period_secs = {grace}
[engines.baseline]
role = "baseline"
kind = "process"
command = "{}"
args = ["{{port}}"]
[engines.lmcache]
role = "lmcache"
kind = "sim"
[tests.long_doc_qa]
kind = "long_doc_qa"
num_documents = 200
document_length = 500
prewarmup_prompts = 0
record_only = true
"#,
            script.display()
        ),
    )
    .unwrap();
    suite
}

#[test]
fn engines_ignoring_sigterm_are_killed_after_the_grace_period() {
    let dir = tempdir();
    let suite = stubborn_suite(dir.path(), "TERM", 1);
    let results_dir = dir.path().join("results");
    let child = ci_suite(&suite, &results_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the test to start", || {
        test_status(&results_dir, "long_doc_qa").as_deref() == Some("running")
    });
    let groups = recorded_groups(&results_dir);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("killed after the grace period: baseline"),
        "{stderr}"
    );
    for g in groups {
        assert!(!group_alive(g), "process group {g} outlived the run");
    }
}

#[test]
fn a_second_signal_kills_at_once() {
    let dir = tempdir();
    let suite = stubborn_suite(dir.path(), "TERM INT", 60);
    let child = ci_suite(&suite, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the test to start", || {
        test_status(dir.path(), "long_doc_qa").as_deref() == Some("running")
    });
    let groups = recorded_groups(dir.path());
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = Instant::now();
    kill(pid, Signal::SIGINT).unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "the second signal did not wait out the 60 s grace"
    );
    assert!(
        stderr.contains("received again: killing engines"),
        "{stderr}"
    );
    for g in groups {
        assert!(!group_alive(g), "process group {g} outlived the run");
    }
}

#[test]
fn cleanup_stops_engines_left_by_a_killed_runner() {
    let dir = tempdir();
    let mut child = ci_sim(dir.path(), LONG)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the test to start", || {
        test_status(dir.path(), "long_doc_qa").as_deref() == Some("running")
    });
    // SIGKILL cannot be handled: the engines are left behind on purpose.
    child.kill().unwrap();
    child.wait().unwrap();
    let groups = recorded_groups(dir.path());
    assert!(
        groups.iter().all(|g| group_alive(*g)),
        "engines survive a SIGKILLed runner"
    );

    let out = run(
        bin().args(["cleanup", "--results-dir"]).arg(dir.path()),
        Duration::from_secs(30),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("baseline: process group") && stdout.contains("stopped"),
        "{stdout}"
    );
    for g in &groups {
        assert!(!group_alive(*g), "process group {g} survived cleanup");
    }
    // The run it swept reads as interrupted, not as running forever, and
    // its state file says its engines were stopped.
    let r = results(dir.path());
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("`lmcache-e2e cleanup` stopped its engines"),
        "{r}"
    );
    assert_eq!(
        test_status(dir.path(), "long_doc_qa").as_deref(),
        Some("interrupted")
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
            .unwrap();
    assert!(
        state["engines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["stopped"] == true),
        "{state}"
    );
    let report = run(
        bin().args(["report", "--results-dir"]).arg(dir.path()),
        Duration::from_secs(30),
    );
    assert!(!text(&report).0.contains("running"), "{}", text(&report).0);
    // A second cleanup finds nothing left to do.
    let out = run(
        bin().args(["cleanup", "--results-dir"]).arg(dir.path()),
        Duration::from_secs(30),
    );
    assert!(text(&out).0.contains("already stopped"));
}

#[test]
fn cleanup_says_what_it_lacks_with_its_own_exit_codes() {
    let empty = tempdir();
    let out = run(
        bin().args(["cleanup", "--results-dir"]).arg(empty.path()),
        Duration::from_secs(30),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it has no state.json"), "{stderr}");
    assert!(!stderr.contains("failed to write"), "{stderr}");
    let out = run(
        bin()
            .args(["cleanup", "--stale"])
            .env("PATH", "/nonexistent"),
        Duration::from_secs(30),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("failed to find `docker` on PATH"),
        "{stderr}"
    );
}
