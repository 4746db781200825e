//! The one place errors become exit codes.

use crate::config::ConfigError;
use crate::engine::EngineError;
use crate::results::ErrorClass;
use crate::results::ResultsError;
use crate::run::compare::CompareError;
use crate::run::RunError;
use crate::workload::mmlu::data::DataError;

/// Exit codes, as documented in `--help` and the README.
pub(crate) mod exit {
    pub(crate) const PASSED: i32 = 0;
    pub(crate) const GATE_FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const SETUP: i32 = 3;
    pub(crate) const ENGINE: i32 = 4;
    pub(crate) const INTERNAL: i32 = 101;

    /// The one place a class becomes an exit code.
    pub(crate) fn of(class: super::ErrorClass) -> i32 {
        use super::ErrorClass;
        match class {
            ErrorClass::Failed => GATE_FAILED,
            ErrorClass::BadInput => USAGE,
            ErrorClass::Setup => SETUP,
            ErrorClass::Engine => ENGINE,
            ErrorClass::Interrupted(number) => 128 + number,
            ErrorClass::Internal => INTERNAL,
        }
    }
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
    /// A program this command needs is not on this machine; the message
    /// says which and how to get it.
    #[error("{0}")]
    Missing(String),
    /// A comparison found a regression; already reported.
    #[error("the run failed: {0}")]
    Failed(String),
}

impl Error {
    /// Whose fault it is, as the area that failed says.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            Error::Config(e) => e.class(),
            Error::Engine(e) => e.class(),
            Error::Results(e) => e.class(),
            Error::Data(e) => e.class(),
            Error::Compare(e) => e.class(),
            Error::Gpu(e) => e.class(),
            Error::Image(e) => e.class(),
            Error::Setup(e) => e.class(),
            Error::Report(e) => e.class(),
            Error::Recommend(e) => e.class(),
            Error::Run(e) => e.class(),
            Error::Merge(e) => e.class(),
            // Data a shard plan cannot read is the suite's or the machine's;
            // no shard plan fails a test.
            Error::Shard(e) => match e.class() {
                ErrorClass::BadInput => ErrorClass::BadInput,
                _ => ErrorClass::Setup,
            },
            Error::Usage(_) => ErrorClass::BadInput,
            Error::Missing(_) => ErrorClass::Setup,
            Error::Failed(_) => ErrorClass::Failed,
        }
    }

    pub(crate) fn exit_code(&self) -> i32 {
        exit::of(self.class())
    }
}

/// The error and each cause beneath it that its message does not already
/// say, as `error: cause: cause` (anyhow's `{:#}` prints every cause, and
/// ours often put their source in their own message: it would say it twice).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("failed to read the suite {0}")]
        Quiet(String, #[source] std::io::Error),
        #[error("failed to read the suite {0}: {1}")]
        Says(String, #[source] std::io::Error),
    }

    #[test]
    fn the_chain_says_each_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quiet = Outer::Quiet("a.toml".into(), io());
        assert_eq!(
            chain(&quiet),
            "failed to read the suite a.toml: no such file",
            "a cause its error leaves unsaid is added"
        );
        let says = Outer::Says("a.toml".into(), io());
        assert_eq!(
            chain(&says),
            "failed to read the suite a.toml: no such file",
            "one it says is not repeated"
        );
        let top = Error::Usage("bad flag".into());
        assert_eq!(chain(&top), top.to_string());
    }
}
