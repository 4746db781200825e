//! Workloads: they reach engines only through `client` and a base URL, so
//! they run the same against servers this tool did not start.

pub(crate) mod long_doc_qa;

use std::path::PathBuf;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkloadError {
    #[error("failed to prepare the workload against {url}: {source}")]
    Client { url: String, source: ClientError },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}
