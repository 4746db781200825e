//! Whose fault a failure is: every area's error says its class, and the
//! exit code is chosen from the class in one place (`error.rs`).

/// What kind of failure stopped the tool, so it exits with the code that
/// tells the user what to fix (README: Exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorClass {
    /// A file or value the user gave is wrong (exit 2).
    BadInput,
    /// The job's environment: a missing program, an unwritable directory (exit 3).
    Setup,
    /// An engine did not start, died, or did not answer as an OpenAI
    /// server should (exit 4).
    Engine,
    /// A test ran but failed, or could not produce its measurement (exit 1).
    Failed,
    /// A signal stopped the run (exit 128 + its number).
    Interrupted(i32),
    /// A bug of this tool (exit 101).
    Internal,
}
