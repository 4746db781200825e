//! Simulated OpenAI-compatible engine: a prefix KV cache with a latency model,
//! deterministic answers and injectable faults, so the whole pipeline runs
//! for real on a machine without GPUs. Stands alone: depends on no other
//! module of the crate.

mod answers;
mod cache;
pub(crate) mod noise;
mod options;
mod server;
mod text;

pub(crate) use server::serve;

pub(crate) use options::{KvFault, SimOptions};
