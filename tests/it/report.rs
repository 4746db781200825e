//! `lmcache-e2e report` and `ci` delivering reports: the sticky PR comment
//! against a local fake of GitHub's REST API, the Buildkite annotation
//! through a fake `buildkite-agent`, the job summary and step outputs, and
//! JUnit XML checked against a schema with xmllint.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{bin, report_comment, run, run_async, tempdir, text};
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "ghs_l0ngS3cretT0kenThatMustNeverBePrinted";
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/results/sim-failed.json"
);
const COMMENTS: &str = "/repos/LMCache/LMCache/issues/7/comments";

/// A results directory as a `pull_request` job of a fork left it: the
/// results of a real sim run, recording the repository and PR.
fn results_dir(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempdir();
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    r["meta"]["repository"] = json!("LMCache/LMCache");
    r["meta"]["pr_number"] = json!(7);
    r["meta"]["commit"] = json!("4f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e");
    edit(&mut r);
    std::fs::write(dir.path().join("results.json"), r.to_string()).unwrap();
    dir
}

/// Answers `m p` with `r` from now on.
async fn on(gh: &MockServer, m: &str, p: impl AsRef<str>, r: ResponseTemplate) {
    Mock::given(method(m))
        .and(path(p.as_ref()))
        .respond_with(r)
        .mount(gh)
        .await;
}

/// Answers `m p` with `r` once, before any other answer.
async fn first(gh: &MockServer, m: &str, p: impl AsRef<str>, r: ResponseTemplate) {
    Mock::given(method(m))
        .and(path(p.as_ref()))
        .respond_with(r)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(gh)
        .await;
}

/// A pull request nobody commented on yet.
async fn no_comments(gh: &MockServer) {
    on(
        gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200).set_body_json(json!([])),
    )
    .await;
}

fn comment(id: u64, body: &str) -> Value {
    let mut c: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/github/issue_comment.json"
        ))
        .unwrap(),
    )
    .unwrap();
    c["id"] = json!(id);
    c["body"] = json!(body);
    c["url"] = json!(format!(
        "https://api.github.com/repos/LMCache/LMCache/issues/comments/{id}"
    ));
    c
}

fn human(id: u64) -> Value {
    comment(id, "LGTM, but can we see the MMLU numbers?")
}

fn ours(id: u64, comment_id: &str) -> Value {
    comment(
        id,
        &format!("<!-- lmcache-e2e:comment-id={comment_id} -->\n## ✅ LMCache e2e · {comment_id}: passed"),
    )
}

fn report(dir: &Path, api: &str, extra: &[&str]) -> Command {
    report_comment(dir, api, TOKEN, extra)
}

/// The command run to its end.
async fn finish(cmd: Command) -> Output {
    run_async(cmd, LIMIT).await
}

/// Runs `report --pr-comment` and expects exit 0: the comment never fails the job.
async fn report_passes(dir: &Path, api: &str, extra: &[&str]) -> (Output, String) {
    let out = finish(report(dir, api, extra)).await;
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (out, stderr)
}

/// Every request carried the token (a private repository answers 404
/// otherwise, even to the next page of a listing).
fn assert_authorized(all: &[Request]) {
    for r in all {
        assert_eq!(
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string()),
            Some(format!("Bearer {TOKEN}")),
            "{} {} went without the token",
            r.method,
            r.url
        );
    }
}

/// The token never shows: not in output, not in any file written.
fn assert_no_token(out: &Output, dir: &Path) {
    let (stdout, stderr) = text(out);
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "token leaked:\n{stderr}"
    );
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let body = std::fs::read(entry.path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&body).contains(TOKEN),
            "token leaked into {}",
            entry.path().display()
        );
    }
}

fn requests_to<'a>(all: &'a [Request], m: &str, p: &str) -> Vec<&'a Request> {
    all.iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .collect()
}

fn body_of(r: &Request) -> String {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["body"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_comment_on_github_enterprise_when_none_has_the_marker() {
    let gh = MockServer::start().await;
    let ghe = format!("/api/v3{COMMENTS}");
    on(
        &gh,
        "GET",
        ghe.as_str(),
        ResponseTemplate::new(200).set_body_json(json!([human(10)])),
    )
    .await;
    on(
        &gh,
        "POST",
        ghe.as_str(),
        ResponseTemplate::new(201).set_body_json(ours(11, "sim")),
    )
    .await;
    let dir = results_dir(|_| {});
    let outputs = dir.path().join("github_output");
    let mut cmd = report(dir.path(), &format!("{}/api/v3", gh.uri()), &[]);
    cmd.env("GITHUB_OUTPUT", &outputs);
    let out = finish(cmd).await;
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("created the PR comment (id 11"), "{stderr}");
    // The comment's id is a step output, for a later step to link it.
    let written = std::fs::read_to_string(&outputs).unwrap();
    assert!(written.contains("comment-id<<"), "{written}");
    let after: Vec<&str> = written
        .lines()
        .skip_while(|l| !l.starts_with("comment-id<<"))
        .collect();
    assert_eq!(after.get(1), Some(&"11"), "{written}");
    std::fs::remove_file(&outputs).unwrap();
    let all = gh.received_requests().await.unwrap();
    let posts = requests_to(&all, "POST", &ghe);
    assert_eq!(posts.len(), 1);
    let body = body_of(posts[0]);
    assert!(
        body.starts_with("<!-- lmcache-e2e:comment-id=sim -->\n\n## ❌ LMCache e2e · sim: failed"),
        "{body}"
    );
    assert!(body.contains("| changed\\_answers<br>"), "{body}");
    assert!(body.contains("commit [`4f2c1e0d9b`]"), "{body}");
    assert_eq!(
        posts[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Bearer {TOKEN}")
    );
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_the_comment_found_on_the_second_page() {
    // On GitHub Enterprise, where the API sits under /api/v3 and the token
    // must still go with the absolute next link.
    let gh = MockServer::start().await;
    let api = format!("{}/api/v3", gh.uri());
    let page2 = "/api/v3/repositories/712345/issues/7/comments";
    // GitHub's next links name the repository by id.
    let next = format!(
        "<{0}{page2}?per_page=100&page=2>; rel=\"next\", <{0}{page2}?per_page=100&page=2>; rel=\"last\"",
        gh.uri()
    );
    on(
        &gh,
        "GET",
        format!("/api/v3{COMMENTS}"),
        ResponseTemplate::new(200)
            .insert_header("link", next.as_str())
            .set_body_json(json!((0..100).map(human).collect::<Vec<_>>())),
    )
    .await;
    Mock::given(method("GET"))
        .and(path(page2))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([human(100), ours(4242, "sim")])),
        )
        .mount(&gh)
        .await;
    let patch_path = "/api/v3/repos/LMCache/LMCache/issues/comments/4242";
    on(
        &gh,
        "PATCH",
        patch_path,
        ResponseTemplate::new(200).set_body_json(ours(4242, "sim")),
    )
    .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &api, &[]).await;
    assert!(
        stderr.contains("updated the PR comment (id 4242"),
        "{stderr}"
    );
    let all = gh.received_requests().await.unwrap();
    assert!(
        all.iter().all(|r| r.method.as_str() != "POST"),
        "no duplicate comment"
    );
    assert_eq!(requests_to(&all, "GET", page2).len(), 1);
    let patch = requests_to(&all, "PATCH", patch_path);
    assert_eq!(patch.len(), 1);
    assert!(body_of(patch[0]).contains("## ❌ LMCache e2e · sim: failed"));
    assert_eq!(all.len(), 3);
    assert_authorized(&all);
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_comment_ids_keep_two_comments_on_one_pr() {
    let gh = MockServer::start().await;
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200).set_body_json(json!([
            ours(1, "correctness"),
            human(2),
            ours(3, "sim")
        ])),
    )
    .await;
    for id in [1, 3] {
        Mock::given(method("PATCH"))
            .and(path(format!("/repos/LMCache/LMCache/issues/comments/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(ours(id, "x")))
            .mount(&gh)
            .await;
    }
    let dir = results_dir(|_| {});
    let out = finish(report(
        dir.path(),
        &gh.uri(),
        &["--comment-id", "correctness"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    // The default id is the suite's name.
    let out = finish(report(dir.path(), &gh.uri(), &[])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let all = gh.received_requests().await.unwrap();
    let first = requests_to(&all, "PATCH", "/repos/LMCache/LMCache/issues/comments/1");
    let third = requests_to(&all, "PATCH", "/repos/LMCache/LMCache/issues/comments/3");
    assert_eq!((first.len(), third.len()), (1, 1));
    assert!(body_of(first[0]).starts_with("<!-- lmcache-e2e:comment-id=correctness -->"));
    assert!(body_of(third[0]).starts_with("<!-- lmcache-e2e:comment-id=sim -->"));
    assert!(requests_to(&all, "POST", COMMENTS).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forks_read_only_token_skips_the_comment_and_says_what_is_needed() {
    let gh = MockServer::start().await;
    no_comments(&gh).await;
    on(&gh, "POST", COMMENTS, ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
            "status": "403"
        }))).await;
    let dir = results_dir(|_| {});
    let out = finish(report(dir.path(), &gh.uri(), &[])).await;
    let (_, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a comment is never worth failing the job: {stderr}"
    );
    assert!(
        stderr.contains("Resource not accessible by integration"),
        "{stderr}"
    );
    assert!(stderr.contains("pull-requests: write"), "{stderr}");
    assert!(stderr.contains("workflow_run"), "{stderr}");
    assert!(
        dir.path().join("summary.md").is_file(),
        "the rest is still written"
    );
    assert_no_token(&out, dir.path());
    // Unless asked to.
    let out = finish(report(dir.path(), &gh.uri(), &["--strict-report"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_github_finds_too_long_is_posted_again_in_short_form() {
    let gh = MockServer::start().await;
    no_comments(&gh).await;
    first(&gh, "POST", COMMENTS, ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "IssueComment", "code": "custom", "field": "body",
                        "message": "body is too long (maximum is 65536 characters)"}],
            "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
            "status": "422"
        }))).await;
    on(
        &gh,
        "POST",
        COMMENTS,
        ResponseTemplate::new(201).set_body_json(ours(5, "sim")),
    )
    .await;
    // Long log tails make the full comment large.
    let dir = results_dir(|r| {
        r["engines"][1]["log_tail"] = json!((0..350)
            .map(|i| format!("{i} {}", "y".repeat(100)))
            .collect::<Vec<_>>());
    });
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert_no_token(&out, dir.path());
    assert!(stderr.contains("body is too long"), "{stderr}");
    let all = gh.received_requests().await.unwrap();
    let posts = requests_to(&all, "POST", COMMENTS);
    assert_eq!(posts.len(), 2);
    let (first, second) = (body_of(posts[0]), body_of(posts[1]));
    assert!(first.chars().count() <= 65_536);
    assert!(
        second.len() <= 32_768 && second.len() < first.len(),
        "{} then {}",
        first.len(),
        second.len()
    );
    assert!(second.starts_with("<!-- lmcache-e2e:comment-id=sim -->"));
    assert!(second.contains("left out to fit"), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_gateway_then_a_secondary_rate_limit_are_retried() {
    let gh = MockServer::start().await;
    first(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(502)
            .insert_header("content-type", "text/html")
            .set_body_string("<html><body><h1>502 Bad Gateway</h1></body></html>"),
    )
    .await;
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200).set_body_json(json!([human(1)])),
    )
    .await;
    first(&gh, "POST", COMMENTS, 
            ResponseTemplate::new(403)
                .insert_header("retry-after", "60")
                .set_body_json(json!({
                    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": "403"
                })),
        ).await;
    Mock::given(method("POST"))
        .and(path(COMMENTS))
        .and(body_string_contains("comment-id=sim"))
        .respond_with(ResponseTemplate::new(201).set_body_json(ours(9, "sim")))
        .mount(&gh)
        .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert!(
        stderr.contains("listing the PR comments: HTTP 502"),
        "{stderr}"
    );
    assert!(
        stderr.contains("creating the comment: HTTP 403: You have exceeded a secondary rate limit"),
        "{stderr}"
    );
    assert!(stderr.contains("as GitHub asked (60 s)"), "{stderr}");
    assert!(stderr.contains("created the PR comment (id 9"), "{stderr}");
    let all = gh.received_requests().await.unwrap();
    // Every attempt lists again before it writes.
    assert_eq!(requests_to(&all, "GET", COMMENTS).len(), 3);
    assert_eq!(requests_to(&all, "POST", COMMENTS).len(), 2);
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_failed_but_landed_is_updated_not_posted_twice() {
    let gh = MockServer::start().await;
    // The create reaches GitHub, but the answer is a proxy's 502.
    first(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200).set_body_json(json!([human(1)])),
    )
    .await;
    first(
        &gh,
        "POST",
        COMMENTS,
        ResponseTemplate::new(502).set_body_string("<html>502 Bad Gateway</html>"),
    )
    .await;
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200).set_body_json(json!([human(1), ours(77, "sim")])),
    )
    .await;
    on(
        &gh,
        "PATCH",
        "/repos/LMCache/LMCache/issues/comments/77",
        ResponseTemplate::new(200).set_body_json(ours(77, "sim")),
    )
    .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert!(
        stderr.contains("creating the comment: HTTP 502"),
        "{stderr}"
    );
    assert!(stderr.contains("updated the PR comment (id 77"), "{stderr}");
    let all = gh.received_requests().await.unwrap();
    assert_eq!(
        requests_to(&all, "POST", COMMENTS).len(),
        1,
        "a second comment would be a duplicate"
    );
    assert_eq!(
        requests_to(&all, "PATCH", "/repos/LMCache/LMCache/issues/comments/77").len(),
        1
    );
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_that_persists_gives_up_with_a_warning() {
    let gh = MockServer::start().await;
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"})),
    )
    .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert_no_token(&out, dir.path());
    assert!(stderr.contains("gave up after 5 attempts"), "{stderr}");
    assert_eq!(gh.received_requests().await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_that_stops_answering_does_not_hold_the_job() {
    let gh = MockServer::start().await;
    // Far past the deadline (30 backoff units: 150 ms here, 30 s for real).
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(200)
            .set_delay(std::time::Duration::from_secs(600))
            .set_body_json(json!([])),
    )
    .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert!(stderr.contains("no answer within"), "{stderr}");
    assert!(stderr.contains("gave up after 5 attempts"), "{stderr}");
    assert!(dir.path().join("summary.md").is_file());
    assert_no_token(&out, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_rate_limit_that_resets_late_is_not_waited_for() {
    let gh = MockServer::start().await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    on(
        &gh,
        "GET",
        COMMENTS,
        ResponseTemplate::new(403)
            .insert_header("x-ratelimit-limit", "5000")
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.to_string().as_str())
            .set_body_json(json!({
                "message": "API rate limit exceeded for installation ID 1234.",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
                "status": "403"
            })),
    )
    .await;
    let dir = results_dir(|_| {});
    let (out, stderr) = report_passes(dir.path(), &gh.uri(), &[]).await;
    assert!(stderr.contains("API rate limit exceeded"), "{stderr}");
    assert!(stderr.contains("not holding the job that long"), "{stderr}");
    assert_eq!(
        gh.received_requests().await.unwrap().len(),
        1,
        "an hour's wait is not sat out, nor retried"
    );
    assert_no_token(&out, dir.path());
}

#[test]
fn without_a_token_or_a_pull_request_there_is_no_comment_and_no_failure() {
    let dir = results_dir(|_| {});
    let mut cmd = report(dir.path(), "http://127.0.0.1:9", &[]);
    cmd.env_remove("GITHUB_TOKEN");
    let out = run(&mut cmd, LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no GitHub token"), "{stderr}");
    let dir = results_dir(|r| r["meta"]["pr_number"] = Value::Null);
    let out = run(&mut report(dir.path(), "http://127.0.0.1:9", &[]), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("not for a pull request"), "{stderr}");
}

/// A `buildkite-agent` that records each call's arguments, working
/// directory and stdin, and fails when FAKE_AGENT_FAIL is set.
fn fake_agent(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let agent = bin_dir.join("buildkite-agent");
    std::fs::write(
        &agent,
        format!(
            r#"#!/bin/sh
n=$(ls "{log}" | grep -c '^args-' || true)
printf '%s\n' "$@" > "{log}/args-$n"
pwd > "{log}/cwd-$n"
cat > "{log}/stdin-$n"
if [ -n "$FAKE_AGENT_FAIL" ]; then echo "fatal: failed to annotate: 401 Unauthorized" >&2; exit 1; fi
"#,
            log = dir.join("calls").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("calls")).unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

fn with_path(cmd: &mut Command, bin_dir: &Path) {
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    cmd.env("PATH", path);
}

fn call(dir: &Path, n: usize) -> (Vec<String>, String, String) {
    let read =
        |f: &str| std::fs::read_to_string(dir.join("calls").join(format!("{f}-{n}"))).unwrap();
    (
        read("args").lines().map(String::from).collect(),
        read("cwd").trim().to_string(),
        read("stdin"),
    )
}

#[test]
fn buildkite_annotation_and_artifact_upload_go_through_the_agent() {
    let tools = tempdir();
    let bin_dir = fake_agent(tools.path());
    let dir = results_dir(|_| {});
    let mut cmd = bin();
    cmd.args([
        "report",
        "--buildkite-annotate",
        "--buildkite-upload",
        "--comment-id",
        "correctness run",
        "--results-dir",
    ])
    .arg(dir.path());
    with_path(&mut cmd, &bin_dir);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let (args, _, body) = call(tools.path(), 0);
    assert_eq!(
        args,
        [
            "annotate",
            "--context",
            "lmcache-e2e-correctness-run",
            "--style",
            "error"
        ]
    );
    assert!(
        body.starts_with("## ❌ LMCache e2e · sim: failed"),
        "{body}"
    );
    assert!(
        !body.contains("```mermaid"),
        "Buildkite does not render Mermaid"
    );
    let (args, cwd, _) = call(tools.path(), 1);
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert_eq!(args, ["artifact", "upload", &format!("{name}/**/*")]);
    assert_eq!(
        Path::new(&cwd),
        dir.path().parent().unwrap().canonicalize().unwrap()
    );
}

#[test]
fn an_oversized_annotation_is_cut_below_one_mebibyte() {
    let tools = tempdir();
    let bin_dir = fake_agent(tools.path());
    // 3 MiB of log tail and 2 MiB of checks: even with the checks alone it
    // does not fit, so it is cut.
    let dir = results_dir(|r| {
        r["engines"][0]["log_tail"] = json!((0..30_000)
            .map(|i| format!("{i} {}", "z".repeat(100)))
            .collect::<Vec<_>>());
        let check = r["tests"][0]["checks"][0].clone();
        r["tests"][0]["checks"] = json!((0..15_000)
            .map(|i| {
                let mut c = check.clone();
                c["name"] = json!(format!("check_{i}_{}", "c".repeat(60)));
                c
            })
            .collect::<Vec<_>>());
    });
    let mut cmd = bin();
    // Megabytes on stdout would only fill the test's pipe.
    cmd.args(["report", "--buildkite-annotate", "--output"])
        .arg(tools.path().join("printed.md"))
        .arg("--results-dir")
        .arg(dir.path());
    with_path(&mut cmd, &bin_dir);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let (_, _, body) = call(tools.path(), 0);
    assert!(body.len() <= 1024 * 1024, "{} bytes", body.len());
    assert!(
        body.len() > 900 * 1024,
        "cut close to the limit, not emptied"
    );
    assert!(body.ends_with(" in full.\n"), "says it was cut");
    // summary.md on disk keeps everything.
    let full = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(full.len() > 3 * 1024 * 1024);
}

#[test]
fn a_failing_agent_is_a_warning_unless_strict() {
    let tools = tempdir();
    let bin_dir = fake_agent(tools.path());
    let dir = results_dir(|_| {});
    for (strict, code) in [(false, 0), (true, 3)] {
        let mut cmd = bin();
        cmd.args(["report", "--buildkite-annotate", "--results-dir"])
            .arg(dir.path())
            .env("FAKE_AGENT_FAIL", "1");
        if strict {
            cmd.arg("--strict-report");
        }
        with_path(&mut cmd, &bin_dir);
        let out = run(&mut cmd, LIMIT);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains("401 Unauthorized"), "{stderr}");
    }
}

#[test]
fn junit_validates_against_the_schema() {
    let dir = results_dir(|_| {});
    let extra = dir.path().join("reports/junit.xml");
    let out = run(
        bin()
            .args(["report", "--results-dir"])
            .arg(dir.path())
            .arg("--junit")
            .arg(&extra),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/junit.xsd");
    for file in [dir.path().join("junit.xml"), extra.clone()] {
        let lint = Command::new("xmllint")
            .args(["--noout", "--schema", schema])
            .arg(&file)
            .output()
            .expect("xmllint (Debian's libxml2-utils; scripts/test.sh installs it)");
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
    let xml = std::fs::read_to_string(&extra).unwrap();
    // One case per check and per MMLU subject; the failed gates fail.
    assert!(
        xml.contains("name=\"subject elementary_addition\""),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<failure message=\"48 questions does not meet changed_answers &lt;= 0 questions\""
        ),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<testsuites name=\"lmcache-e2e sim\" tests=\"26\" skipped=\"0\" failures=\"2\" errors=\"0\""
        ),
        "{xml}"
    );
}

#[test]
fn ci_on_github_actions_and_buildkite_reports_without_being_asked() {
    let tools = tempdir();
    let bin_dir = fake_agent(tools.path());
    let dir = tempdir();
    let summary = tools.path().join("step_summary.md");
    let outputs = tools.path().join("github_output");
    std::fs::write(&summary, "## an earlier step's summary\n").unwrap();
    let mut cmd = bin();
    cmd.args([
        "ci",
        "--preset",
        "sim",
        "--only",
        "determinism",
        "--results-dir",
    ])
    .arg(dir.path())
    .env("GITHUB_ACTIONS", "true")
    .env("GITHUB_STEP_SUMMARY", &summary)
    .env("GITHUB_OUTPUT", &outputs)
    .env("GITHUB_REPOSITORY", "LMCache/LMCache")
    .env("GITHUB_SHA", "4f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e")
    .env("GITHUB_REF", "refs/pull/7/merge")
    .env("BUILDKITE", "true");
    with_path(&mut cmd, &bin_dir);
    let out = run(&mut cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.starts_with("## an earlier step's summary\n## ✅ LMCache e2e · sim: passed"),
        "{written}"
    );
    let outputs = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = outputs.lines().collect();
    let value_of = |name: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(&format!("{name}<<")))
            .unwrap();
        lines[i + 1].to_string()
    };
    assert_eq!(value_of("verdict"), "passed");
    assert_eq!(Path::new(&value_of("results-dir")), dir.path());
    assert_eq!(
        Path::new(&value_of("summary")),
        dir.path().join("summary.md")
    );
    let (args, _, body) = call(tools.path(), 0);
    assert_eq!(
        args,
        [
            "annotate",
            "--context",
            "lmcache-e2e-sim",
            "--style",
            "success"
        ]
    );
    assert!(body.starts_with("## ✅ LMCache e2e · sim: passed"));
    // What the fork-safe workflow_run job will need: the PR, recorded.
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(r["meta"]["pr_number"], 7);
    assert_eq!(r["meta"]["repository"], "LMCache/LMCache");
}
