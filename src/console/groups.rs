//! CI log groups: blocks (an engine's last log lines, a setup) folded where
//! the CI can fold them: GitHub Actions' `::group::`, Buildkite's `~~~`.

use std::io::Write as _;

use crate::ci_env::Ci;
use crate::results::ResultsError;
use crate::run::{Event, Sink};

/// The lines that open and close a group titled `title`. `collapsed` asks
/// Buildkite to fold it (`~~~`) rather than show it open (`---`).
pub(crate) fn markers(ci: Ci, title: &str, collapsed: bool) -> (Option<String>, Option<String>) {
    match ci {
        Ci::GithubActions => (
            Some(format!("::group::{title}")),
            Some("::endgroup::".to_string()),
        ),
        Ci::Buildkite if collapsed => (Some(format!("~~~ {title}")), None),
        Ci::Buildkite => (Some(format!("--- {title}")), None),
        Ci::None if collapsed => (
            Some(format!("--- {title} ---")),
            Some("--- end ---".to_string()),
        ),
        Ci::None => (None, None),
    }
}

/// Prints every engine's last log lines at the end of a run, each in a
/// group of its own: always on CI, where the log is all there is; outside
/// CI only when the run did not pass.
pub(crate) struct CiGroups {
    pub ci: Ci,
}

impl Sink for CiGroups {
    fn event(&self, event: &Event<'_>) -> Result<(), ResultsError> {
        let Event::LogTail {
            title,
            lines,
            passed,
        } = event
        else {
            return Ok(());
        };
        if *passed && self.ci == Ci::None {
            return Ok(());
        }
        let (open, close) = markers(self.ci, title, true);
        let mut out = std::io::stderr().lock();
        if let Some(o) = open {
            let _ = writeln!(out, "{o}");
        }
        for l in lines.iter() {
            // A log line must not open or close groups of its own.
            if self.ci == Ci::GithubActions && l.starts_with("::") {
                let _ = writeln!(out, " {l}");
            } else {
                let _ = writeln!(out, "{l}");
            }
        }
        if let Some(c) = close {
            let _ = writeln!(out, "{c}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ci_folds_its_own_way() {
        assert_eq!(
            markers(Ci::GithubActions, "logs", true),
            (Some("::group::logs".into()), Some("::endgroup::".into()))
        );
        assert_eq!(
            markers(Ci::Buildkite, "logs", true),
            (Some("~~~ logs".into()), None)
        );
        assert_eq!(
            markers(Ci::Buildkite, "setup", false),
            (Some("--- setup".into()), None)
        );
        assert_eq!(markers(Ci::None, "setup", false), (None, None));
    }
}
