//! Helpers for tests that run the real `lmcache-e2e` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use serde_json::Value;

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmcache-e2e"));
    // Tests must not pick up a developer's overrides.
    for var in [
        "BUILD_ID",
        "RESULTS_DIR",
        "MODEL",
        "VLLM_PORT",
        "VLLM_BASELINE_PORT",
        "MAX_WAIT_SECONDS",
        "DOCUMENT_LENGTH",
        "NUM_DOCUMENTS",
        "OUTPUT_LEN",
        "MAX_LMCACHE_TTFT",
        "MAX_LMCACHE_QUERY_ROUND_TIME",
    ] {
        cmd.env_remove(var);
    }
    // Nor the CI's: a test run on GitHub Actions or Buildkite must not
    // write the job's summary, comment or annotate.
    for (var, _) in std::env::vars() {
        if var.starts_with("GITHUB_")
            || var.starts_with("BUILDKITE")
            || var.starts_with("LMCACHE_E2E_")
            || var == "CI"
        {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// Runs to completion, failing the test instead of hanging past `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lmcache-e2e");
    wait_output(child, limit)
}

/// Waits for `child`, reading its pipes as it goes (a child writing more
/// than a pipe holds would otherwise block forever).
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "lmcache-e2e did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn results(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json parses")
}

/// The record of engine `name` in a results.json.
pub fn engine_record<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["engines"]
        .as_array()
        .expect("results.json lists its engines")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no engine `{name}` in {r}"))
}

/// `ci` on the sim preset into `dir`, with extra `--set`s.
pub fn ci_sim(dir: &Path, sets: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args(["ci", "--preset", "sim", "--results-dir"])
        .arg(dir);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// `ci` on a suite file, writing to `results`.
pub fn ci_suite(
    suite: impl AsRef<std::ffi::OsStr>,
    results: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let mut cmd = bin();
    cmd.args(["ci", "--suite"])
        .arg(suite)
        .arg("--results-dir")
        .arg(results);
    cmd
}

/// `ci` on the sim preset's long document QA test only.
pub fn ldqa(dir: &Path, sets: &[&str]) -> Command {
    let mut cmd = ci_sim(dir, sets);
    cmd.args(["--only", "long_doc_qa"]);
    cmd
}

/// Small and quick: the comparison still holds with fewer documents.
pub const QUICK: &[&str] = &[
    "tests.long_doc_qa.num_documents=4",
    "tests.long_doc_qa.prewarmup_prompts=1",
];

/// Whether anything in the group can still run: a zombie (exited, not yet
/// reaped by whoever adopted it) holds nothing and counts as gone, as the
/// supervisor counts it.
pub fn group_alive(pgid: i32) -> bool {
    if matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)) {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        f.len() > 2 && f[2] == pgid.to_string() && !matches!(f[0], "Z" | "X")
    })
}

/// Process groups recorded in the run's state file.
pub fn recorded_groups(dir: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(dir.join("state.json")).expect("state.json written");
    let state: Value = serde_json::from_str(&text).unwrap();
    state["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pgid"].as_i64().unwrap() as i32)
        .collect()
}

pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn test_status(dir: &Path, test: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("results.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["tests"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == test)
        .and_then(|t| t["status"].as_str())
        .map(String::from)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `report --pr-comment` on a results directory, against the GitHub API at
/// `api` with `token`, retry waits shortened for tests.
pub fn report_comment(dir: &Path, api: &str, token: &str, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args(["report", "--pr-comment", "--results-dir"])
        .arg(dir)
        .args(extra)
        .env("GITHUB_API_URL", api)
        .env("GITHUB_TOKEN", token)
        .env("LMCACHE_E2E_GITHUB_BACKOFF_MS", "5");
    cmd
}

/// [`run`] from an async test (its fake servers keep answering meanwhile).
pub async fn run_async(mut cmd: Command, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || run(&mut cmd, limit))
        .await
        .unwrap()
}

/// `PATH` with `dir` (stand-ins for tools) searched first.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Writes an executable script (a stand-in for a tool on PATH).
pub fn executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The real lm_eval (PyPI's lm-eval[api]) that scripts/lm-eval.sh installs.
pub fn real_lm_eval() -> PathBuf {
    let path = std::env::var_os("LMCACHE_E2E_LM_EVAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lmeval-venv/bin/lm_eval")
        });
    assert!(
        path.exists(),
        "lm_eval is not installed at {}: run scripts/lm-eval.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The real MMLU data beside the repository (`../shared/data/mmlu`).
pub fn mmlu_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mmlu/data.tar.xz")
}
