//! What the engine layer hands out and fails with: a resolved engine
//! ([`EngineSpec`]), its errors, and the marks it leaves on its processes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{EngineKind, Readiness, Role};
use crate::results::ErrorClass;

/// Lines of an engine's log shown when it fails.
pub(crate) const TAIL_LINES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("failed to find `{command}` for engine `{engine}` on PATH: {source}")]
    NotFound {
        engine: String,
        command: String,
        source: which::Error,
    },
    #[error("failed to pick a free port for engine `{engine}` on {host}: {source}")]
    Port {
        engine: String,
        host: String,
        source: std::io::Error,
    },
    #[error("failed to start engine `{engine}`: {address} is taken by {answering}; stop it (a server left over from an earlier job?) or give the engine another port")]
    PortTaken {
        engine: String,
        address: String,
        answering: String,
    },
    #[error("engine `{engine}` stopped answering: {why}; the run stops, as the requests left would fail at once")]
    Unresponsive { engine: String, why: String },
    #[error("engine `{engine}` is no longer the server the run found ready: it was {was}, now it is {now}; the run stops rather than measure another server")]
    Changed {
        engine: String,
        was: String,
        now: String,
    },
    #[error("failed to create log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start engine `{engine}` (`{command}`): {source}")]
    Spawn {
        engine: String,
        command: String,
        source: std::io::Error,
    },
    #[error("engine `{engine}` exited ({status}) before it was ready{orphan}{}", tail_block(.log, .tail))]
    ExitedEarly {
        engine: String,
        status: String,
        /// Said when its port answers all the same: the command left a
        /// server behind that the run does not own.
        orphan: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("engine `{engine}` was not ready at {url} after {waited:.0} s (last: {last}); raise MAX_WAIT_SECONDS or run.readiness_timeout_secs if it is only slow{}", tail_block(.log, .tail))]
    NotReady {
        engine: String,
        url: String,
        waited: f64,
        last: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("engine `{engine}` died during the run ({status}){}", tail_block(.log, .tail))]
    Died {
        engine: String,
        status: String,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("failed to start the container of engine `{engine}`: {message}")]
    ContainerStart { engine: String, message: String },
    #[error("failed to write the state file {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EngineError {
    /// An engine that cannot be started, served or stopped.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Engine
    }
}

fn tail_block(log: &Option<PathBuf>, tail: &[String]) -> String {
    let Some(log) = log else {
        return String::new();
    };
    let mut s = format!("\n--- last {} lines of {} ---\n", tail.len(), log.display());
    for line in tail {
        let _ = writeln!(s, "{line}");
    }
    s.push_str("--- end of log ---");
    s
}

/// What starting an engine takes.
#[derive(Debug, Clone)]
pub(crate) enum Launch {
    /// Already running; never started or stopped.
    External,
    /// A program in its own process group.
    Process {
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// `docker run -d` (its arguments), then its log followed.
    Container { cli: PathBuf, run_args: Vec<String> },
}

/// An engine resolved for this run: what to start and where it will serve.
#[derive(Debug, Clone)]
pub(crate) struct EngineSpec {
    pub name: String,
    pub role: Role,
    pub kind: EngineKind,
    pub launch: Launch,
    pub url: String,
    pub readiness_timeout: Duration,
    pub log: Option<PathBuf>,
    pub readiness: Readiness,
    /// `engines.NAME.health_path` as given (`None`: `/health`, with the
    /// fallback).
    pub health_path: Option<String>,
    /// `engines.NAME.health_port`: where the health route is served when
    /// not on the engine's own port.
    pub health_port: Option<u16>,
}

impl EngineSpec {
    /// Gives a started process an environment variable, unless the suite
    /// set it for the engine (the suite wins); whether it was given.
    pub(crate) fn give_env(&mut self, key: &str, value: &str) -> bool {
        let Launch::Process { env, .. } = &mut self.launch else {
            return false;
        };
        if env.iter().any(|(k, _)| k == key) {
            return false;
        }
        env.push((key.to_string(), value.to_string()));
        true
    }

    /// An environment variable the engine's process gets, if any.
    pub(crate) fn env_var(&self, key: &str) -> Option<&str> {
        let Launch::Process { env, .. } = &self.launch else {
            return None;
        };
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Set on every engine process, so cleanup can tell our processes from a
/// stranger that reused a PID.
pub(crate) const RUN_ID_ENV: &str = "LMCACHE_E2E_RUN_ID";
