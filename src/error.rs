//! The one place errors become exit codes.

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::results::ResultsError;
use crate::run::compare::CompareError;
use crate::run::RunError;
use crate::workload::mmlu::data::DataError;
use crate::workload::ErrorClass;

/// Exit codes, as documented in `--help` and the README.
pub(crate) mod exit {
    pub(crate) const PASSED: i32 = 0;
    pub(crate) const GATE_FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const SETUP: i32 = 3;
    pub(crate) const ENGINE: i32 = 4;
    pub(crate) const INTERNAL: i32 = 101;
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
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Merge(#[from] crate::run::merge::MergeError),
    #[error("failed to plan the shards: {0}")]
    Shard(crate::workload::WorkloadError),
    /// A flag or input the user gave is wrong; the message says which.
    #[error("{0}")]
    Usage(String),
    /// A comparison found a regression; already reported.
    #[error("the run failed: {0}")]
    Failed(String),
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
            Error::Results(e) if e.is_bad_input() => exit::USAGE,
            Error::Results(_)
            | Error::Data(_)
            | Error::Gpu(_)
            | Error::Image(_)
            | Error::Setup(_)
            | Error::Recommend(_) => exit::SETUP,
            Error::Failed(_) => exit::GATE_FAILED,
            Error::Usage(_) => exit::USAGE,
            Error::Merge(e) if e.is_bad_input() => exit::USAGE,
            Error::Merge(_) => exit::SETUP,
            Error::Shard(e) => match e.class() {
                ErrorClass::BadInput => exit::USAGE,
                _ => exit::SETUP,
            },
            Error::Run(e) => run_exit_code(e),
        }
    }
}

fn run_exit_code(e: &RunError) -> i32 {
    match e {
        RunError::Engine(_) => exit::ENGINE,
        RunError::Gpu(_)
        | RunError::Image(_)
        | RunError::Results(_)
        | RunError::ResultsDir { .. } => exit::SETUP,
        RunError::Workload { class, .. } => match class {
            ErrorClass::BadInput => exit::USAGE,
            ErrorClass::Setup => exit::SETUP,
            ErrorClass::Engine => exit::ENGINE,
            ErrorClass::Failed => exit::GATE_FAILED,
        },
        RunError::Failed(_) => exit::GATE_FAILED,
        RunError::Interrupted { number, .. } => 128 + number,
        RunError::Signals(_) | RunError::Internal(_) => exit::INTERNAL,
    }
}
