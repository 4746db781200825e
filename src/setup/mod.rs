//! Setup steps that prepare what the suites need before engines start.

pub(crate) mod env;
pub(crate) mod mmlu_data;
pub(crate) mod prereqs;
pub(crate) mod recommend;
