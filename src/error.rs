//! The one place errors become exit codes.

use crate::compare::CompareError;
use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::report::results::ResultsError;
use crate::setup::mmlu_data::DataError;

/// Exit codes, as documented in `--help` and the README.
pub(crate) mod exit {
    pub(crate) const PASSED: i32 = 0;
    pub(crate) const GATE_FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const SETUP: i32 = 3;
    pub(crate) const ENGINE: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Compare(#[from] CompareError),
    #[error(transparent)]
    Gpu(#[from] crate::engine::gpu::GpuError),
    #[error(transparent)]
    Image(#[from] crate::engine::image::ImageError),
    #[error(transparent)]
    Setup(#[from] crate::setup::env::SetupError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Recommend(#[from] crate::setup::recommend::RecommendError),
    #[error("failed to create the results directory {path}: {source}")]
    ResultsDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The run finished and a hard check (or a test) failed; already reported.
    #[error("the run failed: {0}")]
    Failed(String),
    /// A signal stopped the run; already reported.
    #[error("interrupted by {name}")]
    Interrupted { name: &'static str, number: i32 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Compare(_) => exit::USAGE,
            Error::Report(
                crate::report::ReportError::Template { .. }
                | crate::report::ReportError::Render { .. },
            ) => exit::USAGE,
            Error::Report(_) => exit::SETUP,
            Error::Engine(_) => exit::ENGINE,
            Error::ResultsDir { .. }
            | Error::Results(_)
            | Error::Data(_)
            | Error::Gpu(_)
            | Error::Image(_)
            | Error::Setup(_)
            | Error::Recommend(_) => exit::SETUP,
            Error::Failed(_) => exit::GATE_FAILED,
            Error::Interrupted { number, .. } => 128 + number,
            Error::Internal(_) => 101,
        }
    }
}
