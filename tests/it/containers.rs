//! Container engines on a real Docker Engine: an image built here from
//! busybox-static and this binary (the sim serves inside the containers),
//! the three-container layout of the multiprocessing suite, startup
//! failures, and a cleanup that nothing escapes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LIMIT: Duration = Duration::from_secs(120);

/// Builds (once per binary) an image holding busybox, this binary
/// (stripped) and the shared libraries it needs.
fn image() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_lmcache-e2e"));
    let meta = std::fs::metadata(bin).unwrap();
    let stamp = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let tag = format!("lmcache-e2e-test:{}-{stamp}", meta.len());
    if Command::new("docker")
        .args(["image", "inspect", &tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        return tag;
    }
    let ctx = tempdir();
    let root = ctx.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = which::which("busybox").expect("busybox-static (scripts/test.sh installs it)");
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::fs::copy(bin, root.join("bin/lmcache-e2e")).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(root.join("bin/lmcache-e2e"))
        .status();
    let ldd = String::from_utf8(Command::new("ldd").arg(bin).output().unwrap().stdout).unwrap();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, dest).unwrap();
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tag
}

/// The multiprocessing layout: an LMCache server (ready when its port
/// accepts), vLLM with LMCache and baseline vLLM, all containers. The
/// baseline sits on the bridge network behind a published port.
fn suite(
    dir: &Path,
    lmcache_entrypoint: &str,
    lmcache_args: &str,
    documents: usize,
) -> std::path::PathBuf {
    let image = image();
    let path = dir.join("mp.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[run]
name = "mp"
grace_period_secs = 2
readiness_timeout_secs = 30

[engines.lmcache-server]
role = "service"
kind = "container"
readiness = "tcp"
args = ["sim", "serve", "--port", "{{port}}"]
[engines.lmcache-server.container]
image = "{image}"
entrypoint = "/bin/lmcache-e2e"
ipc_host = true

[engines.vllm-lmcache]
role = "lmcache"
kind = "container"
{lmcache_args}
[engines.vllm-lmcache.container]
image = "{image}"
entrypoint = "{lmcache_entrypoint}"
ipc_host = true

[engines.vllm-baseline]
role = "baseline"
kind = "container"
args = ["sim", "serve", "--host", "0.0.0.0", "--port", "8000"]
[engines.vllm-baseline.container]
image = "{image}"
entrypoint = "/bin/lmcache-e2e"
network = "bridge"
publish = ["127.0.0.1:{{port}}:8000"]

[tests.long_doc_qa]
kind = "long_doc_qa"
num_documents = {documents}
document_length = 600
output_len = 4
prewarmup_prompts = 0
record_only = true
"#
        ),
    )
    .unwrap();
    path
}

const SERVING: &str = r#"args = ["sim", "serve", "--port", "{port}", "--cache-tokens", "100000"]"#;

fn containers_of(run_id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=lmcache-e2e.run={run_id}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn run_id(results: &Path) -> String {
    crate::common::results(results)["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn three_containers_launch_serve_and_are_removed() {
    let dir = tempdir();
    let results = dir.path().join("r");
    let out = run(
        &mut ci_suite(suite(dir.path(), "/bin/lmcache-e2e", SERVING, 3), &results),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = crate::common::results(&results);
    assert_eq!(r["engines"].as_array().unwrap().len(), 3);
    assert_eq!(
        r["tests"][0]["metrics"]["baseline"]["failed_requests"]["value"], 0.0,
        "through the published port"
    );
    assert_eq!(
        r["tests"][0]["metrics"]["lmcache"]["requests"]["value"],
        9.0
    );
    assert!(
        containers_of(&run_id(&results)).is_empty(),
        "every container removed"
    );
    for engine in ["lmcache-server", "vllm-lmcache", "vllm-baseline"] {
        let log = std::fs::read_to_string(results.join(format!("logs/{engine}.log"))).unwrap();
        assert!(log.contains("sim: serving"), "{engine}: {log}");
    }
    let state = std::fs::read_to_string(results.join("state.json")).unwrap();
    assert_eq!(
        state.matches("\"type\": \"container\"").count(),
        3,
        "{state}"
    );
}

#[test]
fn a_container_that_exits_during_startup_fails_readiness_with_exit_4() {
    let dir = tempdir();
    let results = dir.path().join("r");
    let crash = r#"args = ["sh", "-c", "echo loading Qwen/Qwen3-14B; echo 'torch.OutOfMemoryError: CUDA out of memory' >&2; exit 3"]"#;
    let path = suite(dir.path(), "/bin/busybox", crash, 3);
    let out = run(&mut ci_suite(&path, &results), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(
            "engine `vllm-lmcache` exited (container exited, exit code 3) before it was ready"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("CUDA out of memory"),
        "the log tail: {stderr}"
    );
    assert!(containers_of(&run_id(&results)).is_empty());
}

#[test]
fn sigterm_mid_run_removes_every_container_and_keeps_the_logs() {
    let dir = tempdir();
    let results = dir.path().join("r");
    let child = ci_suite(
        suite(dir.path(), "/bin/lmcache-e2e", SERVING, 300),
        &results,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_until(Duration::from_secs(60), "the test to start", || {
        test_status(&results, "long_doc_qa").as_deref() == Some("running")
    });
    let id = run_id(&results);
    assert_eq!(containers_of(&id).len(), 3);
    let sent = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    let took = sent.elapsed();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out).1);
    eprintln!(
        "figure: SIGTERM to the last of 3 containers removed: {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert!(containers_of(&id).is_empty(), "no container escapes");
    for engine in ["lmcache-server", "vllm-lmcache", "vllm-baseline"] {
        assert!(
            std::fs::read_to_string(results.join(format!("logs/{engine}.log")))
                .unwrap()
                .contains("sim: serving")
        );
    }
}

#[test]
fn after_sigkill_cleanup_by_run_id_removes_everything() {
    let dir = tempdir();
    let results = dir.path().join("r");
    let mut child = ci_suite(
        suite(dir.path(), "/bin/lmcache-e2e", SERVING, 300),
        &results,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_until(Duration::from_secs(60), "the test to start", || {
        test_status(&results, "long_doc_qa").as_deref() == Some("running")
    });
    let id = run_id(&results);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(containers_of(&id).len(), 3, "SIGKILL leaves them behind");
    // The state file is lost too: labels alone must find them.
    std::fs::remove_file(results.join("state.json")).unwrap();
    let out = run(
        bin().args(["cleanup", "--run-id", &id, "--grace-period-secs", "1"]),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout.matches("removed (found by label)").count(),
        3,
        "{stdout}"
    );
    assert!(containers_of(&id).is_empty());
    // The log followers (host processes) died with the runner's group or end
    // with their containers; the run's logs are on disk.
    assert!(results.join("logs/vllm-baseline.log").exists());
}

fn build_suite(dir: &Path, dockerfile: &str, tag: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("docker")).unwrap();
    std::fs::write(ctx.join("marker.txt"), "built here\n").unwrap();
    std::fs::write(ctx.join("docker/Dockerfile"), dockerfile).unwrap();
    let path = dir.join("build.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[run]
grace_period_secs = 1
[engines.lmcache-server]
role = "service"
kind = "container"
readiness = "tcp"
args = ["sim", "serve", "--port", "{{port}}"]
[engines.lmcache-server.container]
image = "{tag}"
entrypoint = "/bin/lmcache-e2e"
[engines.lmcache-server.container.build]
context = "ctx"
file = "docker/Dockerfile"
target = "image-build"
args = {{ GREETING = "hello" }}
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_image_is_built_first_and_a_failed_build_exits_3_with_its_tail() {
    let base = image();
    let dir = tempdir();
    let tag = format!("lmcache-e2e-test-built:{}", std::process::id());
    let ok = format!(
        "FROM {base} AS image-build\nARG GREETING\nCOPY marker.txt /marker-$GREETING.txt\n"
    );
    let results = dir.path().join("r");
    let out = run(
        &mut ci_suite(build_suite(dir.path(), &ok, &tag), &results),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("built image {tag}")), "{stderr}");
    let listing = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/busybox",
            &tag,
            "ls",
            "/",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("marker-hello.txt"),
        "build args and target applied"
    );
    assert!(containers_of(&run_id(&results)).is_empty());
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();

    let dir = tempdir();
    let bad = format!("FROM {base} AS image-build\nCOPY no-such-file.txt /x\n");
    let results = dir.path().join("r");
    let out = run(
        &mut ci_suite(build_suite(dir.path(), &bad, &tag), &results),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("failed to build image {tag}"))
            && stderr.contains("no-such-file.txt"),
        "{stderr}"
    );
    assert!(results
        .join(format!("logs/build-{}.log", tag.replace(':', "_")))
        .exists());
}

#[test]
fn gpu_choice_feeds_docker_run_and_waits_for_busy_gpus() {
    let dir = tempdir();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/nvidia-smi");
    let smi = |fixture: &str| {
        executable(
            &bin_dir.join("nvidia-smi"),
            &format!("#!/bin/sh\ncat '{}'\n", fixtures.join(fixture).display()),
        );
        format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    };
    let suite = dir.path().join("gpu.toml");
    std::fs::write(
        &suite,
        format!(
            "[run.gpus]\ncount = 1\ntimeout_secs = 0.3\npoll_secs = 0.1\n[engines.server]\nrole = \"service\"\nkind = \"container\"\nreadiness = \"tcp\"\n\
             args = [\"sim\", \"serve\", \"--port\", \"{{port}}\"]\n[engines.server.container]\nimage = \"{}\"\nentrypoint = \"/bin/lmcache-e2e\"\ngpus = \"auto:0\"\n",
            image()
        ),
    )
    .unwrap();
    // An idle GPU is chosen, and asked of Docker; this engine has no NVIDIA
    // runtime, which is the error that proves the flags got there.
    let out = run(
        ci_suite(&suite, dir.path().join("r1")).env("PATH", smi("idle-query-gpu.csv")),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert!(stderr.contains("chose GPU(s) [0]"), "{stderr}");
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("failed to start the container of engine `server`")
            && stderr.contains("nvidia"),
        "{stderr}"
    );

    let out = run(
        ci_suite(&suite, dir.path().join("r2")).env("PATH", smi("busy-query-gpu.csv")),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no 1 GPU(s) with at least 70000 MiB free"),
        "{stderr}"
    );
}

#[test]
fn cleanup_stale_removes_only_containers_whose_owner_is_gone() {
    let image = image();
    // A PID that existed and is gone: a finished child of ours.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let tag = format!("stale-{}", std::process::id());
    let start = |name: &str, owner: u32| {
        let out = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                name,
                "--label",
                &format!("lmcache-e2e.run={tag}"),
                "--label",
                &format!("lmcache-e2e.owner-pid={owner}"),
            ])
            .args(["--entrypoint", "/bin/busybox", &image, "sleep", "300"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (orphan, owned) = (format!("{tag}-orphan"), format!("{tag}-owned"));
    start(&orphan, dead_pid);
    start(&owned, std::process::id());
    let out = run(
        bin().args(["cleanup", "--stale", "--grace-period-secs", "0"]),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&orphan) && !stdout.contains(&owned),
        "{stdout}"
    );
    let left = containers_of(&tag);
    assert_eq!(left.len(), 1, "the live owner's container stays");
    let _ = Command::new("docker").args(["rm", "-f", &owned]).output();
}
