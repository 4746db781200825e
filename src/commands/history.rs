//! `--history FILE` for `ci` and `merge`: the run shown against the default
//! branch's recent runs, then appended when it is one of them.

use crate::ci_env::CiEnv;
use crate::cli::{HistoryAppend, HistoryFlags};
use crate::console::Console;
use crate::error::Error;
use crate::gate;
use crate::results::history::{self, Entry};
use crate::results::{RunResults, RunStatus};

/// The store may be any job's cache: this much at most.
const MAX_MIB: u64 = 64;

pub(crate) fn apply(
    flags: &HistoryFlags,
    ci: &CiEnv,
    results: &mut RunResults,
    console: &Console,
) -> Result<(), Error> {
    let Some(path) = &flags.history else {
        return Ok(());
    };
    let store = history::read(path, MAX_MIB)?;
    if store.skipped > 0 {
        console.warn(&format!(
            "history {}: skipped {} line(s) that are no run this tool wrote",
            path.display(),
            store.skipped
        ));
    }
    let entry = Entry::of(results);
    results.history = gate::history::view(&store.entries, &entry);
    match &results.history {
        Some(v) => console.info(&format!(
            "history: compared with the last {} run(s) of the default branch with fingerprint {}",
            v.runs, v.fingerprint
        )),
        None => console.info(&format!(
            "history: no earlier run in {} has this run's fingerprint ({}); nothing to compare",
            path.display(),
            entry.fingerprint.key()
        )),
    }
    if appends(flags, ci, results) {
        if results.shard.as_ref().is_some_and(|m| m.count > 1) {
            // Part of a run is no run: the merge appends the whole.
            console
                .info("history: a shard is not appended; `merge --history` appends the merged run");
        } else {
            history::append(path, &entry)?;
            console.info(&format!("history: appended this run to {}", path.display()));
        }
    }
    results.write()?;
    Ok(())
}

/// Only a run that went to its end adds to the history; `auto` adds runs of
/// the default branch that are no pull request.
fn appends(flags: &HistoryFlags, ci: &CiEnv, results: &RunResults) -> bool {
    let whole = matches!(results.status, RunStatus::Passed | RunStatus::Failed);
    let default = flags
        .default_branch
        .as_deref()
        .or(ci.default_branch.as_deref())
        .unwrap_or("main");
    whole
        && match flags.history_append {
            HistoryAppend::Always => true,
            HistoryAppend::Never => false,
            HistoryAppend::Auto => {
                results.meta.pr_number.is_none() && results.meta.branch.as_deref() == Some(default)
            }
        }
}
