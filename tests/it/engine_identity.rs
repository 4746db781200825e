//! The engine measured is the one launched: a server already on an
//! engine's port stops the run (exit 4, naming the port and what answers
//! there) instead of being measured in the engine's place.

use std::time::Duration;

use crate::common::{bin, ci_sim, free_port, run, tempdir, text, wait_until};

#[test]
fn a_stale_server_on_an_engines_port_is_refused_with_exit_4() {
    let port = free_port();
    let mut stale = sim_on(port, "stale/model");
    let dir = tempdir();
    let out = run(
        &mut ci_sim(dir.path(), &[&format!("engines.baseline.port={port}")]),
        Duration::from_secs(120),
    );
    let _ = stale.kill();
    let _ = stale.wait();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} is taken by")),
        "{stderr}"
    );
    assert!(stderr.contains("serving `stale/model`"), "{stderr}");
    let r = crate::common::results(dir.path());
    assert_eq!(r["status"], "error", "{r}");
}

/// A suite of long document QA without checks, the LMCache engine failing
/// every request unless `fail` is false.
fn unchecked_suite(dir: &std::path::Path, allow: bool) -> std::path::PathBuf {
    let path = dir.join("suite.toml");
    std::fs::write(
        &path,
        format!(
            r#"[engines.baseline]
role = "baseline"
kind = "sim"
[engines.lmcache]
role = "lmcache"
kind = "sim"
sim = {{ external_cache_tokens = 100000, error_rate = 1.0 }}
[tests.long_doc_qa]
kind = "long_doc_qa"
document_length = 200
num_documents = 2
output_len = 4
prewarmup_prompts = 1
allow_failed_requests = {allow}
record_only = true
"#
        ),
    )
    .unwrap();
    path
}

/// `ci` on the unchecked suite into `dir/name`: its exit code, and the
/// results directory.
fn ci_unchecked(
    dir: &std::path::Path,
    name: &str,
    allow: bool,
) -> (Option<i32>, std::path::PathBuf) {
    let res = dir.join(name);
    let out = run(
        &mut crate::common::ci_suite(unchecked_suite(dir, allow), &res),
        Duration::from_secs(120),
    );
    let (stdout, stderr) = text(&out);
    eprintln!("{stdout}{stderr}");
    (out.status.code(), res)
}

#[test]
fn a_test_whose_requests_all_fail_is_failed_even_without_checks() {
    let dir = tempdir();
    let (code, res) = ci_unchecked(dir.path(), "r", false);
    assert_eq!(code, Some(1));
    let r = crate::common::results(&res);
    let t = &r["tests"][0];
    assert_eq!(t["status"], "failed", "{t}");
    let check = t["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lmcache_failed_requests")
        .unwrap_or_else(|| panic!("an implicit check: {t}"));
    assert_eq!(check["verdict"], "fail", "{check}");
    // The baseline's requests all succeeded: its implicit check holds.
    assert!(
        t["checks"].to_string().contains("baseline_failed_requests"),
        "{t}"
    );
    // A suite that says failures are expected gets its way.
    assert_eq!(ci_unchecked(dir.path(), "allowed", true).0, Some(0));
}

fn sim_on(port: u16, model: &str) -> std::process::Child {
    let child = bin()
        .args([
            "sim",
            "serve",
            "--port",
            &port.to_string(),
            "--served-model-name",
            model,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the sim listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

/// A test of 24 requests one at a time, long enough to act on mid-run.
const SLOW_TEST: &str = r#"kind = "long_doc_qa"
document_length = 2000
num_documents = 12
output_len = 16
prewarmup_prompts = 0
max_inflight_requests = 1
record_only = true
"#;

/// A suite of two external engines at these ports, then `rest` (tables
/// after the engines: `[run]` is fine there).
fn external_suite(
    dir: &std::path::Path,
    (base_port, lm_port): (u16, u16),
    rest: &str,
) -> std::path::PathBuf {
    let path = dir.join("suite.toml");
    std::fs::write(
        &path,
        format!(
            "{rest}\n[engines.baseline]\nrole = \"baseline\"\nkind = \"external\"\nurl = \"http://127.0.0.1:{base_port}\"\n\
             [engines.lmcache]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"http://127.0.0.1:{lm_port}\"\n"
        ),
    )
    .unwrap();
    path
}

/// `ci` on `suite` into `res`, returned once its test `test` runs.
fn running(suite: &std::path::Path, res: &std::path::Path, test: &str) -> std::process::Child {
    let child = crate::common::ci_suite(suite, res)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "the test to start", || {
        crate::common::test_status(res, test).as_deref() == Some("running")
    });
    child
}

/// `ci` against two external sims, the LMCache one replaced mid-run by a
/// sim serving `model`: its output.
fn replaced_mid_run(model: &str) -> std::process::Output {
    let (base_port, lm_port) = (free_port(), free_port());
    let mut base = sim_on(base_port, "m");
    let mut lm = sim_on(lm_port, "m");
    let dir = tempdir();
    let suite = external_suite(
        dir.path(),
        (base_port, lm_port),
        &format!(
            r#"[tests.first]
kind = "long_doc_qa"
document_length = 100
num_documents = 2
output_len = 2
prewarmup_prompts = 0
record_only = true
[tests.second]
{SLOW_TEST}"#
        ),
    );
    let child = running(&suite, &dir.path().join("r"), "second");
    // Another server takes the LMCache engine's place mid-run.
    let _ = lm.kill();
    let _ = lm.wait();
    // A second apart: a start time is told in seconds.
    std::thread::sleep(Duration::from_millis(1100));
    let mut other = sim_on(lm_port, model);
    let out = crate::common::wait_output(child, Duration::from_secs(120));
    for c in [&mut base, &mut other] {
        let _ = c.kill();
        let _ = c.wait();
    }
    out
}

#[test]
fn an_external_server_replaced_under_the_run_stops_it_with_exit_4() {
    let out = replaced_mid_run("another/model");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "engine `lmcache` is no longer the server the run found ready: it was version"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("another/model") || stderr.contains("nothing that answers"),
        "{stderr}"
    );
}

/// The same server restarted (same version, same model): only its start
/// time tells, and it does.
#[test]
fn an_external_server_restarted_under_the_run_stops_it_with_exit_4() {
    let out = replaced_mid_run("m");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("engine `lmcache` is no longer the server the run found ready"),
        "{stderr}"
    );
    assert!(stderr.contains("its process started"), "{stderr}");
}

/// A server that stops answering mid-test (SIGSTOP: the kernel still
/// accepts its connections and nothing answers, as with a wedged engine)
/// costs one timeout and a probe, not one timeout per remaining request:
/// the rest fail at once, saying why, and the run ends as an engine
/// failure.
#[test]
fn the_requests_after_an_engine_is_seen_dead_fail_at_once() {
    let (base_port, lm_port) = (free_port(), free_port());
    let mut base = sim_on(base_port, "m");
    let mut lm = sim_on(lm_port, "m");
    let dir = tempdir();
    let suite = external_suite(
        dir.path(),
        (base_port, lm_port),
        &format!("[run]\nrequest_timeout_secs = 3\n[tests.long_doc_qa]\n{SLOW_TEST}"),
    );
    let res = dir.path().join("r");
    let child = running(&suite, &res, "long_doc_qa");
    // The baseline goes first: stopped while its first round is under way.
    std::thread::sleep(Duration::from_millis(500));
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &base.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    // 24 requests at 3 s each would take 72 s; seen dead after one timeout
    // and a probe (5 s), the rest take none.
    let out = crate::common::wait_output(child, Duration::from_secs(30));
    for c in [&mut base, &mut lm] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("engine `baseline` stopped answering"),
        "{stderr}"
    );
    let csv = walkdir(&res)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("baseline_requests.csv"))
        .unwrap_or_else(|| panic!("the baseline's requests are kept: {stdout}{stderr}"));
    let rows = std::fs::read_to_string(&csv).unwrap();
    let refused = rows
        .lines()
        .filter(|l| l.contains("taken for dead"))
        .count();
    assert!(refused >= 10, "{rows}");
    assert!(rows.contains("reached nothing either"), "{rows}");
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A launcher that puts the server in the background and returns (`vllm
/// serve … &`): the engine the run launched is gone, so it is not ready,
/// whatever answers on its port; the error says what answers there.
#[test]
fn a_launcher_that_backgrounds_its_server_is_an_engine_failure() {
    let port = free_port();
    let dir = tempdir();
    let sim = std::path::Path::new(env!("CARGO_BIN_EXE_lmcache-e2e"));
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            r#"[engines.baseline]
role = "baseline"
kind = "process"
command = "bash"
port = {port}
# Never ready by its own answer (no such route), so the launcher's exit
# decides: it returns once the detached server listens.
health_path = "/never"
args = ["-c", "setsid {sim} sim serve --port {port} >/dev/null 2>&1 & for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && exit 0; sleep 0.1; done"]
[engines.lmcache]
role = "lmcache"
kind = "sim"
[tests.long_doc_qa]
kind = "long_doc_qa"
num_documents = 2
record_only = true
"#,
            sim = sim.display()
        ),
    )
    .unwrap();
    let out = run(
        &mut crate::common::ci_suite(&suite, dir.path().join("r")),
        Duration::from_secs(60),
    );
    // The detached server is nobody's child: stop it by its port's owner.
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("sim serve --port {port}")])
        .status();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("engine `baseline` exited (exit status: 0) before it was ready"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "yet 127.0.0.1:{port} answers, from a process the run did not launch"
        )),
        "{stderr}"
    );
}
