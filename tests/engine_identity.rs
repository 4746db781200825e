//! The engine measured is the one launched: a server already on an
//! engine's port stops the run (exit 4, naming the port and what answers
//! there) instead of being measured in the engine's place.

mod common;

use std::time::Duration;

use common::{bin, ci_sim, free_port, run, tempdir, text, wait_until};

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
    let r = common::results(dir.path());
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
        &mut common::ci_suite(unchecked_suite(dir, allow), &res),
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
    let r = common::results(&res);
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

#[test]
fn an_external_server_replaced_under_the_run_stops_it_with_exit_4() {
    let (base_port, lm_port) = (free_port(), free_port());
    let mut base = sim_on(base_port, "m");
    let mut lm = sim_on(lm_port, "m");
    let dir = tempdir();
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            r#"[engines.baseline]
role = "baseline"
kind = "external"
url = "http://127.0.0.1:{base_port}"
[engines.lmcache]
role = "lmcache"
kind = "external"
url = "http://127.0.0.1:{lm_port}"
[tests.first]
kind = "long_doc_qa"
document_length = 100
num_documents = 2
output_len = 2
prewarmup_prompts = 0
[tests.second]
kind = "long_doc_qa"
document_length = 2000
num_documents = 12
output_len = 16
prewarmup_prompts = 0
max_inflight_requests = 1
"#
        ),
    )
    .unwrap();
    let res = dir.path().join("r");
    let child = common::ci_suite(&suite, &res)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "the second test to start", || {
        common::test_status(&res, "second").as_deref() == Some("running")
    });
    // Another server takes the LMCache engine's place mid-run.
    let _ = lm.kill();
    let _ = lm.wait();
    let mut other = sim_on(lm_port, "another/model");
    let out = common::wait_output(child, Duration::from_secs(120));
    for c in [&mut base, &mut other] {
        let _ = c.kill();
        let _ = c.wait();
    }
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
