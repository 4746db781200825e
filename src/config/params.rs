//! What the kinds' parameters share: why a value is refused ([`Invalid`],
//! naming its key) and the checks every kind makes, and the endpoint enum
//! the client also speaks. Each kind's own parameters live in its module.

use serde::{Deserialize, Serialize};

/// Which OpenAI endpoint a streamed request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Api {
    /// `POST /v1/chat/completions` with one user message.
    Chat,
    /// `POST /v1/completions` with a prompt.
    Completions,
}

/// Why a test's parameters are refused: the key under `tests.NAME` (none for
/// the table as a whole) and what is wrong.
#[derive(Debug, PartialEq)]
pub(crate) struct Invalid {
    pub key: Option<&'static str>,
    pub message: String,
}

pub(crate) fn invalid(
    key: Option<&'static str>,
    message: impl Into<String>,
) -> Result<(), Invalid> {
    Err(Invalid {
        key,
        message: message.into(),
    })
}

/// The first of these counts that is zero, named.
pub(crate) fn at_least_one(counts: &[(&'static str, u64)]) -> Result<(), Invalid> {
    match counts.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => invalid(Some(key), "must be at least 1"),
        None => Ok(()),
    }
}

/// A duration in seconds a suite may give: finite, not negative.
pub(crate) fn seconds_ok(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}
