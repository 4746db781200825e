//! `lmcache-e2e setup` with local bare git repositories standing in for
//! LMCache and vLLM (tiny Python packages), a real venv and pip.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(300);

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A package `name` whose module reports `version`, committed and pushed to
/// a bare repository; returns the bare repository's URL.
fn package_repo(root: &Path, name: &str, version: &str) -> String {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(work.join(name)).unwrap();
    std::fs::write(
        work.join("pyproject.toml"),
        format!("[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"{name}\"\nversion = \"0.1.0\"\n[tool.setuptools]\npackages = [\"{name}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        work.join(name).join("__init__.py"),
        format!("VERSION = \"{version}\"\n"),
    )
    .unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let bare = root.join(format!("{name}.git"));
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    format!("file://{}", bare.display())
}

fn suite(
    dir: &Path,
    lmcache: &str,
    vllm: &str,
    lmcache_ref: &str,
    python: &str,
) -> std::path::PathBuf {
    suite_with(dir, lmcache, vllm, lmcache_ref, python, "pip")
}

fn suite_with(
    dir: &Path,
    lmcache: &str,
    vllm: &str,
    lmcache_ref: &str,
    python: &str,
    installer: &str,
) -> std::path::PathBuf {
    let path = dir.join("suite.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[engines.x]
role = "lmcache"
kind = "sim"
[setup]
venv = "venv"
python = "{python}"
installer = "{installer}"
install_args = ["--no-build-isolation"]
packages = ["wheel"]
env = {{ VLLM_USE_PRECOMPILED = "1" }}
[setup.repos.lmcache]
url = "{lmcache}"
ref = "{lmcache_ref}"
[setup.repos.vllm]
url = "{vllm}"
ref = "main"
"#
        ),
    )
    .unwrap();
    path
}

fn setup(suite: &Path) -> (Option<i32>, String, String) {
    let out = run(bin().args(["setup", "--suite"]).arg(suite), LIMIT);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

fn import(dir: &Path, module: &str) -> String {
    let out = Command::new(dir.join("venv/bin/python"))
        .args([
            "-c",
            &format!("import {module}; print({module}.VERSION, {module}.__file__)"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn clone_install_warm_path_and_upstream_updates_with_pip() {
    let dir = tempdir();
    let d = dir.path();
    let (lm, vl) = (
        package_repo(d, "fake_lmcache", "1"),
        package_repo(d, "fake_vllm", "1"),
    );
    let s = suite(d, &lm, &vl, "main", "python3");

    let (code, stdout, stderr) = setup(&s);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("setup: venv venv: created with python -m venv"),
        "{stderr}"
    );
    assert!(
        stderr.contains("setup: install lmcache (editable): installed commit"),
        "{stderr}"
    );
    let lm_import = import(d, "fake_lmcache");
    assert!(
        lm_import.starts_with("1 ") && lm_import.contains("repositories/lmcache"),
        "editable, from the checkout: {lm_import}"
    );
    assert!(import(d, "fake_vllm").starts_with("1 "));
    assert!(stdout.contains("6 steps, 6 changed"), "{stdout}");

    // Nothing changed: nothing is reinstalled.
    let (code, stdout, stderr) = setup(&s);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("6 steps, 0 changed"), "{stdout}\n{stderr}");
    assert_eq!(stderr.matches(": up to date").count(), 4, "{stderr}");

    // A new commit upstream: only that package is fetched and reinstalled.
    let work = d.join("fake_lmcache-work");
    std::fs::write(work.join("fake_lmcache/__init__.py"), "VERSION = \"2\"\n").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let (code, stdout, stderr) = setup(&s);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("6 steps, 2 changed"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("install lmcache (editable): installed")
            && stderr.contains("install vllm (editable): up to date"),
        "{stderr}"
    );
    assert!(import(d, "fake_lmcache").starts_with("2 "));
}

#[test]
fn a_missing_ref_a_broken_package_and_a_missing_python_exit_3() {
    let dir = tempdir();
    let d = dir.path();
    let (lm, vl) = (
        package_repo(d, "fake_lmcache", "1"),
        package_repo(d, "fake_vllm", "1"),
    );

    let (code, _, stderr) = setup(&suite(d, &lm, &vl, "no-such-branch", "python3"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("failed to fetch `no-such-branch`")
            && stderr.contains("no such branch, tag or commit"),
        "{stderr}"
    );

    let broken = d.join("fake_vllm-work");
    std::fs::write(broken.join("pyproject.toml"), "[build-system]\nrequires = []\nbuild-backend = \"no_such_backend\"\n[project]\nname = \"fake_vllm\"\nversion = \"0.2.0\"\n").unwrap();
    git(&broken, &["commit", "-q", "-am", "break it"]);
    git(&broken, &["push", "-q", "origin", "HEAD:main"]);
    let (code, _, stderr) = setup(&suite(d, &lm, &vl, "main", "python3"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("pip install") && stderr.contains("last lines of its output"),
        "{stderr}"
    );

    let other = tempdir();
    let (code, _, stderr) = setup(&suite(other.path(), &lm, &vl, "main", "python9.99"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("failed to find `python9.99` on PATH"),
        "{stderr}"
    );
}

#[test]
fn the_uv_path_creates_installs_and_then_does_nothing() {
    assert!(
        which::which("uv").is_ok(),
        "uv is needed (scripts/test.sh installs it: pip install uv)"
    );
    let dir = tempdir();
    let d = dir.path();
    let (lm, vl) = (
        package_repo(d, "fake_lmcache", "1"),
        package_repo(d, "fake_vllm", "1"),
    );
    let s = suite_with(d, &lm, &vl, "main", "python3", "uv");
    let (code, stdout, stderr) = setup(&s);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("created with uv") && stderr.contains("install vllm (editable): installed"),
        "{stderr}"
    );
    assert!(import(d, "fake_lmcache").contains("repositories/lmcache"));
    assert!(stdout.contains("6 steps, 6 changed"), "{stdout}");
    let (code, stdout, stderr) = setup(&s);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("6 steps, 0 changed"), "{stdout}\n{stderr}");
}

#[test]
fn the_prerequisites_table_names_what_is_missing_and_how_to_fix_it() {
    let out = run(
        bin().args(["setup", "--check", "--preset", "dynamo"]),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The preset's launcher discovers by file on Dynamo 1.4 and later.
    assert!(
        stdout.contains("| nats | absent (optional) | start nats-server (Dynamo needs it on 127.0.0.1:4222) for Dynamo before 1.4; 1.4 and later discover by file here"),
        "{stdout}"
    );
    assert!(stdout.contains("| python | ok | Python 3"), "{stdout}");
    // A Dynamo suite that does not needs them.
    let dir = tempdir();
    let suite = dir.path().join("dynamo-old.toml");
    std::fs::write(
        &suite,
        "[engines.lmcache]\nrole = \"lmcache\"\nkind = \"process\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"exec python3 -m dynamo.vllm --model m --connector lmcache\"]\n\
         [tests.t]\nkind = \"determinism\"\nrecord_only = true\n",
    )
    .unwrap();
    let out = run(
        bin().args(["setup", "--check", "--suite"]).arg(&suite),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains("| nats | MISSING | start nats-server"),
        "{stdout}"
    );
    assert!(
        stderr.contains("missing prerequisites: nats, etcd"),
        "{stderr}"
    );

    // With something listening where nats and etcd would, they are there.
    let nats = std::net::TcpListener::bind("127.0.0.1:4222");
    let etcd = std::net::TcpListener::bind("127.0.0.1:2379");
    if nats.is_ok() && etcd.is_ok() {
        let data = format!(
            "tests.mmlu.data=\"{}/../shared/data/mmlu/data.tar.xz\"",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = run(
            bin().args(["setup", "--check", "--preset", "dynamo", "--set", &data]),
            LIMIT,
        );
        let (stdout, _) = text(&out);
        assert!(
            stdout.contains("| nats | ok | 127.0.0.1:4222 accepts"),
            "{stdout}"
        );
        assert_eq!(out.status.code(), Some(0), "{stdout}");
    }

    // The mp preset asks for GPUs: without nvidia-smi that is missing.
    let out = run(
        bin()
            .args(["setup", "--check", "--preset", "mp"])
            .env("PATH", "/usr/bin:/bin:/usr/local/bin"),
        LIMIT,
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("| nvidia-smi | MISSING |"), "{stdout}");
    assert_eq!(out.status.code(), Some(3));
}

/// What the engines run and the tests read, as `ci` will ask for them:
/// the correctness preset without vLLM or its data is not ready.
#[test]
fn the_prerequisites_include_the_engines_programs_and_the_tests_files() {
    let out = run(
        bin()
            .args(["setup", "--check", "--preset", "correctness"])
            .env("PATH", "/usr/bin:/bin"),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.contains(
            "| program `vllm` (engines.baseline.command) | MISSING | `vllm` is not on PATH"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("| file .buildkite/correctness/data.tar.xz (tests.mmlu.data) | MISSING |"),
        "{stdout}"
    );
}

#[test]
fn the_jobs_checkout_a_pinned_commit_and_mmlu_data_as_steps() {
    let dir = tempdir();
    let d = dir.path();
    let (_, vl) = (
        package_repo(d, "fake_lmcache", "1"),
        package_repo(d, "fake_vllm", "1"),
    );
    // vLLM pinned to its first commit, though main has moved on.
    let vwork = d.join("fake_vllm-work");
    let first = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&vwork)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    std::fs::write(vwork.join("fake_vllm/__init__.py"), "VERSION = \"2\"\n").unwrap();
    git(&vwork, &["commit", "-q", "-am", "second"]);
    git(&vwork, &["push", "-q", "origin", "HEAD:main"]);
    let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/mmlu/data.tar.xz")
        .canonicalize()
        .unwrap();
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[engines.x]
role = "lmcache"
kind = "sim"
[setup]
venv = "venv"
installer = "pip"
install_args = ["--no-build-isolation"]
packages = ["wheel"]
mmlu_archive = "{}"
mmlu_into = "mmlu"
[setup.repos.lmcache]
url = "unused: the job's own checkout"
ref = "checkout:fake_lmcache-work"
[setup.repos.vllm]
url = "{vl}"
ref = "{first}"
"#,
            archive.display()
        ),
    )
    .unwrap();
    let (code, _, stderr) = setup(&suite);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("vllm at {first}: commit {}", &first[..12])),
        "{stderr}"
    );
    assert!(
        import(d, "fake_vllm").starts_with("1 "),
        "the pinned commit, not main"
    );
    assert!(
        import(d, "fake_lmcache").contains("fake_lmcache-work"),
        "installed from the job's checkout"
    );
    assert!(
        stderr.contains("MMLU data") && stderr.contains("extracted: 57 subjects"),
        "{stderr}"
    );
    let (code, stdout, stderr) = setup(&suite);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("7 steps, 0 changed"), "{stdout}\n{stderr}");
}

#[test]
fn a_requested_python_version_is_used_and_checked() {
    let dir = tempdir();
    let d = dir.path();
    let suite = |python: &str| {
        let p = d.join("v.toml");
        std::fs::write(&p, format!("[engines.x]\nrole = \"lmcache\"\nkind = \"sim\"\n[setup]\nvenv = \"venv\"\ninstaller = \"pip\"\npython = \"{python}\"\n")).unwrap();
        p
    };
    let (code, _, stderr) = setup(&suite("3.11"));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = setup(&suite("3.12"));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("runs Python 3.11") && stderr.contains("asks for 3.12"),
        "{stderr}"
    );
}
