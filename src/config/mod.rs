//! Suite configuration: the typed schema of a suite TOML, how it is loaded
//! from a file or a built-in preset, and how environment variables and
//! `--set` override it (with the origin of every value kept for `config show`).

mod control;
mod engine;
mod error;
mod kind;
mod layers;
mod lint;
mod metric_spec;
pub(crate) mod metrics;
mod near;
mod origin;
mod params;
pub(crate) mod preflight;
mod presets;
pub(crate) mod schema;
mod suite;
mod table;
mod wants;

pub(crate) use crate::results::{Role, Severity};

pub(crate) use engine::{
    BuildOptions, ContainerOptions, EngineConfig, EngineKind, FaultRoute, Readiness,
};
pub(crate) use error::ConfigError;
pub(crate) use kind::{EnvType, EnvVar, KindParams, TestKind, TestParams, Typing};
pub(crate) use layers::{load, load_control, LoadRequest, Loaded};
pub(crate) use params::{at_least_one, invalid, seconds_ok, Api, Invalid};
pub(crate) use presets::PRESETS;
pub(crate) use suite::{
    CheckConfig, Expect, Installer, Pairing, RepoConfig, RunConfig, Schedule, SetupConfig, Suite,
    TestConfig,
};
pub(crate) use wants::Wants;

/// The loader's toy test kind, for other layers' unit tests.
#[cfg(test)]
pub(crate) use kind::toy;
