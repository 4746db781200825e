//! Buildkite: the build annotation and the results artifact, through the
//! `buildkite-agent` on the job's PATH.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::ReportError;
use crate::child::NoSecrets;
use crate::results::{RunResults, RunStatus, TestStatus};

/// `success`, `warning` or `error`, as `buildkite-agent annotate --style`
/// takes them.
pub(crate) fn style(results: &RunResults) -> &'static str {
    match results.status {
        RunStatus::Passed
            if results
                .tests
                .iter()
                .any(|t| matches!(t.status, TestStatus::Flaky | TestStatus::Warning)) =>
        {
            "warning"
        }
        // Its own style: nothing failed, but the evidence could not tell.
        RunStatus::Inconclusive => "warning",
        RunStatus::Passed => "success",
        RunStatus::Interrupted | RunStatus::Running => "warning",
        RunStatus::Failed | RunStatus::Error => "error",
    }
}

fn agent() -> Result<std::path::PathBuf, ReportError> {
    which::which("buildkite-agent").map_err(|_| {
        ReportError::Buildkite("`buildkite-agent` is not on PATH (is this a Buildkite job?)".into())
    })
}

async fn run(cmd: &mut Command, stdin: Option<&str>, what: &str) -> Result<(), ReportError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        ReportError::Buildkite(format!("failed to start buildkite-agent {what}: {e}"))
    })?;
    if let (Some(body), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(body.as_bytes()).await.map_err(|e| {
            ReportError::Buildkite(format!(
                "failed to send the body to buildkite-agent {what}: {e}"
            ))
        })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| ReportError::Buildkite(format!("buildkite-agent {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(ReportError::Buildkite(format!(
        "buildkite-agent {what} exited with {}: {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    )))
}

/// `buildkite-agent annotate --context CONTEXT --style STYLE`, the body on
/// stdin (it may be far longer than a command line allows).
pub(crate) async fn annotate(context: &str, style: &str, body: &str) -> Result<(), ReportError> {
    let mut cmd = Command::new(agent()?);
    cmd.no_secrets();
    cmd.args(["annotate", "--context", context, "--style", style]);
    run(&mut cmd, Some(body), "annotate").await
}

/// `buildkite-agent artifact upload DIR/**/*`, run from DIR's parent so the
/// artifact paths start with the directory's name.
pub(crate) async fn upload(dir: &Path) -> Result<(), ReportError> {
    let dir = std::path::absolute(dir).map_err(|source| ReportError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let (parent, name) = match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_string_lossy().to_string()),
        _ => (dir.clone(), ".".to_string()),
    };
    let mut cmd = Command::new(agent()?);
    cmd.no_secrets();
    cmd.args(["artifact", "upload", &format!("{name}/**/*")])
        .current_dir(parent);
    run(&mut cmd, None, "artifact upload").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;

    #[test]
    fn styles_follow_the_verdict() {
        assert_eq!(style(&samples::passed()), "success");
        assert_eq!(style(&samples::gate_failure()), "error");
        assert_eq!(style(&samples::interrupted()), "warning");
        assert_eq!(style(&samples::engine_failed()), "error");
        assert_eq!(
            style(&samples::inconclusive()),
            "warning",
            "could not tell is no success"
        );
        let mut flaky = samples::passed();
        flaky.tests[0].status = TestStatus::Flaky;
        assert_eq!(style(&flaky), "warning");
    }
}
