//! Setup steps that prepare what the suites need before engines start.

pub(crate) mod env;

pub(crate) mod prereqs;
pub(crate) mod recommend;
