//! Reports of a run, rendered from the results model alone: Markdown for
//! GitHub and Buildkite, JUnit XML, and their delivery.

pub(crate) mod buildkite;
pub(crate) mod export;
pub(crate) mod format;
pub(crate) mod github;
mod github_api;
mod glance;
pub(crate) mod junit;
pub(crate) mod publish;
pub(crate) mod render;
pub(crate) mod terminal;
mod trend;

#[cfg(test)]
pub(crate) mod samples;

use crate::results::ErrorClass;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to load the report templates from {dir}: {message}")]
    Template { dir: PathBuf, message: String },
    #[error("failed to render {template}: {message}")]
    Render { template: String, message: String },
    #[error("failed to post the PR comment: {0}")]
    Github(String),
    /// Not an error of the run: why there is no comment, and what to change.
    #[error("no PR comment: {0}")]
    CommentSkipped(String),
    /// The artifact disagrees with what GitHub says about the run.
    #[error("failed to trust the results for a PR comment: {0}")]
    Untrusted(String),
    #[error("failed to annotate the Buildkite build: {0}")]
    Buildkite(String),
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
}

impl ReportError {
    /// A template the user gave that does not render is theirs; the rest
    /// is delivery on this machine or to GitHub and Buildkite.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            ReportError::Template { .. } | ReportError::Render { .. } => ErrorClass::BadInput,
            ReportError::Read { .. }
            | ReportError::Write { .. }
            | ReportError::Github { .. }
            | ReportError::CommentSkipped { .. }
            | ReportError::Untrusted { .. }
            | ReportError::Buildkite { .. }
            | ReportError::Results(_) => ErrorClass::Setup,
        }
    }
}
