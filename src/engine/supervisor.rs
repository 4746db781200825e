//! The supervisor owns every engine process of a run: each in its own
//! process group with its output in a log file, recorded in a state file so
//! another process can clean up; stopping sends SIGTERM to each group, waits
//! a grace period, then SIGKILLs what is left. Dropping it kills everything,
//! so not even a panic leaves an engine behind.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{tail_lines, EngineError, EngineSpec, TAIL_LINES};

/// Set on every engine process, so cleanup can tell our processes from a
/// stranger that reused a PID.
pub(crate) const RUN_ID_ENV: &str = "LMCACHE_E2E_RUN_ID";

struct Tracked {
    name: String,
    pgid: i32,
    child: tokio::process::Child,
    log: Option<PathBuf>,
    status: Option<String>,
    /// Deaths are reported once an engine was ready; before that, readiness
    /// reports the exit with its own message.
    ready: bool,
    /// Set once we asked it to stop, so its exit is not reported as a death.
    stopping: bool,
    gone: bool,
}

/// What the state file records: enough for `lmcache-e2e cleanup` to find
/// and stop this run's engines from another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub run_id: String,
    pub owner_pid: u32,
    pub engines: Vec<StateEngine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateEngine {
    pub name: String,
    pub pid: u32,
    pub pgid: i32,
    pub log: Option<PathBuf>,
    pub stopped: bool,
}

pub(crate) struct Supervisor {
    run_id: String,
    grace: Duration,
    state_path: PathBuf,
    engines: Mutex<Vec<Tracked>>,
}

fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH: already gone, which is what we want.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

impl Supervisor {
    pub(crate) fn new(run_id: &str, grace: Duration, results_dir: &Path) -> Self {
        Self {
            run_id: run_id.to_string(),
            grace,
            state_path: results_dir.join("state.json"),
            engines: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        // A panic while holding the lock must not stop us from cleaning up.
        self.engines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an engine in a new process group with stdout and stderr
    /// appended to its log; returns its PID.
    pub(crate) fn spawn(&self, spec: &EngineSpec) -> Result<Option<u32>, EngineError> {
        let Some((program, args)) = &spec.command else {
            return Ok(None);
        };
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env(RUN_ID_ENV, &self.run_id)
            .env("PYTHONUNBUFFERED", "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(log) = &spec.log {
            let log_err = |source| EngineError::Log {
                path: log.clone(),
                source,
            };
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(log_err)?;
            writeln!(
                file,
                "# lmcache-e2e: starting engine `{}`: {command_line}",
                spec.name
            )
            .map_err(log_err)?;
            cmd.stdout(file.try_clone().map_err(log_err)?).stderr(file);
        } else {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
        let child = cmd.spawn().map_err(|source| EngineError::Spawn {
            engine: spec.name.clone(),
            command: command_line,
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        self.lock().push(Tracked {
            name: spec.name.clone(),
            pgid: pid as i32,
            child,
            log: spec.log.clone(),
            status: None,
            ready: false,
            stopping: false,
            gone: false,
        });
        self.write_state()?;
        Ok(Some(pid))
    }

    fn write_state(&self) -> Result<(), EngineError> {
        let state = StateFile {
            run_id: self.run_id.clone(),
            owner_pid: std::process::id(),
            engines: self
                .lock()
                .iter()
                .map(|t| StateEngine {
                    name: t.name.clone(),
                    pid: t.pgid as u32,
                    pgid: t.pgid,
                    log: t.log.clone(),
                    stopped: t.gone,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        crate::report::results::write_atomic(&self.state_path, &json).map_err(|e| {
            EngineError::State {
                path: self.state_path.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })
    }

    /// The exit status of an engine whose process has exited.
    pub(crate) fn exit_status(&self, name: &str) -> Option<String> {
        let mut engines = self.lock();
        let t = engines.iter_mut().find(|t| t.name == name)?;
        reap(t);
        t.status.clone()
    }

    pub(crate) fn mark_ready(&self, name: &str) {
        if let Some(t) = self.lock().iter_mut().find(|t| t.name == name) {
            t.ready = true;
        }
    }

    /// Resolves when an engine exits that nobody asked to stop.
    pub(crate) async fn watch_deaths(&self) -> EngineError {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut engines = self.lock();
            for t in engines.iter_mut() {
                reap(t);
                if let (Some(status), true, false) = (&t.status, t.ready, t.stopping) {
                    return EngineError::Died {
                        engine: t.name.clone(),
                        status: status.clone(),
                        log: t.log.clone(),
                        tail: t
                            .log
                            .as_deref()
                            .map(|l| tail_lines(l, TAIL_LINES))
                            .unwrap_or_default(),
                    };
                }
            }
        }
    }

    /// Stops every engine: SIGTERM to each process group, the grace period,
    /// then SIGKILL; `kill_now` resolving (a second signal) skips the rest of
    /// the grace period. Returns the names of engines that had to be killed.
    pub(crate) async fn stop_all(&self, kill_now: impl Future<Output = ()>) -> Vec<String> {
        let pending: Vec<i32> = {
            let mut engines = self.lock();
            engines
                .iter_mut()
                .filter(|t| !t.gone)
                .map(|t| {
                    t.stopping = true;
                    signal_group(t.pgid, Signal::SIGTERM);
                    t.pgid
                })
                .collect()
        };
        if pending.is_empty() {
            return Vec::new();
        }
        let deadline = Instant::now() + self.grace;
        tokio::pin!(kill_now);
        loop {
            if self.sweep() {
                let _ = self.write_state();
                return Vec::new();
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                _ = &mut kill_now => break,
            }
        }
        let killed: Vec<String> = {
            let engines = self.lock();
            engines
                .iter()
                .filter(|t| !t.gone)
                .map(|t| {
                    signal_group(t.pgid, Signal::SIGKILL);
                    t.name.clone()
                })
                .collect()
        };
        // SIGKILL cannot be ignored; wait briefly for the kernel to finish.
        let until = Instant::now() + Duration::from_secs(2);
        while !self.sweep() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.write_state();
        killed
    }

    /// Reaps exited leaders and marks groups with no process left; true when
    /// every group is gone.
    fn sweep(&self) -> bool {
        let mut engines = self.lock();
        for t in engines.iter_mut().filter(|t| !t.gone) {
            reap(t);
            if t.status.is_some() && !group_alive(t.pgid) {
                t.gone = true;
            }
        }
        engines.iter().all(|t| t.gone)
    }
}

fn reap(t: &mut Tracked) {
    if t.status.is_none() {
        if let Ok(Some(status)) = t.child.try_wait() {
            t.status = Some(status.to_string());
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for t in self.lock().iter().filter(|t| !t.gone) {
            signal_group(t.pgid, Signal::SIGKILL);
        }
    }
}

/// What `lmcache-e2e cleanup` did for one engine of a state file.
#[derive(Debug)]
pub(crate) struct CleanupRecord {
    pub name: String,
    pub pgid: i32,
    pub action: &'static str,
}

/// Stops the engines a state file records, from any process. A group is
/// only signalled when its leader still carries this run's id (or can no
/// longer be inspected because it is gone), so a reused PID is left alone.
pub(crate) async fn cleanup_from_state(
    path: &Path,
    grace: Duration,
) -> Result<Vec<CleanupRecord>, EngineError> {
    let state_err = |source| EngineError::State {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(state_err)?;
    let state: StateFile = serde_json::from_str(&text)
        .map_err(|e| state_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut records = Vec::new();
    let mut signalled = Vec::new();
    for e in &state.engines {
        let action = if !group_alive(e.pgid) {
            "already stopped"
        } else if !belongs_to_run(e.pid, &state.run_id) {
            "left alone (PID now belongs to another process)"
        } else {
            signal_group(e.pgid, Signal::SIGTERM);
            signalled.push(e.pgid);
            "stopped"
        };
        records.push(CleanupRecord {
            name: e.name.clone(),
            pgid: e.pgid,
            action,
        });
    }
    let deadline = Instant::now() + grace;
    while signalled.iter().any(|&g| group_alive(g)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for r in records.iter_mut().filter(|r| signalled.contains(&r.pgid)) {
        if group_alive(r.pgid) {
            signal_group(r.pgid, Signal::SIGKILL);
            r.action = "killed";
        }
    }
    Ok(records)
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
