//! Setup steps that prepare what the suites need before engines start.

pub(crate) mod mmlu_data;
