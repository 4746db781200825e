//! What an engine or a test needs on this machine before any engine
//! starts, as its kind declares it; the preflight looks for each.

/// What an engine or a test needs on this machine before any engine
/// starts; `key` is under `engines.NAME` or `tests.NAME`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wants {
    /// A program on PATH (or a path): the key under `tests.NAME` naming it.
    Program {
        key: &'static str,
        name: String,
        fix: &'static str,
    },
    /// A file, relative to the suite's directory unless absolute.
    File {
        key: &'static str,
        path: String,
        fix: &'static str,
    },
}
