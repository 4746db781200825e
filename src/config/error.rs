//! What is wrong with a suite, said so a maintainer can fix it: the key,
//! the layer that set it and what to do.

use std::path::PathBuf;

use super::near::suggest;
use super::presets::PRESETS;
use crate::results::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("failed to read suite file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid value for `{key}` in {origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("unknown preset `{name}`; {hint}presets: {known}; `lmcache-e2e list --presets` says what each runs", name = .0, hint = did_you_mean(.0), known = PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "))]
    UnknownPreset(String),
    #[error(
        "invalid --set `{0}`: expected KEY=VALUE, e.g. --set tests.long_doc_qa.num_documents=4"
    )]
    BadSet(String),
    #[error("invalid environment variable {var}={value:?}: {message}")]
    BadEnv {
        var: String,
        value: String,
        message: String,
    },
    #[error("no test matches --only `{0}`; run `lmcache-e2e list` to see the suite's tests")]
    NoTestMatches(String),
    /// Several problems at once, each on its own line.
    #[error("the suite has {} problems:{}", .0.len(), .0.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// Always the suite's, or the flags': what the user gave.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }
}

/// "did you mean `sim`? " for a near miss of a preset's name.
fn did_you_mean(name: &str) -> String {
    suggest(name, PRESETS.iter().map(|p| p.name))
        .map_or_else(String::new, |near| format!("did you mean `{near}`? "))
}
