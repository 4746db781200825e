//! Kind `process`: a program we start (e.g. `vllm serve`) in its own
//! process group, so stopping reaches every process it spawned: SIGTERM to
//! the group, the grace period, then SIGKILL.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::child::NoSecrets;
use crate::config::EngineConfig;
use crate::engine::backend::{
    redirect, Backend, Cleaned, CleanupRecord, Handle, Owner, Planned, Resolve, Started,
};
use crate::engine::spec::{EngineError, EngineSpec, Launch, RUN_ID_ENV};

pub(crate) struct Process;

/// Whether any process of the group can still run. A member that exited
/// but was never reaped (a zombie) still answers `kill(0)`: vLLM's
/// EngineCore, orphaned when its API server dies, is handed to a PID 1
/// that may never wait for it (a container's shell, a CI pod's pause), and
/// it would keep a stopped engine "alive" for good. It holds no memory and
/// takes no signal, so it does not count.
pub(crate) fn group_alive(pgid: i32) -> bool {
    if matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)) {
        return false;
    }
    runnable_members(pgid).is_none_or(|n| n > 0)
}

/// Members of the group that are not zombies, from `/proc`; `None` where
/// `/proc` cannot be read (then every member counts).
fn runnable_members(pgid: i32) -> Option<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone between the listing and the read: not a member any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, group)) = state_and_group(&stat) {
            n += usize::from(group == pgid && !matches!(state, 'Z' | 'X'));
        }
    }
    Some(n)
}

/// The state and process group of a `/proc/PID/stat` line. The command
/// name (in parentheses) may hold spaces and parentheses, so the fields are
/// read after its last `)`: state, parent, group.
fn state_and_group(stat: &str) -> Option<(char, i32)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _parent = fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
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
        env: crate::engine::gpu::engine_env(&e.env, &|k| std::env::var(k).ok()),
    }
}

pub(crate) fn command_line(program: &std::path::Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Backend for Process {
    fn planned(&self, e: &EngineConfig) -> Planned {
        Planned::Command(e.command.clone().unwrap_or_default())
    }

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
}

impl Owner for Process {
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
                what: Cleaned::ProcessGroup(group),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::proptest;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (python3) S 1 4242 4242 0 -1 4194560 1 0 0 0";
        assert_eq!(state_and_group(stat), Some(('S', 4242)));
        // vLLM names its processes; a name may hold spaces and parentheses.
        let stat = "77 (VLLM::EngineCore (x) y) Z 1 4242 4242 0";
        assert_eq!(state_and_group(stat), Some(('Z', 4242)));
        assert_eq!(state_and_group("77 (cut"), None);
    }

    proptest! {
        #[test]
        fn any_command_name_leaves_state_and_group_readable(name in "[ -~]{0,15}", group in 1i32..1_000_000) {
            let stat = format!("12 ({name}) R 1 {group} {group} 0 -1");
            assert_eq!(state_and_group(&stat), Some(('R', group)));
        }
    }

    /// vLLM's EngineCore outlives its API server as a zombie when PID 1
    /// never reaps it (seen on the H200: `<defunct>` in the engine's
    /// group, the stop waiting out its grace, `stopped: false` left in
    /// state.json). This process plays that PID 1: it adopts the orphan
    /// and never waits for it.
    #[tokio::test]
    async fn a_group_left_with_only_a_zombie_is_not_alive() {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 30 & exec sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id().unwrap() as i32;
        let until = Instant::now() + Duration::from_secs(5);
        while runnable_members(pgid) != Some(2) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(runnable_members(pgid), Some(2), "leader and its child");
        assert!(group_alive(pgid));
        signal_group(pgid, Signal::SIGKILL);
        child.wait().await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            killpg(Pid::from_raw(pgid), None).is_ok(),
            "the orphan is a zombie still in the group"
        );
        assert!(!group_alive(pgid), "but nothing in it can run");
    }
}
