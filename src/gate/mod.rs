//! The gate: checks and metrics in, verdicts out. Pure, so every rule is
//! testable without running anything.

mod attempts;
pub(crate) mod changepoint;
mod check;
pub(crate) mod evidence;
pub(crate) mod history;
pub(crate) mod stats;

pub(crate) use attempts::{conclude, retry};
pub(crate) use check::{
    check_of, evaluate, evaluate_looking, share_alpha, test_status, unshare_alpha,
    with_failures_gated,
};
