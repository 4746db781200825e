//! The fork-safe comment job trusts only GitHub's event. A `workflow_run`
//! job holds a write token and renders an artifact that a fork's pull
//! request produced: here the artifact is an attacker's (its results.json
//! names `victim/base#4242`), and the comment must still go to the run's own
//! pull request, found from the event through a fake GitHub that records
//! every REST call, or nowhere.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "ghs_trustTestToken0123456789";
const SHA: &str = "4f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/results/sim-failed.json"
);

/// The attacker's artifact: a real run's results, claiming another
/// repository and pull request.
fn hostile_results(commit: &str) -> tempfile::TempDir {
    let dir = tempdir();
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    r["meta"]["repository"] = json!("victim/base");
    r["meta"]["pr_number"] = json!(4242);
    r["meta"]["commit"] = json!(commit);
    std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();
    dir
}

/// The `workflow_run` event GitHub writes for a fork's run: its head, and
/// no linked pull requests (GitHub leaves them out for forks).
fn event(dir: &Path, pull_requests: &[u64]) -> std::path::PathBuf {
    let prs: Vec<Value> = pull_requests.iter().map(|n| json!({"number": n})).collect();
    let e = json!({
        "action": "completed",
        "workflow_run": {
            "head_sha": SHA,
            "head_branch": "feature",
            "head_repository": {"full_name": "forker/LMCache"},
            "pull_requests": prs,
        }
    });
    let p = dir.join("event.json");
    std::fs::write(&p, e.to_string()).unwrap();
    p
}

fn pr(number: u64, head_sha: &str) -> Value {
    json!({
        "number": number,
        "state": "open",
        "head": {"sha": head_sha, "ref": "feature", "repo": {"full_name": "forker/LMCache"}},
        "base": {"ref": "dev", "repo": {"full_name": "LMCache/LMCache"}},
    })
}

/// A comment as GitHub answers a create (the real shape).
fn comment(id: u64) -> Value {
    let mut c: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/github/issue_comment.json"
        ))
        .unwrap(),
    )
    .unwrap();
    c["id"] = json!(id);
    c["body"] = json!("<!-- lmcache-e2e:comment-id=sim -->");
    c
}

async fn on(gh: &MockServer, m: &str, p: &str, r: ResponseTemplate) {
    Mock::given(method(m))
        .and(path(p))
        .respond_with(r)
        .mount(gh)
        .await;
}

/// GitHub as the base repository sees it: PR #7 has the run's head.
async fn github(gh: &MockServer, head_of_7: &str) {
    on(
        gh,
        "GET",
        &format!("/repos/LMCache/LMCache/commits/{SHA}/pulls"),
        ResponseTemplate::new(200).set_body_json(json!([pr(7, head_of_7)])),
    )
    .await;
    on(
        gh,
        "GET",
        "/repos/LMCache/LMCache/pulls/7",
        ResponseTemplate::new(200).set_body_json(pr(7, head_of_7)),
    )
    .await;
    for n in [7, 9] {
        let comments = format!("/repos/LMCache/LMCache/issues/{n}/comments");
        on(
            gh,
            "GET",
            &comments,
            ResponseTemplate::new(200).set_body_json(json!([])),
        )
        .await;
        on(
            gh,
            "POST",
            &comments,
            ResponseTemplate::new(201).set_body_json(comment(100 + n)),
        )
        .await;
    }
}

/// `report --pr-comment` in a `workflow_run` job of LMCache/LMCache.
fn report(dir: &Path, api: &str, event: &Path, extra: &[&str]) -> Command {
    let mut cmd = report_comment(dir, api, TOKEN, extra);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "workflow_run")
        .env("GITHUB_EVENT_PATH", event)
        .env("GITHUB_REPOSITORY", "LMCache/LMCache");
    cmd
}

async fn finish(cmd: Command) -> Output {
    run_async(cmd, LIMIT).await
}

fn calls(all: &[Request]) -> Vec<String> {
    all.iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

fn never_the_victim(all: &[Request]) {
    for c in calls(all) {
        assert!(
            !c.contains("4242") && !c.contains("victim"),
            "the artifact chose a target: {c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comment_goes_to_the_runs_pull_request_not_the_artifacts() {
    let gh = MockServer::start().await;
    github(&gh, SHA).await;
    let dir = hostile_results(SHA);
    let ev = event(dir.path(), &[]);
    let out = finish(report(dir.path(), &gh.uri(), &ev, &[])).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let all = gh.received_requests().await.unwrap();
    never_the_victim(&all);
    assert_eq!(
        calls(&all),
        [
            format!("GET /repos/LMCache/LMCache/commits/{SHA}/pulls"),
            "GET /repos/LMCache/LMCache/issues/7/comments".to_string(),
            "POST /repos/LMCache/LMCache/issues/7/comments".to_string(),
        ]
    );
    assert!(
        stderr.contains("the workflow_run is for LMCache/LMCache#7"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_pull_request_must_still_have_the_runs_head() {
    let gh = MockServer::start().await;
    // The PR was pushed to after the run: its head is no longer the run's.
    github(&gh, "0000000000000000000000000000000000000000").await;
    let dir = hostile_results(SHA);
    let ev = event(dir.path(), &[7]);
    let out = finish(report(dir.path(), &gh.uri(), &ev, &[])).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let all = gh.received_requests().await.unwrap();
    never_the_victim(&all);
    assert_eq!(calls(&all), ["GET /repos/LMCache/LMCache/pulls/7"]);
    assert!(
        stderr.contains("no open pull request of LMCache/LMCache has head"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_of_another_commit_is_refused() {
    let gh = MockServer::start().await;
    github(&gh, SHA).await;
    let dir = hostile_results("1111111111111111111111111111111111111111");
    let ev = event(dir.path(), &[]);
    // A warning by default: the job does not fail over its comment.
    let out = finish(report(dir.path(), &gh.uri(), &ev, &[])).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("results.json records commit 1111111111111111111111111111111111111111")
            && stderr.contains(&format!("the workflow_run event is for {SHA}")),
        "{stderr}"
    );
    // Exit 3 when the report must be delivered.
    let out = finish(report(dir.path(), &gh.uri(), &ev, &["--strict-report"])).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(
        gh.received_requests().await.unwrap().is_empty(),
        "no call at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_given_on_the_command_line_is_still_obeyed() {
    let gh = MockServer::start().await;
    github(&gh, SHA).await;
    let dir = hostile_results(SHA);
    let ev = event(dir.path(), &[]);
    let out = finish(report(dir.path(), &gh.uri(), &ev, &["--pr", "9"])).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let all = gh.received_requests().await.unwrap();
    never_the_victim(&all);
    assert_eq!(
        calls(&all),
        [
            "GET /repos/LMCache/LMCache/issues/9/comments",
            "POST /repos/LMCache/LMCache/issues/9/comments",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pull_request_the_events_pr_wins_over_the_artifacts() {
    let gh = MockServer::start().await;
    github(&gh, SHA).await;
    let dir = hostile_results(SHA);
    let ev = dir.path().join("pr-event.json");
    std::fs::write(
        &ev,
        json!({"pull_request": {"number": 7, "head": {"sha": SHA}}}).to_string(),
    )
    .unwrap();
    let mut cmd = report(dir.path(), &gh.uri(), &ev, &[]);
    cmd.env("GITHUB_EVENT_NAME", "pull_request");
    let out = finish(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let all = gh.received_requests().await.unwrap();
    never_the_victim(&all);
    assert_eq!(
        calls(&all),
        [
            "GET /repos/LMCache/LMCache/issues/7/comments",
            "POST /repos/LMCache/LMCache/issues/7/comments",
        ]
    );
}

/// `report` on an artifact, with the job summary, step outputs and JUnit
/// asked for.
fn report_files(dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(["report", "--github-summary", "--junit"])
        .arg(dir.join("out.xml"))
        .arg("--results-dir")
        .arg(dir)
        .args(extra)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", dir.join("step-summary.md"))
        .env("GITHUB_OUTPUT", dir.join("step-outputs.txt"));
    run(&mut cmd, LIMIT)
}

#[test]
fn an_oversized_artifact_is_refused_before_it_is_parsed() {
    let dir = hostile_results(SHA);
    let mut r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    r["tests"][0]["notes"] = json!(["x".repeat(2 << 20)]);
    std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();
    let out = report_files(dir.path(), &["--max-results-mib", "1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("results.json")
            && stderr.contains("over 1 MiB")
            && stderr.contains("--max-results-mib"),
        "{stderr}"
    );
    // Within the default limit it is read.
    assert_eq!(report_files(dir.path(), &[]).status.code(), Some(0));
}

#[test]
fn a_path_out_of_the_results_directory_is_refused() {
    for (field, value) in [
        ("files", "../../../home/runner/.ssh/id_rsa"),
        ("files", "/etc/passwd"),
        ("log", "../secrets.log"),
    ] {
        let dir = hostile_results(SHA);
        let mut r: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        match field {
            "files" => r["tests"][0]["files"] = json!([value]),
            _ => r["engines"][0]["log"] = json!(value),
        }
        std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();
        let out = report_files(dir.path(), &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        let named = if field == "files" {
            "tests[0].files[0]"
        } else {
            "engines[0].log"
        };
        assert!(stderr.contains(named) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn hostile_strings_land_escaped_everywhere() {
    let dir = hostile_results(SHA);
    let mut r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let evil = "x --> <img src=x onerror=alert(1)> \"'&]]>\u{1b}[31m\n::error::pwned\n::set-output name=verdict::passed";
    r["suite"] = json!(evil);
    r["tests"][0]["name"] = json!(evil);
    r["tests"][0]["checks"][0]["name"] = json!(evil);
    r["tests"][0]["checks"][0]["message"] = json!(evil);
    r["tests"][0]["notes"] = json!([evil]);
    r["engines"][0]["log_tail"] = json!([evil, "```", evil]);
    std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();
    let out = report_files(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // No workflow command but our own per-check annotations (one line
    // each, their text encoded) and no terminal escape reaches the log.
    for line in stdout.lines().chain(stderr.lines()) {
        let ours = (line.starts_with("::error ") || line.starts_with("::warning "))
            && line.contains("title=lmcache-e2e%3A ");
        assert!(
            ours || !line.trim_start().starts_with("::"),
            "workflow command in the log: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "terminal escape in the log: {line:?}"
        );
    }
    // The Markdown carries no live HTML and no second marker.
    for md in ["summary.md", "step-summary.md"] {
        let all = std::fs::read_to_string(dir.path().join(md)).unwrap();
        // Log lines sit in fenced blocks, where nothing is markup; outside
        // them, escaped (`\<img`), it is text, not HTML.
        let text: String = all.split("```").step_by(2).collect::<Vec<_>>().join("");
        assert_eq!(
            all.matches("```").count() % 2,
            0,
            "{md}: no fence left open"
        );
        assert_eq!(
            text.matches("<img").count(),
            text.matches("\\<img").count(),
            "{md}: {text}"
        );
        assert!(!text.contains('\u{1b}'), "{md}: {text}");
        assert_eq!(
            text.matches("-->").count(),
            text.matches("<!--").count(),
            "{md}"
        );
    }
    // The step outputs are ours alone.
    let outputs = std::fs::read_to_string(dir.path().join("step-outputs.txt")).unwrap();
    assert!(
        !outputs.contains("pwned") && !outputs.contains("verdict::passed"),
        "{outputs}"
    );
    // JUnit stays well-formed XML.
    let xml = std::fs::read_to_string(dir.path().join("out.xml")).unwrap();
    assert!(!xml.contains("<img") && !xml.contains('\u{1b}'));
    let lint = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg(dir.path().join("out.xml"))
        .output()
        .expect("xmllint (scripts/test.sh installs libxml2-utils)");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
}
