//! The integration tests, one crate: each module runs the real
//! `lmcache-e2e` binary for one area; `common` holds the helpers they share
//! (compiled once, not once per test file).

// Tests too: none over 80 lines (clippy.toml), each helper a step.
#![warn(clippy::too_many_lines)]

mod common;

mod adapters;
mod architecture;
mod ci_sim;
mod config_cli;
mod containers;
mod controls;
mod distribution;
mod engine_identity;
mod fault_tolerance;
mod gpus;
mod k3;
mod llama_cpp;
mod mmlu;
mod mmlu_data;
mod preflight;
mod presets;
mod report;
mod secrets;
mod setup_env;
mod shards;
mod signals;
mod sim_protocol;
mod throughput;
mod trust;
mod verdicts;
