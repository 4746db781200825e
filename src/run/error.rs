//! What ends a run, and whose fault it is.

use std::path::PathBuf;

use crate::engine::gpu::GpuError;
use crate::engine::image::ImageError;
use crate::engine::EngineError;
use crate::results::ResultsError;
use crate::workload::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("failed to create the results directory {path}: {source}")]
    ResultsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A test could not run to the end; its class picks the exit code.
    #[error("test `{test}` failed to run: {message}")]
    Workload {
        test: String,
        class: ErrorClass,
        message: String,
    },
    /// The run finished and a hard check failed; already reported.
    #[error("the run failed: {0}")]
    Failed(String),
    /// The run finished, nothing failed, and a check could not tell
    /// (`run.inconclusive_exit = 1`); already reported.
    #[error("{0}")]
    Undecided(String),
    /// A signal stopped the run; already reported.
    #[error("interrupted by {name}")]
    Interrupted { name: &'static str, number: i32 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            RunError::Engine(e) => e.class(),
            RunError::Gpu(e) => e.class(),
            RunError::Image(e) => e.class(),
            RunError::Results(_) | RunError::ResultsDir { .. } => ErrorClass::Setup,
            RunError::Workload { class, .. } => *class,
            RunError::Failed(_) | RunError::Undecided(_) => ErrorClass::Failed,
            RunError::Interrupted { number, .. } => ErrorClass::Interrupted(*number),
            RunError::Signals(_) | RunError::Internal(_) => ErrorClass::Internal,
        }
    }
}
