//! Reports of a run, rendered from the results model alone.

pub(crate) mod results;
pub(crate) mod summary;
