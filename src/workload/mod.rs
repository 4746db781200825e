//! Workloads: one module per kind behind the [`Workload`] trait. They reach
//! engines only through `client` and a base URL, so they run the same
//! against servers this tool did not start.

mod api;
pub(crate) mod determinism;
pub(crate) mod fault_tolerance;
pub(crate) mod lm_eval;
pub(crate) mod long_doc_qa;
pub(crate) mod mmlu;
mod progress;
pub(crate) mod request_rate;
mod shared;
pub(crate) mod throughput;
pub(crate) mod vllm_bench;

use crate::config::TestParams;

pub(crate) use api::{Ctx, ErrorClass, Harness, Output, Target, Workload, WorkloadError};
pub(crate) use progress::{Progress, Snapshot};

/// The registry: a new kind is its module and one line here. `attempt`
/// counts from 1; a workload whose engines keep state between attempts
/// starts each from fresh inputs.
pub(crate) fn for_test(params: &TestParams, attempt: u32) -> Box<dyn Workload> {
    match params {
        TestParams::LongDocQa(p) => Box::new(long_doc_qa::LongDocQa::new(p.clone(), attempt)),
        TestParams::Mmlu(p) => Box::new(mmlu::Mmlu::new(p.clone())),
        TestParams::Throughput(p) => Box::new(throughput::Throughput::new(p.clone(), attempt)),
        TestParams::Determinism(p) => Box::new(determinism::Determinism::new(p.clone())),
        TestParams::LmEval(p) => Box::new(lm_eval::LmEval::new(p.clone())),
        TestParams::RequestRate(p) => Box::new(request_rate::RequestRate::new(p.clone())),
        TestParams::FaultTolerance(p) => Box::new(fault_tolerance::FaultTolerance::new(p.clone())),
    }
}
