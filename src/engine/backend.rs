//! The interfaces every kind of engine implements: a [`Backend`] resolves an
//! engine into something to start and starts it; an [`Owner`] acts on what
//! was started (a process group or a container): stops, kills, describes
//! its exit, cleans it up from another process. Each kind lives in its own
//! module under `kinds/`, whose `mod.rs` is the one place a kind is
//! branched on (with its row in `config/engine.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::gpu;
use super::spec::{EngineError, EngineSpec, Launch};
use crate::config::{EngineConfig, Suite};

/// What resolving an engine needs besides its own table.
pub(crate) struct Resolve<'a> {
    pub suite: &'a Suite,
    /// The engine's name for this run (`vllm@Model` when several models run).
    pub name: &'a str,
    pub model: &'a str,
    pub run_id: &'a str,
    pub port: u16,
    pub chosen_gpus: &'a [gpu::GpuState],
    /// Where the engine's `files` were written.
    pub files_dir: &'a std::path::Path,
}

impl Resolve<'_> {
    /// `{port}`, `{host}`, `{model}`, `{health_port}` (the engine's
    /// `health_port`) and `{file:NAME}` (the path of its file NAME)
    /// substituted in each argument.
    pub(crate) fn substitute(&self, e: &EngineConfig, args: &mut [String]) {
        for a in args.iter_mut() {
            *a = a
                .replace("{port}", &self.port.to_string())
                .replace("{host}", &e.host)
                .replace("{model}", self.model);
            if let Some(port) = e.health_port {
                *a = a.replace("{health_port}", &port.to_string());
            }
            for file in e.files.keys() {
                let path = self.files_dir.join(file);
                *a = a.replace(&format!("{{file:{file}}}"), &path.display().to_string());
            }
        }
    }
}

/// A started engine: what to signal or remove, as the state file records it
/// for `lmcache-e2e cleanup` in another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Handle {
    /// The engine's process group (its leader's PID is the group id).
    ProcessGroup { pid: u32, pgid: i32 },
    /// The container, and the process group of the `docker logs -f` that
    /// follows it (whose exit says the container stopped).
    Container { cli: PathBuf, id: String, pgid: i32 },
}

/// The child to await (its exit is the engine's) and how to reach it.
pub(crate) struct Started {
    pub child: tokio::process::Child,
    pub handle: Handle,
}

/// What `lmcache-e2e cleanup` did to one thing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CleanupRecord {
    /// The engine name, or the container's name when found by label.
    pub name: String,
    pub what: Cleaned,
    pub action: &'static str,
}

/// What a cleanup acted on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cleaned {
    ProcessGroup(i32),
    Container(String),
}

impl std::fmt::Display for Cleaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cleaned::ProcessGroup(g) => write!(f, "process group {g}"),
            // Docker ids are hex, but a record read back may hold anything.
            Cleaned::Container(id) => {
                write!(f, "container {}", id.chars().take(12).collect::<String>())
            }
        }
    }
}

/// How a dry run shows an engine it would start.
pub(crate) enum Planned {
    /// The program (or `docker run … IMAGE`) its arguments follow.
    Command(String),
    /// Nothing is started: it runs at this URL already.
    Running(String),
}

/// One kind of engine.
pub(crate) trait Backend: Send + Sync {
    /// What `ci --dry-run` shows, from the suite alone.
    fn planned(&self, e: &EngineConfig) -> Planned;

    /// Finds the program, builds the command line for this run.
    fn resolve(&self, e: &EngineConfig, r: &Resolve<'_>) -> Result<Launch, EngineError>;

    /// Starts it with stdout and stderr to `log`; `None` when there is
    /// nothing to start.
    fn start<'a>(
        &'a self,
        spec: &'a EngineSpec,
        log: Option<std::fs::File>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Started>, EngineError>>;
}

/// What owns a started engine (process groups, containers): how to act on
/// it, from this run or from `lmcache-e2e cleanup` in another process.
pub(crate) trait Owner: Send + Sync {
    /// Asks it to stop; it has `grace` before it is killed.
    fn stop<'a>(&'a self, h: &'a Handle, grace: Duration) -> BoxFuture<'a, ()>;

    /// Kills what is left of it.
    fn kill<'a>(&'a self, h: &'a Handle) -> BoxFuture<'a, ()>;

    /// The same, without a runtime: for `Drop`, when nothing else is left.
    fn kill_now(&self, h: &Handle);

    /// How it ended, given its child's exit status.
    fn describe_exit<'a>(&'a self, h: &'a Handle, status: ExitStatus) -> BoxFuture<'a, String>;

    /// Whether anything of it is still running (a process group can outlive
    /// its leader).
    fn alive(&self, h: &Handle) -> bool;

    /// Stops what a state file recorded, from another process.
    fn cleanup<'a>(
        &'a self,
        name: &'a str,
        h: &'a Handle,
        run_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, CleanupRecord>;
}

/// Opens (appends to) an engine's log with a first line saying what starts.
pub(crate) fn open_log(
    spec: &EngineSpec,
    command_line: &str,
) -> Result<Option<std::fs::File>, EngineError> {
    use std::io::Write as _;
    let Some(log) = &spec.log else {
        return Ok(None);
    };
    let err = |source| EngineError::Log {
        path: log.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(err)?;
    writeln!(
        file,
        "{LOG_HEADER} starting engine `{}`: {command_line}",
        spec.name
    )
    .map_err(err)?;
    Ok(Some(file))
}

/// What begins the lines we write into an engine's log ourselves.
pub(crate) const LOG_HEADER: &str = "# lmcache-e2e:";

/// Sends a child's stdout and stderr to the log (or nowhere).
pub(crate) fn redirect(
    cmd: &mut tokio::process::Command,
    log: Option<std::fs::File>,
    path: Option<&Path>,
) -> Result<(), EngineError> {
    match log {
        Some(file) => {
            let out = file.try_clone().map_err(|source| EngineError::Log {
                path: path.map(Path::to_path_buf).unwrap_or_default(),
                source,
            })?;
            cmd.stdout(out).stderr(file);
        }
        None => {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_recorded_typed_and_read_back() {
        let h = Handle::Container {
            cli: "/usr/bin/docker".into(),
            id: "0123456789abcdef".into(),
            pgid: 42,
        };
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"type\":\"container\""), "{json}");
        assert_eq!(serde_json::from_str::<Handle>(&json).unwrap(), h);
        assert_eq!(
            Cleaned::Container("0123456789abcdef".into()).to_string(),
            "container 0123456789ab"
        );
        assert_eq!(Cleaned::ProcessGroup(7).to_string(), "process group 7");
    }
}
