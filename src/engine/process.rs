//! Kind `process`: a program we start (e.g. `vllm serve`) in its own
//! process group, so stopping reaches every process it spawned: SIGTERM to
//! the group, the grace period, then SIGKILL.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::backend::{redirect, Backend, CleanupRecord, Handle, Launch, Resolve, Started, Target};
use super::{EngineError, EngineSpec, RUN_ID_ENV};
use crate::config::EngineConfig;
use crate::results::NoSecrets;

pub(crate) struct Process;

pub(crate) fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

pub(crate) fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH: already gone, which is what we want.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// The group of a process handle (and of a container's log follower).
fn pgid(h: &Handle) -> i32 {
    match h {
        Handle::ProcessGroup { pgid, .. } | Handle::Container { pgid, .. } => *pgid,
    }
}

/// Starts `program args` in a new process group with the run's id in its
/// environment and no GitHub token (engines run a PR's code and log freely).
pub(crate) fn spawn(
    spec: &EngineSpec,
    program: &std::path::Path,
    args: &[String],
    env: &[(String, String)],
    log: Option<std::fs::File>,
    run_id: &str,
) -> Result<Started, EngineError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.no_secrets();
    cmd.args(args)
        // Our input (the LMCache engine's port, as the scripts name it),
        // but vLLM reads VLLM_PORT as its own internal port: two engines
        // inheriting it fight over it, so k3 starts vLLM under `env -u
        // VLLM_PORT`. An engine that wants it sets it in its env.
        .env_remove("VLLM_PORT")
        .env(RUN_ID_ENV, run_id)
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    redirect(&mut cmd, log, spec.log.as_deref())?;
    let child = cmd.spawn().map_err(|source| EngineError::Spawn {
        engine: spec.name.clone(),
        command: command_line(program, args),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    Ok(Started {
        child,
        handle: Handle::ProcessGroup {
            pid,
            pgid: pid as i32,
        },
    })
}

/// `program args` with the run's substitutions and the engine's env.
pub(crate) fn launch(
    program: std::path::PathBuf,
    mut args: Vec<String>,
    e: &EngineConfig,
    r: &Resolve<'_>,
) -> Launch {
    r.substitute(e, &mut args);
    Launch::Process {
        program,
        args,
        env: e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

pub(crate) fn command_line(program: &std::path::Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Backend for Process {
    fn resolve(&self, e: &EngineConfig, r: &Resolve<'_>) -> Result<Launch, EngineError> {
        let command = e.command.clone().unwrap_or_default();
        let program = which::which(&command).map_err(|source| EngineError::NotFound {
            engine: r.name.to_string(),
            command: command.clone(),
            source,
        })?;
        Ok(launch(program, e.args.clone(), e, r))
    }

    fn start<'a>(
        &'a self,
        spec: &'a EngineSpec,
        log: Option<std::fs::File>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Started>, EngineError>> {
        Box::pin(async move {
            let Launch::Process { program, args, env } = &spec.launch else {
                return Ok(None);
            };
            spawn(spec, program, args, env, log, run_id).map(Some)
        })
    }

    fn stop<'a>(&'a self, h: &'a Handle, _grace: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move { signal_group(pgid(h), Signal::SIGTERM) })
    }

    fn kill<'a>(&'a self, h: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.kill_now(h) })
    }

    fn kill_now(&self, h: &Handle) {
        signal_group(pgid(h), Signal::SIGKILL);
    }

    fn describe_exit<'a>(&'a self, _h: &'a Handle, status: ExitStatus) -> BoxFuture<'a, String> {
        Box::pin(async move { status.to_string() })
    }

    fn alive(&self, h: &Handle) -> bool {
        group_alive(pgid(h))
    }

    /// Only a group whose leader still carries this run's id (or is gone:
    /// only our children could have joined a group we created) is touched,
    /// so a reused PID is left alone.
    fn cleanup<'a>(
        &'a self,
        name: &'a str,
        h: &'a Handle,
        run_id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, CleanupRecord> {
        Box::pin(async move {
            let (pid, group) = match h {
                Handle::ProcessGroup { pid, pgid } => (*pid, *pgid),
                Handle::Container { pgid, .. } => (0, *pgid),
            };
            let record = |action| CleanupRecord {
                name: name.to_string(),
                what: Target::ProcessGroup(group),
                action,
            };
            if !group_alive(group) {
                return record("already stopped");
            }
            if !belongs_to_run(pid, run_id) {
                return record("left alone (PID now belongs to another process)");
            }
            signal_group(group, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while group_alive(group) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if group_alive(group) {
                signal_group(group, Signal::SIGKILL);
                return record("killed");
            }
            record("stopped")
        })
    }
}

fn belongs_to_run(pid: u32, run_id: &str) -> bool {
    let marker = format!("{RUN_ID_ENV}={run_id}");
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()),
        // The leader is gone but its group lives on: only our children
        // could have joined a group we created.
        Err(_) => true,
    }
}
